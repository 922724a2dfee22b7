// EtcdServer: a real single-member etcd 3.4 (Debian's etcd-server) on 127.0.0.1 for one test, with free client and
// peer ports, its data dir and log in a private temp dir. Start() blocks until GET /health answers 200 (bounded);
// the destructor stops the process by pid (SIGTERM, then SIGKILL) and removes the directory.
//
// Plain HTTP, no auth: the v3 JSON gateway is served on endpoint(). etcd 3.4 has no --unsafe-no-fsync (3.5 added
// it), so writes are fsynced; the data dir lives under /tmp.
//
// Blocking; use from the test thread. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/error.hpp"
#include "core/subprocess.hpp"
#include "testsupport/temp_dir.hpp"

namespace tug::testsupport {

struct EtcdServerOptions {
  std::string name = "tug-etcd";
  std::chrono::milliseconds start_timeout{std::chrono::seconds(20)};
  // etcd's own Raft timing (ms). The minimum lease TTL etcd grants is 1.5 x election timeout, rounded up to whole
  // seconds: the defaults give 2 s.
  int heartbeat_ms = 100;
  int election_timeout_ms = 1000;
};

class EtcdServer {
 public:
  // kNotFound when etcd is not installed; kUnavailable with the log tail when it did not become healthy in time.
  static Result<std::unique_ptr<EtcdServer>> Start(const EtcdServerOptions& opts = {});
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // "http://127.0.0.1:NNNNN": the client URL (v3 JSON gateway under /v3/).
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  uint16_t client_port() const { return client_port_; }
  uint16_t peer_port() const { return peer_port_; }
  std::string data_dir() const { return dir_.Sub("data"); }

  // Stops etcd (SIGTERM; after Pause() it is continued first) and starts it again on the same ports with the same
  // data dir, so keys and unexpired leases survive; returns when it is healthy again. Also starts a stopped server.
  Status Restart();
  // Stops only (SIGTERM, then SIGKILL after 5 s); down until Restart().
  void Stop();
  // SIGKILL, as in a crash.
  void Kill();
  // SIGSTOP / SIGCONT: the process keeps its sockets, so clients connect (the kernel accepts) but get no answer,
  // which exercises their timeouts rather than their connection-refused path. Pause() returns once every thread of
  // etcd is stopped (bounded: 2 s).
  void Pause();
  void Resume();
  bool running() { return process_.Running(); }
  pid_t pid() const { return process_.pid(); }

  std::string log_path() const { return dir_.Sub("etcd.log"); }
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  explicit EtcdServer(EtcdServerOptions opts) : opts_(std::move(opts)), dir_("tug-etcd") {}
  Status Launch();

  EtcdServerOptions opts_;
  TempDir dir_;
  uint16_t client_port_ = 0;
  uint16_t peer_port_ = 0;
  bool paused_ = false;
  core::Process process_;
};

}  // namespace tug::testsupport
