#include "services/service.hpp"

#include <unistd.h>

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "core/log.hpp"
#include "framework/scheduler_client.hpp"
#include "haproxy_sink.hpp"
#include "http/server.hpp"
#include "http/tokens.hpp"
#include "services/api.hpp"

namespace tug::cluster::services {

namespace asio = boost::asio;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// One worker thread running posted calls in order. Stop drops what is queued and waits for the call in flight.
class CallQueue {
 public:
  CallQueue() : thread_([this] { Run(); }) {}
  ~CallQueue() { Stop(); }

  void Post(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    if (stop_) return;
    q_.push_back(std::move(fn));
    cv_.notify_one();
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      q_.clear();
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !q_.empty(); });
        if (stop_) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;
};

// Gateway applies on a thread of their own (an apply may wait for drains): only the newest waiting configuration is
// applied, so a slow HAProxy never builds a backlog.
class GatewayWorker {
 public:
  using Done = std::function<void(uint64_t seq, std::string error)>;
  GatewayWorker(GatewaySink& sink, Done done) : sink_(sink), done_(std::move(done)), thread_([this] { Run(); }) {}
  ~GatewayWorker() { Stop(); }

  void Apply(uint64_t seq, std::vector<GatewayService> services) {
    std::lock_guard lock(mu_);
    pending_ = {seq, std::move(services)};
    cv_.notify_one();
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      std::pair<uint64_t, std::vector<GatewayService>> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || pending_.has_value(); });
        if (stop_) return;
        job = std::move(*pending_);
        pending_.reset();
      }
      auto st = sink_.Apply(job.second);
      done_(job.first, st ? "" : st.error().Message());
    }
  }

  GatewaySink& sink_;
  Done done_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::pair<uint64_t, std::vector<GatewayService>>> pending_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

// ---- the production driver ----

class ClientDriver : public Driver {
 public:
  // `back` runs a function on the scheduler's thread.
  using Back = std::function<void(std::function<void(Scheduler&)>)>;
  ClientDriver(GatewaySink* sink, Back back) : back_(std::move(back)) {
    if (sink)
      gateway_ = std::make_unique<GatewayWorker>(*sink, [this](uint64_t seq, std::string err) {
        back_([seq, err](Scheduler& s) { s.OnGatewayApplied(seq, err); });
      });
  }
  ~ClientDriver() override { Stop(); }

  void set_client(framework::SchedulerClient* c) { client_ = c; }
  void Stop() {
    calls_.Stop();
    if (gateway_) gateway_->Stop();
  }

  void Accept(std::vector<std::string> offer_ids, std::vector<TaskInfo> tasks, double refuse) override {
    calls_.Post([this, offer_ids = std::move(offer_ids), tasks = std::move(tasks), refuse] {
      auto st = client_->Accept(offer_ids, tasks, refuse);
      if (st) return;
      std::vector<std::string> ids;
      for (const auto& t : tasks) ids.push_back(t.task_id);
      back_([ids, why = st.error().Message()](Scheduler& s) { s.OnLaunchFailed(ids, why); });
    });
  }
  void Decline(std::vector<std::string> offer_ids, double refuse) override {
    calls_.Post([this, offer_ids = std::move(offer_ids), refuse] {
      if (auto st = client_->Decline(offer_ids, refuse); !st)
        spdlog::debug("services: DECLINE failed: {}", st.error().Message());  // the offer times out instead
    });
  }
  void Kill(std::string task_id, std::string agent_id) override {
    calls_.Post([this, task_id = std::move(task_id), agent_id = std::move(agent_id)] {
      if (auto st = client_->Kill(task_id, agent_id); !st)
        spdlog::warn("services: KILL {} failed (retried): {}", task_id, st.error().Message());
    });
  }
  void Acknowledge(TaskStatus status) override {
    calls_.Post([this, status = std::move(status)] {
      if (auto st = client_->Acknowledge(status); !st)
        spdlog::debug("services: ACKNOWLEDGE failed (the master re-sends): {}", st.error().Message());
    });
  }
  void Reconcile(std::vector<std::pair<std::string, std::string>> tasks) override {
    calls_.Post([this, tasks = std::move(tasks)] {
      if (auto st = client_->Reconcile(tasks); !st)
        spdlog::warn("services: RECONCILE failed: {}", st.error().Message());
    });
  }
  void Revive() override {
    calls_.Post([this] {
      if (auto st = client_->Revive(); !st)
        back_([why = st.error().Message()](Scheduler& s) { s.OnCallFailed("REVIVE", why); });
    });
  }
  void Suppress() override {
    calls_.Post([this] {
      if (auto st = client_->Suppress(); !st)
        back_([why = st.error().Message()](Scheduler& s) { s.OnCallFailed("SUPPRESS", why); });
    });
  }
  void ApplyGateway(uint64_t seq, std::vector<GatewayService> services) override {
    if (gateway_) {
      gateway_->Apply(seq, std::move(services));
    } else {
      back_([seq](Scheduler& s) { s.OnGatewayApplied(seq, "no gateway configured"); });
    }
  }

 private:
  Back back_;
  framework::SchedulerClient* client_ = nullptr;
  CallQueue calls_;
  std::unique_ptr<GatewayWorker> gateway_;
};

// ---- the daemon ----

struct ServicesFramework::Impl {
  explicit Impl(ServicesOptions o) : opts(std::move(o)), store(opts.state_dir), tick(io) {}

  ServicesOptions opts;
  asio::io_context io;
  FileStateStore store;
  std::unique_ptr<ClientDriver> driver;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<Api> api;
  std::unique_ptr<http::Server> server;
  std::unique_ptr<framework::SchedulerClient> client;
  asio::steady_timer tick;
  std::thread thread;
  std::atomic<bool> stopped{false};
  uint16_t port = 0;
  std::chrono::steady_clock::time_point last_keepalive = std::chrono::steady_clock::now();

  void ScheduleTick() {
    tick.expires_after(opts.tick);
    tick.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped) return;
      scheduler->Tick();
      if (std::chrono::steady_clock::now() - last_keepalive >= opts.event_keepalive) {
        last_keepalive = std::chrono::steady_clock::now();
        api->Keepalive();
      }
      ScheduleTick();
    });
  }

  template <typename F>
  auto OnLoop(F f) const -> decltype(f()) {
    using R = decltype(f());
    if (stopped) return R{};
    auto p = std::make_shared<std::promise<R>>();
    auto fut = p->get_future();
    asio::post(const_cast<asio::io_context&>(io), [p, f] { p->set_value(f()); });
    if (fut.wait_for(5s) != std::future_status::ready) return R{};
    return fut.get();
  }
};

ServicesFramework::ServicesFramework(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<ServicesFramework>> ServicesFramework::Start(ServicesOptions opts) {
  if (opts.masters.empty()) return MakeError(Errc::kInvalidArgument, "--master: at least one master URL is needed");
  if (opts.state_dir.empty()) return MakeError(Errc::kInvalidArgument, "--state-dir: a directory for the state is needed");
  if (opts.scheduler.gateway && !opts.gateway)
    return MakeError(Errc::kInvalidArgument, "gateway sync enabled without a gateway");
  TUG_ASSIGN_OR_RETURN(auto tokens, http::LoadApiTokens(opts.token_file, opts.insecure_no_auth, "cluster-services"));
  auto impl = std::make_unique<Impl>(std::move(opts));
  Impl* im = impl.get();
  im->driver = std::make_unique<ClientDriver>(im->opts.gateway, [im](std::function<void(Scheduler&)> fn) {
    if (im->stopped) return;
    asio::post(im->io, [im, fn = std::move(fn)] {
      if (!im->stopped) fn(*im->scheduler);
    });
  });
  im->scheduler = std::make_unique<Scheduler>(im->opts.scheduler, *im->driver, im->store);
  if (auto st = im->scheduler->Recover(); !st) return tl::unexpected(Wrap(st.error(), "loading the state"));
  im->api = std::make_unique<Api>(im->io, *im->scheduler, im->opts.name);
  im->scheduler->set_event_sink([im](const std::string& type, const json& body) {
    if (im->api) im->api->Publish(type, body);
  });
  auto server = http::Server::Start(
      im->io, im->opts.listen_host, im->opts.listen_port,
      http::RequireToken(
          tokens,
          [im](const http::Request& r) { return im->api ? im->api->Handle(r) : http::JsonError(503, "stopping"); },
          {"/healthz", "/ping"}),
      "cluster-services");
  if (!server) return tl::unexpected(Wrap(server.error(), "listening on " + im->opts.listen_host + ":" +
                                                              std::to_string(im->opts.listen_port)));
  im->server = std::move(*server);
  im->port = im->server->port();

  framework::SchedulerClientOptions co;
  co.masters = im->opts.masters;
  co.info.id = im->scheduler->framework_id();
  co.info.name = im->opts.name;
  co.info.role = im->opts.scheduler.role;
  co.info.failover_timeout_s = im->opts.failover_timeout_s;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) co.info.hostname = host;
  co.call_timeout = im->opts.call_timeout;
  co.stream_idle_timeout = im->opts.stream_idle_timeout;
  im->client = std::make_unique<framework::SchedulerClient>(
      co,
      [im](const json& ev) {
        asio::post(im->io, [im, ev] {
          if (!im->stopped) im->scheduler->OnEvent(ev);
        });
      },
      [im](bool connected) {
        // Read on the client's thread, in stream order: the id of this very subscription.
        const std::string fid = im->client->framework_id();
        const std::string leader = im->client->leader();
        asio::post(im->io, [im, connected, fid, leader] {
          if (im->stopped) return;
          if (connected)
            im->scheduler->OnConnected(fid, leader);
          else
            im->scheduler->OnDisconnected();
        });
      });
  im->driver->set_client(im->client.get());
  im->ScheduleTick();
  im->thread = std::thread([im] {
    auto guard = asio::make_work_guard(im->io);
    im->io.run();
  });
  im->client->Start();
  spdlog::info("services: API on http://{}:{}; masters {}", im->opts.listen_host, im->port, co.masters.front());
  return std::unique_ptr<ServicesFramework>(new ServicesFramework(std::move(impl)));
}

ServicesFramework::~ServicesFramework() { Stop(); }

void ServicesFramework::Stop() {
  Impl* im = impl_.get();
  if (!im || im->stopped.exchange(true)) return;
  // No more events, then no more calls, then the loop.
  im->client->Stop();
  im->driver->Stop();
  std::promise<void> done;
  asio::post(im->io, [&] {
    im->tick.cancel();
    im->server->Stop();
    im->api.reset();  // closes the event streams
    done.set_value();
  });
  done.get_future().wait_for(5s);
  im->io.stop();
  if (im->thread.joinable()) im->thread.join();
}

uint16_t ServicesFramework::port() const { return impl_->port; }
std::string ServicesFramework::url() const { return "http://" + impl_->opts.listen_host + ":" + std::to_string(impl_->port); }
std::string ServicesFramework::framework_id() const {
  return impl_->OnLoop([im = impl_.get()] { return im->scheduler->framework_id(); });
}
bool ServicesFramework::connected() const {
  return impl_->OnLoop([im = impl_.get()] { return im->scheduler->connected(); });
}

// ---- the command line ----

namespace {


}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "cluster-services: the Tugboat cluster scheduler's services framework (Marathon-like). Keeps long-running\n"
      "apps at their desired number of instances on the cluster's nodes: places them where resources and\n"
      "constraints fit, replaces failed and lost instances (with backoff), runs rolling upgrades and restarts that\n"
      "keep minimumHealthCapacity of the instances healthy, and (with --haproxy) keeps HAProxy's backends equal to\n"
      "each app's healthy instances. Apps are managed through its REST API (POST/GET/PUT/DELETE /v2/apps,\n"
      "GET /v2/deployments, GET /v2/events as Server-Sent Events; see docs/services.md). Its framework id, app\n"
      "definitions and task list live in --state-dir, so a restarted cluster-services resumes as the same\n"
      "framework while the tasks keep running.\n\n"
      "Example: tug-token add --file /etc/tugboat/services.tokens --name ops --scope operator   # prints a token\n"
      "         cluster-services --master http://127.0.0.1:5050 --state-dir /var/lib/tugboat/services \\\n"
      "           --listen 127.0.0.1:8080 --haproxy /var/lib/tugboat/haproxy --token-file /etc/tugboat/services.tokens"};
  std::vector<std::string> masters;
  std::string listen = "127.0.0.1:8080", state_dir, haproxy_dir, haproxy_bind = "127.0.0.1", log_level = "info";
  ServicesOptions opts;
  app.add_option("--master", masters, "master URL(s), comma-separated (http://127.0.0.1:5050,...); 307s to the leader "
                                      "are followed")
      ->delimiter(',')
      ->required();
  app.add_option("--listen", listen, "HOST:PORT of the REST API (port 0 picks one; the URL is printed on stdout)")
      ->capture_default_str();
  app.add_option("--state-dir", state_dir, "directory for the durable state (framework id, apps, tasks)")->required();
  app.add_option("--role", opts.scheduler.role, "role to subscribe with (offers and DRF share)")->capture_default_str();
  app.add_option("--name", opts.name, "framework name shown by the master")->capture_default_str();
  app.add_option("--haproxy", haproxy_dir, "enable the gateway sync: work dir for the HAProxy this process runs "
                                           "(apps with \"gateway\" get a frontend on its port)");
  app.add_option("--haproxy-bind", haproxy_bind, "numeric address the HAProxy frontends bind to")->capture_default_str();
  app.add_option("--failover-timeout", opts.failover_timeout_s,
                 "seconds the master keeps our tasks while this process is away")->capture_default_str();
  app.add_option("--drain-seconds", opts.scheduler.drain_s,
                 "after HAProxy dropped an instance, wait this long before killing it")->capture_default_str();
  app.add_option("--refuse-seconds", opts.scheduler.decline_refuse_s, "filter for declined offers")->capture_default_str();
  app.add_option("--token-file", opts.token_file,
                 "bearer tokens for the REST API (tug-token add --file FILE --name NAME --scope operator); GET "
                 "needs viewer, changes operator; /healthz stays open. Required unless --insecure-no-auth");
  app.add_flag("--insecure-no-auth", opts.insecure_no_auth,
               "serve the REST API to anyone who reaches it (local try-out only; logged loudly)");
  app.add_option("--log-level", log_level, "debug, info, warn, error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints help or the usage error
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  core::InitLogging(log_level, "cluster-services");

  for (auto m : masters) {
    while (!m.empty() && m.back() == '/') m.pop_back();
    if (!m.empty()) opts.masters.push_back(m);
  }
  const size_t colon = listen.rfind(':');
  int port = -1;
  try {
    if (colon != std::string::npos) port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
  }
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535) {
    std::cerr << "cluster-services: --listen wants HOST:PORT, got '" << listen << "'\n";
    return 2;
  }
  opts.listen_host = listen.substr(0, colon);
  opts.listen_port = static_cast<uint16_t>(port);
  opts.state_dir = state_dir;
  if (opts.masters.empty()) {
    std::cerr << "cluster-services: --master needs at least one URL\n";
    return 2;
  }

  std::unique_ptr<GatewaySink> sink;
  if (!haproxy_dir.empty()) {
    auto s = StartHaproxySink(haproxy_dir, haproxy_bind);
    if (!s) {
      std::cerr << "cluster-services: " << s.error().Message() << "\n";
      return 1;
    }
    sink = std::move(*s);
    opts.gateway = sink.get();
    opts.scheduler.gateway = true;
  }
  auto fw = ServicesFramework::Start(opts);
  if (!fw) {
    std::cerr << "cluster-services: " << fw.error().Message() << "\n";
    return 1;
  }
  std::cout << (*fw)->url() << std::endl;

  asio::io_context sig_io;
  asio::signal_set signals(sig_io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int sig) { spdlog::info("services: signal {}; stopping", sig); });
  sig_io.run();
  (*fw)->Stop();
  sink.reset();  // stops HAProxy
  return 0;
}

}  // namespace tug::cluster::services
