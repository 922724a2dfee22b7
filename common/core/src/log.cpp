#include "core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace tug::core {

void InitLogging(const std::string& level, const std::string& name) {
  auto logger = spdlog::get(name);
  if (!logger) logger = spdlog::stderr_color_mt(name);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

}  // namespace tug::core
