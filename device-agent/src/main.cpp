#include "agent/cli.hpp"

int main(int argc, char** argv) { return tug::agent::Main(argc, argv); }
