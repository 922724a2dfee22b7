// cluster-master: the cluster scheduler's master (docs/cluster-api.md). Alone (no --etcd) it leads at once and
// keeps its state in memory; with --etcd, several masters elect a leader and keep the state in etcd.
#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>
#include <thread>

#include "core/log.hpp"
#include "etcd/client.hpp"
#include "etcd/election.hpp"
#include "http/server.hpp"
#include "master/master.hpp"
#include "master/etcd_state_store.hpp"
#include "master/state_store.hpp"

namespace asio = boost::asio;
using namespace tug;
using namespace tug::cluster::master;
using namespace std::chrono_literals;

namespace {


}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "cluster-master: the Tugboat cluster scheduler's master. Offers the nodes' resources to frameworks by\n"
      "weighted DRF and serves the framework API (POST /api/v1/scheduler) and the node API (POST /api/v1/agent);\n"
      "see docs/cluster-api.md. Without --etcd it leads alone with its state in memory. With --etcd, run two or\n"
      "more: they elect a leader through an etcd lease, keep the state in etcd, and followers redirect (307).\n\n"
      "Example: cluster-master --listen 127.0.0.1:5050 --etcd http://127.0.0.1:2379 --role-weight services=2"};
  std::vector<std::string> etcd_endpoints;
  std::string listen = "127.0.0.1:5050", advertise, log_level = "info", prefix = "/tugboat/cluster/";
  std::vector<std::string> weights;
  MasterOptions opts;
  int lease_ttl = 3;
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0 picks one; printed on stdout)")->capture_default_str();
  app.add_option("--advertise", advertise, "URL other masters redirect clients to (default http://LISTEN)");
  app.add_option("--etcd", etcd_endpoints, "etcd client URLs (comma-separated or repeated): enables leader election and etcd state")
      ->delimiter(',');
  app.add_option("--etcd-prefix", prefix, "key prefix for the state in etcd")->capture_default_str();
  app.add_option("--lease-ttl", lease_ttl, "leader lease TTL in seconds (failover time ~ TTL)")->capture_default_str();
  app.add_option("--role-weight", weights, "ROLE=WEIGHT for DRF (repeatable; default weight 1)");
  app.add_option("--heartbeat-interval", opts.heartbeat_interval_s, "seconds between HEARTBEAT events")->capture_default_str();
  app.add_option("--agent-ping-timeout", opts.agent_ping_timeout_s,
                 "seconds without a node heartbeat before its tasks are UNREACHABLE")->capture_default_str();
  app.add_option("--agent-removal-timeout", opts.agent_removal_timeout_s,
                 "seconds unreachable before a node is removed and its tasks LOST")->capture_default_str();
  app.add_option("--offer-timeout", opts.offer_timeout_s, "seconds before an unanswered offer is rescinded")->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  core::InitLogging(log_level, "cluster-master");

  for (const auto& w : weights) {
    size_t eq = w.find('=');
    double v = 0;
    try {
      v = eq == std::string::npos ? 0 : std::stod(w.substr(eq + 1));
    } catch (...) {
    }
    if (eq == std::string::npos || eq == 0 || !(v > 0)) {
      std::cerr << "cluster-master: --role-weight wants ROLE=WEIGHT with WEIGHT > 0, got '" << w << "'\n";
      return 2;
    }
    opts.role_weights[w.substr(0, eq)] = v;
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "cluster-master: --listen wants HOST:PORT, got '" << listen << "'\n";
    return 2;
  }
  const std::string host = listen.substr(0, colon);
  int port = -1;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
  }
  if (port < 0 || port > 65535) {
    std::cerr << "cluster-master: bad port in --listen '" << listen << "'\n";
    return 2;
  }
  opts.store_prefix = prefix;

  asio::io_context io;
  MemoryStateStore memory_store;
  std::unique_ptr<etcd::Client> etcd_client;
  std::unique_ptr<EtcdStateStore> etcd_store;
  std::unique_ptr<etcd::LeaderElection> election;
  StateStore* store = &memory_store;

  // The Master needs its advertise URL before the server knows its port: create the server first.
  std::unique_ptr<Master> master;
  auto server = http::Server::Start(
      io, host, static_cast<uint16_t>(port), [&](const http::Request& r) { return master->Handle(r); },
      "tugboat-cluster-master");
  if (!server) {
    std::cerr << "cluster-master: " << server.error().Message() << "\n";
    return 1;
  }
  const std::string bound = host + ":" + std::to_string((*server)->port());
  if (advertise.empty()) advertise = "http://" + bound;
  opts.advertise_url = advertise;

  etcd::ClientOptions eo;
  if (!etcd_endpoints.empty()) {
    eo.endpoints = etcd_endpoints;
    auto c = etcd::Client::Create(eo);
    if (!c) {
      std::cerr << "cluster-master: --etcd: " << c.error().Message() << "\n";
      return 2;
    }
    etcd_client = std::move(*c);
    etcd_store = std::make_unique<EtcdStateStore>(*etcd_client);
    store = etcd_store.get();
  }
  // Read on the io thread; the election exists before the master can lead through it.
  opts.still_leader = [&] { return !election || election->IsLeaderNow(); };
  master = std::make_unique<Master>(io, opts, *store);

  std::atomic<bool> stopping{false};
  std::thread leader_watch;
  if (etcd_client) {
    etcd::ElectionOptions el;
    el.key = prefix + "leader";
    el.value = advertise;
    el.ttl = std::chrono::seconds(lease_ttl);
    el.on_elected = [&](const etcd::LeaderTerm& term) {
      spdlog::info("elected leader (term {})", term.create_revision);
      asio::post(io, [&] {
        if (auto st = master->BecomeLeader(); !st) {
          spdlog::error("could not load the state from etcd: {}; resigning", st.error().Message());
          std::thread([&] { (void)election->Resign(); }).detach();
        }
      });
    };
    el.on_demoted = [&] {
      spdlog::warn("no longer the leader");
      asio::post(io, [&] { master->BecomeFollower(""); });
    };
    auto e = etcd::LeaderElection::Start(eo, el);
    if (!e) {
      std::cerr << "cluster-master: " << e.error().Message() << "\n";
      return 2;
    }
    election = std::move(*e);
    etcd_store->set_election(election.get());
    // Followers learn who leads (for their 307s) by reading the key; blocking etcd reads stay off the io thread.
    // Level-triggered (every round, to a follower that does not point at the leader), not only when the key changes:
    // a leader that steps down after this thread already saw its successor (a master resumed from a freeze sees
    // both at once; a refused write steps down on its own) ends with on_demoted's BecomeFollower(""), queued after
    // the handler that carried the successor's URL, and would otherwise answer 503 instead of 307 for good.
    leader_watch = std::thread([&] {
      while (!stopping) {
        auto cur = election->CurrentLeader();
        if (cur) {
          const std::string leader = *cur && **cur != advertise ? **cur : "";
          asio::post(io, [&, leader] {
            if (!master->leading() && master->StateJson().value("leader", "") != leader) master->BecomeFollower(leader);
          });
        }
        for (int i = 0; i < 5 && !stopping; ++i) std::this_thread::sleep_for(100ms);
      }
    });
  } else {
    if (auto st = master->BecomeLeader(); !st) {
      std::cerr << "cluster-master: " << st.error().Message() << "\n";
      return 1;
    }
  }

  std::cout << "cluster-master listening on " << bound << (etcd_client ? " (campaigning through etcd)" : " (leading)")
            << std::endl;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int sig) {
    spdlog::info("signal {}: stopping", sig);
    stopping = true;
    master->BecomeFollower("");
    (*server)->Stop();
    io.stop();
  });
  io.run();
  stopping = true;
  if (leader_watch.joinable()) leader_watch.join();
  if (election) (void)election->Resign();  // prompt handover to another master
  election.reset();
  master.reset();
  return 0;
}
