// Garbage collection with real tasks: a sandbox goes gc-delay after its task ended and only once the master
// acknowledged it; unacknowledged and running ones stay; disk usage above the watermark shortens the delay (oldest
// first); a restarted runner keeps the schedule and never re-attaches a collected task; the API answers 410 for a
// collected task's logs; cached blobs go after the image delay unless a task references them, also when a launch
// references one while a sweep runs.
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>

#include "crypto/sha256.hpp"
#include "gc.hpp"
#include "http/client.hpp"
#include "node/node.hpp"
#include "test_util.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::node;
using namespace tug::cluster::node::testing;
using json = nlohmann::json;
using std::chrono::hours;
using std::chrono::minutes;

namespace {

// The test host's real disk may well be above 90% used: every test says what the usage is.
std::function<Result<double>(const std::string&)> Usage(const std::shared_ptr<std::atomic<double>>& percent) {
  return [percent](const std::string&) -> Result<double> { return percent->load(); };
}

RunnerOptions GcOpts(const std::string& dir, std::chrono::milliseconds delay) {
  RunnerOptions o = Opts(dir);
  o.gc.delay = delay;
  o.gc.interval = 50ms;
  o.gc.image_delay = 24h;
  o.gc.disk_usage = Usage(std::make_shared<std::atomic<double>>(10.0));
  return o;
}

std::unique_ptr<TaskRunner> Open(const RunnerOptions& o) {
  auto r = TaskRunner::Open(o);
  if (!r) FAIL(r.error().Message());
  return std::move(*r);
}

void AckAll(TaskRunner& r, const std::string& id) {
  for (const auto& u : UpdatesOf(r, id)) REQUIRE(r.Acknowledge(id, u.uuid));
}

bool Exists(const std::string& path) { return core::DefaultEnv()->Exists(path); }

void SetMtime(const std::string& path, std::chrono::seconds ago) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = ::time(nullptr) - ago.count();
  ts[0].tv_nsec = ts[1].tv_nsec = 0;
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, 0) == 0);
}

// A file in the blob cache named by the hash of `content`, last used `ago`. It appears with its mtime already set
// (written aside, then renamed in), as a download does, so a concurrent sweep never sees it younger.
std::string FakeBlob(const std::string& work_dir, const std::string& content, std::chrono::seconds ago) {
  const std::string dir = work_dir + "/images/sha256";
  REQUIRE(core::DefaultEnv()->CreateDirs(dir));
  const std::string path = dir + "/" + crypto::Sha256Hex(content);
  const std::string aside = work_dir + "/blob.tmp";
  std::ofstream(aside, std::ios::binary) << content;
  SetMtime(aside, ago);
  REQUIRE(core::DefaultEnv()->Rename(aside, path));
  return path;
}

}  // namespace

TEST_CASE("a finished task's sandbox goes gc-delay after it ended once acknowledged; unacknowledged and running stay") {
  testsupport::TempDir dir("tug-node-gc");
  auto runner = Open(GcOpts(dir.path(), 200ms));
  REQUIRE(runner->Launch(ShellTask("done", "echo bye")));
  REQUIRE(runner->Launch(ShellTask("unacked", "echo keep")));
  REQUIRE(runner->Launch(ShellTask("running", "echo up; exec sleep 1000")));
  REQUIRE(WaitState(*runner, "done", TaskState::kFinished));
  REQUIRE(WaitState(*runner, "unacked", TaskState::kFinished));
  REQUIRE(WaitState(*runner, "running", TaskState::kRunning));
  const std::string done = runner->SandboxOf("done"), unacked = runner->SandboxOf("unacked"),
                    running = runner->SandboxOf("running");

  // Many delays and passes later nothing is gone: no terminal update was acknowledged yet.
  std::this_thread::sleep_for(800ms);
  CHECK(Exists(done + "/stdout"));
  CHECK(Exists(unacked + "/stdout"));
  CHECK(runner->GcStatus().passes >= 3);

  AckAll(*runner, "done");
  REQUIRE(testsupport::WaitFor([&] { return !Exists(done); }, 5s));
  CHECK(Exists(unacked + "/stdout"));
  CHECK(Exists(running + "/stdout"));
  CHECK(StateOf(*runner, "running") == TaskState::kRunning);
  CHECK(runner->SandboxCollectedAt("done").has_value());
  CHECK_FALSE(runner->SandboxCollectedAt("unacked").has_value());
  CHECK(runner->Get("done")->sandbox_collected_at > 0);
  CHECK_FALSE(Exists(dir.path() + "/meta/gc/done.json"));
  CHECK_FALSE(Exists(dir.path() + "/meta/tasks/done.json"));
  // The node-private supervisor dir goes with the sandbox; the others' stay.
  CHECK_FALSE(Exists(dir.path() + "/supervisor/done"));
  CHECK(Exists(dir.path() + "/supervisor/unacked/exit_status.json"));
  CHECK(Exists(dir.path() + "/supervisor/running/task.pid"));
  CHECK(testsupport::WaitFor([&] { return runner->GcStatus().bytes_freed > 0; }, 5s));
  auto stats = runner->GcStatus();
  CHECK(stats.sandboxes_collected == 1);
  CHECK(stats.sandboxes_kept == 2);
  CHECK(stats.sandboxes_waiting == 0);

  REQUIRE(runner->Kill("running"));
  REQUIRE(WaitTerminal(*runner, "running", 10s));
}

TEST_CASE("an acknowledged sandbox is kept until gc-delay after its task ended") {
  testsupport::TempDir dir("tug-node-gc");
  auto runner = Open(GcOpts(dir.path(), 1500ms));
  REQUIRE(runner->Launch(ShellTask("quick", "echo hi")));
  REQUIRE(WaitState(*runner, "quick", TaskState::kFinished));
  const auto ended = std::chrono::steady_clock::now();
  AckAll(*runner, "quick");
  REQUIRE(runner->Get("quick")->forgotten);
  CHECK(Exists(dir.path() + "/meta/gc/quick.json"));
  std::this_thread::sleep_for(600ms);
  CHECK(Exists(runner->SandboxOf("quick") + "/stdout"));
  CHECK(runner->GcStatus().sandboxes_waiting == 1);
  REQUIRE(testsupport::WaitFor([&] { return !Exists(runner->SandboxOf("quick")); }, 5s));
  CHECK(std::chrono::steady_clock::now() - ended >= 1300ms);
}

TEST_CASE("the gc delay shrinks with the disk's room above the watermark") {
  CHECK(EffectiveGcDelay(1h, 50.0, 90) == 1h);
  CHECK(EffectiveGcDelay(1h, 90.0, 90) == 1h);
  CHECK(EffectiveGcDelay(1h, 95.0, 90) == minutes(30));
  CHECK(EffectiveGcDelay(1h, 99.0, 90) == minutes(6));
  CHECK(EffectiveGcDelay(1h, 100.0, 90) == 0ms);
  CHECK(EffectiveGcDelay(1h, std::nullopt, 90) == 1h);
  CHECK(EffectiveGcDelay(1h, 100.0, 100) == 1h);
}

TEST_CASE("above the watermark the oldest sandboxes go first; sandboxes without a GC record are aged by their mtime") {
  testsupport::TempDir dir("tug-node-gc");
  // Sandboxes a node without GC left behind: no checkpoint, no record; their mtime says when they were last written.
  for (const auto& [name, ago] : {std::pair{"old", std::chrono::seconds(hours(3))},
                                  std::pair{"young", std::chrono::seconds(minutes(20))}}) {
    const std::string sb = dir.path() + "/tasks/" + name;
    REQUIRE(core::DefaultEnv()->CreateDirs(sb));
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), sb + "/stdout", std::string(100000, 'x')));
    SetMtime(sb + "/stdout", ago);
    SetMtime(sb, ago);
  }
  auto usage = std::make_shared<std::atomic<double>>(50.0);
  RunnerOptions o = GcOpts(dir.path(), hours(10));
  o.gc.disk_usage = Usage(usage);
  auto runner = Open(o);
  const std::string old_sb = dir.path() + "/tasks/old", young_sb = dir.path() + "/tasks/young";
  auto delay_near = [&](std::chrono::milliseconds want) {
    return testsupport::WaitFor([&] { return std::chrono::abs(runner->GcStatus().effective_delay - want) < 1s; }, 5s);
  };

  // Below the watermark, and at 95% (half of 10h): both are younger than the delay.
  REQUIRE(delay_near(hours(10)));
  usage->store(95);
  REQUIRE(delay_near(hours(5)));
  std::this_thread::sleep_for(200ms);
  CHECK(Exists(old_sb));
  CHECK(Exists(young_sb));
  CHECK(runner->GcStatus().sandboxes_waiting == 2);

  // 99%: a tenth of the room is left, 1h: the 3-hour-old one goes, the 20-minute-old one stays.
  usage->store(99);
  REQUIRE(testsupport::WaitFor([&] { return !Exists(old_sb); }, 5s));
  REQUIRE(delay_near(hours(1)));
  std::this_thread::sleep_for(200ms);
  CHECK(Exists(young_sb));
  CHECK(runner->GcStatus().disk_used_percent == 99.0);

  // 99.9%: 6 minutes: it goes too.
  usage->store(99.9);
  REQUIRE(testsupport::WaitFor([&] { return !Exists(young_sb); }, 5s));
  CHECK(runner->GcStatus().sandboxes_collected == 2);
}

TEST_CASE("a restarted runner keeps the GC schedule and never re-attaches a collected task") {
  testsupport::TempDir dir("tug-node-gc");
  std::string r1, keep;
  {
    auto runner = Open(GcOpts(dir.path(), 1h));
    REQUIRE(runner->Launch(ShellTask("r1", "echo one")));
    REQUIRE(runner->Launch(ShellTask("keep", "echo two")));
    REQUIRE(WaitState(*runner, "r1", TaskState::kFinished));
    REQUIRE(WaitState(*runner, "keep", TaskState::kFinished));
    AckAll(*runner, "r1");
    r1 = runner->SandboxOf("r1");
    keep = runner->SandboxOf("keep");
    REQUIRE(Exists(dir.path() + "/meta/gc/r1.json"));
    REQUIRE_FALSE(Exists(dir.path() + "/meta/tasks/r1.json"));
  }
  std::this_thread::sleep_for(2200ms);
  // r1 ended more than 2 s ago: with a 2 s delay the first pass of the new runner collects it. A schedule that
  // restarted at the runner's start would keep it for 2 whole seconds (1.5 s leaves room for a loaded machine).
  auto runner = Open(GcOpts(dir.path(), 2s));
  const auto opened = std::chrono::steady_clock::now();
  REQUIRE(testsupport::WaitFor([&] { return !Exists(r1); }, 5s));
  CHECK(std::chrono::steady_clock::now() - opened < 1500ms);
  CHECK_FALSE(runner->Get("r1").has_value());
  CHECK_FALSE(Exists(dir.path() + "/meta/gc/r1.json"));
  // The unacknowledged one was re-attached (as a finished task with its updates pending) and kept.
  CHECK(StateOf(*runner, "keep") == TaskState::kFinished);
  CHECK(UpdatesOf(*runner, "keep").size() == 3);
  std::this_thread::sleep_for(300ms);
  CHECK(Exists(keep + "/stdout"));
  runner.reset();

  auto again = Open(GcOpts(dir.path(), 1s));
  CHECK_FALSE(again->Get("r1").has_value());
  for (const auto& v : again->Tasks()) CHECK(v.info.task_id != "r1");
  CHECK_FALSE(Exists(dir.path() + "/meta/tasks/r1.json"));
  CHECK_FALSE(Exists(r1));
}

TEST_CASE("the node API serves a task's logs until its sandbox is collected, then answers 410 saying so") {
  testsupport::TempDir dir("tug-node-gc");
  NodeOptions o;
  o.work_dir = dir.path();
  o.hostname = "node-gc";
  o.resources = "cpus:2;mem:1024;disk:100;ports:[31000-31009]";
  o.supervisor_exe = TUG_CLUSTER_NODE_EXE;
  o.gc.delay = 200ms;
  o.gc.interval = 50ms;
  o.gc.disk_usage = Usage(std::make_shared<std::atomic<double>>(10.0));
  auto node = Node::Start(o);
  REQUIRE(node);
  auto& runner = (*node)->runner();
  REQUIRE(runner.Launch(ShellTask("logs/1", "echo hello")));
  REQUIRE(WaitState(runner, "logs/1", TaskState::kFinished));

  http::Client c;
  const std::string base = "http://127.0.0.1:" + std::to_string((*node)->port());
  auto before = c.Call("GET", base + "/api/v1/tasks/logs%2F1/logs");
  REQUIRE(before);
  CHECK(before->status == 200);
  CHECK(before->body == "hello\n");

  AckAll(runner, "logs/1");
  REQUIRE(testsupport::WaitFor([&] { return !Exists(runner.SandboxOf("logs/1")); }, 5s));
  auto after = c.Call("GET", base + "/api/v1/tasks/logs%2F1/logs?stream=stderr");
  REQUIRE(after);
  CHECK(after->status == 410);
  INFO(after->body);
  CHECK(after->body.find("task logs/1: its sandbox and logs were garbage-collected at ") != std::string::npos);
  auto view = c.Call("GET", base + "/api/v1/tasks/logs%2F1");
  REQUIRE(view);
  CHECK(view->status == 200);
  CHECK(json::parse(view->body)["sandbox_collected_at"].get<double>() > 0);

  auto unknown = c.Call("GET", base + "/api/v1/tasks/nobody/logs");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);

  auto info = c.Call("GET", base + "/api/v1/node");
  REQUIRE(info);
  REQUIRE(info->status == 200);
  auto gc = json::parse(info->body)["gc"];
  CHECK(gc["sandboxes_collected"] == 1);
  CHECK(gc["sandboxes_kept"] == 0);
  CHECK(gc["gc_delay"] == "200ms");
  CHECK(gc["disk_used_percent"] == 10.0);
}

TEST_CASE("image GC removes blobs no task uses after the image delay, keeps referenced ones, and skips others") {
  testsupport::TempDir dir("tug-node-gc");
  const std::string used = FakeBlob(dir.path(), "layer used", hours(2));
  const std::string unused = FakeBlob(dir.path(), "layer unused", hours(2));
  const std::string partial = unused + ".partial-0123";
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), partial, "half"));
  SetMtime(partial, hours(2));
  const std::string foreign = dir.path() + "/images/sha256/README";
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), foreign, "not a blob"));
  SetMtime(foreign, hours(2));
  REQUIRE(core::DefaultEnv()->CreateDirs(dir.Sub("trash")));

  ImageCache cache(dir.path() + "/images");
  cache.Acquire("task-a", "sha256:" + crypto::Sha256Hex("layer used"));
  const auto now = std::chrono::system_clock::now();
  // Swept as if two hours later: the referenced blob's last use (the Acquire) is past the delay by then too.
  auto moved = cache.Sweep(now + 2h, 1h, dir.Sub("trash"));
  CHECK(moved.size() == 2);
  CHECK(Exists(used));
  CHECK_FALSE(Exists(unused));
  CHECK_FALSE(Exists(partial));
  CHECK(Exists(foreign));
  CHECK(cache.blobs_in_use() == 1);

  // Released now: its last use is now, so it stays for the image delay, then goes.
  cache.Release("task-a");
  CHECK(cache.Sweep(now, 1h, dir.Sub("trash")).empty());
  CHECK(Exists(used));
  CHECK(cache.Sweep(now + 61min, 1h, dir.Sub("trash")).size() == 1);
  CHECK_FALSE(Exists(used));
}

TEST_CASE("a launch that references a blob before a sweep checks it always keeps it") {
  testsupport::TempDir dir("tug-node-gc");
  REQUIRE(core::DefaultEnv()->CreateDirs(dir.Sub("trash")));
  ImageCache cache(dir.path() + "/images");
  std::atomic<bool> stop{false};
  std::atomic<int> swept{0};
  std::thread sweeper([&] {
    while (!stop) swept += static_cast<int>(cache.Sweep(std::chrono::system_clock::now(), 0ms, dir.Sub("trash")).size());
  });
  int found = 0, lost = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string content = "layer " + std::to_string(i);
    const std::string path = FakeBlob(dir.path(), content, std::chrono::seconds(10));
    // What PullImage does: reference, then look in the cache, then use the blob for a while.
    cache.Acquire("launch", "sha256:" + crypto::Sha256Hex(content));
    if (Exists(path)) {
      ++found;
      std::this_thread::sleep_for(200us);
      if (!Exists(path)) ++lost;
    }
    cache.Release("launch");
  }
  stop = true;
  sweeper.join();
  CHECK(lost == 0);
  CHECK(found > 0);
  CHECK(swept > 0);
}

TEST_CASE("the runner's GC passes remove an old unreferenced blob after the image delay") {
  testsupport::TempDir dir("tug-node-gc");
  const std::string fresh = FakeBlob(dir.path(), "fresh layer", std::chrono::seconds(0));
  const std::string stale = FakeBlob(dir.path(), "stale layer", std::chrono::seconds(5));
  RunnerOptions o = GcOpts(dir.path(), 1h);
  o.gc.image_delay = 2s;
  auto runner = Open(o);
  REQUIRE(testsupport::WaitFor([&] { return !Exists(stale); }, 5s));
  CHECK(Exists(fresh));
  CHECK(runner->GcStatus().blobs_collected == 1);
  REQUIRE(testsupport::WaitFor([&] { return !Exists(fresh); }, 5s));
  CHECK(runner->GcStatus().blobs_collected == 2);
}
