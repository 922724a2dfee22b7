#include "services/service.hpp"

int main(int argc, char** argv) { return tug::cluster::services::Main(argc, argv); }
