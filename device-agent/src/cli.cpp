#include "agent/cli.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent/daemon.hpp"
#include "agent/updater.hpp"
#include "core/log.hpp"

namespace tug::agent {
namespace {


// One mutating command at a time per state dir; a second one waits up to `timeout`.
class StateLock {
 public:
  static Result<StateLock> Acquire(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError(errno, "opening lock " + path);
    for (int i = 0; i < 600; ++i) {
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return StateLock(fd);
      if (i == 0) std::fprintf(stderr, "device-agent: waiting for another device-agent command on this state dir\n");
      ::usleep(100'000);
    }
    ::close(fd);
    return MakeError(Errc::kTimeout, "another device-agent holds " + path);
  }
  StateLock(StateLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~StateLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

std::string Human(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  return buf;
}

nlohmann::json StatusSlotJson(const std::optional<SlotView>& v) {
  if (!v) return nullptr;
  return {{"slot", v->record.slot},       {"digest", v->record.digest},   {"manifest", v->record.manifest},
          {"version", v->record.version}, {"name", v->record.name},       {"status", ToString(v->record.status)},
          {"repository", v->record.repository}, {"running", v->running}};
}

int Fail(const Error& e) {
  std::fprintf(stderr, "device-agent: %s\n", e.Message().c_str());
  return 1;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "device-agent: keeps this device on a signed OCI release with A/B slots and automatic rollback.\n\n"
      "Examples:\n"
      "  device-agent --state-dir /var/lib/tugboat init --root root.json\n"
      "  device-agent --state-dir /var/lib/tugboat --platform linux/arm64/v8 \\\n"
      "      --insecure-registry 127.0.0.1:5000 install --release release.json\n"
      "  device-agent --state-dir /var/lib/tugboat status --json\n",
      "device-agent"};
  app.require_subcommand(1);
  std::string state_dir = "/var/lib/tugboat";
  std::string platform = oci::HostPlatform().ToString();
  std::vector<std::string> insecure;
  std::string registry_user, log_level = "info", expected_repo;
  double commit_window_s = 10, healthcheck_timeout_s = 120;
  app.add_option("--state-dir", state_dir, "device state directory")->capture_default_str();
  app.add_option("--platform", platform, "platform to install from multi-arch images (e.g. linux/arm64/v8)")
      ->capture_default_str();
  app.add_option("--insecure-registry", insecure, "HOST:PORT reached over plain HTTP (loopback test registries)");
  app.add_option("--registry-user", registry_user, "registry user (password from TUG_REGISTRY_PASSWORD)");
  app.add_option("--repository", expected_repo, "accept releases only for this repository (HOST/REPO)");
  app.add_option("--commit-window", commit_window_s,
                 "seconds an image without HEALTHCHECK must keep running before it is committed")
      ->capture_default_str();
  app.add_option("--healthcheck-timeout", healthcheck_timeout_s, "seconds an image HEALTHCHECK has to pass")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();

  std::string root_file, release_file, job_id;
  bool json = false, repair = false;
  auto* init = app.add_subcommand("init", "provision the trust root (creates the state dir)");
  init->add_option("--root", root_file, "signed trust root (tug trust init)")->required();
  auto* install = app.add_subcommand(
      "install", "verify, download, install, switch to and health-check a signed release; exit 0 only when committed");
  install->add_option("--release", release_file, "signed release envelope (tug release sign)")->required();
  install->add_option("--job", job_id, "job id to record (default: local-<time>)");
  auto* status = app.add_subcommand("status", "show the active and previous release and the last job");
  status->add_flag("--json", json, "machine-readable output");
  auto* rollback = app.add_subcommand("rollback", "switch back to the previous committed release");
  auto* recover = app.add_subcommand(
      "recover", "finish or undo an interrupted update and make sure the active app runs (run at boot)");
  auto* cancel = app.add_subcommand("cancel", "cancel an update that has not started switching");
  auto* gc = app.add_subcommand("gc", "remove blobs that neither slot needs");
  auto* fsck = app.add_subcommand("fsck", "re-hash every stored blob");
  std::string config_file;
  auto* run = app.add_subcommand(
      "run", "daemon: follow the controller over MQTT (needs --config FILE; see docs/device-agent.md)");
  app.add_option("--config", config_file, "daemon config file (JSON) for `run`");
  fsck->add_flag("--repair", repair, "remove blobs that fail the check");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  core::InitLogging(log_level, "device-agent");
  if (*run) {
    if (config_file.empty()) {
      std::fprintf(stderr, "device-agent: run needs --config FILE\n");
      return 2;
    }
    auto cfg = LoadDaemonConfig(config_file);
    if (!cfg) return Fail(cfg.error());
    if (!StateDir(cfg->state_dir).Initialized(*core::DefaultEnv())) {
      std::fprintf(stderr, "device-agent: %s is not initialised; run: device-agent --state-dir %s init --root root.json\n",
                   cfg->state_dir.c_str(), cfg->state_dir.c_str());
      return 1;
    }
    return RunDaemon(*cfg);
  }

  auto plat = oci::Platform::Parse(platform);
  if (!plat) {
    std::fprintf(stderr, "device-agent: --platform: %s\n", plat.error().Message().c_str());
    return 2;
  }
  UpdaterOptions opts;
  opts.platform = *plat;
  opts.registry.insecure_registries.insert(insecure.begin(), insecure.end());
  opts.registry.username = registry_user;
  if (const char* pw = ::getenv("TUG_REGISTRY_PASSWORD")) opts.registry.password = pw;
  opts.expected_repository = expected_repo;
  opts.commit_window = std::chrono::milliseconds(static_cast<int64_t>(commit_window_s * 1000));
  opts.healthcheck_timeout = std::chrono::milliseconds(static_cast<int64_t>(healthcheck_timeout_s * 1000));

  StateDir dir(state_dir);
  core::Env& env = *core::DefaultEnv();
  RuncRuntime runtime(dir.runc_root());
  UpdateObserver observer;
  observer.on_progress = [](const std::string& phase, uint64_t bytes, uint64_t total) {
    if (phase == "installing")
      std::fprintf(stderr, "  unpacked layer %llu/%llu\n", static_cast<unsigned long long>(bytes),
                   static_cast<unsigned long long>(total));
    else
      std::fprintf(stderr, "  %s %s / %s (%.0f%%)\n", phase.c_str(), Human(bytes).c_str(), Human(total).c_str(),
                   total ? 100.0 * static_cast<double>(bytes) / static_cast<double>(total) : 100.0);
  };
  Updater updater(env, dir, runtime, *core::SystemClock(), opts, observer);

  if (*init) {
    auto text = env.ReadFile(root_file);
    if (!text) return Fail(text.error());
    if (auto st = updater.Init(*text); !st) return Fail(st.error());
    std::printf("initialised %s\n", state_dir.c_str());
    return 0;
  }
  if (!dir.Initialized(env)) {
    std::fprintf(stderr, "device-agent: %s is not initialised; run: device-agent --state-dir %s init --root root.json\n",
                 state_dir.c_str(), state_dir.c_str());
    return 1;
  }
  if (*status) {
    auto s = updater.GetStatus();
    if (!s) return Fail(s.error());
    nlohmann::json job{{"id", s->job.job_id}, {"phase", ToString(s->job.state)}, {"seq", s->job.seq}};
    job["error"] = s->job.error ? nlohmann::json{{"code", s->job.error->code},
                                                 {"retryable", s->job.error->retryable},
                                                 {"message", s->job.error->message}}
                                : nlohmann::json(nullptr);
    if (json) {
      nlohmann::json o{{"active", StatusSlotJson(s->active)}, {"previous", StatusSlotJson(s->previous)},
                       {"job", job}, {"ratchet", s->ratchet}};
      std::cout << o.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      return 0;
    }
    auto line = [](const char* label, const std::optional<SlotView>& v) {
      if (!v) {
        std::printf("%-9s none\n", label);
        return;
      }
      std::printf("%-9s slot %s  %s version %llu  %s  %s%s\n", label, v->record.slot.c_str(),
                  v->record.name.empty() ? "(unnamed)" : v->record.name.c_str(),
                  static_cast<unsigned long long>(v->record.version), v->record.digest.c_str(),
                  ToString(v->record.status), v->running ? ", running" : ", not running");
    };
    line("active:", s->active);
    line("previous:", s->previous);
    std::printf("last job: %s %s%s\n", s->job.job_id.empty() ? "(none)" : s->job.job_id.c_str(),
                ToString(s->job.state), s->job.error ? (": " + s->job.error->message).c_str() : "");
    return 0;
  }

  auto lock = StateLock::Acquire(dir.lock_file());
  if (!lock) return Fail(lock.error());
  if (*install) {
    auto text = env.ReadFile(release_file);
    if (!text) return Fail(text.error());
    if (auto st = updater.Install(*text, job_id); !st) return Fail(st.error());
    auto s = updater.GetStatus();
    std::printf("installed and committed: %s version %llu in slot %s\n", s ? s->active->record.name.c_str() : "",
                s ? static_cast<unsigned long long>(s->active->record.version) : 0ULL,
                s ? s->active->record.slot.c_str() : "?");
    return 0;
  }
  if (*rollback) {
    if (auto st = updater.Rollback(); !st) return Fail(st.error());
    std::printf("rolled back\n");
    return 0;
  }
  if (*recover) {
    if (auto st = updater.Recover(); !st) return Fail(st.error());
    return 0;
  }
  if (*cancel) {
    if (auto st = updater.Cancel(); !st) return Fail(st.error());
    return 0;
  }
  if (*gc) {
    auto freed = updater.CollectGarbage();
    if (!freed) return Fail(freed.error());
    std::printf("freed %s\n", Human(*freed).c_str());
    return 0;
  }
  if (*fsck) {
    BlobStore store(env, dir);
    auto bad = store.Verify(repair);
    if (!bad) return Fail(bad.error());
    for (auto& d : *bad) std::printf("corrupt: %s%s\n", d.c_str(), repair ? " (removed)" : "");
    return bad->empty() ? 0 : 1;
  }
  return 2;
}

}  // namespace tug::agent
