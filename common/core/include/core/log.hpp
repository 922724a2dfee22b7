// Logging: spdlog, configured once per process. Messages go to stderr so stdout stays machine-readable.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace tug::core {

// level: "debug", "info", "warn", "error". Safe to call more than once.
void InitLogging(const std::string& level = "info", const std::string& name = "tugboat");

}  // namespace tug::core
