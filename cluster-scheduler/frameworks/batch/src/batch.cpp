#include "batch/batch.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <deque>
#include <regex>

#include "core/env.hpp"
#include "http/client.hpp"

namespace tug::cluster::batch {

using json = nlohmann::json;

namespace {

tl::unexpected<Error> Bad(const std::string& field, const std::string& what) {
  return MakeError(Errc::kInvalidArgument, field + ": " + what);
}

Result<TaskSpec> TaskSpecFromJson(const json& j, const std::string& field, bool cmd_required) {
  if (!j.is_object()) return Bad(field, "must be an object");
  TaskSpec t;
  if (j.contains("cmd")) {
    if (!j["cmd"].is_string()) return Bad(field + ".cmd", "must be a string");
    t.cmd = j["cmd"];
  }
  if (cmd_required && t.cmd.empty()) return Bad(field + ".cmd", "missing");
  for (auto [key, dst, positive] : {std::tuple{"cpus", &t.cpus, true}, std::tuple{"mem", &t.mem, true},
                                    std::tuple{"disk", &t.disk, false}}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number() || !std::isfinite(j[key].get<double>()) || j[key].get<double>() < 0 ||
        (positive && j[key].get<double>() == 0))
      return Bad(field + "." + key, positive ? "must be a number > 0" : "must be a number >= 0");
    *dst = j[key];
  }
  if (j.contains("ports")) {
    if (!j["ports"].is_number_unsigned() || j["ports"].get<uint64_t>() > 16)
      return Bad(field + ".ports", "must be a count between 0 and 16");
    t.ports = j["ports"];
  }
  return t;
}

json TaskSpecJson(const TaskSpec& t) {
  return json{{"cmd", t.cmd}, {"cpus", t.cpus}, {"mem", t.mem}, {"disk", t.disk}, {"ports", t.ports}};
}

double Now() { return NowSeconds(); }

}  // namespace

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kRunning: return "RUNNING";
    case JobState::kFinished: return "FINISHED";
    case JobState::kFailed: return "FAILED";
    case JobState::kKilled: return "KILLED";
  }
  return "UNKNOWN";
}

Result<JobSpec> JobSpecFromJson(const json& j) {
  if (!j.is_object()) return Bad("job", "must be a JSON object");
  JobSpec s;
  if (!j.contains("id") || !j["id"].is_string()) return Bad("id", "missing");
  s.id = j["id"];
  static const std::regex kId("[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?");
  if (!std::regex_match(s.id, kId)) return Bad("id", "must be lowercase letters, digits and '-' (max 64)");
  const bool has_driver = j.contains("driver"), has_tasks = j.contains("tasks");
  if (has_driver == has_tasks) return Bad("driver", "give either driver (+ executors) or tasks");
  if (has_driver) {
    auto d = TaskSpecFromJson(j["driver"], "driver", true);
    if (!d) return tl::unexpected(d.error());
    if (d->ports == 0) d->ports = 1;  // executors reach the driver on PORT0
    s.driver = *d;
    if (j.contains("executors")) {
      const json& e = j["executors"];
      auto ex = TaskSpecFromJson(e, "executors", true);
      if (!ex) return tl::unexpected(ex.error());
      s.executor = *ex;
      if (!e.contains("instances") || !e["instances"].is_number_unsigned() || e["instances"].get<uint64_t>() < 1 ||
          e["instances"].get<uint64_t>() > 10000)
        return Bad("executors.instances", "must be between 1 and 10000");
      s.executor_instances = e["instances"];
    }
  } else {
    if (!j["tasks"].is_array() || j["tasks"].empty() || j["tasks"].size() > 10000)
      return Bad("tasks", "must be a list of 1 to 10000 tasks");
    for (size_t i = 0; i < j["tasks"].size(); ++i) {
      auto t = TaskSpecFromJson(j["tasks"][i], "tasks[" + std::to_string(i) + "]", true);
      if (!t) return tl::unexpected(t.error());
      s.tasks.push_back(*t);
    }
  }
  if (j.contains("env")) {
    if (!j["env"].is_object()) return Bad("env", "must be an object of strings");
    for (const auto& [k, v] : j["env"].items()) {
      if (!v.is_string()) return Bad("env." + k, "must be a string");
      s.env[k] = v;
    }
  }
  if (j.contains("maxRetries")) {
    if (!j["maxRetries"].is_number_unsigned() || j["maxRetries"].get<uint64_t>() > 100)
      return Bad("maxRetries", "must be between 0 and 100");
    s.max_retries = j["maxRetries"];
  }
  if (j.contains("container")) {
    const json& c = j["container"];
    if (!c.is_object() || !c.contains("image") || !c["image"].is_string() || c["image"].get<std::string>().empty())
      return Bad("container.image", "missing");
    s.image = c["image"];
  }
  return s;
}

json ToJson(const JobSpec& s) {
  json j{{"id", s.id}, {"env", s.env}, {"maxRetries", s.max_retries}};
  if (s.driver) {
    j["driver"] = TaskSpecJson(*s.driver);
    if (s.executor_instances) {
      j["executors"] = TaskSpecJson(s.executor);
      j["executors"]["instances"] = s.executor_instances;
    }
  } else {
    j["tasks"] = json::array();
    for (const auto& t : s.tasks) j["tasks"].push_back(TaskSpecJson(t));
  }
  if (!s.image.empty()) j["container"] = {{"image", s.image}};
  return j;
}

// ---- scheduler ----

struct Run {
  std::string name;  // "driver", "executor-3", "task-0"
  TaskSpec spec;
  bool is_executor = false;
  std::string task_id;  // current attempt ("" = not launched)
  std::string agent_id, hostname;
  std::vector<uint32_t> ports;
  TaskState state = TaskState::kStaging;
  bool launched = false;
  bool done = false;          // finished for good (success or given up)
  bool killed_by_us = false;  // job ended: its terminal update is expected
  uint32_t attempts = 0;
  std::string message;
};

Run MakeRun(std::string name, const TaskSpec& spec, bool executor) {
  Run r;
  r.name = std::move(name);
  r.spec = spec;
  r.is_executor = executor;
  return r;
}

struct Job {
  JobSpec spec;
  JobState state = JobState::kQueued;
  std::vector<Run> runs;
  double submitted = 0, started = 0, finished = 0;
  std::string message;
};

struct BatchScheduler::Impl {
  Impl(boost::asio::io_context& io, MasterCalls& m, std::string dir) : io(io), master(m), state_dir(std::move(dir)) {}

  boost::asio::io_context& io;
  MasterCalls& master;
  std::string state_dir;
  std::string framework_id;
  std::deque<std::string> order;  // job ids, submission order (FIFO among jobs)
  std::map<std::string, Job> jobs;
  std::map<std::string, std::pair<std::string, size_t>> by_task;  // task id -> (job, run index)
  std::function<std::string(const std::string&)> endpoint_lookup;
  bool suppressed = false;

  // ---- persistence: jobs (spec + state, not live task ids) and the framework id ----
  Status Save() {
    if (state_dir.empty()) return {};
    json j{{"framework_id", framework_id}, {"jobs", json::array()}};
    for (const auto& id : order) {
      const Job& job = jobs.at(id);
      json runs = json::array();
      for (const auto& r : job.runs)
        runs.push_back({{"name", r.name}, {"task_id", r.task_id}, {"agent_id", r.agent_id}, {"hostname", r.hostname},
                        {"ports", r.ports}, {"state", TaskStateName(r.state)}, {"launched", r.launched},
                        {"done", r.done}, {"attempts", r.attempts}, {"message", r.message},
                        {"killed_by_us", r.killed_by_us}});
      j["jobs"].push_back({{"spec", ToJson(job.spec)}, {"state", JobStateName(job.state)}, {"runs", runs},
                           {"submitted", job.submitted}, {"started", job.started}, {"finished", job.finished},
                           {"message", job.message}});
    }
    auto st = core::WriteFileDurable(*core::DefaultEnv(), state_dir + "/batch-state.json", j.dump());
    if (!st) spdlog::error("batch: saving state: {}", st.error().Message());
    return st;
  }

  Status Load() {
    if (state_dir.empty()) return {};
    auto text = core::DefaultEnv()->ReadFile(state_dir + "/batch-state.json");
    if (!text) return {};  // first start
    auto j = json::parse(*text, nullptr, false);
    if (!j.is_object()) return MakeError(Errc::kProtocol, state_dir + "/batch-state.json is not JSON");
    framework_id = j.value("framework_id", "");
    for (const auto& jj : j.value("jobs", json::array())) {
      auto spec = JobSpecFromJson(jj.value("spec", json()));
      if (!spec) continue;
      Job job = NewJob(*spec);
      const std::string st = jj.value("state", "QUEUED");
      for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kFinished, JobState::kFailed, JobState::kKilled})
        if (st == JobStateName(s)) job.state = s;
      job.submitted = jj.value("submitted", 0.0);
      job.started = jj.value("started", 0.0);
      job.finished = jj.value("finished", 0.0);
      job.message = jj.value("message", "");
      const json runs = jj.value("runs", json::array());
      for (size_t i = 0; i < runs.size() && i < job.runs.size(); ++i) {
        Run& r = job.runs[i];
        r.task_id = runs[i].value("task_id", "");
        r.agent_id = runs[i].value("agent_id", "");
        r.hostname = runs[i].value("hostname", "");
        r.ports = runs[i].value("ports", std::vector<uint32_t>{});
        r.state = ParseTaskState(runs[i].value("state", "TASK_STAGING")).value_or(TaskState::kStaging);
        r.launched = runs[i].value("launched", false);
        r.done = runs[i].value("done", false);
        r.attempts = runs[i].value("attempts", 0u);
        r.message = runs[i].value("message", "");
        r.killed_by_us = runs[i].value("killed_by_us", false);
        if (!r.task_id.empty()) by_task[r.task_id] = {spec->id, i};
      }
      order.push_back(spec->id);
      jobs[spec->id] = std::move(job);
    }
    return {};
  }

  Job NewJob(const JobSpec& spec) {
    Job job;
    job.spec = spec;
    job.submitted = Now();
    if (spec.driver) {
      job.runs.push_back(MakeRun("driver", *spec.driver, false));
      for (uint32_t i = 0; i < spec.executor_instances; ++i)
        job.runs.push_back(MakeRun("executor-" + std::to_string(i), spec.executor, true));
    } else {
      for (size_t i = 0; i < spec.tasks.size(); ++i) job.runs.push_back(MakeRun("task-" + std::to_string(i), spec.tasks[i], false));
    }
    return job;
  }

  const Run* Driver(const Job& job) const {
    return job.spec.driver ? &job.runs[0] : nullptr;
  }

  bool Pending(const Job& job, const Run& r) const {
    if (job.state != JobState::kQueued && job.state != JobState::kRunning) return false;
    if (r.done || r.launched) return false;
    if (r.is_executor) {
      const Run* d = Driver(job);
      return d && d->launched && d->state == TaskState::kRunning;
    }
    return true;
  }

  bool AnythingPending() const {
    for (const auto& [id, job] : jobs)
      for (const auto& r : job.runs)
        if (Pending(job, r)) return true;
    return false;
  }

  void WantOffers() {
    // The flag only changes when the master took the call; a failed call (disconnected) is settled by the next
    // subscription, which starts unsuppressed, and OnSubscribed calls this again.
    if (AnythingPending()) {
      if (suppressed) {
        if (auto st = master.Revive(); !st) spdlog::warn("batch: revive: {}", st.error().Message());
        else suppressed = false;
      }
    } else if (!suppressed) {
      if (auto st = master.Suppress(); !st) spdlog::warn("batch: suppress: {}", st.error().Message());
      else suppressed = true;
    }
  }

  TaskInfo MakeTask(const Job& job, Run& r, const Offer& offer, Resources& left) {
    TaskInfo t;
    t.task_id = job.spec.id + "." + r.name + "." + std::to_string(r.attempts);
    t.name = job.spec.id + "/" + r.name;
    t.agent_id = offer.agent_id;
    t.resources = Resources::Make(r.spec.cpus, r.spec.mem, r.spec.disk);
    if (r.spec.ports) t.resources += Resources::Ports(left.FirstPorts(r.spec.ports));
    t.command.value = r.spec.cmd;
    t.command.environment = job.spec.env;
    t.command.environment["JOB_ID"] = job.spec.id;
    t.command.environment["JOB_TASK"] = r.name;
    if (r.is_executor) {
      const Run* d = Driver(job);
      t.command.environment["DRIVER_HOST"] = d->hostname;
      t.command.environment["DRIVER_PORT"] = d->ports.empty() ? "" : std::to_string(d->ports[0]);
      t.command.environment["EXECUTOR_ID"] = r.name.substr(r.name.find('-') + 1);
    }
    t.container.image = job.spec.image;
    t.labels = {{"job", job.spec.id}, {"task", r.name}};
    return t;
  }

  bool Fits(const Run& r, const Resources& left) const {
    return left.Contains(Resources::Make(r.spec.cpus, r.spec.mem, r.spec.disk)) && left.port_count() >= r.spec.ports;
  }

  void OnOffers(const std::vector<Offer>& offers) {
    for (const auto& offer : offers) {
      Resources left = offer.resources;
      std::vector<TaskInfo> launch;
      for (const auto& id : order) {
        Job& job = jobs.at(id);
        for (size_t i = 0; i < job.runs.size(); ++i) {
          Run& r = job.runs[i];
          if (!Pending(job, r) || !Fits(r, left)) continue;
          TaskInfo t = MakeTask(job, r, offer, left);
          left -= t.resources;
          r.task_id = t.task_id;
          r.agent_id = offer.agent_id;
          r.hostname = offer.hostname;
          r.ports = t.Ports();
          r.launched = true;
          r.state = TaskState::kStaging;
          r.attempts++;
          by_task[t.task_id] = {id, i};
          if (job.state == JobState::kQueued) {
            job.state = JobState::kRunning;
            job.started = Now();
          }
          launch.push_back(std::move(t));
        }
      }
      Status st = launch.empty() ? master.Decline({offer.id}, AnythingPending() ? 1 : 30)
                                 : master.Accept({offer.id}, launch, 1);
      if (!st) {
        spdlog::warn("batch: answering offer {}: {}", offer.id, st.error().Message());
        for (const auto& t : launch) Requeue(t.task_id, "launch call failed: " + st.error().Message());
      } else if (!launch.empty()) {
        spdlog::info("batch: launched {} task(s) on {}", launch.size(), offer.hostname);
      }
    }
    Save();
    WantOffers();
  }

  void Requeue(const std::string& task_id, const std::string& why) {
    auto it = by_task.find(task_id);
    if (it == by_task.end()) return;
    Run& r = jobs.at(it->second.first).runs[it->second.second];
    r.launched = false;
    r.message = why;
  }

  void KillRest(Job& job) {
    for (auto& r : job.runs) {
      if (r.launched && !r.done && !IsTerminal(r.state)) {
        r.killed_by_us = true;
        if (auto st = master.Kill(r.task_id, r.agent_id); !st) spdlog::warn("batch: kill {}: {}", r.task_id, st.error().Message());
      }
      r.done = true;
    }
  }

  void EndJob(Job& job, JobState state, const std::string& message) {
    job.state = state;
    job.finished = Now();
    job.message = message;
    spdlog::info("batch: job {} {}{}", job.spec.id, JobStateName(state), message.empty() ? "" : ": " + message);
    KillRest(job);
  }

  void OnUpdate(const TaskStatus& s) {
    auto ack = [&] {
      if (auto st = master.Acknowledge(s); !st) spdlog::warn("batch: ack {}: {}", s.task_id, st.error().Message());
    };
    auto it = by_task.find(s.task_id);
    if (it == by_task.end()) {
      if (!IsTerminal(s.state) && s.reason == "REASON_RECONCILIATION") (void)master.Kill(s.task_id, s.agent_id);
      ack();
      return;
    }
    Job& job = jobs.at(it->second.first);
    Run& r = job.runs[it->second.second];
    if (r.task_id != s.task_id) {  // an older attempt
      ack();
      return;
    }
    r.state = s.state;
    if (!s.message.empty()) r.message = s.message;
    if (s.state == TaskState::kRunning && r.name == "driver") spdlog::info("batch: job {} driver running on {}", job.spec.id, r.hostname);
    if (IsTerminal(s.state) && !r.done) {
      if (s.state == TaskState::kFinished) {
        r.done = true;
        if (r.name == "driver") {
          EndJob(job, JobState::kFinished, "");
        } else if (!job.spec.driver) {
          bool all = true;
          for (const auto& x : job.runs) all = all && x.done && x.state == TaskState::kFinished;
          if (all) EndJob(job, JobState::kFinished, "");
        }
      } else if (!r.killed_by_us && job.state == JobState::kRunning) {
        if (r.attempts <= job.spec.max_retries) {
          spdlog::info("batch: job {} task {} {} ({}); retrying", job.spec.id, r.name, TaskStateName(s.state), s.message);
          r.launched = false;
        } else {
          r.done = true;
          EndJob(job, JobState::kFailed, r.name + " " + TaskStateName(s.state) + " after " +
                                             std::to_string(r.attempts) + " attempts: " + s.message);
        }
      }
    }
    Save();
    ack();
    WantOffers();
  }

  json RunJson(const Run& r) const {
    return json{{"name", r.name}, {"task_id", r.task_id}, {"state", r.launched || r.done ? TaskStateName(r.state) : "PENDING"},
                {"host", r.hostname}, {"agent_id", r.agent_id}, {"ports", r.ports}, {"attempts", r.attempts},
                {"message", r.message}};
  }

  json JobJsonOf(const Job& job) const {
    json runs = json::array();
    for (const auto& r : job.runs) runs.push_back(RunJson(r));
    json j{{"id", job.spec.id}, {"state", JobStateName(job.state)}, {"spec", ToJson(job.spec)}, {"tasks", runs},
           {"submitted", job.submitted}, {"started", job.started}, {"finished", job.finished},
           {"message", job.message}};
    if (job.finished > 0 && job.started > 0) j["duration_seconds"] = job.finished - job.started;
    return j;
  }

  http::Response Reply(int status, const json& j) {
    http::Response r;
    r.status = status;
    r.body = j.dump();
    return r;
  }

  http::Response Handle(const http::Request& req) {
    const std::string path = req.Path();
    if (path == "/healthz") {
      http::Response r;
      r.content_type = "text/plain";
      r.body = "ok\n";
      return r;
    }
    if (path == "/v1/jobs") {
      if (req.method == "GET") {
        json list = json::array();
        for (const auto& id : order) list.push_back(JobJsonOf(jobs.at(id)));
        return Reply(200, json{{"jobs", list}});
      }
      if (req.method != "POST") return http::JsonError(405, "use GET or POST");
      auto j = json::parse(req.body, nullptr, false);
      if (j.is_discarded()) return http::JsonError(400, "body is not JSON", "body");
      auto spec = JobSpecFromJson(j);
      if (!spec) {
        const std::string msg = spec.error().context;
        return http::JsonError(400, msg, msg.substr(0, msg.find(':')));
      }
      if (jobs.count(spec->id)) return http::JsonError(409, "job " + spec->id + " exists", "id");
      jobs[spec->id] = NewJob(*spec);
      order.push_back(spec->id);
      spdlog::info("batch: job {} submitted ({} tasks)", spec->id, jobs[spec->id].runs.size());
      Save();
      WantOffers();
      return Reply(201, JobJsonOf(jobs[spec->id]));
    }
    const std::string prefix = "/v1/jobs/";
    if (path.compare(0, prefix.size(), prefix) == 0) {
      std::string rest = path.substr(prefix.size());
      const bool logs = rest.size() > 5 && rest.compare(rest.size() - 5, 5, "/logs") == 0;
      if (logs) rest = rest.substr(0, rest.size() - 5);
      auto it = jobs.find(rest);
      if (it == jobs.end()) return http::JsonError(404, "no job " + rest, "id");
      if (logs) return Logs(it->second, req);
      if (req.method == "GET") return Reply(200, JobJsonOf(it->second));
      if (req.method == "DELETE") {
        if (it->second.state == JobState::kQueued || it->second.state == JobState::kRunning)
          EndJob(it->second, JobState::kKilled, "killed on request");
        Save();
        WantOffers();
        return Reply(200, JobJsonOf(it->second));
      }
      return http::JsonError(405, "use GET or DELETE");
    }
    return http::JsonError(404, "no such route: " + path, "path");
  }

  http::Response Logs(const Job& job, const http::Request& req) {
    auto q = req.Query();
    const std::string task = q.count("task") ? q["task"] : (job.spec.driver ? "driver" : "task-0");
    const std::string stream = q.count("stream") ? q["stream"] : "stdout";
    const Run* run = nullptr;
    for (const auto& r : job.runs)
      if (r.name == task) run = &r;
    if (!run) return http::JsonError(404, "job " + job.spec.id + " has no task " + task, "task");
    if (run->task_id.empty()) return http::JsonError(409, task + " has not been launched yet", "task");
    const std::string ep = endpoint_lookup ? endpoint_lookup(run->agent_id) : "";
    if (ep.empty()) return http::JsonError(503, "the node of " + task + " is unknown or gone", "task");
    http::Client c;
    auto res = c.Call("GET", "http://" + ep + "/api/v1/tasks/" + run->task_id + "/logs?stream=" + stream +
                                 "&tail=" + (q.count("tail") ? q["tail"] : "200"));
    if (!res) return http::JsonError(502, "node " + ep + ": " + res.error().Message());
    http::Response r;
    r.status = res->status;
    r.content_type = "text/plain";
    r.body = res->body;
    return r;
  }
};

BatchScheduler::BatchScheduler(boost::asio::io_context& io, MasterCalls& master, std::string state_dir)
    : impl_(std::make_unique<Impl>(io, master, std::move(state_dir))) {}
BatchScheduler::~BatchScheduler() = default;
Status BatchScheduler::Load() { return impl_->Load(); }
std::string BatchScheduler::framework_id() const { return impl_->framework_id; }
void BatchScheduler::OnSubscribed(const std::string& fid) {
  impl_->framework_id = fid;
  impl_->suppressed = false;  // a fresh subscription starts unsuppressed
  impl_->Save();
  if (auto st = impl_->master.Reconcile(); !st) spdlog::warn("batch: reconcile: {}", st.error().Message());
  impl_->WantOffers();
}
void BatchScheduler::OnOffers(const std::vector<Offer>& offers) { impl_->OnOffers(offers); }
void BatchScheduler::OnRescind(const std::string&) {}
void BatchScheduler::OnUpdate(const TaskStatus& s) { impl_->OnUpdate(s); }
http::Response BatchScheduler::Handle(const http::Request& req) { return impl_->Handle(req); }
void BatchScheduler::SetEndpointLookup(std::function<std::string(const std::string&)> f) {
  impl_->endpoint_lookup = std::move(f);
}
json BatchScheduler::JobJson(const std::string& id) const {
  auto it = impl_->jobs.find(id);
  return it == impl_->jobs.end() ? json() : impl_->JobJsonOf(it->second);
}

}  // namespace tug::cluster::batch
