#include "cli/tug.hpp"

int main(int argc, char** argv) { return tug::cli::Main(argc, argv); }
