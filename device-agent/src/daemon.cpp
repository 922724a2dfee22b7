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
#include <spdlog/spdlog.h>
#include <thread>

#include "core/env.hpp"
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


json StateSlotJson(const std::optional<SlotView>& v) {
  if (!v) return nullptr;
  return {{"slot", v->record.slot}, {"digest", v->record.digest}, {"version", v->record.version},
          {"name", v->record.name}, {"status", ToString(v->record.status)}, {"running", v->running}};
}

json ErrorJson(const std::optional<JobError>& e) {
  if (!e) return nullptr;
  return {{"code", e->code}, {"retryable", e->retryable}, {"message", e->message}};
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
        prefix_("tug/v1/d/" + cfg.device_id + "/"),
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
    mo.will = mqtt::Will{prefix_ + "presence", Presence(false), 1, true};
    mqtt_ = std::make_unique<mqtt::Client>(io_, mo);
    mqtt_->on_connect([this](bool) { OnConnect(); });
    mqtt_->on_message([this](const mqtt::Message& m) { OnMessage(m); });
    mqtt_->on_disconnect([](const Error& e) { spdlog::warn("MQTT connection lost: {}", e.Message()); });
    mqtt_->on_connect_failed([](const Error& e) { spdlog::warn("MQTT connect failed: {}", e.Message()); });
    if (auto st = mqtt_->Start(); !st) {
      spdlog::error("mqtt: {}", st.error().Message());
      return 1;
    }
    (void)mqtt_->Subscribe(prefix_ + "desired", 1);
    (void)mqtt_->Subscribe(prefix_ + "cmd/req", 1);

    worker_ = std::thread([this] { WorkerLoop(); });
    // Boot-time recovery first: finish or undo what a crash interrupted, and make sure the app runs.
    Enqueue([this] {
      if (auto st = updater_->Recover(); !st) spdlog::warn("recovery: {}", st.error().Message());
      PublishState();
    });
    signals_.async_wait([this](const boost::system::error_code&, int sig) {
      spdlog::info("signal {}: going offline", sig);
      (void)mqtt_->Publish(prefix_ + "presence", Presence(false), 1, true);
      // Let the offline presence go out before DISCONNECT (which suppresses the Will).
      auto t = std::make_shared<asio::steady_timer>(io_, 300ms);
      t->async_wait([this, t](const boost::system::error_code&) {
        mqtt_->Stop();
        io_.stop();
      });
    });
    ScheduleSupervise();
    spdlog::info("device {} running (platform {}, state {})", cfg_.device_id, platform_, dir_.root());
    io_.run();
    StopWorker();
    return 0;
  }

 private:
  // ---- io thread ----
  std::string Presence(bool online) const {
    return json{{"online", online}, {"boot_id", boot_id_}, {"ts", core::FormatRfc3339(core::SystemClock()->Now())}}
        .dump();
  }

  void OnConnect() {
    spdlog::info("MQTT connected");
    (void)mqtt_->Publish(prefix_ + "presence", Presence(true), 1, true);
    if (!last_state_.empty()) (void)mqtt_->Publish(prefix_ + "state", last_state_, 1, true);
    Enqueue([this] { PublishState(); });
  }

  void OnMessage(const mqtt::Message& m) {
    if (m.topic == prefix_ + "desired") return OnDesired(m.payload);
    if (m.topic == prefix_ + "cmd/req") return OnCommand(m);
  }

  void OnDesired(const std::string& payload) {
    if (payload.empty()) return;  // retained message cleared
    json d;
    try {
      d = json::parse(payload);
    } catch (const std::exception& e) {
      spdlog::warn("ignoring malformed desired state: {}", e.what());
      return;
    }
    const uint64_t v = d.value("v", uint64_t{0});
    if (v <= applied_.get() || v <= queued_v_) {
      spdlog::debug("desired v{} already applied (applied_v {})", v, applied_.get());
      return;
    }
    queued_v_ = v;
    const std::string job = d.value("job", "job-v" + std::to_string(v));
    std::string envelope;
    if (d.contains("release")) envelope = d["release"].is_string() ? d["release"].get<std::string>() : d["release"].dump();
    const bool rollback = d.value("action", "") == "rollback";
    Enqueue([this, v, job, envelope, rollback] {
      if (auto st = applied_.Set(v); !st) spdlog::error("persisting applied_v: {}", st.error().Message());
      if (rollback) {
        current_job_ = job;
        auto st = updater_->Rollback(job);
        if (!st) {
          // Nothing to roll back to (or an update in flight): say so on the job topic, the controller counts it.
          json status{{"state", "FAILED"}, {"seq", 0}, {"boot_id", boot_id_},
                      {"error", {{"code", "rollback"}, {"retryable", false}, {"message", st.error().Message()}}}};
          asio::post(io_, [this, topic = prefix_ + "jobs/" + job + "/status", body = status.dump()] {
            (void)mqtt_->Publish(topic, body, 1, false);
          });
        }
        PublishState();
        return;
      }
      if (envelope.empty()) {
        spdlog::warn("desired v{} has no release", v);
        PublishState();
        return;
      }
      spdlog::info("job {}: desired v{}", job, v);
      auto st = updater_->Install(envelope, job);
      if (!st) spdlog::warn("job {}: {}", job, st.error().Message());
      PublishState();
    });
  }

  void OnCommand(const mqtt::Message& in) {
    // The broker lets a device write only below its own prefix: answer on cmd/res unless the requester asked for
    // a topic there (an answer elsewhere would be dropped silently by the ACL).
    mqtt::Message m = in;
    if (m.response_topic && m.response_topic->rfind(prefix_, 0) != 0) m.response_topic = prefix_ + "cmd/res";
    if (!m.response_topic) m.response_topic = prefix_ + "cmd/res";
    json req;
    std::string cmd;
    try {
      req = json::parse(m.payload);
      cmd = req.value("cmd", "");
    } catch (...) {
    }
    auto respond = [this, m](bool ok, const std::string& error, json result) {
      if (!m.response_topic) return;
      mqtt::PublishProperties p;
      p.correlation_data = m.correlation_data;
      p.message_expiry = 60s;
      json r{{"ok", ok}, {"result", std::move(result)}};
      if (!ok) r["error"] = error;
      auto post = [this, topic = *m.response_topic, body = r.dump(), p] {
        (void)mqtt_->Publish(topic, body, 1, false, p);
      };
      asio::post(io_, post);
    };
    if (cmd == "cancel") {
      updater_->RequestCancel();  // thread-safe; also covers a job left behind by a crash:
      Enqueue([this, respond] {
        auto st = updater_->Cancel();
        respond(true, "", st ? "cancelled a pending job" : "cancel requested");
        PublishState();
      });
    } else if (cmd == "rollback") {
      Enqueue([this, respond] {
        auto st = updater_->Rollback();
        respond(st.has_value(), st ? "" : st.error().Message(), nullptr);
        PublishState();
      });
    } else if (cmd == "restart") {
      Enqueue([this, respond] {
        auto st = updater_->RestartApp();
        respond(st.has_value(), st ? "" : st.error().Message(), nullptr);
        PublishState();
      });
    } else if (cmd == "report") {
      Enqueue([this, m] {
        PublishState();
        // Queued behind the state publication on the io thread, so it answers with the state just published.
        asio::post(io_, [this, m] {
          if (!m.response_topic) return;
          mqtt::PublishProperties p;
          p.correlation_data = m.correlation_data;
          p.message_expiry = 60s;
          json r{{"ok", true}, {"result", last_state_.empty() ? json(nullptr) : json::parse(last_state_)}};
          (void)mqtt_->Publish(*m.response_topic, r.dump(), 1, false, p);
        });
      });
    } else if (cmd == "logs") {
      Enqueue([this, respond] {
        auto s = updater_->GetStatus();
        std::string tail;
        if (s && s->active) {
          if (auto text = core::DefaultEnv()->ReadFile(dir_.slot(s->active->record.slot) + "/container.log"))
            tail = text->size() > 16384 ? text->substr(text->size() - 16384) : *text;
        }
        respond(true, "", tail);
      });
    } else {
      respond(false, "unknown command '" + cmd + "' (cancel, rollback, restart, report, logs)", nullptr);
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
    json status{{"state", ToString(j.state)}, {"seq", j.seq}, {"boot_id", boot_id_}, {"error", ErrorJson(j.error)}};
    asio::post(io_, [this, topic = prefix_ + "jobs/" + j.job_id + "/status", body = status.dump()] {
      (void)mqtt_->Publish(topic, body, 1, false);
    });
    current_job_ = j.job_id;
    PublishState();
  }

  void OnProgress(const std::string& phase, uint64_t bytes, uint64_t total) {
    if (current_job_.empty()) return;
    json p{{"phase", phase}, {"bytes", bytes}, {"total", total}};
    asio::post(io_, [this, topic = prefix_ + "jobs/" + current_job_ + "/progress", body = p.dump()] {
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
    json state{{"boot_id", boot_id_},
               {"applied_v", applied_.get()},
               {"active", StateSlotJson(s->active)},
               {"previous", StateSlotJson(s->previous)},
               {"job", {{"id", s->job.job_id}, {"phase", ToString(s->job.state)}, {"seq", s->job.seq},
                        {"error", ErrorJson(s->job.error)}}},
               {"ratchet", s->ratchet},
               {"arch", platform_},
               {"agent_version", kAgentVersion},
               {"free_bytes", free_bytes ? *free_bytes : 0},
               {"labels", cfg_.labels}};
    asio::post(io_, [this, state]() mutable {
      state["seq"] = ++state_seq_;
      last_state_ = state.dump();
      (void)mqtt_->Publish(prefix_ + "state", last_state_, 1, true);
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
  uint64_t queued_v_ = 0;     // io thread
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
  if (c.device_id.empty()) return MakeError(Errc::kInvalidArgument, path + ": device_id is empty");
  return c;
}

int RunDaemon(const DaemonConfig& cfg) {
  Daemon d(cfg);
  return d.Run();
}

}  // namespace tug::agent
