#include "controller/main.hpp"

int main(int argc, char** argv) { return tug::controller::Main(argc, argv); }
