// HaproxyGateway: one real HAProxy (2.6, master-worker mode) whose frontends and backends follow a GatewayConfig,
// changed without dropping requests (docs/gateway.md).
//
// Layout in the work dir: haproxy.cfg (generated; rewritten after every change so a reload keeps the current state),
// master.sock (master CLI: `show proc`, `reload`), admin.sock (runtime API, level admin, expose-fd listeners),
// haproxy.log (stdout/stderr of master and workers: state changes, errors).
//
// Every backend section holds a fixed pool of server slots s1..sN; free slots are `disabled` (maintenance) at
// 0.0.0.0:0. Apply changes membership through the runtime API only: an added instance takes a free slot
// (`set server addr/port`, weight 0, ready, health forced down), gets traffic once HAProxy's own checks pass; a
// removed instance is drained (`state drain`) until it holds no session, then put back in maintenance. Only a new or
// removed service, a changed service setting (port, mode, health path, bind address) or a pool too small for the
// desired instances triggers a reload, and reloads are seamless: the master re-executes with the listening sockets
// passed over (expose-fd listeners), the old worker finishes what it has, idle keep-alive clients are closed only
// after their next response (idle-close-on-response).
//
// Blocking; Apply, Stop and the inspection calls are serialised by an internal mutex, so any thread may call them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "gateway/config.hpp"

namespace tug::cluster::gateway {

namespace detail {
struct GatewayState;
}

struct HaproxyOptions {
  // Executable name looked up in PATH (then /usr/sbin), or a path.
  std::string haproxy_binary = "haproxy";
  // Slots per backend: max(min_slots, next power of two >= 2 x instances), so a rolling upgrade that surges a few
  // instances fits without a reload.
  size_t min_slots = 8;
  // HAProxy health checks: interval while a server is up; fast/down intervals are a fifth of it (>= 100 ms).
  std::chrono::milliseconds check_interval{std::chrono::seconds(1)};
  int rise = 2;
  int fall = 2;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(2)};
  std::chrono::milliseconds client_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds server_timeout{std::chrono::seconds(30)};
  // Start: until the first worker answers on the admin socket.
  std::chrono::milliseconds start_timeout{std::chrono::seconds(10)};
  // Reload: until the new worker answers on the admin socket.
  std::chrono::milliseconds reload_timeout{std::chrono::seconds(15)};
  // Apply waits this long for added instances to pass their checks before it removes anything.
  std::chrono::milliseconds ready_timeout{std::chrono::seconds(10)};
  // Apply waits this long for removed instances (and, after a reload that removed a service, the old worker) to
  // finish their sessions; after it they are removed anyway (their sessions continue until they end).
  std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
  // An old worker still holding connections after a reload is stopped after this (global hard-stop-after).
  std::chrono::milliseconds hard_stop_after{std::chrono::seconds(120)};
  // One runtime API or master CLI command.
  std::chrono::milliseconds command_timeout{std::chrono::seconds(5)};
};

// What one Apply changed. Instances are named "<service>/<host:port>".
struct ApplyResult {
  bool reloaded = false;
  std::vector<std::string> services_added;
  std::vector<std::string> services_removed;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  // Added but not passing HAProxy's checks within ready_timeout: they stay configured and get traffic once healthy.
  std::vector<std::string> not_ready;
  // Removed while still holding sessions after drain_timeout.
  std::vector<std::string> drain_timed_out;
};

// From the master CLI's `show proc`.
struct ProcInfo {
  pid_t master = -1;
  int reloads = 0;
  int failed_reloads = 0;
  std::vector<pid_t> workers;      // current (normally one)
  std::vector<pid_t> old_workers;  // still finishing connections after a reload
};

// One server slot as HAProxy reports it (`show stat`).
struct SlotStatus {
  std::string slot;                // "s3"
  std::optional<Backend> backend;  // the instance in the slot; nullopt for a free slot
  std::string status;              // HAProxy's: "UP", "DOWN", "MAINT", "DRAIN", "UP 1/2", ...
  // HAProxy's check_status: "INI" until the first check has run (status then reads "UP 1/2": HAProxy starts a
  // configured server at the lowest "up" health, not as failing), "L7OK"/"L4OK" passed, "L4CON", "L7STS", ... failed.
  std::string check;
  int sessions = 0;                // current sessions (scur)
  int weight = 0;
};

class HaproxyGateway {
 public:
  // Writes the config for `initial` under `work_dir` (created if missing), checks it with `haproxy -c`, starts
  // `haproxy -W -S <master.sock> -f haproxy.cfg` and returns once the worker answers on the admin socket (bounded by
  // start_timeout), then waits up to ready_timeout for the first health check of every initial instance, so that
  // Slots() reports checked states ("UP", or "DOWN" for an instance that failed), not HAProxy's unchecked "UP 1/2".
  // Errors: kInvalidArgument (bad `initial`, work dir path too long for a unix socket, or haproxy -c
  // rejected the config: its message is included), kNotFound (haproxy not installed), kAlreadyExists (a haproxy is
  // already serving this work dir), kUnavailable (haproxy exited or did not come up: the log tail is included, e.g.
  // "cannot bind socket" for a frontend port in use).
  static Result<std::unique_ptr<HaproxyGateway>> Start(const std::string& work_dir, const HaproxyOptions& opts = {},
                                                       const GatewayConfig& initial = {});
  // Stop().
  ~HaproxyGateway();
  HaproxyGateway(const HaproxyGateway&) = delete;
  HaproxyGateway& operator=(const HaproxyGateway&) = delete;

  // Makes HAProxy serve exactly `desired`. In order: instances added to existing services (waiting up to
  // ready_timeout for their checks), instances removed (drained up to drain_timeout), then, if needed, one seamless
  // reload for new/removed/changed services and grown pools, followed by the runtime adds that needed the bigger pool.
  // The instances of a new service wait (up to ready_timeout) for their first check, and go in not_ready if it failed.
  // When it returns, removed instances receive no traffic and may be killed. Errors: kInvalidArgument (Validate, or
  // haproxy -c rejected the new config: nothing was reloaded), kUnavailable (haproxy is not running, a socket
  // failed, or the reload failed: e.g. a new frontend port is in use; the previous config stays in force and on
  // disk), kTimeout (a command or the reload did not complete). After an error the gateway still serves the last
  // state it reached; Apply again to converge.
  Result<ApplyResult> Apply(const GatewayConfig& desired);

  // Stops the master (SIGTERM; it stops its workers), then any worker of ours still alive (SIGKILL by pid), and waits
  // for them. Idempotent.
  void Stop();

  // The desired state last applied (successfully or not) as the gateway now holds it.
  GatewayConfig current() const;
  Result<ProcInfo> Processes();
  // The current worker's pid (`show info` on the admin socket).
  Result<pid_t> WorkerPid();
  // Slots of one service's backend, in slot order. kNotFound for an unknown service.
  Result<std::vector<SlotStatus>> Slots(const std::string& service);
  // Raw runtime API / master CLI command (one line), for diagnostics and tests.
  Result<std::string> RuntimeCommand(const std::string& command);
  Result<std::string> MasterCommand(const std::string& command);

  pid_t master_pid() const { return master_pid_; }
  // Reloads done by this object since Start.
  int reloads() const { return reloads_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& admin_socket() const { return admin_socket_; }
  const std::string& master_socket() const { return master_socket_; }
  const std::string& log_path() const { return log_path_; }
  // Last `max_bytes` of haproxy.log.
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  using Changes = std::map<std::string, std::vector<Backend>>;  // by service name
  HaproxyGateway(std::string work_dir, HaproxyOptions opts);

  Status Launch();
  Status WriteConfig(const detail::GatewayState& s, const std::string& path);
  Status CheckConfig(const std::string& path);
  Status Reload(const detail::GatewayState& next);
  // Puts each backend in a free slot of its service and waits for the checks; returns those that found no slot.
  Result<Changes> AddToSlots(const Changes& adds, ApplyResult& out);
  Status RemoveFromSlots(const Changes& removes, ApplyResult& out);
  // Waits up to ready_timeout until every instance of `services` has had its first health check; returns those
  // whose check did not pass ("<service>/<host:port>"), including any still unchecked at the deadline.
  std::vector<std::string> AwaitFirstChecksLocked(const std::vector<std::string>& services);
  Status Command(const std::string& command);
  Result<std::string> RuntimeLocked(const std::string& command, std::chrono::milliseconds timeout);
  Result<std::string> MasterLocked(const std::string& command, std::chrono::milliseconds timeout);
  Result<ProcInfo> ProcessesLocked(std::chrono::milliseconds timeout);
  Result<std::vector<SlotStatus>> SlotsLocked(const std::string& service);
  void StopLocked();

  const std::string work_dir_;
  const HaproxyOptions opts_;
  std::string binary_;
  std::string config_path_;
  std::string admin_socket_;
  std::string master_socket_;
  std::string log_path_;
  mutable std::mutex mu_;
  std::unique_ptr<detail::GatewayState> state_;
  core::Process master_;
  pid_t master_pid_ = -1;
  std::vector<pid_t> known_workers_;
  int reloads_ = 0;
};

}  // namespace tug::cluster::gateway
