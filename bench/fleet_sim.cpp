// Fleet scale: N simulated devices (tug::mqtt::Client instances on one io_context per process; forked worker
// processes when N exceeds RLIMIT_NOFILE / 3, libmosquitto's 3 descriptors per client) against one real Mosquitto
// (tests/support MosquittoServer) and the real iot-controller binary, rolled out to through the REST API.
// Results and findings: BENCHMARKS.md, "Fleet scale". Not part of bench/run.sh (long).
//
// Each simulated device speaks the device side of DESIGN §5 the way device-agent's daemon does (see
// device-agent/include/agent/daemon.hpp): client id dev-i, retained presence {"online":true} + Will, retained state
// with labels {"fleet":"sim"}, subscription to its desired topic. On a desired with v > applied_v and a release it
// publishes jobs/J/status ACCEPTED, DOWNLOADING, VERIFIED, INSTALLING, ACTIVATING, HEALTHCHECK, SUCCEEDED (seq 1..7,
// boot_id) and then a new retained state whose active version is the release's version (read from the envelope's
// base64 payload) and whose job is {id, phase SUCCEEDED, seq 7}. Nothing is downloaded or run: this measures the
// control plane (broker + controller), not the devices.
//
// Usage: bench_fleet_sim [options] N [N...]      (markdown on stdout, progress on stderr)
//   --controller PATH     iot-controller binary (default build/iot-controller/controller/iot-controller)
//   --delay-ms D          wait D ms between receiving a desired and reporting (0: at once)
//   --state-each          publish a state after every transition, like the daemon does (default: only at the end)
//   --tls-devices         devices connect to the mutual-TLS listener (each gets a certificate; slow to set up)
//   --max-queued Q        Mosquitto max_queued_messages (per client; the project default is 1000)
//   --max-inflight I      Mosquitto max_inflight_messages (per client; the project default is 20)
//   --rollout-timeout S   give up on a rollout after S seconds (default 300)
//   --connect-window W    at most W device connects in flight at once (default 256)
//   --variants LIST       comma list of "1" (one 100% phase) and "3" (1%/50%/100%), default "1,3"
// Needs root (Mosquitto runs from the test fixture), mosquitto and openssl.
#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "crypto/dsse.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/encoding.hpp"
#include "crypto/release.hpp"
#include "crypto/trust_root.hpp"
#include "fleet/messages.hpp"
#include "fleet/topics.hpp"
#include "mqtt/client.hpp"
#include "testsupport/mosquitto_server.hpp"
#include "testsupport/net.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::bench;
using json = nlohmann::json;
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

struct Options {
  std::string controller = "build/iot-controller/controller/iot-controller";
  int delay_ms = 0;
  bool state_each = false;
  bool tls_devices = false;
  int max_queued = 1000;
  int max_inflight = 20;
  int rollout_timeout_s = 300;
  int connect_window = 256;
  std::vector<int> variants{1, 3};
  std::vector<int> sizes;
};

// ---- a minimal blocking HTTP/1.1 client (Connection: close) for the controller's REST API ----

struct HttpResult {
  int status = 0;
  std::string body;
};

HttpResult Http(uint16_t port, const std::string& method, const std::string& target, const std::string& token,
                const std::string& body = "") {
  HttpResult r;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return r;
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return r;
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
                    "\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return r;
    }
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return r;
  r.status = std::atoi(resp.c_str() + 9);
  const size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end != std::string::npos) r.body = resp.substr(hdr_end + 4);
  return r;
}

json MustJson(const HttpResult& r, int want, const std::string& what) {
  if (r.status != want) Die(what + ": HTTP " + std::to_string(r.status) + " " + r.body.substr(0, 400));
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded()) Die(what + ": body is not JSON");
  return j;
}

// Calls cond every `every` until it returns true (-> true) or `timeout` passes. (testsupport::WaitFor polls every
// few milliseconds, which would load the controller with full-fleet GETs.)
bool Poll(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
          std::chrono::milliseconds every = 500ms) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(every);
  }
}

// ---- /proc ----

struct Mem {
  double rss_mib = 0, hwm_mib = 0;
};

Mem ReadMem(pid_t pid) {
  Mem m;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss_mib = std::atof(line.c_str() + 6) / 1024.0;
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_mib = std::atof(line.c_str() + 6) / 1024.0;
  }
  return m;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(in, s);
  const size_t close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string f;
  std::vector<std::string> fields;
  while (rest >> f) fields.push_back(f);
  if (fields.size() < 13) return 0;
  // fields[0] is state (field 3); utime and stime are fields 14 and 15.
  return (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// ---- the simulated fleet ----

const char* const kTransitions[] = {"ACCEPTED",   "DOWNLOADING", "VERIFIED",   "INSTALLING",
                                    "ACTIVATING", "HEALTHCHECK", "SUCCEEDED"};

struct Counters {
  std::atomic<uint64_t> published{0}, received{0}, publish_errors{0}, connected{0}, connect_failures{0},
      disconnects{0}, succeeded_reports{0};
  std::atomic<bool> stop{false};
};

class Fleet;

struct SimDevice {
  std::string id, desired_topic, boot_id;
  std::unique_ptr<mqtt::Client> client;
  uint64_t state_seq = 0, applied_v = 0;
  std::optional<fleet::SlotInfo> active, previous;
  fleet::JobSummary job;
  bool ever_connected = false;
};

class Fleet {
 public:
  Fleet(asio::io_context& io, const Options& o, Counters& c) : io_(io), opts_(o), c_(c) {}

  // Runs on the io thread: creates N clients and starts them with at most connect_window connects in flight.
  void Start(int lo, int hi, const std::string& host, uint16_t port, testsupport::MosquittoServer* tls_broker) {
    devices_.resize(static_cast<size_t>(hi - lo));
    for (int i = lo; i < hi; ++i) {
      auto& d = devices_[static_cast<size_t>(i - lo)];
      d.id = "dev-" + std::to_string(i + 1);
      d.desired_topic = fleet::DesiredTopic(d.id);
      d.boot_id = "boot-" + std::to_string(i + 1);
      mqtt::ClientOptions mo;
      mo.host = host;
      mo.port = port;
      mo.client_id = d.id;
      if (tls_broker) {
        auto cert = Must(tls_broker->Cert(d.id), "certificate for " + d.id);
        mo.tls = mqtt::TlsOptions{tls_broker->ca_file(), cert.cert, cert.key};
      }
      mo.keepalive = 60s;
      mo.session_expiry = 1h;
      mo.will = mqtt::Will{fleet::PresenceTopic(d.id), Presence(d, false), 1, true};
      d.client = std::make_unique<mqtt::Client>(io_, mo);
      SimDevice* dp = &d;
      d.client->on_connect([this, dp](bool) { OnConnect(*dp); });
      d.client->on_message([this, dp](const mqtt::Message& m) {
        ++c_.received;
        if (m.topic == dp->desired_topic) OnDesired(*dp, m.payload);
      });
      d.client->on_connect_failed([this, dp](const Error& e) {
        if (c_.connect_failures++ < 5) std::fprintf(stderr, "%s: connect failed: %s\n", dp->id.c_str(), e.Message().c_str());
        if (!dp->ever_connected) Released();
      });
      d.client->on_disconnect([this](const Error&) { ++c_.disconnects; });
      (void)d.client->Subscribe(d.desired_topic, 1);
    }
    next_ = 0;
    in_flight_ = 0;
    Pump();
  }

  void StopAll() {
    for (auto& d : devices_)
      if (d.client) d.client->Stop();
  }
  void Destroy() { devices_.clear(); }

 private:
  void Pump() {
    if (pumping_) return;  // Start() may fail a first attempt synchronously and call back into Released()
    pumping_ = true;
    while (in_flight_ < opts_.connect_window && next_ < devices_.size()) {
      auto& d = devices_[next_++];
      ++in_flight_;
      Must(d.client->Start(), "starting " + d.id);
    }
    pumping_ = false;
  }
  void Released() {
    if (in_flight_ > 0) --in_flight_;
    Pump();
  }

  static std::string Presence(const SimDevice& d, bool online) {
    fleet::Presence p;
    p.online = online;
    p.boot_id = d.boot_id;
    p.ts = "2025-01-01T00:00:00Z";
    return fleet::Serialize(p);
  }

  void Publish(SimDevice& d, const std::string& topic, const std::string& payload, bool retain) {
    if (d.client->Publish(topic, payload, 1, retain)) ++c_.published;
    else ++c_.publish_errors;
  }

  void PublishState(SimDevice& d) {
    fleet::State state;
    state.boot_id = d.boot_id;
    state.seq = ++d.state_seq;
    state.applied_v = d.applied_v;
    state.active = d.active;
    state.previous = d.previous;
    state.job = d.job;
    state.ratchet = d.active ? d.active->version : 0;
    state.arch = "linux/arm64/v8";
    state.agent_version = "sim";
    state.free_bytes = 1 << 30;
    state.labels = {{"fleet", "sim"}};
    Publish(d, fleet::StateTopic(d.id), fleet::Serialize(state), true);
  }

  void OnConnect(SimDevice& d) {
    Publish(d, fleet::PresenceTopic(d.id), Presence(d, true), true);
    PublishState(d);
    if (!d.ever_connected) {
      d.ever_connected = true;
      ++c_.connected;
      Released();
    }
  }

  void OnDesired(SimDevice& d, const std::string& payload) {
    if (payload.empty()) return;
    auto desired = fleet::ParseDesired(payload);
    if (!desired) return;
    const uint64_t v = desired->v;
    if (v <= d.applied_v) return;  // the retained desired after a reconnect, or a replay
    d.applied_v = v;
    const std::string job = desired->job;
    if (desired->action == fleet::Desired::Action::kRollback) return;  // a fleet rollback: not simulated
    // The release as the envelope signs it (not verified: the simulator plays devices, not their trust).
    uint64_t version = 0;
    std::string digest;
    if (auto env = crypto::Envelope::Parse(desired->release))
      if (auto rel = crypto::ParseReleasePayload(env->payload)) {
        version = rel->version;
        digest = rel->digest;
      }
    auto run = [this, &d, job, version, digest] { Report(d, job, version, digest); };
    if (opts_.delay_ms <= 0) return run();
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(opts_.delay_ms));
    t->async_wait([t, run](const boost::system::error_code& ec) {
      if (!ec) run();
    });
  }

  void Report(SimDevice& d, const std::string& job, uint64_t version, const std::string& digest) {
    uint64_t seq = 0;
    const std::string topic = fleet::JobStatusTopic(d.id, job);
    for (const char* s : kTransitions) {
      ++seq;
      fleet::JobStatus status;
      status.state = s;
      status.seq = seq;
      status.boot_id = d.boot_id;
      Publish(d, topic, fleet::Serialize(status), false);
      const bool last = std::strcmp(s, "SUCCEEDED") == 0;
      if (last) {
        d.previous = d.active;
        fleet::SlotInfo active;
        active.slot = d.active && d.active->slot == "a" ? "b" : "a";
        active.digest = digest;
        active.version = version;
        active.name = "sim " + std::to_string(version);
        active.status = "COMMITTED";
        active.running = true;
        d.active = std::move(active);
      }
      d.job = fleet::JobSummary{job, s, seq, std::nullopt};
      if (opts_.state_each || last) PublishState(d);
    }
    ++c_.succeeded_reports;
  }

  asio::io_context& io_;
  const Options& opts_;
  Counters& c_;
  std::vector<SimDevice> devices_;
  size_t next_ = 0;
  int in_flight_ = 0;
  bool pumping_ = false;
};

// ---- one run ----

struct RolloutResult {
  std::string variant;
  bool succeeded = false;
  std::string final_state;
  double seconds = 0;             // POST /rollouts -> GET says succeeded
  double last_report_seconds = 0;  // POST -> the last simulated device published SUCCEEDED
  uint64_t messages = 0;          // sim side, published + received during the rollout
  json counts;
  Mem ctrl_after;
  double ctrl_cpu = 0;  // controller CPU seconds spent during the rollout
  double broker_cpu = 0;
  double sim_cpu = 0;  // simulator worker processes, summed
};

struct RunResult {
  int n = 0;
  double connect_seconds = 0;   // first Start -> all CONNACKed
  double register_seconds = 0;  // first Start -> controller lists all N online
  bool registered = false;
  int workers = 1;
  size_t online = 0;            // devices the controller listed online at the end of the wait
  Mem ctrl_idle, ctrl_registered, broker_after, sim_after;
  std::vector<RolloutResult> rollouts;
  uint64_t connect_failures = 0, disconnects = 0, publish_errors = 0;
};

uint64_t g_release_version = 0;

RunResult RunOnce(const Options& opts, int n) {
  RunResult res;
  res.n = n;
  std::fprintf(stderr, "== N=%d\n", n);
  testsupport::MosquittoServerOptions bo;
  bo.max_queued_messages = opts.max_queued;
  bo.max_inflight_messages = opts.max_inflight;
  bo.plain_listener = !opts.tls_devices;  // the anonymous listener exists only when the run asks for it
  auto broker = Must(testsupport::MosquittoServer::Start(bo), "mosquitto");
  testsupport::TempDir dir("tug-fleet-sim");

  // Trust root and signing key.
  const auto key = crypto::GenerateKeyPair();
  const auto now = core::SystemClock()->Now();
  const std::string root = Must(crypto::MakeTrustRoot({key.public_key}, 1, 1, now + 24h * 365, {key}), "root");
  Must(core::WriteFileDurable(*core::DefaultEnv(), dir.Sub("root.json"), root), "root.json");

  // The controller: over mutual TLS to the broker, like production (one connection; TLS cost is negligible).
  const std::string token = "bench-token";
  const uint16_t http_port = testsupport::FreeLoopbackPort();
  auto ccert = Must(broker->Cert("controller"), "controller cert");
  auto controller =
      Must(core::Spawn({opts.controller, "--db", dir.Sub("ctrl.db"), "--listen", "127.0.0.1:" + std::to_string(http_port),
                        "--token", token, "--root", dir.Sub("root.json"), "--mqtt-host", "127.0.0.1", "--mqtt-port",
                        std::to_string(broker->tls_port()), "--mqtt-ca", broker->ca_file(), "--mqtt-cert", ccert.cert,
                        "--mqtt-key", ccert.key, "--tick", "300ms"},
                       dir.Sub("controller.log")),
           "spawning iot-controller");
  if (!testsupport::WaitFor([&] { return testsupport::HttpGetStatus(http_port, "/healthz") == 200; }, 15s))
    Die("controller did not answer /healthz");
  std::this_thread::sleep_for(1s);
  res.ctrl_idle = ReadMem(controller.pid());

  // TLS certificates are generated before the clock starts (openssl per device).
  if (opts.tls_devices) {
    std::fprintf(stderr, "generating %d device certificates...\n", n);
    for (int i = 1; i <= n; ++i) Must(broker->Cert("dev-" + std::to_string(i)), "device cert");
  }

  // libmosquitto opens 3 descriptors per client (the socket and a socketpair it uses to interrupt its own loop),
  // so one process holds RLIMIT_NOFILE / 3 devices. Larger fleets are split over forked worker processes, each with
  // one io_context and its share of the clients; counters live in shared memory.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const int per_proc = std::max<int>(100, static_cast<int>((rl.rlim_cur - 512) / 3));
  const int workers = (n + per_proc - 1) / per_proc;
  void* mem = mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) Die("mmap");
  Counters& c = *new (mem) Counters();
  res.workers = workers;
  Stopwatch sw;
  std::vector<pid_t> children;
  for (int w = 0; w < workers; ++w) {
    const int lo = n * w / workers, hi = n * (w + 1) / workers;
    const pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      asio::io_context io;
      Fleet fleet(io, opts, c);
      asio::steady_timer stop_poll(io);
      std::function<void()> poll = [&] {
        stop_poll.expires_after(100ms);
        stop_poll.async_wait([&](const boost::system::error_code&) {
          if (c.stop.load()) {
            fleet.StopAll();
            auto t = std::make_shared<asio::steady_timer>(io, 500ms);
            t->async_wait([&io, t](const boost::system::error_code&) { io.stop(); });
            return;
          }
          poll();
        });
      };
      poll();
      fleet.Start(lo, hi, "127.0.0.1", opts.tls_devices ? broker->tls_port() : broker->plain_port(),
                  opts.tls_devices ? broker.get() : nullptr);
      io.run();
      std::fflush(nullptr);
      _exit(0);  // no destructors: the broker, controller and temp dir belong to the parent
    }
    children.push_back(pid);
  }
  if (!Poll([&] { return c.connected.load() == static_cast<uint64_t>(n); }, 600s, 20ms))
    std::fprintf(stderr, "only %llu of %d devices connected\n", static_cast<unsigned long long>(c.connected.load()), n);
  res.connect_seconds = sw.Elapsed();
  std::fprintf(stderr, "connected %llu in %.1fs (%d process(es))\n", static_cast<unsigned long long>(c.connected.load()),
               res.connect_seconds, workers);
  size_t online = 0;
  double last_print = 0;
  res.registered = Poll(
      [&] {
        auto r = Http(http_port, "GET", "/api/v1/devices?online=true&label=fleet%3Dsim", token);
        if (r.status != 200) return false;
        auto j = json::parse(r.body, nullptr, false);
        online = j.is_object() ? j["devices"].size() : 0;
        if (sw.Elapsed() - last_print > 5) {
          last_print = sw.Elapsed();
          std::fprintf(stderr, "  %.0fs: controller lists %zu online\n", last_print, online);
        }
        return online == static_cast<size_t>(n);
      },
      std::chrono::seconds(opts.rollout_timeout_s), 1s);
  res.register_seconds = sw.Elapsed();
  res.online = online;
  std::fprintf(stderr, "controller lists %zu online after %.1fs\n", online, res.register_seconds);
  res.ctrl_registered = ReadMem(controller.pid());

  for (int variant : opts.variants) {
    if (!res.registered) break;  // reports were lost: a rollout would only wait for devices the controller lacks
    RolloutResult rr;
    rr.variant = variant == 1 ? "1 phase (100%)" : "3 phases (1%/50%/100%, soak 0)";
    crypto::Release rel;
    rel.repository = "127.0.0.1:5000/sim/app";
    const uint64_t version = ++g_release_version;
    char digest[80];
    std::snprintf(digest, sizeof digest, "sha256:%064llx", static_cast<unsigned long long>(version));
    rel.digest = digest;
    rel.platforms = {{"linux/arm64/v8", rel.digest}};
    rel.version = version;
    rel.name = "sim " + std::to_string(version);
    rel.issued_at = core::SystemClock()->Now();
    rel.expires_at = rel.issued_at + 24h;
    MustJson(Http(http_port, "POST", "/api/v1/releases", token, crypto::SignRelease(rel, {key})), 201, "release");
    json phases = variant == 1 ? json::array({{{"percent", 100}}})
                               : json::array({{{"percent", 1}, {"soak", 0}},
                                              {{"percent", 50}, {"soak", 0}},
                                              {{"percent", 100}, {"soak", 0}}});
    json spec{{"release", version},
              {"selector", {{"labels", {{"fleet", "sim"}}}}},
              {"phases", phases},
              {"max_concurrency", n},
              {"device_timeout", "10m"}};
    const uint64_t msgs0 = c.published.load() + c.received.load();
    const uint64_t reports0 = c.succeeded_reports.load();
    const double ccpu0 = CpuSeconds(controller.pid()), bcpu0 = CpuSeconds(broker->pid());
    double scpu0 = 0;
    for (pid_t p : children) scpu0 += CpuSeconds(p);
    Stopwatch rsw;
    auto created = MustJson(Http(http_port, "POST", "/api/v1/rollouts", token, spec.dump()), 201, "rollout");
    const std::string id = created["id"];
    std::fprintf(stderr, "rollout %s (%s) created in %.2fs\n", id.c_str(), rr.variant.c_str(), rsw.Elapsed());
    double last_report = 0;
    last_print = 0;
    const bool done = Poll(
        [&] {
          if (c.succeeded_reports.load() - reports0 < static_cast<uint64_t>(n)) last_report = rsw.Elapsed();
          auto r = Http(http_port, "GET", "/api/v1/rollouts/" + id, token);
          if (r.status != 200) return false;
          auto j = json::parse(r.body, nullptr, false);
          if (!j.is_object()) return false;
          rr.final_state = j.value("state", "");
          rr.counts = j["counts"];
          if (rsw.Elapsed() - last_print > 5) {
            last_print = rsw.Elapsed();
            std::fprintf(stderr, "  %.0fs: %s %s (sim reports %llu)\n", last_print, rr.final_state.c_str(),
                         rr.counts.dump().c_str(),
                         static_cast<unsigned long long>(c.succeeded_reports.load() - reports0));
          }
          return rr.final_state != "running";
        },
        std::chrono::seconds(opts.rollout_timeout_s), 250ms);
    rr.seconds = rsw.Elapsed();
    rr.last_report_seconds = last_report;
    rr.succeeded = done && rr.final_state == "succeeded";
    rr.messages = c.published.load() + c.received.load() - msgs0;
    rr.ctrl_after = ReadMem(controller.pid());
    rr.ctrl_cpu = CpuSeconds(controller.pid()) - ccpu0;
    rr.broker_cpu = CpuSeconds(broker->pid()) - bcpu0;
    for (pid_t p : children) rr.sim_cpu += CpuSeconds(p);
    rr.sim_cpu -= scpu0;
    std::fprintf(stderr, "rollout %s: %s after %.1fs %s\n", id.c_str(), rr.final_state.c_str(), rr.seconds,
                 rr.counts.dump().c_str());
    res.rollouts.push_back(rr);
    if (!rr.succeeded) break;  // the next variant would start from a broken state
  }

  res.broker_after = ReadMem(broker->pid());
  for (pid_t p : children) res.sim_after.rss_mib += ReadMem(p).rss_mib;
  res.connect_failures = c.connect_failures.load();
  res.disconnects = c.disconnects.load();
  res.publish_errors = c.publish_errors.load();

  c.stop = true;
  for (pid_t p : children) waitpid(p, nullptr, 0);
  controller.Stop(5s);
  if (const char* keep = std::getenv("FLEET_SIM_KEEP_LOG")) {
    (void)core::Run({"cp", dir.Sub("controller.log"), std::string(keep) + "-" + std::to_string(n) + ".log"});
    (void)core::Run({"cp", broker->log_path(), std::string(keep) + "-" + std::to_string(n) + "-mosquitto.log"});
  }
  return res;
}

constexpr const char* kUsage =
    "Usage: bench_fleet_sim [options] N [N...]   (markdown on stdout, progress on stderr; default N: 1000 10000)\n"
    "  --controller PATH     iot-controller binary (default build/iot-controller/controller/iot-controller)\n"
    "  --delay-ms D          wait D ms between receiving a desired and reporting (0: at once)\n"
    "  --state-each          publish a state after every transition, like the daemon does (default: only at the end)\n"
    "  --tls-devices         devices connect to the mutual-TLS listener (each gets a certificate; slow to set up)\n"
    "  --max-queued Q        Mosquitto max_queued_messages (per client; the project default is 1000)\n"
    "  --max-inflight I      Mosquitto max_inflight_messages (per client; the project default is 20)\n"
    "  --rollout-timeout S   give up on a rollout after S seconds (default 300)\n"
    "  --connect-window W    at most W device connects in flight at once (default 256)\n"
    "  --variants LIST       comma list of \"1\" (one 100% phase) and \"3\" (1%/50%/100%), default \"1,3\"\n"
    "Needs root (Mosquitto runs from the test fixture), mosquitto and openssl. Set FLEET_SIM_KEEP_LOG=PREFIX to keep\n"
    "the controller and Mosquitto logs as PREFIX-N.log and PREFIX-N-mosquitto.log.\n";

void RaiseFileLimit(int need) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const rlim_t want = static_cast<rlim_t>(std::max(65536, need));
  if (rl.rlim_cur >= want) return;
  rlimit up{want, std::max(want, rl.rlim_max)};
  if (setrlimit(RLIMIT_NOFILE, &up) != 0) {  // not root: as far as the hard limit allows
    up = rlimit{rl.rlim_max, rl.rlim_max};
    setrlimit(RLIMIT_NOFILE, &up);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  std::fprintf(stderr, "RLIMIT_NOFILE %llu/%llu (mosquitto inherits it)\n", static_cast<unsigned long long>(rl.rlim_cur),
               static_cast<unsigned long long>(rl.rlim_max));
  if (rl.rlim_cur < static_cast<rlim_t>(need)) Die("cannot raise RLIMIT_NOFILE to " + std::to_string(need));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--controller") o.controller = next();
    else if (a == "--delay-ms") o.delay_ms = std::stoi(next());
    else if (a == "--state-each") o.state_each = true;
    else if (a == "--tls-devices") o.tls_devices = true;
    else if (a == "--max-queued") o.max_queued = std::stoi(next());
    else if (a == "--max-inflight") o.max_inflight = std::stoi(next());
    else if (a == "--rollout-timeout") o.rollout_timeout_s = std::stoi(next());
    else if (a == "--connect-window") o.connect_window = std::stoi(next());
    else if (a == "--variants") {
      o.variants.clear();
      std::stringstream ss(next());
      std::string v;
      while (std::getline(ss, v, ',')) o.variants.push_back(std::stoi(v));
    } else if (!a.empty() && a[0] != '-') o.sizes.push_back(std::stoi(a));
    else Die("unknown option " + a + " (--help lists them)");
  }
  if (o.sizes.empty()) o.sizes = {1000, 10000};
  int biggest = 0;
  for (int n : o.sizes) biggest = std::max(biggest, n);
  RaiseFileLimit(std::min(biggest + 1024, 4096));

  std::vector<RunResult> results;
  for (int n : o.sizes) results.push_back(RunOnce(o, n));

  std::printf("Devices on the %s listener (%s), controller over mutual TLS, device reports %s, %s state%s, "
              "Mosquitto max_queued_messages %d, max_inflight_messages %d.\n\n",
              o.tls_devices ? "mutual-TLS" : "plain loopback", o.tls_devices ? "with the fleet ACL" : "no ACL",
              o.delay_ms ? ("after " + std::to_string(o.delay_ms) + " ms").c_str() : "at once",
              o.state_each ? "a" : "one", o.state_each ? " after every transition" : " at the end",
              o.max_queued, o.max_inflight);
  Header({"devices", "connect all (s)", "controller lists all online (s)", "rollout", "result",
          "create -> rollout succeeded (s)", "create -> last device reported (s)", "devices/min", "vs AWS IoT Jobs 1,000/min", "messages/s (sim side)",
          "controller CPU (s)", "broker CPU (s)", "simulator CPU (s)"});
  for (const auto& r : results) {
    if (!r.registered)
      Row({std::to_string(r.n), Fmt(1, r.connect_seconds),
           "only " + std::to_string(r.online) + " of " + std::to_string(r.n) + " after " + Fmt(0, r.register_seconds),
           "-", "not started", "-", "-", "-", "-", "-", "-", "-", "-"});
    for (const auto& rr : r.rollouts) {
      const double per_min = rr.succeeded ? r.n / rr.seconds * 60 : 0;
      Row({std::to_string(r.n), Fmt(1, r.connect_seconds), Fmt(1, r.register_seconds), rr.variant,
           rr.succeeded ? "succeeded" : rr.final_state + " " + rr.counts.dump(), Fmt(1, rr.seconds),
           Fmt(1, rr.last_report_seconds),
           rr.succeeded ? Fmt(0, per_min) : "-", rr.succeeded ? Fmt(1, per_min / 1000.0) + "x" : "-",
           Fmt(0, rr.messages / rr.seconds), Fmt(1, rr.ctrl_cpu), Fmt(1, rr.broker_cpu), Fmt(1, rr.sim_cpu)});
    }
  }
  std::printf("\n");
  Header({"devices", "controller RSS idle (MiB)", "after registration", "after rollouts (RSS / peak)",
          "controller KiB per device", "mosquitto RSS (MiB)", "simulator RSS (MiB, processes)", "connect failures",
          "publish errors"});
  for (const auto& r : results) {
    const Mem last = r.rollouts.empty() ? r.ctrl_registered : r.rollouts.back().ctrl_after;
    Row({std::to_string(r.n), Fmt(1, r.ctrl_idle.rss_mib), Fmt(1, r.ctrl_registered.rss_mib),
         Fmt(1, last.rss_mib) + " / " + Fmt(1, last.hwm_mib),
         Fmt(1, (last.hwm_mib - r.ctrl_idle.rss_mib) * 1024.0 / r.n), Fmt(1, r.broker_after.rss_mib),
         Fmt(1, r.sim_after.rss_mib) + " (" + std::to_string(r.workers) + ")", std::to_string(r.connect_failures), std::to_string(r.publish_errors)});
  }
  return 0;
}
