namespace tug::controller { int Main(int, char**) { return 0; } }
