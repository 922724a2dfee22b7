#include "agent/daemon.hpp"

#include <utility>  // before Asio (Debian's Boost 1.74)

#include <sys/utsname.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <spdlog/spdlog.h>
#include <thread>

#include "core/env.hpp"
#include "fleet/log_limiter.hpp"
#include "fleet/messages.hpp"
#include "fleet/topics.hpp"
#include "mqtt/client.hpp"

namespace tug::agent {
namespace asio = boost::asio;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAgentVersion = "0.1.0";

std::string RandomId() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

std::optional<fleet::SlotInfo> WireSlot(const std::optional<SlotView>& v) {
  if (!v) return std::nullopt;
  fleet::SlotInfo s;
  s.slot = v->record.slot;
  s.digest = v->record.digest;
  s.version = v->record.version;
  s.name = v->record.name;
  s.status = ToString(v->record.status);
  s.running = v->running;
  return s;
}

std::optional<fleet::JobError> WireError(const std::optional<JobError>& e) {
  if (!e) return std::nullopt;
  return fleet::JobError{e->code, e->retryable, e->message};
}

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return base_dir + "/" + p;
}

// Persisted "applied_v": the highest desired version the device has taken on, so a retained desired message seen
// again after a reconnect or restart is not applied twice.
class AppliedVersion {
 public:
  explicit AppliedVersion(std::string path) : path_(std::move(path)) {
    if (auto text = core::DefaultEnv()->ReadFile(path_)) {
      try {
        v_ = std::stoull(*text);
      } catch (...) {
        v_ = 0;
      }
    }
  }
  uint64_t get() const { return v_; }
  Status Set(uint64_t v) {
    TUG_TRY(core::WriteFileDurable(*core::DefaultEnv(), path_, std::to_string(v) + "\n"));
    v_ = v;
    return {};
  }

 private:
  std::string path_;
  std::atomic<uint64_t> v_{0};
};

class Daemon {
 public:
  explicit Daemon(const DaemonConfig& cfg)
      : cfg_(cfg),
        dir_(cfg.state_dir),
        runtime_(dir_.runc_root()),
        applied_(dir_.root() + "/applied_v"),
        boot_id_(RandomId()),
        prefix_(fleet::DevicePrefix(cfg.device_id)),
        presence_topic_(fleet::PresenceTopic(cfg.device_id)),
        state_topic_(fleet::StateTopic(cfg.device_id)),
        desired_topic_(fleet::DesiredTopic(cfg.device_id)),
        cmd_req_topic_(fleet::CmdReqTopic(cfg.device_id)),
        cmd_res_topic_(fleet::CmdResTopic(cfg.device_id)),
        signals_(io_, SIGTERM, SIGINT),
        supervise_timer_(io_) {}

  int Run() {
    auto plat = oci::Platform::Parse(cfg_.platform.empty() ? oci::HostPlatform().ToString() : cfg_.platform);
    if (!plat) {
      spdlog::error("platform: {}", plat.error().Message());
      return 2;
    }
    platform_ = plat->ToString();
    UpdaterOptions uo;
    uo.platform = *plat;
    uo.registry.insecure_registries.insert(cfg_.insecure_registries.begin(), cfg_.insecure_registries.end());
    uo.registry.username = cfg_.registry_username;
    uo.registry.password = cfg_.registry_password;
    uo.commit_window = cfg_.commit_window;
    uo.healthcheck_timeout = cfg_.healthcheck_timeout;
    // As `device-agent --repository`: a release signed for another repository of the same root is refused.
    uo.expected_repository = cfg_.repository;
    // A device on 4G waits out long outages: only attempts without progress count, up to about an hour.
    uo.fetch.max_attempts = 150;
    uo.fetch.max_backoff = 30s;
    UpdateObserver obs;
    obs.on_transition = [this](const Journal& j) { OnTransition(j); };
    obs.on_progress = [this](const std::string& phase, uint64_t bytes, uint64_t total) {
      OnProgress(phase, bytes, total);
    };
    updater_ = std::make_unique<Updater>(*core::DefaultEnv(), dir_, runtime_, *core::SystemClock(), uo, obs);

    mqtt::ClientOptions mo;
    mo.host = cfg_.mqtt.host;
    mo.port = cfg_.mqtt.port;
    mo.client_id = cfg_.device_id;
    if (!cfg_.mqtt.ca_file.empty()) mo.tls = mqtt::TlsOptions{cfg_.mqtt.ca_file, cfg_.mqtt.cert_file, cfg_.mqtt.key_file};
    mo.keepalive = cfg_.mqtt.keepalive;
    mo.session_expiry = cfg_.mqtt.session_expiry;
    mo.will = mqtt::Will{presence_topic_, Presence(false), 1, true};
    mqtt_ = std::make_unique<mqtt::Client>(io_, mo);
    mqtt_->on_connect([this](bool) { OnConnect(); });
    mqtt_->on_message([this](const mqtt::Message& m) { OnMessage(m); });
    mqtt_->on_disconnect([](const Error& e) { spdlog::warn("MQTT connection lost: {}", e.Message()); });
    mqtt_->on_connect_failed([](const Error& e) { spdlog::warn("MQTT connect failed: {}", e.Message()); });
    if (auto st = mqtt_->Start(); !st) {
      spdlog::error("mqtt: {}", st.error().Message());
      return 1;
    }
    (void)mqtt_->Subscribe(desired_topic_, 1);
    (void)mqtt_->Subscribe(cmd_req_topic_, 1);

    worker_ = std::thread([this] { WorkerLoop(); });
    // Boot-time recovery first: finish or undo what a crash interrupted, and make sure the app runs.
    Enqueue([this] {
      if (auto st = updater_->Recover(); !st) spdlog::warn("recovery: {}", st.error().Message());
      PublishState();
    });
    signals_.async_wait([this](const boost::system::error_code&, int sig) {
      spdlog::info("signal {}: going offline", sig);
      (void)mqtt_->Publish(presence_topic_, Presence(false), 1, true);
      // Let the offline presence go out before DISCONNECT (which suppresses the Will).
      auto t = std::make_shared<asio::steady_timer>(io_, 300ms);
      t->async_wait([this, t](const boost::system::error_code&) {
        mqtt_->Stop();
        io_.stop();
      });
    });
    ScheduleSupervise();
    spdlog::info("device {} running (platform {}, state {}{})", cfg_.device_id, platform_, dir_.root(),
                 cfg_.repository.empty() ? "" : ", releases of " + cfg_.repository + " only");
    io_.run();
    StopWorker();
    return 0;
  }

 private:
  // ---- io thread ----
  std::string Presence(bool online) const {
    fleet::Presence p;
    p.online = online;
    p.boot_id = boot_id_;
    p.ts = core::FormatRfc3339(core::SystemClock()->Now());
    return fleet::Serialize(p);
  }

  void OnConnect() {
    spdlog::info("MQTT connected");
    (void)mqtt_->Publish(presence_topic_, Presence(true), 1, true);
    if (!last_state_.empty()) (void)mqtt_->Publish(state_topic_, last_state_, 1, true);
    Enqueue([this] { PublishState(); });
  }

  void OnMessage(const mqtt::Message& m) {
    // Nothing from the broker may take the daemon (and with it the app's supervision) down.
    try {
      if (m.topic == desired_topic_) return OnDesired(m.payload);
      if (m.topic == cmd_req_topic_) return OnCommand(m);
    } catch (const std::exception& e) {
      spdlog::error("handling a message on {}: {}", m.topic, e.what());
    }
  }

  // A message that failed validation: counted (sent in the state's "rejected"), logged at most 5 lines a second.
  void Rejected(const char* what, const Error& e) {
    rejected_.Add(e);
    auto skipped = reject_log_.Admit();
    if (!skipped) return;  // a flood: neither the log nor the state publications follow it
    spdlog::warn("ignoring malformed {}: {} ({} similar lines suppressed)", what, e.Message(), *skipped);
    Enqueue([this] { PublishState(); });
  }

  // Validated before anything is queued or persisted. applied_v is persisted only once the release verified
  // (the job reached ACCEPTED, see OnTransition) or a rollback ran: a desired whose release fails verification
  // leaves applied_v alone, so it cannot block later rollouts whatever its v.
  void OnDesired(const std::string& payload) {
    if (payload.empty()) return;  // retained message cleared
    auto d = fleet::ParseDesired(payload);
    if (!d) return Rejected("desired state", d.error());
    const uint64_t v = d->v;
    if (v <= applied_.get() || in_flight_v_.count(v)) {
      spdlog::debug("desired v{} already applied or queued (applied_v {})", v, applied_.get());
      return;
    }
    in_flight_v_.insert(v);
    Enqueue([this, desired = std::move(*d)] {
      ApplyDesired(desired);
      asio::post(io_, [this, v = desired.v] { in_flight_v_.erase(v); });
    });
  }

  // ---- worker thread ----
  void ApplyDesired(const fleet::Desired& d) {
    if (d.v <= applied_.get()) return;  // a later desired was applied while this one waited
    if (d.action == fleet::Desired::Action::kRollback) {
      current_job_ = d.job;
      auto st = updater_->Rollback(d.job);
      // Taken on whatever the outcome: nothing to roll back to is an answer, not something to retry.
      PersistApplied(d.v);
      if (!st) {
        // Nothing to roll back to (or an update in flight): say so on the job topic, the controller counts it.
        fleet::JobStatus status;
        status.state = "FAILED";
        status.boot_id = boot_id_;
        status.error = fleet::JobError{"rollback", false, st.error().Message()};
        PublishJobStatus(d.job, fleet::Serialize(status));
      }
      PublishState();
      return;
    }
    spdlog::info("job {}: desired v{}", d.job, d.v);
    pending_ = PendingDesired{d.v, d.job};
    auto st = updater_->Install(d.release, d.job);
    pending_.reset();
    if (!st) spdlog::warn("job {}: {}", d.job, st.error().Message());
    PublishState();
  }

  void PersistApplied(uint64_t v) {
    if (v <= applied_.get()) return;
    if (auto st = applied_.Set(v); !st) spdlog::error("persisting applied_v: {}", st.error().Message());
  }

  void PublishJobStatus(const std::string& job, std::string body) {
    if (!fleet::ValidJobId(job)) return;  // e.g. a CLI job id with a space: not a topic level
    asio::post(io_, [this, topic = fleet::JobStatusTopic(cfg_.device_id, job), body = std::move(body)] {
      (void)mqtt_->Publish(topic, body, 1, false);
    });
  }

  // ---- io thread ----
  void OnCommand(const mqtt::Message& in) {
    // The broker lets a device write only below its own prefix: answer on cmd/res unless the requester asked for
    // a topic there (an answer elsewhere would be dropped silently by the ACL).
    mqtt::Message m = in;
    if (m.response_topic && m.response_topic->rfind(prefix_, 0) != 0) m.response_topic = cmd_res_topic_;
    if (!m.response_topic) m.response_topic = cmd_res_topic_;
    auto respond = [this, m](bool ok, const std::string& error, json result) {
      if (!m.response_topic) return;
      mqtt::PublishProperties p;
      p.correlation_data = m.correlation_data;
      p.message_expiry = 60s;
      fleet::CmdResponse r;
      r.ok = ok;
      r.error = error;
      r.result = std::move(result);
      auto post = [this, topic = *m.response_topic, body = fleet::Serialize(r), p] {
        (void)mqtt_->Publish(topic, body, 1, false, p);
      };
      asio::post(io_, post);
    };
    auto req = fleet::ParseCmdRequest(m.payload);
    if (!req) {
      Rejected("command", req.error());
      return respond(false, "malformed command: " + req.error().Message(), nullptr);
    }
    switch (req->cmd) {
      case fleet::Command::kCancel:
        updater_->RequestCancel();  // thread-safe; also covers a job left behind by a crash:
        Enqueue([this, respond] {
          auto st = updater_->Cancel();
          respond(true, "", st ? "cancelled a pending job" : "cancel requested");
          PublishState();
        });
        break;
      case fleet::Command::kRollback:
        Enqueue([this, respond] {
          auto st = updater_->Rollback();
          respond(st.has_value(), st ? "" : st.error().Message(), nullptr);
          PublishState();
        });
        break;
      case fleet::Command::kRestart:
        Enqueue([this, respond] {
          auto st = updater_->RestartApp();
          respond(st.has_value(), st ? "" : st.error().Message(), nullptr);
          PublishState();
        });
        break;
      case fleet::Command::kReport:
        Enqueue([this, respond] {
          PublishState();
          // Queued behind the state publication on the io thread, so it answers with the state just published.
          asio::post(io_, [this, respond] {
            respond(true, "", last_state_.empty() ? json(nullptr) : json::parse(last_state_, nullptr, false));
          });
        });
        break;
      case fleet::Command::kLogs:
        Enqueue([this, respond] {
          auto s = updater_->GetStatus();
          std::string tail;
          if (s && s->active) {
            if (auto text = core::DefaultEnv()->ReadFile(dir_.slot(s->active->record.slot) + "/container.log"))
              tail = text->size() > 16384 ? text->substr(text->size() - 16384) : *text;
          }
          respond(true, "", tail);  // the app's bytes as they are: the serializer replaces what is not UTF-8
        });
        break;
    }
  }

  void ScheduleSupervise() {
    supervise_timer_.expires_after(cfg_.supervise_interval);
    supervise_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      Enqueue([this] {
        if (auto st = updater_->Supervise(); !st) spdlog::warn("supervise: {}", st.error().Message());
      });
      ScheduleSupervise();
    });
  }

  // ---- worker thread ----
  void OnTransition(const Journal& j) {
    // The release verified (Install records ACCEPTED only after VerifyRelease): the desired is taken on.
    if (pending_ && j.job_id == pending_->job && j.state == UpdateState::kAccepted) PersistApplied(pending_->v);
    fleet::JobStatus status;
    status.state = ToString(j.state);
    status.seq = j.seq;
    status.boot_id = boot_id_;
    status.error = WireError(j.error);
    PublishJobStatus(j.job_id, fleet::Serialize(status));
    current_job_ = j.job_id;
    PublishState();
  }

  void OnProgress(const std::string& phase, uint64_t bytes, uint64_t total) {
    if (current_job_.empty() || !fleet::ValidJobId(current_job_)) return;
    fleet::Progress p;
    p.phase = phase;
    p.bytes = bytes;
    p.total = total;
    asio::post(io_, [this, topic = fleet::JobProgressTopic(cfg_.device_id, current_job_), body = fleet::Serialize(p)] {
      (void)mqtt_->Publish(topic, body, 0, false);  // QoS 0: fine to lose while offline
    });
  }

  void PublishState() {
    auto s = updater_->GetStatus();
    if (!s) {
      spdlog::warn("status: {}", s.error().Message());
      return;
    }
    auto free_bytes = core::DefaultEnv()->FreeBytes(dir_.root());
    fleet::State state;
    state.boot_id = boot_id_;
    state.applied_v = applied_.get();
    state.active = WireSlot(s->active);
    state.previous = WireSlot(s->previous);
    state.job.id = s->job.job_id;
    state.job.phase = ToString(s->job.state);
    state.job.seq = s->job.seq;
    state.job.error = WireError(s->job.error);
    state.ratchet = s->ratchet;
    state.arch = platform_;
    state.agent_version = kAgentVersion;
    state.free_bytes = free_bytes ? *free_bytes : 0;
    state.labels = cfg_.labels;
    asio::post(io_, [this, state = std::move(state)]() mutable {
      state.seq = ++state_seq_;
      for (size_t i = 1; i <= fleet::kReasonCount; ++i) {
        const auto r = static_cast<fleet::Reason>(i);
        if (rejected_[r] > 0) state.rejected[fleet::ToString(r)] = rejected_[r];
      }
      last_state_ = fleet::Serialize(state);
      (void)mqtt_->Publish(state_topic_, last_state_, 1, true);
    });
  }

  void Enqueue(std::function<void()> work) {
    {
      std::lock_guard lk(mu_);
      queue_.push_back(std::move(work));
    }
    cv_.notify_one();
  }

  void WorkerLoop() {
    for (;;) {
      std::function<void()> work;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      work();
    }
  }

  void StopWorker() {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    // A job in flight is not waited for: its journal lets the next start finish or undo it.
    worker_.detach();
  }

  DaemonConfig cfg_;
  StateDir dir_;
  RuncRuntime runtime_;
  AppliedVersion applied_;
  std::string boot_id_;
  std::string prefix_;
  std::string presence_topic_, state_topic_, desired_topic_, cmd_req_topic_, cmd_res_topic_;
  std::string platform_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer supervise_timer_;
  std::unique_ptr<mqtt::Client> mqtt_;
  std::unique_ptr<Updater> updater_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::set<uint64_t> in_flight_v_;  // io thread: desired versions queued for the worker, not done yet
  fleet::ReasonCounts rejected_;     // io thread: malformed desired/cmd messages, per reason
  fleet::LogLimiter reject_log_{5};
  struct PendingDesired {
    uint64_t v;
    std::string job;
  };
  std::optional<PendingDesired> pending_;  // worker thread: the desired being installed
  uint64_t state_seq_ = 0;    // io thread
  std::string last_state_;    // io thread
  std::string current_job_;   // worker thread
};

}  // namespace

Result<DaemonConfig> LoadDaemonConfig(const std::string& path) {
  TUG_ASSIGN_OR_RETURN(auto text, core::DefaultEnv()->ReadFile(path));
  const std::string base = core::Dirname(path);
  DaemonConfig c;
  try {
    auto j = json::parse(text);
    c.device_id = j.at("device_id").get<std::string>();
    c.state_dir = Resolve(base, j.value("state_dir", c.state_dir));
    c.platform = j.value("platform", "");
    if (j.contains("labels")) c.labels = j["labels"].get<std::map<std::string, std::string>>();
    c.repository = j.value("repository", "");
    if (j.contains("mqtt")) {
      auto& m = j["mqtt"];
      c.mqtt.host = m.value("host", c.mqtt.host);
      c.mqtt.port = m.value("port", c.mqtt.port);
      c.mqtt.ca_file = Resolve(base, m.value("ca", ""));
      c.mqtt.cert_file = Resolve(base, m.value("cert", ""));
      c.mqtt.key_file = Resolve(base, m.value("key", ""));
      c.mqtt.keepalive = std::chrono::seconds(m.value("keepalive", 30));
    }
    if (j.contains("registry")) {
      auto& r = j["registry"];
      c.insecure_registries = r.value("insecure", std::vector<std::string>{});
      c.registry_username = r.value("username", "");
      c.registry_password = r.value("password", "");
    }
    c.commit_window = std::chrono::milliseconds(static_cast<int64_t>(j.value("commit_window", 10.0) * 1000));
    c.healthcheck_timeout =
        std::chrono::milliseconds(static_cast<int64_t>(j.value("healthcheck_timeout", 120.0) * 1000));
    c.supervise_interval = std::chrono::seconds(j.value("supervise_interval", 15));
  } catch (const std::exception& e) {
    return MakeError(Errc::kInvalidArgument, path + ": " + e.what());
  }
  if (!fleet::ValidDeviceId(c.device_id))
    return MakeError(Errc::kInvalidArgument, path + ": device_id must be 1..64 of [A-Za-z0-9._-]");
  // The state carries the labels: more or longer than the controller accepts would get every state refused.
  const fleet::Limits& l = fleet::DefaultLimits();
  if (c.labels.size() > l.labels)
    return MakeError(Errc::kInvalidArgument, path + ": labels: at most " + std::to_string(l.labels));
  for (const auto& [k, v] : c.labels)
    if (k.empty() || k.size() > l.label_key_bytes || v.size() > l.label_value_bytes || !fleet::ValidUtf8(k) ||
        !fleet::ValidUtf8(v))
      return MakeError(Errc::kInvalidArgument, path + ": labels." + k + ": key 1.." +
                                                   std::to_string(l.label_key_bytes) + " bytes, value up to " +
                                                   std::to_string(l.label_value_bytes) + ", UTF-8");
  return c;
}

int RunDaemon(const DaemonConfig& cfg) {
  Daemon d(cfg);
  return d.Run();
}

}  // namespace tug::agent
