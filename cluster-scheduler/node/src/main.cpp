#include "node/node.hpp"

int main(int argc, char** argv) { return tug::cluster::node::Main(argc, argv); }
