// Api: the services framework's REST API (docs/services.md) over a Scheduler, and its Server-Sent Events stream.
//
//   POST   /v2/apps                 create (201; 409 if it exists; 400 {"error","field"} when invalid)
//   GET    /v2/apps                 every app with task counts
//   GET    /v2/apps/{id}            one app with its tasks
//   PUT    /v2/apps/{id}            change (members given replace the current ones) or create
//   POST   /v2/apps/{id}/restart    rolling restart
//   DELETE /v2/apps/{id}            stop every instance and forget the app
//   GET    /v2/apps/{id}/tasks      its tasks
//   GET    /v2/deployments          deployments in progress (empty array when everything has converged)
//   GET    /v2/events               text/event-stream of every event (?event_type=a,b filters)
//   GET    /v2/info, /healthz, /metrics
//
// Threading: Handle, Publish and Keepalive run on the io_context thread that owns the Scheduler and the server.
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <list>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "http/server.hpp"
#include "services/scheduler.hpp"

namespace tug::cluster::services {

class Api {
 public:
  // `scheduler` must outlive the Api. `name` is reported by /v2/info.
  Api(boost::asio::io_context& io, Scheduler& scheduler, std::string name = "services");
  ~Api();  // closes the event streams
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  http::Response Handle(const http::Request& req);
  // Sends an event to every subscriber of /v2/events (the Scheduler's EventSink).
  void Publish(const std::string& type, const nlohmann::json& body);
  // A comment line on every stream, so proxies and clients see it is alive (call every ~15 s).
  void Keepalive();
  size_t subscribers() const { return subscribers_.size(); }

 private:
  struct Subscriber {
    std::shared_ptr<http::Stream> stream;
    std::set<std::string> types;  // empty = all
  };
  http::Response Route(const http::Request& req);
  http::Response Events(const http::Request& req);

  boost::asio::io_context& io_;
  Scheduler& scheduler_;
  std::string name_;
  std::list<Subscriber> subscribers_;
  uint64_t event_seq_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace tug::cluster::services
