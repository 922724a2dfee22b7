// Our own Catch2 main: Debian's Catch2WithMain is built for amd64 only, and the ARM test builds need one too.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
