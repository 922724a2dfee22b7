#include "builder/cli.hpp"

int main(int argc, char** argv) { return tug::builder::Main(argc, argv); }
