// Master: the cluster scheduler's leading master (DESIGN §7, docs/cluster-api.md). Keeps the agents, frameworks,
// tasks and outstanding offers; offers agents' free resources to frameworks by weighted DRF (the allocator);
// serves the framework API (/api/v1/scheduler: SUBSCRIBE opens a RecordIO event stream) and the agent API
// (/api/v1/agent: REGISTER opens an event stream the node takes LAUNCH/KILL from).
//
// Threading: everything on one io_context thread — handlers, timers, stream callbacks. Store commits block that
// thread briefly (batched once per tick).
//
// Leadership: a Master starts as a follower. BecomeLeader loads the state from the StateStore and starts serving;
// agents are then "recovering" until they re-register (or are removed after agent_removal_timeout) and frameworks
// "disconnected" until they re-subscribe (or their failover_timeout passes). Tasks are never killed by a failover:
// nodes keep running them and report them when they re-register. BecomeFollower drops everything in memory and
// closes the streams; a follower answers API calls with 307 to the leader (or 503 when none is known).
//
// Persistence: frameworks, agents and non-terminal tasks are written to the store on change, batched per tick. A
// task launched but not yet written when the leader dies is adopted when its node reports it.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "http/server.hpp"
#include "master/state_store.hpp"

namespace tug::cluster::master {

struct MasterOptions {
  std::string advertise_url;                  // "http://127.0.0.1:5050": what followers redirect to
  double heartbeat_interval_s = 2;            // HEARTBEAT events to frameworks and agents
  double agent_ping_timeout_s = 6;            // no heartbeat/stream from an agent this long -> UNREACHABLE
  double agent_removal_timeout_s = 20;        // unreachable this long -> removed, its tasks LOST
  double offer_timeout_s = 30;                // an offer not answered in time is rescinded
  double allocation_interval_s = 0.1;         // allocation cycles at most this often (and after changes)
  double default_refuse_seconds = 5;          // filter for offers declined (or the unused part of accepted ones)
  std::map<std::string, double> role_weights;  // DRF weights; absent roles weigh 1
  uint64_t allocator_seed = 0;                // 0 = random
  std::string store_prefix = "/tugboat/cluster/";
  // Asked before the master acts as leader (each request, each tick); false: it steps down at once. Empty: always
  // true. cluster-master asks the election's lease deadline: after a freeze the io thread may otherwise serve
  // requests the kernel buffered meanwhile before the demotion posted by the election's watchdog reaches it.
  std::function<bool()> still_leader;
};

class Master {
 public:
  Master(boost::asio::io_context& io, MasterOptions opts, StateStore& store);
  ~Master();
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Loads state from the store and starts leading. Errors come from the store.
  Status BecomeLeader();
  // Stops leading: closes every stream, forgets the in-memory state. `leader_url` may be "" (unknown).
  void BecomeFollower(const std::string& leader_url);
  bool leading() const;

  // The HTTP entry point (all routes, docs/cluster-api.md).
  http::Response Handle(const http::Request& req);

  // GET /api/v1/state as JSON (agents, frameworks, tasks, offers).
  nlohmann::json StateJson() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tug::cluster::master
