#include "gateway/haproxy.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "core/env.hpp"
#include "src/cli.hpp"
#include "src/model.hpp"

namespace tug::cluster::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kPoll = 25ms;

std::string FindHaproxy(const std::string& name) {
  std::string found = core::FindInPath(name);
  if (!found.empty()) return found;
  // Debian installs it in /usr/sbin, which is not in every PATH.
  if (name.find('/') == std::string::npos && ::access(("/usr/sbin/" + name).c_str(), X_OK) == 0)
    return "/usr/sbin/" + name;
  return "";
}

std::string ReadSmallFile(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[8192];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

// True while `pid` exists and is not a zombie (workers are the master's children, not ours: once the master is gone
// whoever reaps them may be slow, and a zombie holds no socket).
bool Alive(pid_t pid) {
  std::string stat = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] != 'Z';
}

// Guards the SIGKILL of a worker pid against the pid having been reused by something else.
bool IsHaproxy(pid_t pid) {
  std::string comm = ReadSmallFile("/proc/" + std::to_string(pid) + "/comm");
  return comm.rfind("haproxy", 0) == 0;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  size_t start = s.find_first_not_of("\n \r");
  return start == std::string::npos ? "" : s.substr(start);
}

off_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// HAProxy's own explanation of a failure: the [ALERT] lines it logged since `offset` (e.g. "Binding ... for
// frontend fe_api: cannot bind socket (Address already in use) for [127.0.0.1:8081]"), else the last lines.
std::string AlertsSince(const std::string& log_path, off_t offset) {
  std::string text;
  int fd = ::open(log_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[8192];
    for (ssize_t n; (n = ::pread(fd, buf, sizeof buf, offset + static_cast<off_t>(text.size()))) > 0;)
      text.append(buf, static_cast<size_t>(n));
    ::close(fd);
  }
  std::string alerts;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.compare(start, 7, "[ALERT]") == 0) alerts += text.substr(start, end - start + 1);
    start = end + 1;
  }
  if (alerts.empty()) alerts = text.size() > 2000 ? "..." + text.substr(text.size() - 2000) : text;
  return Trim(alerts);
}

std::string Named(const std::string& service, const Backend& b) { return service + "/" + b.ToString(); }

// HAProxy's check_status without the "* " it prefixes while a check is running.
std::string_view CheckResult(std::string_view check) {
  return check.rfind("* ", 0) == 0 ? check.substr(2) : check;
}
// A check has run and passed: L4OK (tcp connect), L6OK (ssl), L7OK, L7OKC (http).
bool CheckPassed(std::string_view check) {
  check = CheckResult(check);
  return check == "L4OK" || check == "L6OK" || check == "L7OK" || check == "L7OKC";
}
bool CheckRan(std::string_view check) {
  check = CheckResult(check);
  return !check.empty() && check != "INI";
}

}  // namespace

HaproxyGateway::HaproxyGateway(std::string work_dir, HaproxyOptions opts)
    : work_dir_(std::move(work_dir)),
      opts_(std::move(opts)),
      config_path_(core::JoinPath(work_dir_, "haproxy.cfg")),
      admin_socket_(core::JoinPath(work_dir_, "admin.sock")),
      master_socket_(core::JoinPath(work_dir_, "master.sock")),
      log_path_(core::JoinPath(work_dir_, "haproxy.log")) {}

HaproxyGateway::~HaproxyGateway() { Stop(); }

Result<std::unique_ptr<HaproxyGateway>> HaproxyGateway::Start(const std::string& work_dir,
                                                              const HaproxyOptions& opts,
                                                              const GatewayConfig& initial) {
  TUG_TRY(Validate(initial));
  std::string binary = FindHaproxy(opts.haproxy_binary);
  if (binary.empty())
    return MakeError(Errc::kNotFound, "haproxy is not installed: \"" + opts.haproxy_binary +
                                          "\" is not an executable in PATH or /usr/sbin (apt-get install haproxy)");
  if (work_dir.empty()) return MakeError(Errc::kInvalidArgument, "work_dir: empty");
  std::unique_ptr<HaproxyGateway> g(new HaproxyGateway(work_dir, opts));
  g->binary_ = binary;
  if (g->master_socket_.size() >= sizeof(sockaddr_un::sun_path))
    return MakeError(Errc::kInvalidArgument, "work_dir: \"" + work_dir + "\" is too long for the unix socket " +
                                                 g->master_socket_ + " (max " +
                                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
  auto& env = *core::DefaultEnv();
  if (auto st = env.CreateDirs(work_dir); !st) return tl::unexpected(Wrap(st.error(), "creating work_dir"));
  if (env.Exists(g->master_socket_)) {
    if (detail::CliCommand(g->master_socket_, "show proc", 1s))
      return MakeError(Errc::kAlreadyExists, "a haproxy already serves " + work_dir + " (its master answers on " +
                                                 g->master_socket_ + ")");
    // Left by a haproxy that died without cleaning up: binding would fail on it.
    ::unlink(g->master_socket_.c_str());
    ::unlink(g->admin_socket_.c_str());
  }

  auto state = std::make_unique<detail::GatewayState>();
  state->bind_host = initial.bind_host;
  for (const auto& s : initial.services) state->services.emplace(s.name, detail::NewPool(s, opts.min_slots));
  TUG_TRY(g->WriteConfig(*state, g->config_path_));
  TUG_TRY(g->CheckConfig(g->config_path_));
  g->state_ = std::move(state);
  TUG_TRY(g->Launch());
  std::vector<std::string> services;
  for (const auto& s : initial.services) services.push_back(s.name);
  (void)g->AwaitFirstChecksLocked(services);  // Start reports through Slots(): a failing instance reads "DOWN"
  return g;
}

Status HaproxyGateway::WriteConfig(const detail::GatewayState& s, const std::string& path) {
  auto st = core::WriteFileDurable(*core::DefaultEnv(), path, detail::RenderConfig(s, admin_socket_, opts_));
  if (!st) return tl::unexpected(Wrap(st.error(), "writing haproxy config"));
  return {};
}

Status HaproxyGateway::CheckConfig(const std::string& path) {
  core::RunOptions ro;
  ro.timeout = 30s;
  TUG_ASSIGN_OR_RETURN(auto res, core::Run({binary_, "-c", "-f", path}, ro));
  if (res.ok()) return {};
  std::string msg = Trim(res.err.empty() ? res.out : res.err + res.out);
  if (msg.size() > 2000) msg = "..." + msg.substr(msg.size() - 2000);
  return MakeError(Errc::kInvalidArgument, "haproxy -c rejected the generated config " + path + ": " + msg);
}

Status HaproxyGateway::Launch() {
  // -W: master-worker (the master re-executes itself on `reload` and hands the listeners to the new worker);
  // -S: the master CLI. The master stays in the foreground, so the pid we hold is the master's.
  const off_t log_start = FileSize(log_path_);
  TUG_ASSIGN_OR_RETURN(master_, core::Spawn({binary_, "-W", "-S", master_socket_ + ",mode,600", "-f", config_path_},
                                            log_path_));
  master_pid_ = master_.pid();
  bool exited = false;
  pid_t worker = -1;
  const auto deadline = Clock::now() + opts_.start_timeout;
  while (Clock::now() < deadline) {
    if (!master_.Running()) {
      exited = true;
      break;
    }
    auto proc = ProcessesLocked(500ms);
    if (proc && !proc->workers.empty()) {
      // The worker is listed as soon as it is forked; it serves once it answers on the admin socket.
      auto info = RuntimeLocked("show info", 500ms);
      auto pid = info ? detail::ParseInfoPid(*info) : Result<pid_t>(tl::unexpected(info.error()));
      if (pid && std::find(proc->workers.begin(), proc->workers.end(), *pid) != proc->workers.end()) {
        worker = *pid;
        break;
      }
    }
    std::this_thread::sleep_for(kPoll);
  }
  if (worker > 0) {
    known_workers_ = {worker};
    return {};
  }
  master_.Stop(2s);
  master_pid_ = -1;
  return MakeError(Errc::kUnavailable,
                   std::string(exited ? "haproxy exited during start" : "haproxy did not come up within " +
                                                                          std::to_string(opts_.start_timeout.count()) +
                                                                          " ms") +
                       ": " + AlertsSince(log_path_, log_start));
}

Result<std::string> HaproxyGateway::RuntimeLocked(const std::string& command, std::chrono::milliseconds timeout) {
  return detail::CliCommand(admin_socket_, command, timeout);
}

Result<std::string> HaproxyGateway::MasterLocked(const std::string& command, std::chrono::milliseconds timeout) {
  return detail::CliCommand(master_socket_, command, timeout);
}

Result<ProcInfo> HaproxyGateway::ProcessesLocked(std::chrono::milliseconds timeout) {
  TUG_ASSIGN_OR_RETURN(auto text, MasterLocked("show proc", timeout));
  return detail::ParseShowProc(text);
}

// Runs a runtime API command whose success is silence (`set server ... state/health/weight`) or, for `addr`, the
// "changed"/"no need to change" notice; anything else is HAProxy refusing it.
Status HaproxyGateway::Command(const std::string& command) {
  TUG_ASSIGN_OR_RETURN(auto out, RuntimeLocked(command, opts_.command_timeout));
  out = Trim(out);
  bool ok = out.empty() || (command.find(" addr ") != std::string::npos &&
                            (out.find("changed") != std::string::npos || out.find("no need to change") != std::string::npos));
  if (!ok) return MakeError(Errc::kInternal, "haproxy runtime API refused \"" + command + "\": " + out);
  return {};
}

Result<HaproxyGateway::Changes> HaproxyGateway::AddToSlots(const Changes& adds, ApplyResult& out) {
  struct Placed {
    std::string service;
    size_t slot;
    Backend backend;
  };
  Changes leftover;
  std::vector<Placed> placed;
  for (const auto& [name, backends] : adds) {
    auto& pool = state_->services.at(name);
    for (const Backend& b : backends) {
      auto free = std::find(pool.slots.begin(), pool.slots.end(), std::nullopt);
      if (free == pool.slots.end()) {
        leftover[name].push_back(b);
        continue;
      }
      const size_t i = static_cast<size_t>(free - pool.slots.begin());
      const std::string server = detail::BackendName(name) + "/" + detail::SlotName(i);
      // The slot is in maintenance: point it at the instance, then enable it with weight 0 and its health forced
      // down, so it gets no request until HAProxy's own checks (rise successes) bring it up. Leaving maintenance
      // alone would mark it up before the first check.
      Status st = Command("set server " + server + " addr " + b.host + " port " + std::to_string(b.port));
      if (st) st = Command("set server " + server + " weight 0");
      if (st) st = Command("set server " + server + " state ready");
      if (st) st = Command("set server " + server + " health down");
      if (!st) {
        // Back to a free slot (best effort), so that the next Apply adds the instance again instead of taking a
        // half-configured slot for done.
        (void)Command("set server " + server + " state maint");
        return tl::unexpected(Wrap(st.error(), "adding " + Named(name, b)));
      }
      pool.slots[i] = b;
      placed.push_back({name, i, b});
    }
  }
  if (placed.empty()) return leftover;

  // Wait for the checks. Errors reading the stats only shorten the wait: every placed slot must end with weight 1,
  // or it would sit in the model as present while never receiving traffic.
  std::vector<bool> up(placed.size(), false);
  size_t left = placed.size();
  const auto deadline = Clock::now() + opts_.ready_timeout;
  for (;;) {
    auto text = RuntimeLocked("show stat", opts_.command_timeout);
    auto rows = text ? detail::ParseShowStat(*text) : Result<std::vector<detail::StatRow>>(tl::unexpected(text.error()));
    for (size_t k = 0; rows && k < placed.size(); ++k) {
      if (up[k]) continue;
      const std::string be = detail::BackendName(placed[k].service), sv = detail::SlotName(placed[k].slot);
      auto row = std::find_if(rows->begin(), rows->end(), [&](const auto& r) { return r.proxy == be && r.server == sv; });
      if (row == rows->end() || row->status != "UP") continue;
      up[k] = true;
      --left;
    }
    if (left == 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPoll);
  }
  Status failed;
  for (size_t k = 0; k < placed.size(); ++k) {
    const std::string server = detail::BackendName(placed[k].service) + "/" + detail::SlotName(placed[k].slot);
    // Instances still failing their checks are desired all the same: they take traffic once the checks pass.
    if (auto st = Command("set server " + server + " weight 1"); !st && failed) failed = st;
    out.added.push_back(Named(placed[k].service, placed[k].backend));
    if (!up[k]) out.not_ready.push_back(Named(placed[k].service, placed[k].backend));
  }
  if (!failed) return tl::unexpected(failed.error());
  return leftover;
}

std::vector<std::string> HaproxyGateway::AwaitFirstChecksLocked(const std::vector<std::string>& services) {
  // HAProxy starts a configured server at the lowest "up" health ("UP 1/2", check_status INI) and schedules its
  // first check somewhere within `inter`: until that check has run, "UP" only means "not checked yet".
  struct Pending {
    std::string service;
    size_t slot;
    bool ran = false, passed = false;
  };
  std::vector<Pending> pending;
  for (const std::string& name : services) {
    auto it = state_->services.find(name);
    if (it == state_->services.end()) continue;
    for (size_t i = 0; i < it->second.slots.size(); ++i)
      if (it->second.slots[i]) pending.push_back({name, i});
  }
  size_t left = pending.size();
  const auto deadline = Clock::now() + opts_.ready_timeout;
  while (left > 0) {
    auto text = RuntimeLocked("show stat", opts_.command_timeout);
    auto rows = text ? detail::ParseShowStat(*text) : Result<std::vector<detail::StatRow>>(tl::unexpected(text.error()));
    for (auto& p : pending) {
      if (!rows || p.ran) continue;
      const std::string be = detail::BackendName(p.service), sv = detail::SlotName(p.slot);
      auto row = std::find_if(rows->begin(), rows->end(), [&](const auto& r) { return r.proxy == be && r.server == sv; });
      if (row == rows->end() || !CheckRan(row->check)) continue;
      p.ran = true;
      p.passed = CheckPassed(row->check);
      --left;
    }
    if (left == 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPoll);
  }
  std::vector<std::string> failed;
  for (const auto& p : pending)
    if (!p.passed) failed.push_back(Named(p.service, *state_->services.at(p.service).slots[p.slot]));
  return failed;
}

Status HaproxyGateway::RemoveFromSlots(const Changes& removes, ApplyResult& out) {
  struct Draining {
    std::string service;
    size_t slot;
  };
  std::vector<Draining> draining;
  for (const auto& [name, backends] : removes) {
    auto& pool = state_->services.at(name);
    for (const Backend& b : backends) {
      auto it = std::find(pool.slots.begin(), pool.slots.end(), std::optional<Backend>(b));
      if (it == pool.slots.end()) continue;
      const size_t i = static_cast<size_t>(it - pool.slots.begin());
      // Drain: out of load balancing at once, while requests already sent to it finish.
      TUG_TRY(Command("set server " + detail::BackendName(name) + "/" + detail::SlotName(i) + " state drain"));
      draining.push_back({name, i});
    }
  }
  if (draining.empty()) return {};

  std::vector<bool> idle(draining.size(), false);
  const auto deadline = Clock::now() + opts_.drain_timeout;
  for (;;) {
    TUG_ASSIGN_OR_RETURN(auto text, RuntimeLocked("show stat", opts_.command_timeout));
    TUG_ASSIGN_OR_RETURN(auto rows, detail::ParseShowStat(text));
    size_t busy = 0;
    for (size_t k = 0; k < draining.size(); ++k) {
      const std::string be = detail::BackendName(draining[k].service), sv = detail::SlotName(draining[k].slot);
      auto row = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.proxy == be && r.server == sv; });
      idle[k] = row == rows.end() || (row->scur == 0 && row->qcur == 0);
      if (!idle[k]) ++busy;
    }
    if (busy == 0 || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPoll);
  }
  for (size_t k = 0; k < draining.size(); ++k) {
    auto& pool = state_->services.at(draining[k].service);
    const std::string server = detail::BackendName(draining[k].service) + "/" + detail::SlotName(draining[k].slot);
    const Backend b = *pool.slots[draining[k].slot];
    // Maintenance stops checks and keeps the slot out of everything; the address goes back to the free-slot
    // placeholder so `show servers state` shows which slots are free.
    TUG_TRY(Command("set server " + server + " state maint"));
    TUG_TRY(Command("set server " + server + " addr 0.0.0.0 port 0"));
    pool.slots[draining[k].slot].reset();
    out.removed.push_back(Named(draining[k].service, b));
    if (!idle[k]) out.drain_timed_out.push_back(Named(draining[k].service, b));
  }
  return {};
}

Status HaproxyGateway::Reload(const detail::GatewayState& next) {
  auto& env = *core::DefaultEnv();
  const std::string candidate = config_path_ + ".new";
  TUG_TRY(WriteConfig(next, candidate));
  if (auto st = CheckConfig(candidate); !st) {
    env.RemoveFile(candidate);
    return st;
  }
  TUG_ASSIGN_OR_RETURN(auto before, ProcessesLocked(opts_.command_timeout));
  TUG_ASSIGN_OR_RETURN(auto previous, env.ReadFile(config_path_));
  const off_t log_start = FileSize(log_path_);
  TUG_TRY(env.Rename(candidate, config_path_));
  TUG_TRY(env.SyncDir(work_dir_));
  // On failure the master keeps the old worker serving the old config: put that config back on disk, so the next
  // reload starts from what actually runs.
  auto restore = [&] { core::WriteFileDurable(env, config_path_, previous); };

  // The master answers `reload` by re-executing itself, which closes this connection without a reply (2.6).
  if (auto sent = MasterLocked("reload", opts_.command_timeout); !sent) {
    restore();
    return tl::unexpected(Wrap(sent.error(), "asking the haproxy master to reload"));
  }
  const auto deadline = Clock::now() + opts_.reload_timeout;
  while (Clock::now() < deadline) {
    if (!master_.Running()) {
      restore();
      return MakeError(Errc::kUnavailable, "haproxy master exited during a reload: " + AlertsSince(log_path_, log_start));
    }
    // The master CLI is unavailable for a moment while the master re-executes.
    auto proc = ProcessesLocked(1s);
    if (proc && proc->failed_reloads > before.failed_reloads) {
      restore();
      return MakeError(Errc::kUnavailable,
                       "haproxy could not load the new config (the previous one keeps serving): " +
                           AlertsSince(log_path_, log_start));
    }
    if (proc && proc->reloads > before.reloads) {
      for (pid_t w : proc->workers) {
        if (std::find(before.workers.begin(), before.workers.end(), w) != before.workers.end()) continue;
        // New worker forked; done once it is the one answering on the admin socket (listeners taken over).
        auto info = RuntimeLocked("show info", 500ms);
        auto pid = info ? detail::ParseInfoPid(*info) : Result<pid_t>(tl::unexpected(info.error()));
        if (pid && *pid == w) {
          known_workers_.push_back(w);
          known_workers_.erase(std::remove_if(known_workers_.begin(), known_workers_.end(),
                                              [](pid_t p) { return !Alive(p); }),
                               known_workers_.end());
          ++reloads_;
          return {};
        }
      }
    }
    std::this_thread::sleep_for(kPoll);
  }
  return MakeError(Errc::kTimeout, "haproxy reload did not complete within " +
                                       std::to_string(opts_.reload_timeout.count()) +
                                       " ms: " + AlertsSince(log_path_, log_start));
}

Result<ApplyResult> HaproxyGateway::Apply(const GatewayConfig& desired) {
  TUG_TRY(Validate(desired));
  std::lock_guard<std::mutex> lock(mu_);
  if (master_pid_ <= 0 || !master_.Running())
    return MakeError(Errc::kUnavailable, "haproxy is not running; log tail:\n" + LogTail(2000));
  ApplyResult out;
  auto& cur = *state_;
  // Whatever happens below, the config on disk follows the runtime state, so that any later reload keeps it.
  struct Persist {
    HaproxyGateway* g;
    ~Persist() { g->WriteConfig(*g->state_, g->config_path_); }
  } persist{this};

  // 1. Instance changes to services that stay: runtime API only. Adds first (and wait for their checks), so
  //    capacity never dips during a rolling upgrade; then drains; then adds that only fit in freed slots.
  bool reload = desired.bind_host != cur.bind_host;
  Changes adds, removes;
  std::set<std::string> wanted;
  for (const Service& s : desired.services) {
    wanted.insert(s.name);
    auto it = cur.services.find(s.name);
    if (it == cur.services.end()) {
      reload = true;
      continue;
    }
    if (!detail::SameSettings(it->second.spec, s)) reload = true;
    auto have = detail::Instances(it->second);
    for (const Backend& b : s.backends)
      if (std::find(have.begin(), have.end(), b) == have.end()) adds[s.name].push_back(b);
    for (const Backend& b : have)
      if (std::find(s.backends.begin(), s.backends.end(), b) == s.backends.end()) removes[s.name].push_back(b);
  }
  for (const auto& [name, pool] : cur.services) {
    if (wanted.count(name)) continue;
    reload = true;
  }
  TUG_ASSIGN_OR_RETURN(Changes overflow, AddToSlots(adds, out));
  TUG_TRY(RemoveFromSlots(removes, out));
  TUG_ASSIGN_OR_RETURN(overflow, AddToSlots(overflow, out));
  if (!overflow.empty()) reload = true;
  if (!reload) return out;

  // 2. Structural changes: one seamless reload with the new sections and grown pools. Instances that needed a
  //    bigger pool join the new config as free slots and are added through the runtime API afterwards, with the
  //    same health gate as above. Instances of a new service are in its config directly: HAProxy starts them up.
  detail::GatewayState next;
  next.bind_host = desired.bind_host;
  for (const Service& s : desired.services) {
    auto it = cur.services.find(s.name);
    if (it == cur.services.end()) {
      next.services.emplace(s.name, detail::NewPool(s, opts_.min_slots));
      out.services_added.push_back(s.name);
      for (const Backend& b : s.backends) out.added.push_back(Named(s.name, b));
      continue;
    }
    detail::ServicePool pool = it->second;
    pool.spec = s;
    pool.spec.backends.clear();
    if (auto o = overflow.find(s.name); o != overflow.end()) {
      size_t used = detail::Instances(pool).size() + o->second.size();
      pool.slots.resize(std::max(pool.slots.size() * 2, detail::PoolSize(used, opts_.min_slots)));
    }
    next.services.emplace(s.name, std::move(pool));
  }
  std::vector<pid_t> old_workers = known_workers_;
  for (const auto& [name, pool] : cur.services) {
    if (wanted.count(name)) continue;
    out.services_removed.push_back(name);
    for (const Backend& b : detail::Instances(pool)) out.removed.push_back(Named(name, b));
  }
  TUG_TRY(Reload(next));
  cur = std::move(next);
  out.reloaded = true;
  for (std::string& failed : AwaitFirstChecksLocked(out.services_added)) out.not_ready.push_back(std::move(failed));
  TUG_ASSIGN_OR_RETURN(auto still_left, AddToSlots(overflow, out));
  if (!still_left.empty()) return MakeError(Errc::kInternal, "grown pools still too small after the reload");

  // 3. A removed service's instances may be killed once Apply returns: wait for the old worker, which may still be
  //    forwarding requests to them, to finish.
  if (!out.services_removed.empty()) {
    const auto deadline = Clock::now() + opts_.drain_timeout;
    while (std::any_of(old_workers.begin(), old_workers.end(), Alive) && Clock::now() < deadline)
      std::this_thread::sleep_for(kPoll);
    for (const std::string& name : out.services_removed)
      if (std::any_of(old_workers.begin(), old_workers.end(), Alive))
        out.drain_timed_out.push_back(name + "/*");
  }
  return out;
}

void HaproxyGateway::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  StopLocked();
}

void HaproxyGateway::StopLocked() {
  if (master_pid_ <= 0) return;
  std::vector<pid_t> workers = known_workers_;
  if (auto proc = ProcessesLocked(1s)) {
    workers.insert(workers.end(), proc->workers.begin(), proc->workers.end());
    workers.insert(workers.end(), proc->old_workers.begin(), proc->old_workers.end());
  }
  // SIGTERM to the master: it stops its workers (hard stop) and exits; SIGKILL after the grace period.
  master_.Stop(5s);
  master_pid_ = -1;
  // Workers also exit when their master dies; wait for that, then make sure.
  const auto deadline = Clock::now() + 5s;
  for (pid_t w : workers) {
    while (Alive(w) && Clock::now() < deadline) std::this_thread::sleep_for(kPoll);
    if (Alive(w) && IsHaproxy(w)) {
      ::kill(w, SIGKILL);
      for (int i = 0; i < 100 && Alive(w); ++i) std::this_thread::sleep_for(20ms);
    }
  }
  known_workers_.clear();
  ::unlink(master_socket_.c_str());
  ::unlink(admin_socket_.c_str());
}

GatewayConfig HaproxyGateway::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  GatewayConfig c;
  c.bind_host = state_->bind_host;
  for (const auto& [name, pool] : state_->services) {
    Service s = pool.spec;
    s.backends = detail::Instances(pool);
    c.services.push_back(std::move(s));
  }
  return c;
}

Result<ProcInfo> HaproxyGateway::Processes() {
  std::lock_guard<std::mutex> lock(mu_);
  return ProcessesLocked(opts_.command_timeout);
}

Result<pid_t> HaproxyGateway::WorkerPid() {
  std::lock_guard<std::mutex> lock(mu_);
  TUG_ASSIGN_OR_RETURN(auto info, RuntimeLocked("show info", opts_.command_timeout));
  return detail::ParseInfoPid(info);
}

Result<std::vector<SlotStatus>> HaproxyGateway::Slots(const std::string& service) {
  std::lock_guard<std::mutex> lock(mu_);
  return SlotsLocked(service);
}

Result<std::vector<SlotStatus>> HaproxyGateway::SlotsLocked(const std::string& service) {
  auto it = state_->services.find(service);
  if (it == state_->services.end()) return MakeError(Errc::kNotFound, "no service \"" + service + "\"");
  TUG_ASSIGN_OR_RETURN(auto text, RuntimeLocked("show stat", opts_.command_timeout));
  TUG_ASSIGN_OR_RETURN(auto rows, detail::ParseShowStat(text));
  const std::string be = detail::BackendName(service);
  std::vector<SlotStatus> out;
  for (size_t i = 0; i < it->second.slots.size(); ++i) {
    SlotStatus s;
    s.slot = detail::SlotName(i);
    s.backend = it->second.slots[i];
    auto row = std::find_if(rows.begin(), rows.end(), [&](const auto& r) { return r.proxy == be && r.server == s.slot; });
    if (row != rows.end()) {
      s.status = row->status;
      s.check = std::string(CheckResult(row->check));
      s.sessions = row->scur;
      s.weight = row->weight;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> HaproxyGateway::RuntimeCommand(const std::string& command) {
  std::lock_guard<std::mutex> lock(mu_);
  return RuntimeLocked(command, opts_.command_timeout);
}

Result<std::string> HaproxyGateway::MasterCommand(const std::string& command) {
  std::lock_guard<std::mutex> lock(mu_);
  return MasterLocked(command, opts_.command_timeout);
}

std::string HaproxyGateway::LogTail(size_t max_bytes) const {
  std::string out;
  int fd = ::open(log_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size > 0) {
    out.resize(std::min(static_cast<size_t>(size), max_bytes));
    ssize_t n = ::pread(fd, out.data(), out.size(), size - static_cast<off_t>(out.size()));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  return out;
}

}  // namespace tug::cluster::gateway
