// The task runner with real processes: output capture, environment, exit codes, kills with grace periods, restarts
// of the runner (re-attach, exit status recorded while it was down, a vanished supervisor) and health checks.
#include <sys/stat.h>

#include "node/supervisor.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::node;
using namespace tug::cluster::node::testing;

TEST_CASE("a shell task's output is captured, it sees its ports and ids, and exit 0 is TASK_FINISHED") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto task = ShellTask("hello.1",
                        "echo \"port0=$PORT0 port=$PORT ports=$PORTS task=$TASK_ID host=$HOST greeting=$GREETING\"; "
                        "echo to-stderr >&2; test \"$SANDBOX\" = \"$(pwd)\" && echo in-sandbox",
                        {31005, 31007});
  task.command.environment["GREETING"] = "hi there";
  REQUIRE(runner->Launch(task));
  REQUIRE_FALSE(runner->Launch(task));  // idempotent: a known id is ignored
  REQUIRE(WaitState(*runner, "hello.1", TaskState::kFinished));
  // The supervisor exits after recording the status and is reaped (no zombie left behind).
  const pid_t supervisor = runner->Get("hello.1")->supervisor_pid;
  CHECK(testsupport::WaitFor([&] { return !ProcessStartTime(supervisor); }, 5s));

  const std::string sandbox = runner->SandboxOf("hello.1");
  std::string out = Slurp(sandbox + "/stdout");
  CHECK(out.find("port0=31005 port=31005 ports=31005,31007 task=hello.1 host=test-host greeting=hi there") !=
        std::string::npos);
  CHECK(out.find("in-sandbox") != std::string::npos);
  CHECK(Slurp(sandbox + "/stderr") == "to-stderr\n");

  auto updates = UpdatesOf(*runner, "hello.1");
  CHECK(StateNames(updates) == std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"});
  CHECK(updates[1].message.find("limits:") != std::string::npos);
  CHECK(updates[2].message == "exited with status 0");
  CHECK(updates[0].uuid != updates[1].uuid);
  for (const auto& u : updates) CHECK(u.framework_id == "fw-1");

  // Acknowledging every update forgets the task; its sandbox stays.
  for (const auto& u : updates) CHECK(runner->Acknowledge("hello.1", u.uuid));
  CHECK(runner->Unacknowledged().empty());
  CHECK(core::DefaultEnv()->Exists(sandbox + "/stdout"));
  CHECK(runner->Get("hello.1")->forgotten);
  CHECK_FALSE(runner->Launch(task));
}

TEST_CASE("a task exiting 3 is TASK_FAILED with the code and its last stderr line in the message") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  REQUIRE(runner->Launch(ShellTask("bad", "echo 'config file missing' >&2; exit 3")));
  REQUIRE(WaitState(*runner, "bad", TaskState::kFailed));
  auto v = runner->Get("bad");
  CHECK(v->last.message == "exited with status 3; stderr: config file missing");
  CHECK(v->last.reason == "REASON_COMMAND_EXITED");
}

TEST_CASE("a command that cannot be executed fails and says why") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto task = ShellTask("noexec", "/nonexistent/app");
  task.command.shell = false;
  task.command.arguments = {"app", "--flag"};
  REQUIRE(runner->Launch(task));
  REQUIRE(WaitState(*runner, "noexec", TaskState::kFailed));
  auto v = runner->Get("noexec");
  CHECK(v->last.message == "could not start: exec /nonexistent/app: No such file or directory");
  CHECK(v->last.reason == "REASON_CONTAINER_LAUNCH_FAILED");
}

TEST_CASE("killing a task: TERM first, KILLED at once when it obeys, SIGKILL after the grace period when not") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  REQUIRE(runner->Launch(ShellTask("polite", "echo up; exec sleep 1000")));
  auto stubborn = ShellTask("stubborn", "trap '' TERM; echo up; while true; do sleep 0.1; done");
  stubborn.labels[kKillGraceLabel] = "1.5";
  REQUIRE(runner->Launch(stubborn));
  REQUIRE(WaitState(*runner, "polite", TaskState::kRunning));
  REQUIRE(WaitState(*runner, "stubborn", TaskState::kRunning));
  // Kill only once the shell has installed its trap.
  REQUIRE(testsupport::WaitFor([&] { return Slurp(runner->SandboxOf("stubborn") + "/stdout") == "up\n"; }, 5s));
  const pid_t polite_pid = runner->Get("polite")->pid;
  const pid_t stubborn_pid = runner->Get("stubborn")->pid;
  CHECK(Alive(polite_pid));

  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(runner->Kill("polite"));
  REQUIRE(runner->Kill("stubborn"));
  REQUIRE(WaitTerminal(*runner, "polite", 5s));
  auto polite_took = std::chrono::steady_clock::now() - t0;
  REQUIRE(WaitTerminal(*runner, "stubborn", 10s));
  auto stubborn_took = std::chrono::steady_clock::now() - t0;

  CHECK(StateNames(UpdatesOf(*runner, "polite")) ==
        std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"});
  CHECK(runner->Get("polite")->last.message.find("killed on request (terminated by signal 15") == 0);
  CHECK(polite_took < 1s);
  CHECK(StateOf(*runner, "stubborn") == TaskState::kKilled);
  CHECK(runner->Get("stubborn")->last.message.find("signal 9") != std::string::npos);
  CHECK(stubborn_took >= 1500ms);
  CHECK(stubborn_took < 4s);
  CHECK_FALSE(Alive(polite_pid));
  CHECK_FALSE(Alive(stubborn_pid));
  CHECK(runner->Kill("nobody").error().Is(Errc::kNotFound));
}

TEST_CASE("a restarted runner re-attaches to its running task and reads the exit status written while it was down") {
  testsupport::TempDir dir("tug-node");
  const std::string script = "echo started; while [ ! -e \"$SANDBOX/go\" ]; do sleep 0.05; done; echo done; exit 7";
  pid_t pid = 0, supervisor = 0;
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(runner->Launch(ShellTask("long", script)));
    REQUIRE(WaitState(*runner, "long", TaskState::kRunning));
    pid = runner->Get("long")->pid;
    supervisor = runner->Get("long")->supervisor_pid;
  }  // the node "stops"; the task keeps running
  REQUIRE(Alive(pid));
  {
    auto runner = OpenRunner(dir.path());
    auto v = runner->Get("long");
    REQUIRE(v);
    CHECK(v->state == TaskState::kRunning);
    CHECK(v->pid == pid);
    CHECK(v->supervisor_pid == supervisor);
    std::this_thread::sleep_for(300ms);  // several monitor ticks: still attached, still running
    CHECK(StateOf(*runner, "long") == TaskState::kRunning);
  }
  // The task ends while no runner watches: its supervisor records the status durably.
  const std::string sandbox = dir.path() + "/tasks/long";
  std::ofstream(sandbox + "/go").put('\n');
  const std::string exit_status = dir.path() + "/supervisor/long/exit_status.json";  // node-private, not the sandbox
  REQUIRE(testsupport::WaitFor([&] { return core::DefaultEnv()->Exists(exit_status); }, 10s));
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(WaitState(*runner, "long", TaskState::kFailed, 5s));
    CHECK(runner->Get("long")->last.message == "exited with status 7");
    // Every update from all three lives is still pending, in order.
    CHECK(StateNames(UpdatesOf(*runner, "long")) ==
          std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"});
  }
  CHECK(Slurp(sandbox + "/stdout") == "started\ndone\n");
}

TEST_CASE("a supervisor that vanished while the node was down is reported TASK_FAILED and its orphan is stopped") {
  testsupport::TempDir dir("tug-node");
  pid_t pid = 0, supervisor = 0;
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(runner->Launch(ShellTask("orphan", "exec sleep 1000")));
    REQUIRE(WaitState(*runner, "orphan", TaskState::kRunning));
    pid = runner->Get("orphan")->pid;
    supervisor = runner->Get("orphan")->supervisor_pid;
  }
  const uint64_t started = ProcessStartTime(supervisor).value_or(0);
  REQUIRE(::kill(supervisor, SIGKILL) == 0);
  REQUIRE(testsupport::WaitFor([&] { return !ProcessAlive(supervisor, started); }, 5s));
  auto runner = OpenRunner(dir.path());
  REQUIRE(WaitState(*runner, "orphan", TaskState::kFailed, 5s));
  auto v = runner->Get("orphan");
  CHECK(v->last.message.find("supervisor (pid " + std::to_string(supervisor) + ") is gone") != std::string::npos);
  CHECK(v->last.message.find("orphaned task was killed") != std::string::npos);
  CHECK(v->last.reason == "REASON_EXECUTOR_TERMINATED");
  // The orphan was the supervisor's child, so init reaps it.
  CHECK(testsupport::WaitFor([&] { return !Alive(pid); }, 5s));
}

TEST_CASE("a second runner on the same work dir is refused") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto second = TaskRunner::Open(Opts(dir.path()));
  REQUIRE_FALSE(second);
  CHECK(second.error().Is(Errc::kAlreadyExists));
}

TEST_CASE("task output beyond the cap is rotated, not grown without bound") {
  testsupport::TempDir dir("tug-node");
  auto o = Opts(dir.path());
  o.log_max_bytes = 64 << 10;
  auto r = TaskRunner::Open(o);
  REQUIRE(r);
  auto& runner = **r;
  // ~400 KiB of output.
  REQUIRE(runner.Launch(ShellTask("chatty", "i=0; while [ $i -lt 4000 ]; do echo \"line $i of a chatty task that "
                                            "writes a lot of output\"; i=$((i+1)); done")));
  REQUIRE(WaitState(runner, "chatty", TaskState::kFinished));
  const std::string sandbox = runner.SandboxOf("chatty");
  struct stat a{}, b{};
  REQUIRE(::stat((sandbox + "/stdout").c_str(), &a) == 0);
  REQUIRE(::stat((sandbox + "/stdout.1").c_str(), &b) == 0);
  CHECK(a.st_size <= 64 << 10);
  CHECK(b.st_size <= 64 << 10);
  CHECK(Slurp(sandbox + "/stdout").find("line 3999 of") != std::string::npos);
}

namespace {

// A task serving HTTP on $PORT0 with busybox until $SANDBOX/stop appears, then hanging on without answering.
TaskInfo ServingTask(const std::string& id, uint32_t port, HealthCheck hc) {
  const std::string bb = HostBusybox();
  auto t = ShellTask(id,
                     "echo ok > index.html; touch ok; " + bb + " httpd -f -p $PORT0 -h . & server=$!; "
                     "while [ ! -e stop ]; do sleep 0.05; done; kill $server; rm -f ok; exec sleep 1000",
                     {port});
  t.health_check = hc;
  return t;
}

void CheckHealthLifecycle(HealthCheck::Type type) {
  if (HostBusybox().empty()) FAIL("no busybox-static .deb in /var/cache/tugboat/debs (scripts/setup.sh fetches it)");
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  HealthCheck hc;
  hc.type = type;
  hc.path = "/index.html";
  hc.command = "test -e \"$SANDBOX/ok\" && test -n \"$TASK_ID\"";
  hc.grace_period_s = 0.3;
  hc.interval_s = 0.2;
  hc.timeout_s = 1;
  hc.max_consecutive_failures = 3;
  const uint32_t port = testsupport::FreeLoopbackPort();
  REQUIRE(runner->Launch(ServingTask("web", port, hc)));
  REQUIRE(testsupport::WaitFor([&] { return runner->Get("web")->healthy == true; }, 15s));
  CHECK(StateOf(*runner, "web") == TaskState::kRunning);

  std::ofstream(runner->SandboxOf("web") + "/stop").put('\n');  // the task stops answering
  REQUIRE(WaitTerminal(*runner, "web", 15s));
  auto v = runner->Get("web");
  CHECK(v->state == TaskState::kFailed);
  CHECK(v->last.reason == "REASON_HEALTH_CHECK_FAILED");
  CHECK(v->last.message.find("health check failed 3 times in a row") == 0);
  CHECK(v->healthy == false);

  auto updates = UpdatesOf(*runner, "web");
  // STARTING, RUNNING, RUNNING healthy, RUNNING unhealthy, KILLING, FAILED; healthy rides on every later update.
  REQUIRE(updates.size() == 6);
  CHECK(StateNames(updates) == std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_RUNNING",
                                                        "TASK_RUNNING", "TASK_KILLING", "TASK_FAILED"});
  CHECK(!updates[1].healthy);
  CHECK(updates[2].healthy == true);
  CHECK(updates[3].healthy == false);
  CHECK(updates[5].healthy == false);
}

}  // namespace

TEST_CASE("an HTTP health check passes while the task answers and kills it after consecutive failures") {
  CheckHealthLifecycle(HealthCheck::Type::kHttp);
}

TEST_CASE("a TCP health check passes while the port accepts and kills the task after consecutive failures") {
  CheckHealthLifecycle(HealthCheck::Type::kTcp);
}

TEST_CASE("a COMMAND health check runs in the task's environment and kills it after consecutive failures") {
  CheckHealthLifecycle(HealthCheck::Type::kCommand);
}

TEST_CASE("a task killed right after its launch ends TASK_KILLED, whether or not it had started") {
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  for (int i = 0; i < 5; ++i) {
    const std::string id = "quick-" + std::to_string(i);
    REQUIRE(runner->Launch(ShellTask(id, "exec sleep 1000")));
    if (i % 2) std::this_thread::sleep_for(std::chrono::milliseconds(20 * i));
    REQUIRE(runner->Kill(id));
  }
  for (int i = 0; i < 5; ++i) {
    const std::string id = "quick-" + std::to_string(i);
    REQUIRE(WaitTerminal(*runner, id, 10s));
    CHECK(StateOf(*runner, id) == TaskState::kKilled);
    auto names = StateNames(UpdatesOf(*runner, id));
    CHECK(names.front() == "TASK_STARTING");
    CHECK(names.back() == "TASK_KILLED");
    if (auto pid = runner->Get(id)->pid; pid > 0) CHECK(testsupport::WaitFor([&] { return !Alive(pid); }, 5s));
  }
}

TEST_CASE("an update about a task this node never ran survives a restart until acknowledged") {
  testsupport::TempDir dir("tug-node");
  std::string uuid;
  {
    auto runner = OpenRunner(dir.path());
    runner->ReportForeign("ghost", "fw-1", TaskState::kDropped, "unknown task");
    auto updates = UpdatesOf(*runner, "ghost");
    REQUIRE(updates.size() == 1);
    CHECK(updates[0].state == TaskState::kDropped);
    uuid = updates[0].uuid;
    CHECK(runner->Tasks().empty());  // not a task of this node
  }
  auto runner = OpenRunner(dir.path());
  auto updates = UpdatesOf(*runner, "ghost");
  REQUIRE(updates.size() == 1);
  CHECK(updates[0].uuid == uuid);
  CHECK(updates[0].message == "unknown task");
  CHECK(runner->Acknowledge("ghost", uuid));
  CHECK(runner->Unacknowledged().empty());
  CHECK(core::DefaultEnv()->ListDir(dir.path() + "/meta/tasks")->empty());
}
