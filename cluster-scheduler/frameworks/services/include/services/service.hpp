// ServicesFramework: the whole `cluster-services` daemon in one object, so the binary and the tests run the same
// thing: the Scheduler on an io_context thread of its own, the REST API / event stream on an http::Server, the
// subscription to the master (framework::SchedulerClient), a worker thread that makes the calls to the master and
// the gateway in order, and the state in <state_dir>/state.json.
//
// Threading: Start and Stop from one thread; everything else happens on the daemon's threads. Stop is prompt
// (a call in flight to the master finishes within its timeout, 5 s).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "services/gateway_sink.hpp"
#include "services/scheduler.hpp"

namespace tug::cluster::services {

struct ServicesOptions {
  std::vector<std::string> masters;  // "http://127.0.0.1:5050"; 307s to the leader are followed
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8080;       // 0 picks a free one (port())
  std::string state_dir;             // required
  std::string name = "services";     // framework name
  double failover_timeout_s = 7 * 24 * 3600;  // the master keeps our tasks this long while we are away
  SchedulerOptions scheduler;        // role, gateway, drain, backoff ...
  // The gateway to keep in step (scheduler.gateway must be true). Not owned; outlives the framework.
  GatewaySink* gateway = nullptr;
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds stream_idle_timeout{8000};
  std::chrono::milliseconds tick{250};
  std::chrono::milliseconds event_keepalive{15000};  // comment lines on idle /v2/events streams
  // REST API credentials (http::TokenTable): GET needs a viewer token, changes an operator token; /healthz and
  // /ping stay open for health checkers. Without a token file Start refuses, unless insecure_no_auth (loud).
  std::string token_file;
  bool insecure_no_auth = false;
};

class ServicesFramework {
 public:
  // Loads the state, binds the API and subscribes. Errors: the state (kIo, kIntegrity), the bind (kUnavailable,
  // kInvalidArgument), options (kInvalidArgument: no masters, no state dir).
  static Result<std::unique_ptr<ServicesFramework>> Start(ServicesOptions opts);
  ~ServicesFramework();  // Stop()
  ServicesFramework(const ServicesFramework&) = delete;
  ServicesFramework& operator=(const ServicesFramework&) = delete;

  void Stop();
  uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:<port>"
  // Read from the scheduler's thread (waits for it).
  std::string framework_id() const;
  bool connected() const;

  struct Impl;

 private:
  explicit ServicesFramework(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The `cluster-services` command line (see --help). Returns the exit code: 0 after a clean shutdown (SIGINT,
// SIGTERM), 1 when it cannot start, 2 for usage errors.
int Main(int argc, char** argv);

}  // namespace tug::cluster::services
