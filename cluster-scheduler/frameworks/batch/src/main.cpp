// cluster-batch: the batch framework as a process (docs/batch.md).
#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "batch/batch.hpp"
#include "core/log.hpp"
#include "framework/scheduler_client.hpp"
#include "http/client.hpp"
#include "http/server.hpp"
#include "http/tokens.hpp"

namespace asio = boost::asio;
using namespace tug;
using namespace tug::cluster;
using json = nlohmann::json;

namespace {

class ClientCalls : public batch::MasterCalls {
 public:
  explicit ClientCalls(framework::SchedulerClient*& c) : c_(c) {}
  Status Accept(const std::vector<std::string>& o, const std::vector<TaskInfo>& t, double r) override { return c_->Accept(o, t, r); }
  Status Decline(const std::vector<std::string>& o, double r) override { return c_->Decline(o, r); }
  Status Kill(const std::string& t, const std::string& a) override { return c_->Kill(t, a); }
  Status Acknowledge(const TaskStatus& s) override { return c_->Acknowledge(s); }
  Status Reconcile() override { return c_->Reconcile(); }
  Status Revive() override { return c_->Revive(); }
  Status Suppress() override { return c_->Suppress(); }

 private:
  framework::SchedulerClient*& c_;
};


}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "cluster-batch: Spark-style batch jobs on the Tugboat cluster scheduler. Registers as a framework (role\n"
      "'batch' by default, so DRF shares the cluster with the services) and runs jobs submitted over REST:\n"
      "  curl -XPOST localhost:8090/v1/jobs -d '{\"id\":\"pi\",\"driver\":{\"cmd\":\"./driver\"},\n"
      "        \"executors\":{\"instances\":4,\"cmd\":\"./executor\",\"cpus\":0.5,\"mem\":128}}'\n"
      "  curl localhost:8090/v1/jobs/pi; curl 'localhost:8090/v1/jobs/pi/logs?task=driver'\n"
      "(each with -H \"Authorization: Bearer $TOKEN\", a token from tug-token add --file F --name N --scope operator)\n"
      "See docs/batch.md."};
  std::vector<std::string> masters{"http://127.0.0.1:5050"};
  std::string listen = "127.0.0.1:8090", state_dir, role = "batch",
              name = "batch", log_level = "info";
  app.add_option("--master", masters, "master URLs (comma-separated or repeated); any works, others redirect")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--listen", listen, "HOST:PORT of the REST API (port 0 picks one)")->capture_default_str();
  app.add_option("--state-dir", state_dir, "directory for jobs and the framework id (survives restarts)");
  app.add_option("--role", role, "DRF role")->capture_default_str();
  app.add_option("--name", name, "framework name")->capture_default_str();
  app.add_option("--log-level", log_level)->capture_default_str();
  std::string token_file;
  bool insecure = false;
  app.add_option("--token-file", token_file,
                 "bearer tokens for the REST API (tug-token); GET needs viewer, changes operator; /healthz stays "
                 "open. Required unless --insecure-no-auth");
  app.add_flag("--insecure-no-auth", insecure, "serve the REST API to anyone who reaches it (local try-out only)");
  CLI11_PARSE(app, argc, argv);
  core::InitLogging(log_level, "cluster-batch");
  auto tokens = http::LoadApiTokens(token_file, insecure, "cluster-batch");
  if (!tokens) {
    std::cerr << "cluster-batch: " << tokens.error().Message() << "\n";
    return 2;
  }
  if (!state_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec) {
      std::cerr << "cluster-batch: --state-dir " << state_dir << ": " << ec.message() << "\n";
      return 1;
    }
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "cluster-batch: --listen wants HOST:PORT\n";
    return 2;
  }

  asio::io_context io;
  framework::SchedulerClient* client_ptr = nullptr;
  ClientCalls calls(client_ptr);
  batch::BatchScheduler sched(io, calls, state_dir);
  if (auto st = sched.Load(); !st) {
    std::cerr << "cluster-batch: " << st.error().Message() << "\n";
    return 1;
  }
  framework::SchedulerClientOptions opts;
  opts.masters = masters;
  opts.info.name = name;
  opts.info.role = role;
  opts.info.id = sched.framework_id();
  opts.info.failover_timeout_s = 3600;
  framework::SchedulerClient client(
      opts,
      [&](const json& ev) {
        // Events are handled on the io thread, in order.
        asio::post(io, [&, ev] {
          const std::string type = ev.value("type", "");
          if (type == "SUBSCRIBED") {
            sched.OnSubscribed(ev["subscribed"]["framework_id"]["value"]);
          } else if (type == "OFFERS") {
            std::vector<Offer> offers;
            for (const auto& o : ev["offers"]["offers"])
              if (auto p = OfferFromJson(o, "offer")) offers.push_back(*p);
            sched.OnOffers(offers);
          } else if (type == "RESCIND") {
            sched.OnRescind(ev["rescind"]["offer_id"]["value"]);
          } else if (type == "UPDATE") {
            if (auto s = TaskStatusFromJson(ev["update"]["status"], "status")) sched.OnUpdate(*s);
          } else if (type == "ERROR") {
            spdlog::error("master: {}", ev.value("message", ""));
          }
        });
      });
  client_ptr = &client;
  sched.SetEndpointLookup([&](const std::string& agent_id) -> std::string {
    http::Client c;
    auto r = c.Call("GET", client.leader() + "/api/v1/state");
    if (!r || r->status != 200) return "";
    auto j = json::parse(r->body, nullptr, false);
    for (const auto& a : j.value("agents", json::array()))
      if (a.value("id", "") == agent_id) return a.value("endpoint", "");
    return "";
  });
  int port = 0;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    std::cerr << "cluster-batch: bad port in --listen\n";
    return 2;
  }
  auto server = http::Server::Start(io, listen.substr(0, colon), static_cast<uint16_t>(port),
                                    http::RequireToken(
                                        *tokens, [&](const http::Request& r) { return sched.Handle(r); },
                                        {"/healthz", "/ping"}),
                                    "tugboat-batch");
  if (!server) {
    std::cerr << "cluster-batch: " << server.error().Message() << "\n";
    return 1;
  }
  client.Start();
  std::cout << "cluster-batch listening on " << listen.substr(0, colon) << ":" << (*server)->port() << std::endl;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) {
    (*server)->Stop();
    io.stop();
  });
  io.run();
  client.Stop();
  return 0;
}
