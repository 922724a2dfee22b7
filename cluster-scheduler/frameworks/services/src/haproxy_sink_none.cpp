// Built when the gateway library (cluster-scheduler/gateway) is not part of the build.
#include "haproxy_sink.hpp"

namespace tug::cluster::services {

Result<std::unique_ptr<GatewaySink>> StartHaproxySink(const std::string& work_dir, const std::string&) {
  return MakeError(Errc::kUnsupported, "this build has no gateway library (cluster-scheduler/gateway); cannot drive "
                                       "HAProxy in " + work_dir);
}

}  // namespace tug::cluster::services
