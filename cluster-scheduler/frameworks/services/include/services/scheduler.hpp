// Scheduler: the services framework's brain (docs/services.md). Keeps, per app, the definition, its version and
// the desired number of instances; turns offers into launches where resources and constraints fit; replaces
// failed and lost instances (with a per-app exponential backoff); runs rolling upgrades and restarts with Marathon's
// minimumHealthCapacity / maximumOverCapacity; keeps the gateway's backends equal to the healthy instances
// (draining a backend before its task is killed); and tells the master when it wants offers (REVIVE) and when not
// (SUPPRESS).
//
// Threading: not thread-safe. Every method runs on one thread (the daemon's io_context); the Driver it calls never
// calls back synchronously. Time comes from the `now` function (steady seconds), so tests can move it.
//
// Durability: app changes, new tasks and kill decisions are saved through the StateStore before they take effect
// (before the REST answer, before the ACCEPT); task states are saved lazily (each Tick) since a re-subscription
// reconciles them anyway. A failed save refuses the REST call (kIo) or declines the offers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "services/app.hpp"
#include "services/driver.hpp"
#include "services/state_store.hpp"

namespace tug::cluster::services {

struct SchedulerOptions {
  double decline_refuse_s = 5;        // filter for offers we decline
  double backoff_initial_s = 1;       // first delay after an instance failed
  double backoff_max_s = 60;          // the delay doubles up to this
  double backoff_reset_after_s = 60;  // an instance healthy this long resets the app's delay
  bool gateway = false;               // maintain the gateway (Driver::ApplyGateway)
  double drain_s = 1;                 // gateway apps: the kill waits this long after the gateway dropped the backend
  double gateway_wait_max_s = 60;     // ... but no longer than this for a gateway that keeps failing
  double kill_retry_s = 10;           // re-send KILL for tasks that did not die
  double launch_timeout_s = 300;      // a task still TASK_STAGING this long is killed and replaced
  double offer_memory_s = 60;         // agents seen in offers this recently are used to explain blocked launches
  std::string role = "services";
};

enum class DeploymentKind { kCreate, kScale, kUpgrade, kRestart, kUpdate, kDelete };
const char* ToString(DeploymentKind k);  // "create", ...

class Scheduler {
 public:
  using Clock = std::function<double()>;  // steady seconds
  // type ("app_created", "status_update_event", ...) and body; see docs/services.md for the list.
  using EventSink = std::function<void(const std::string& type, const nlohmann::json& body)>;

  Scheduler(SchedulerOptions opts, Driver& driver, StateStore& store, Clock now = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void set_event_sink(EventSink sink);

  // Loads the saved state (apps, tasks, framework id). Call once, before anything else. Errors from the store.
  Status Recover();
  // The id to subscribe with ("" = a new framework).
  std::string framework_id() const;

  // ---- the REST API's operations. Errors: kInvalidArgument (400; ErrorField names the field), kNotFound (404),
  // kAlreadyExists (409), kIo (500: the state could not be saved; nothing changed).
  // POST /v2/apps: the app as GET shows it, plus "deployments":[{"id"}].
  Result<nlohmann::json> CreateApp(const nlohmann::json& body);
  // PUT /v2/apps/{id}: members of `body` replace the current definition's (so {"instances":5} scales); an unknown
  // app is created (*created = true). {"deploymentId", "version"}.
  Result<nlohmann::json> UpdateApp(const std::string& id, const nlohmann::json& body, bool* created);
  // POST /v2/apps/{id}/restart: a rolling restart (same definition, new version). {"deploymentId", "version"}.
  Result<nlohmann::json> RestartApp(const std::string& id);
  // DELETE /v2/apps/{id}: kills every instance; the app disappears at once. {"deploymentId", "version"}.
  Result<nlohmann::json> DeleteApp(const std::string& id);
  nlohmann::json ListApps() const;                                     // {"apps":[...]}
  Result<nlohmann::json> GetApp(const std::string& id) const;          // {"app":{..., "tasks":[...]}}
  Result<nlohmann::json> GetTasks(const std::string& id) const;        // {"tasks":[...]}
  nlohmann::json Deployments() const;                                  // [ {...}, ... ] in progress
  nlohmann::json Info() const;                                         // framework id, connection, counts
  std::string Metrics() const;                                         // Prometheus text
  bool connected() const;

  // ---- the master's side.
  // SUBSCRIBED (possibly with a new framework id): reconciles every known task, then revives or suppresses.
  void OnConnected(const std::string& framework_id, const std::string& master);
  void OnDisconnected();
  // An event from the subscription stream: OFFERS, RESCIND, UPDATE, ERROR (others are ignored).
  void OnEvent(const nlohmann::json& event);
  // The ACCEPT carrying these tasks failed: they never started.
  void OnLaunchFailed(const std::vector<std::string>& task_ids, const std::string& why);
  // A REVIVE or SUPPRESS failed: it is sent again.
  void OnCallFailed(const std::string& call, const std::string& why);
  // The gateway apply `seq` ended: `error` empty = applied (backends it no longer lists are drained), else why not
  // (the whole configuration is applied again).
  void OnGatewayApplied(uint64_t seq, const std::string& error);
  // Timers: backoff expiry, drained backends' kills, kill retries, deployment progress, lazy saves. Call a few
  // times a second.
  void Tick();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tug::cluster::services
