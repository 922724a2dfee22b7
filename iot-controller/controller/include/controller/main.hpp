// iot-controller entry point (main.cpp calls this).
#pragma once

namespace tug::controller {

// Parses the command line, runs the controller until SIGTERM/SIGINT; returns the process exit code.
int Main(int argc, char** argv);

}  // namespace tug::controller
