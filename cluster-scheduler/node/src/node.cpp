#include "node/node.hpp"

#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <utility>  // before Asio (Debian's Boost 1.74)

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <fstream>
#include <future>
#include <iostream>
#include <thread>
#include <tuple>

#include "core/clock.hpp"
#include "core/env.hpp"
#include "core/log.hpp"
#include "gc.hpp"
#include "http/server.hpp"
#include "node/supervisor.hpp"
#include "oci/image.hpp"
#include "sandbox_fs.hpp"

namespace tug::cluster::node {
namespace {

using json = nlohmann::json;
namespace asio = boost::asio;

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::string Hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}


// What the logs endpoint reads of a log file at most: its last 8 MiB.
constexpr size_t kMaxLogRead = 8 << 20;

// The last `lines` lines of `name` in a task's sandbox, reading at most its last kMaxLogRead bytes. The file is
// opened with sandbox_fs (relative to the sandbox's fd, O_NOFOLLOW|O_NONBLOCK, a regular file only): a task that
// replaced its stdout with a symlink to a host file, or with a FIFO, gets an error, never the host file's content
// or a stuck API thread.
Result<std::string> TailLines(const std::string& sandbox, const std::string& name, size_t lines) {
  TUG_ASSIGN_OR_RETURN(auto dir, sandbox_fs::OpenDir(sandbox));
  TUG_ASSIGN_OR_RETURN(auto fd, sandbox_fs::OpenRegularAt(dir.get(), name));
  TUG_ASSIGN_OR_RETURN(auto text, sandbox_fs::ReadTail(fd.get(), kMaxLogRead));
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  size_t found = 0;
  while (pos > 0) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    if (++found == lines) {
      pos = nl + 1;
      break;
    }
    pos = nl;
  }
  return text.substr(pos);
}

http::Response Text(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

http::Response Json(const json& j) {
  http::Response r;
  r.body = j.dump() + "\n";
  return r;
}

}  // namespace

struct Node::Impl {
  NodeOptions opts;
  AgentInfo agent;
  std::unique_ptr<TaskRunner> runner;
  std::unique_ptr<MasterLink> link;
  asio::io_context io;
  std::unique_ptr<http::Server> server;
  std::thread io_thread;

  http::Response Handle(const http::Request& req) {
    const std::string path = req.Path();
    if (req.method != "GET") return http::JsonError(405, "only GET is supported here");
    if (path == "/healthz") {
      return Json({{"status", "ok"},
                   {"registered", link->connected()},
                   {"agent_id", link->agent_id()},
                   {"master", link->leader()},
                   {"tasks", runner->LatestStatuses().size()}});
    }
    if (path == "/api/v1/node") return Json(NodeJson());
    const std::string prefix = "/api/v1/tasks";
    if (path == prefix) {
      json tasks = json::array();
      for (const auto& v : runner->Tasks()) tasks.push_back(ToJson(v));
      return Json({{"tasks", tasks}});
    }
    if (path.rfind(prefix + "/", 0) == 0) {
      std::string rest = path.substr(prefix.size() + 1);
      bool logs = false;
      if (rest.size() > 5 && rest.substr(rest.size() - 5) == "/logs") {
        logs = true;
        rest.resize(rest.size() - 5);
      }
      const std::string id = http::PercentDecode(rest);
      auto view = runner->Get(id);
      const auto collected_at = runner->SandboxCollectedAt(id);
      if (!logs) {
        if (!view && collected_at) return Collected(id, *collected_at);
        if (!view) return http::JsonError(404, "unknown task " + id);
        return Json(ToJson(*view));
      }
      if (collected_at) return Collected(id, *collected_at);
      auto q = req.Query();
      const std::string stream = q.count("stream") ? q["stream"] : "stdout";
      if (stream != "stdout" && stream != "stderr")
        return http::JsonError(400, "stream must be stdout or stderr", "stream");
      size_t tail = 100;
      if (q.count("tail")) {
        try {
          tail = std::stoul(q["tail"]);
        } catch (const std::exception&) {
          return http::JsonError(400, "tail must be a number of lines", "tail");
        }
      }
      tail = std::clamp<size_t>(tail, 1, 100000);
      const std::string sandbox = view && !view->sandbox.empty() ? view->sandbox : runner->SandboxOf(id);
      auto text = TailLines(sandbox, stream, tail);
      if (!text && !view)
        return http::JsonError(404, "unknown task " + id + " (never ran here, or its sandbox was garbage-collected "
                                                              "before this node's last restart)");
      if (!text && text.error().Is(Errc::kNotFound)) return http::JsonError(404, "no " + stream + " for task " + id);
      // The task replaced its log with something else (a symlink, a FIFO, a hard link): not served.
      if (!text) return http::JsonError(409, "task " + id + ": its " + stream + " cannot be read: " +
                                                 text.error().Message());
      return Text(200, std::move(*text));
    }
    return http::JsonError(404, "no route for " + path);
  }

  // 410, not 404: the task did run here; what it left is gone on purpose.
  http::Response Collected(const std::string& id, double at) const {
    const auto when = core::TimePoint(std::chrono::duration_cast<core::TimePoint::duration>(
        std::chrono::duration<double>(at)));
    return http::JsonError(410, "task " + id + ": its sandbox and logs were garbage-collected at " +
                                    core::FormatRfc3339(when) + " (--gc-delay " + FormatDelay(opts.gc.delay) +
                                    " after it ended, shorter above --gc-disk-watermark)");
  }

  json NodeJson() const {
    return {{"agent_id", link->agent_id()},
            {"hostname", agent.hostname},
            {"endpoint", agent.endpoint},
            {"registered", link->connected()},
            {"gc", ToJson(runner->GcStatus(), opts.gc)}};
  }
};

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Node>> Node::Start(NodeOptions opts) {
  auto impl = std::make_unique<Impl>();
  if (opts.hostname.empty()) opts.hostname = Hostname();
  impl->opts = opts;

  TUG_ASSIGN_OR_RETURN(auto resources, NodeResources(opts.resources, opts.work_dir));
  TUG_ASSIGN_OR_RETURN(auto attributes, ParseAttributes(opts.attributes));
  attributes["hostname"] = opts.hostname;
  attributes["arch"] = oci::HostPlatform().architecture;

  auto colon = opts.listen.rfind(':');
  if (colon == std::string::npos) return MakeError(Errc::kInvalidArgument, "--listen must be HOST:PORT");
  std::string host = opts.listen.substr(0, colon);
  int port = 0;
  try {
    port = std::stoi(opts.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return MakeError(Errc::kInvalidArgument, "--listen must be HOST:PORT");
  }
  if (port < 0 || port > 65535) return MakeError(Errc::kInvalidArgument, "--listen port out of range");

  RunnerOptions ro;
  ro.work_dir = opts.work_dir;
  ro.hostname = opts.hostname;
  ro.supervisor_exe = opts.supervisor_exe;
  ro.kill_grace = std::chrono::milliseconds(static_cast<int64_t>(opts.kill_grace_s * 1000));
  ro.runc = opts.runc;
  ro.use_cgroups = opts.use_cgroups;
  ro.gc = opts.gc;
  TUG_ASSIGN_OR_RETURN(impl->runner, TaskRunner::Open(ro));

  Impl* raw = impl.get();
  TUG_ASSIGN_OR_RETURN(impl->server, http::Server::Start(
                                         impl->io, host, static_cast<uint16_t>(port),
                                         [raw](const http::Request& r) { return raw->Handle(r); }, "cluster-node"));

  impl->agent.hostname = opts.hostname;
  impl->agent.endpoint = (host == "0.0.0.0" || host == "::" ? opts.hostname : host) + ":" +
                         std::to_string(impl->server->port());
  impl->agent.resources = resources;
  impl->agent.attributes = attributes;

  LinkOptions lo = opts.link;
  lo.masters = opts.masters;
  lo.agent = impl->agent;
  lo.state_file = core::JoinPath(opts.work_dir, "meta/agent.json");
  impl->link = std::make_unique<MasterLink>(lo, *impl->runner);

  impl->io_thread = std::thread([raw] {
    auto guard = asio::make_work_guard(raw->io);
    raw->io.run();
  });
  impl->link->Start();
  spdlog::info("cluster-node {} up: API on {}, resources {}, work dir {}, masters: {}", opts.hostname,
               impl->agent.endpoint, resources.ToString(), opts.work_dir,
               opts.masters.empty() ? std::string("(none)") : [&] {
                 std::string s;
                 for (const auto& m : opts.masters) s += (s.empty() ? "" : ",") + m;
                 return s;
               }());
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::~Node() {
  auto& i = *impl_;
  if (i.opts.kill_tasks_on_exit) {
    spdlog::info("killing every task before exiting (--kill-tasks-on-exit)");
    // The link stays up meanwhile so the terminal updates can still reach the master.
    i.runner->KillAllAndWait(std::chrono::milliseconds(static_cast<int64_t>((i.opts.kill_grace_s + 5) * 1000)));
  }
  i.link->Stop();
  std::promise<void> stopped;
  asio::post(i.io, [&] {
    i.server->Stop();
    stopped.set_value();
  });
  stopped.get_future().wait();
  i.io.stop();
  if (i.io_thread.joinable()) i.io_thread.join();
  size_t running = i.runner->LatestStatuses().size();
  i.runner.reset();
  if (running > 0) spdlog::info("cluster-node stopped; {} task(s) keep running and are re-attached on restart", running);
  else spdlog::info("cluster-node stopped");
}

uint16_t Node::port() const { return impl_->server->port(); }
const AgentInfo& Node::agent() const { return impl_->agent; }
TaskRunner& Node::runner() { return *impl_->runner; }
MasterLink& Node::link() { return *impl_->link; }

Result<Resources> NodeResources(const std::string& text, const std::string& work_dir) {
  double cpus = std::max(1u, std::thread::hardware_concurrency());
  double mem = 0;
  {
    std::ifstream f("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (f >> key >> kib >> unit)
      if (key == "MemTotal:") break;
    double total = static_cast<double>(kib) / 1024;
    mem = std::max(0.0, total - std::min(1024.0, total / 4));
  }
  double disk = 0;
  {
    std::string probe = work_dir;
    struct statvfs st{};
    while (!probe.empty() && ::statvfs(probe.c_str(), &st) != 0) probe = core::Dirname(probe) == probe ? "" : core::Dirname(probe);
    if (!probe.empty())
      disk = static_cast<double>(st.f_bavail) * static_cast<double>(st.f_frsize) / (1024.0 * 1024.0);
  }
  std::vector<PortRange> ports{{31000, 31999}};
  if (!text.empty()) {
    TUG_ASSIGN_OR_RETURN(auto given, ParseResources(text));
    // Only the parts named in the text replace the detected values.
    if (text.find("cpus") != std::string::npos) cpus = given.cpus();
    if (text.find("mem") != std::string::npos) mem = given.mem();
    if (text.find("disk") != std::string::npos) disk = given.disk();
    if (text.find("ports") != std::string::npos) ports = given.ports();
  }
  return Resources::Make(cpus, std::floor(mem), std::floor(disk), ports);
}

Result<Attributes> ParseAttributes(std::string_view text) {
  Attributes out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string_view::npos) end = text.size();
    std::string part = Trim(text.substr(start, end - start));
    start = end + 1;
    if (part.empty()) continue;
    auto colon = part.find(':');
    if (colon == std::string::npos || colon == 0)
      return MakeError(Errc::kInvalidArgument, "attribute '" + part + "' is not NAME:VALUE");
    out[Trim(part.substr(0, colon))] = Trim(part.substr(colon + 1));
  }
  return out;
}

int Main(int argc, char** argv) {
  // The hidden supervisor mode comes first: it must not parse the daemon's flags or set up logging.
  if (argc >= 2 && std::string(argv[1]) == "supervise") {
    std::string sandbox, state_dir;
    for (int i = 2; i + 1 < argc; ++i) {
      if (std::string(argv[i]) == "--sandbox") sandbox = argv[i + 1];
      if (std::string(argv[i]) == "--state-dir") state_dir = argv[i + 1];
    }
    if (sandbox.empty() || state_dir.empty()) {
      std::fprintf(stderr, "cluster-node supervise: --sandbox DIR and --state-dir DIR are required\n");
      return 2;
    }
    return SuperviseMain(sandbox, state_dir);
  }

  CLI::App app{
      "cluster-node: the Tugboat cluster scheduler's node agent. It registers with the leading master, runs the\n"
      "tasks the master launches (plain processes, or runc containers from OCI images), health-checks them and\n"
      "reports their status. Tasks run under a per-task supervisor and survive the node's restart: a restarted node\n"
      "re-attaches to them (SIGTERM stops only the node).\n\n"
      "Example:\n"
      "  cluster-node --master http://10.0.0.1:5050,http://10.0.0.2:5050 --work-dir /var/lib/tugboat-node \\\n"
      "      --resources 'cpus:4;mem:8192;ports:[31000-31999]' --attributes 'zone:a;rack:r1' --listen 0.0.0.0:5051\n",
      "cluster-node"};
  NodeOptions o;
  std::vector<std::string> masters;
  std::string log_level = "info";
  app.add_option("--master", masters,
                 "Master base URLs, comma-separated or repeated (http://127.0.0.1:5050,...). Any master works: "
                 "others redirect to the leader")
      ->delimiter(',');
  app.add_option("--work-dir", o.work_dir, "Sandboxes, checkpoints, image cache and runc state")
      ->capture_default_str();
  app.add_option("--resources", o.resources,
                 "What this node offers, e.g. 'cpus:2;mem:2048;disk:10000;ports:[31000-31999]' (MiB); parts left out "
                 "are detected (cpus, memory minus a system reserve, free disk; ports 31000-31999)");
  app.add_option("--attributes", o.attributes,
                 "TEXT attributes for placement constraints, e.g. 'zone:a;rack:r1' (hostname and arch are added)");
  app.add_option("--hostname", o.hostname, "Name reported to the master and given to tasks as $HOST (default: "
                                           "this host's name)");
  app.add_option("--listen", o.listen, "HOST:PORT of the node's HTTP API (tasks, logs, /healthz); port 0 picks one")
      ->capture_default_str();
  app.add_flag("--kill-tasks-on-exit", o.kill_tasks_on_exit,
               "On SIGTERM kill every task before exiting (default: leave them running for the next start)");
  app.add_option("--kill-grace", o.kill_grace_s,
                 "Seconds between SIGTERM and SIGKILL when killing a task (a task's label "
                 "tugboat.kill_grace_period_seconds overrides)")
      ->capture_default_str();
  bool no_cgroups = false;
  app.add_flag("--no-cgroups", no_cgroups, "Limit process tasks with rlimits only, even where cgroups are writable");
  app.add_option("--runc", o.runc, "runc binary for container tasks")->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  std::string gc_delay = "1h", image_gc_delay = "24h", gc_interval = "1m";
  app.add_option("--gc-delay", gc_delay,
                 "Remove a task's sandbox (work dir, logs) this long after it ended, once the master acknowledged "
                 "its last update: 30s, 10m, 1h, 2d")
      ->capture_default_str();
  app.add_option("--gc-disk-watermark", o.gc.disk_watermark,
                 "Percent of the work dir's disk used above which --gc-delay shrinks in proportion to the room left "
                 "(at 95% with 90: half the delay; at 100%: none), oldest sandboxes first")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  app.add_option("--image-gc-delay", image_gc_delay,
                 "Remove a cached image layer that no remaining sandbox's task uses this long after its last use")
      ->capture_default_str();
  app.add_option("--gc-interval", gc_interval, "How often garbage collection runs")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  o.masters = masters;
  o.use_cgroups = !no_cgroups;
  for (auto [flag, text, out] : {std::tuple{"--gc-delay", &gc_delay, &o.gc.delay},
                                 std::tuple{"--image-gc-delay", &image_gc_delay, &o.gc.image_delay},
                                 std::tuple{"--gc-interval", &gc_interval, &o.gc.interval}}) {
    auto d = core::ParseDuration(*text);
    if (!d) {
      std::fprintf(stderr, "cluster-node: %s: %s\n", flag, d.error().Message().c_str());
      return 2;
    }
    *out = *d;
  }
  if (o.gc.interval.count() <= 0) {
    std::fprintf(stderr, "cluster-node: --gc-interval must be above 0s\n");
    return 2;
  }
  core::InitLogging(log_level, "cluster-node");

  // SIGTERM/SIGINT are taken by sigwait below: block them before any thread starts so none of them gets one.
  sigset_t sigs;
  ::sigemptyset(&sigs);
  ::sigaddset(&sigs, SIGTERM);
  ::sigaddset(&sigs, SIGINT);
  ::pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto node = Node::Start(o);
  if (!node) {
    std::fprintf(stderr, "cluster-node: %s\n", node.error().Message().c_str());
    return 1;
  }
  int sig = 0;
  ::sigwait(&sigs, &sig);
  spdlog::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  node->reset();
  return 0;
}

}  // namespace tug::cluster::node
