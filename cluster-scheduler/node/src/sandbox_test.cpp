// A task stays in its box: real tasks that plant symlinks, hard links and FIFOs in their sandbox, where the node and
// the supervisor used to follow them as root (log rotation, the exit status's temp file, the logs endpoint, recovery
// reading exit_status.json). Each leaves the host file untouched and the node answering within a second.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "http/client.hpp"
#include "node/node.hpp"
#include "node/supervisor.hpp"
#include "sandbox_fs.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::node;
using namespace tug::cluster::node::testing;
using json = nlohmann::json;

namespace {

constexpr const char* kPrecious = "precious host file\n";

// A host file outside every sandbox (same filesystem, so a task could hard-link it).
std::string MakeVictim(const testsupport::TempDir& dir, const std::string& name = "victim") {
  const std::string path = dir.Sub(name);
  std::ofstream(path) << kPrecious;
  ::chmod(path.c_str(), 0600);
  return path;
}

bool IsSymlink(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

bool IsRegular(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// How long `fn` takes.
template <typename F>
std::chrono::milliseconds Took(F&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
}

}  // namespace

TEST_CASE("sandbox_fs refuses symlinks, FIFOs and hard links without blocking, and creates only new files") {
  testsupport::TempDir dir("tug-sbfs");
  const std::string victim = MakeVictim(dir);
  const std::string box = dir.Sub("box");
  REQUIRE(::mkdir(box.c_str(), 0755) == 0);
  REQUIRE(::symlink(victim.c_str(), (box + "/link").c_str()) == 0);
  REQUIRE(::mkfifo((box + "/fifo").c_str(), 0644) == 0);
  REQUIRE(::link(victim.c_str(), (box + "/hard").c_str()) == 0);
  std::ofstream(box + "/plain") << "ok\n";
  const bool can_mknod = ::mknod((box + "/dev").c_str(), S_IFCHR | 0644, ::makedev(1, 3)) == 0;  // /dev/null

  auto d = sandbox_fs::OpenDir(box);
  REQUIRE(d);
  CHECK(sandbox_fs::ReadSmallFileAt(d->get(), "plain").value() == std::optional<std::string>("ok\n"));
  CHECK(sandbox_fs::ReadSmallFileAt(d->get(), "absent").value() == std::nullopt);
  for (const char* name : {"link", "fifo", "hard", "dev"}) {
    INFO(name);
    if (std::string(name) == "dev" && !can_mknod) continue;  // not root
    CHECK(Took([&] { CHECK_FALSE(sandbox_fs::OpenRegularAt(d->get(), name)); }) < 1s);
    CHECK(Took([&] { CHECK_FALSE(sandbox_fs::OpenAppendAt(d->get(), name)); }) < 1s);
    CHECK(sandbox_fs::CreateExclusiveAt(d->get(), name).error().Is(Errc::kAlreadyExists));
  }
  CHECK_FALSE(sandbox_fs::OpenRegularAt(d->get(), "../victim"));  // one component only
  CHECK_FALSE(sandbox_fs::OpenDir(box + "/link"));                  // a symlinked directory is not entered
  CHECK(sandbox_fs::ReadSmallFileAt(d->get(), "plain", 2).error().Is(Errc::kInvalidArgument));  // bounded
  // ReplaceFileAt goes through a fresh temp name: a symlink at the target name is replaced, not followed.
  REQUIRE(sandbox_fs::ReplaceFileAt(d->get(), "link", "new\n", true));
  CHECK(IsRegular(box + "/link"));
  CHECK(Slurp(victim) == kPrecious);
}

TEST_CASE("a task that replaces stdout and stderr with symlinks to a host file and overflows the cap writes no host file") {
  testsupport::TempDir dir("tug-node");
  const std::string victim = MakeVictim(dir);
  const std::string created = dir.Sub("created-by-the-node");  // a dangling target must not come into being
  auto o = Opts(dir.path());
  o.log_max_bytes = 4096;
  auto r = TaskRunner::Open(o);
  REQUIRE(r);
  auto& runner = **r;
  // stdout and stderr become symlinks before the first byte of output and are planted again before every chunk
  // (a reopen after rotation would meet one); the ".1" names are traps too. ~200 KiB per stream: several pipe
  // reads, so the supervisor rotates many times.
  REQUIRE(runner.Launch(ShellTask(
      "rotate", "v=" + victim + "; rm -f stdout stderr stdout.1 stderr.1; ln -s $v stdout.1; ln -s " + created +
                    " stderr.1; s=$(printf '%0500d' 0); i=0; while [ $i -lt 100 ]; do ln -sfn $v stdout; "
                    "ln -sfn $v stderr; echo \"line $i of output that overflows the cap $s$s$s$s\"; "
                    "echo \"err $i $s$s$s$s\" >&2; i=$((i+1)); done")));
  REQUIRE(WaitState(runner, "rotate", TaskState::kFinished));
  CHECK(runner.Get("rotate")->last.message == "exited with status 0");
  CHECK(Slurp(victim) == kPrecious);
  CHECK_FALSE(core::DefaultEnv()->Exists(created));
  const std::string sandbox = runner.SandboxOf("rotate");
  // The task's symlinks are still there (nothing opened them); the rotated files are new regular files that
  // replaced the planted ".1" links, holding the task's output.
  CHECK(IsSymlink(sandbox + "/stdout"));
  CHECK(IsRegular(sandbox + "/stdout.1"));
  CHECK(IsRegular(sandbox + "/stderr.1"));
  CHECK(Slurp(sandbox + "/stdout.1").find("of output that overflows the cap") != std::string::npos);
  struct stat st{};
  REQUIRE(::stat((sandbox + "/stdout.1").c_str(), &st) == 0);
  CHECK(st.st_size <= 4096);
  // No temp files left behind.
  auto names = core::DefaultEnv()->ListDir(sandbox);
  REQUIRE(names);
  for (const auto& name : *names) CHECK(name.find(".tmp-") == std::string::npos);
}

TEST_CASE("a task that plants symlinks and a FIFO at the supervisor's file names changes nothing: its real exit "
          "status is reported and the runner answers at once") {
  testsupport::TempDir dir("tug-node");
  const std::string victim = MakeVictim(dir);
  auto runner = OpenRunner(dir.path());
  // The names an older node used inside the sandbox, each a trap; stderr a FIFO (read for the failure message).
  std::string plant;
  for (const char* name : {"exit_status.json.tmp", "supervisor.pid", "supervisor.pid.tmp", "task.pid",
                           "task.pid.tmp", "launch.json", "supervisor.log"})
    plant += "ln -s " + victim + " " + name + "; ";
  REQUIRE(runner->Launch(ShellTask("planter", plant + "mkfifo exit_status.json; rm -f stderr; mkfifo stderr; "
                                                      "touch planted; sleep 0.5; exit 4")));
  const std::string sandbox = runner->SandboxOf("planter");
  REQUIRE(testsupport::WaitFor([&] { return core::DefaultEnv()->Exists(sandbox + "/planted"); }, 10s));
  // The monitor keeps ticking over the FIFO, and the runner's lock is never held over it.
  for (int i = 0; i < 5; ++i) {
    CHECK(Took([&] { CHECK(runner->Tasks().size() == 1); }) < 1s);
    std::this_thread::sleep_for(100ms);
  }
  REQUIRE(WaitTerminal(*runner, "planter", 10s));
  auto v = runner->Get("planter");
  CHECK(v->state == TaskState::kFailed);
  CHECK(v->last.message == "exited with status 4");  // the FIFO stderr gives no "; stderr: ..." and no hang
  CHECK(Slurp(victim) == kPrecious);
  // The real files are in the node-private supervisor dir, beside the sandbox, which the task cannot write.
  const std::string state = dir.path() + "/supervisor/planter";
  struct stat st{};
  REQUIRE(::stat((dir.path() + "/supervisor").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(IsRegular(state + "/exit_status.json"));
  CHECK(IsRegular(state + "/task.pid"));
  CHECK(IsRegular(state + "/supervisor.pid"));
  CHECK(IsRegular(state + "/launch.json"));
  CHECK(ReadExitStatus(state).value()->code == 4);
  CHECK(IsSymlink(sandbox + "/task.pid"));  // left as the task made it
}

TEST_CASE("the logs endpoint serves no symlinked or hard-linked host file and never blocks on a FIFO") {
  testsupport::TempDir dir("tug-node");
  const std::string victim = MakeVictim(dir);
  NodeOptions o;
  o.masters = {"http://127.0.0.1:" + std::to_string(testsupport::FreeLoopbackPort())};  // nobody: the API works alone
  o.work_dir = dir.path();
  o.hostname = "node-a";
  o.resources = "cpus:2;mem:1024;ports:[31000-31009]";
  o.supervisor_exe = TUG_CLUSTER_NODE_EXE;
  o.link.backoff_min = 100ms;
  o.link.backoff_max = 500ms;
  auto node = Node::Start(o);
  REQUIRE(node);
  auto& runner = (*node)->runner();
  REQUIRE(runner.Launch(ShellTask("logs", "echo hello; rm stdout stderr; ln -s " + victim + " stdout; ln " + victim +
                                              " stderr; touch planted; while [ ! -e go ]; do sleep 0.05; done; "
                                              "rm stderr; mkfifo stderr; touch fifo; exec sleep 1000",
                                  {31001}),
                        "fw-1"));
  const std::string sandbox = runner.SandboxOf("logs");
  REQUIRE(testsupport::WaitFor([&] { return core::DefaultEnv()->Exists(sandbox + "/planted"); }, 10s));

  http::ClientOptions copts;
  copts.timeout = 2s;
  http::Client c(copts);
  const std::string base = "http://127.0.0.1:" + std::to_string((*node)->port()) + "/api/v1/tasks/logs/logs?stream=";
  auto expect_refused = [&](const std::string& stream) {
    INFO(stream);
    Result<http::ClientResponse> res = MakeError(Errc::kInternal, "not called");
    CHECK(Took([&] { res = c.Call("GET", base + stream); }) < 1s);
    REQUIRE(res);
    CHECK(res->status == 409);
    CHECK(res->body.find("precious") == std::string::npos);
    const bool says_why = res->body.find("not a regular file") != std::string::npos ||
                          res->body.find("other hard links") != std::string::npos;
    CHECK(says_why);
  };
  expect_refused("stdout");  // symlink
  expect_refused("stderr");  // hard link
  std::ofstream(sandbox + "/go").put('\n');
  REQUIRE(testsupport::WaitFor([&] { return core::DefaultEnv()->Exists(sandbox + "/fifo"); }, 10s));
  expect_refused("stderr");  // FIFO
  Result<http::ClientResponse> health = MakeError(Errc::kInternal, "not called");
  CHECK(Took([&] { health = c.Call("GET", "http://127.0.0.1:" + std::to_string((*node)->port()) + "/healthz"); }) <
        1s);
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(Slurp(victim) == kPrecious);

  REQUIRE(runner.Kill("logs"));
  REQUIRE(WaitTerminal(runner, "logs", 10s));
}

TEST_CASE("a task an older node started (status files in its sandbox) that puts a FIFO at exit_status.json: the "
          "restarted node stays responsive, refuses it and stops the task") {
  testsupport::TempDir dir("tug-node");
  const std::string victim = MakeVictim(dir);
  pid_t pid = 0;
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(runner->Launch(ShellTask("legacy", "exec sleep 1000")));
    REQUIRE(WaitState(*runner, "legacy", TaskState::kRunning));
    pid = runner->Get("legacy")->pid;
  }
  REQUIRE(Alive(pid));
  // What an older node's checkpoint looks like (no "private_state"), and what its task could plant: the old node
  // read exit_status.json from the sandbox, blocking on a FIFO while holding its lock.
  const std::string ckpt = dir.path() + "/meta/tasks/legacy.json";
  auto j = json::parse(Slurp(ckpt));
  j.erase("private_state");
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), ckpt, j.dump()));
  const std::string sandbox = dir.path() + "/tasks/legacy";
  REQUIRE(::mkfifo((sandbox + "/exit_status.json").c_str(), 0644) == 0);
  REQUIRE(::symlink(victim.c_str(), (sandbox + "/task.pid").c_str()) == 0);
  REQUIRE(::symlink(victim.c_str(), (sandbox + "/supervisor.pid").c_str()) == 0);

  std::unique_ptr<TaskRunner> runner;
  CHECK(Took([&] { runner = OpenRunner(dir.path()); }) < 1s);
  REQUIRE(WaitTerminal(*runner, "legacy", 5s));
  auto v = runner->Get("legacy");
  CHECK(v->state == TaskState::kFailed);
  CHECK(v->last.message.find("unreadable exit status") == 0);
  CHECK(v->last.message.find("not a regular file") != std::string::npos);
  CHECK(Took([&] { CHECK(runner->Tasks().size() == 1); }) < 1s);
  CHECK(testsupport::WaitFor([&] { return !Alive(pid); }, 5s));  // not left running untracked
  CHECK(Slurp(victim) == kPrecious);
}

TEST_CASE("upgrade: a task an older node started is re-attached and its exit status read from its sandbox") {
  testsupport::TempDir dir("tug-node");
  pid_t supervisor = 0;
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(runner->Launch(ShellTask("old", "while [ ! -e go ]; do sleep 0.05; done; exit 7")));
    REQUIRE(WaitState(*runner, "old", TaskState::kRunning));
    supervisor = runner->Get("old")->supervisor_pid;
  }
  const std::string sandbox = dir.path() + "/tasks/old", state = dir.path() + "/supervisor/old";
  std::ofstream(sandbox + "/go").put('\n');
  const uint64_t started = ProcessStartTime(supervisor).value_or(0);
  REQUIRE(testsupport::WaitFor([&] { return !ProcessAlive(supervisor, started); }, 10s));  // reaps it too
  // Rewrite what is on disk into the older layout: checkpoint without "private_state", the supervisor's files in
  // the sandbox, no supervisor dir.
  const std::string ckpt = dir.path() + "/meta/tasks/old.json";
  auto j = json::parse(Slurp(ckpt));
  j.erase("private_state");
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), ckpt, j.dump()));
  for (const char* f : {"exit_status.json", "supervisor.pid", "task.pid", "launch.json"})
    REQUIRE(core::DefaultEnv()->Rename(state + "/" + f, sandbox + "/" + f));
  REQUIRE(core::DefaultEnv()->RemoveAll(state));

  auto runner = OpenRunner(dir.path());
  REQUIRE(WaitTerminal(*runner, "old", 5s));
  CHECK(runner->Get("old")->last.message == "exited with status 7");
  CHECK(StateNames(UpdatesOf(*runner, "old")) ==
        std::vector<std::string>{"TASK_STARTING", "TASK_RUNNING", "TASK_FAILED"});
  // Its checkpoint keeps saying where its files are.
  CHECK(json::parse(Slurp(ckpt)).value("private_state", true) == false);
}

TEST_CASE("an older node's task cannot make the node signal another process through a forged task.pid") {
  testsupport::TempDir dir("tug-node");
  // A process that is not the task's, in a group of its own: what a forged pid file would point the node's kills at.
  const pid_t decoy = ::fork();
  REQUIRE(decoy >= 0);
  if (decoy == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
    _exit(127);
  }
  ::setpgid(decoy, decoy);
  std::this_thread::sleep_for(50ms);
  const uint64_t decoy_start = ProcessStartTime(decoy).value_or(0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{decoy};

  pid_t pid = 0;
  {
    auto runner = OpenRunner(dir.path());
    REQUIRE(runner->Launch(ShellTask("forger", "exec sleep 1000")));
    REQUIRE(WaitState(*runner, "forger", TaskState::kRunning));
    pid = runner->Get("forger")->pid;
  }
  // An older node's checkpoint that had not learnt the task's pid yet, and the task's forgery in its sandbox.
  const std::string ckpt = dir.path() + "/meta/tasks/forger.json";
  auto j = json::parse(Slurp(ckpt));
  j.erase("private_state");
  j["task_pid"] = 0;
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), ckpt, j.dump()));
  std::ofstream(dir.path() + "/tasks/forger/task.pid") << decoy << " " << decoy_start << "\n";

  auto runner = OpenRunner(dir.path());
  std::this_thread::sleep_for(300ms);  // several monitor ticks
  CHECK(runner->Get("forger")->pid == 0);  // not a child of the task's supervisor: not believed
  REQUIRE(runner->Kill("forger"));
  std::this_thread::sleep_for(500ms);
  CHECK(ProcessAlive(decoy, decoy_start));
  // The real task ends; its supervisor is gone without a status in the sandbox, and the forged pid is not taken
  // for the orphan to kill either.
  REQUIRE(::kill(pid, SIGKILL) == 0);
  REQUIRE(WaitTerminal(*runner, "forger", 10s));
  CHECK(runner->Get("forger")->state == TaskState::kFailed);
  CHECK(ProcessAlive(decoy, decoy_start));
}
