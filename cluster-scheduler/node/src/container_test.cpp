// Container tasks end to end: an amd64 busybox image pushed to a real docker-registry, pulled by the runner, run by
// runc with the host's network, answering HTTP on its assigned port; an image that does not exist; and image GC
// keeping a running task's layers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures/app_image.hpp"
#include "http/client.hpp"
#include "registry/client.hpp"
#include "test_util.hpp"
#include "testsupport/registry_server.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::node;
using namespace tug::cluster::node::testing;

namespace {

// Fails the test case (Catch's FAIL throws) when the host cannot run them.
void RequireContainerHost() {
  if (::geteuid() != 0 || core::FindInPath("runc").empty()) {
    // Not a skip: the suite runs as root with runc installed (scripts/test.sh), so this is a broken set-up.
    FAIL("runc containers need root and runc (run the suite as root after scripts/setup.sh)");
  }
  if (HostBusybox().empty()) {
    FAIL("no busybox-static .deb for this host's architecture in /var/cache/tugboat/debs (scripts/setup.sh fetches it)");
  }
}

std::string DebArch() { return oci::HostPlatform().architecture == "amd64" ? "amd64" : "arm64"; }

// A real registry on loopback holding the busybox app image (fixtures::PushAppImage) for this host's architecture
// at `repo_path`; the registry lives as long as this object.
struct PushedImage {
  std::unique_ptr<testsupport::RegistryServer> registry;
  std::string image;  // host:port/repo_path, what a task's container.image names
};

PushedImage PushHostAppImage(const std::string& repo_path) {
  auto reg = testsupport::RegistryServer::Start();
  REQUIRE(reg);
  registry::ClientOptions ro;
  ro.insecure_registries = {(*reg)->host_port()};
  registry::Client client(ro);
  auto repo = registry::Reference::Parse((*reg)->host_port() + "/" + repo_path);
  REQUIRE(repo);
  fixtures::AppImageSpec spec;
  spec.archs = {DebArch()};
  REQUIRE(fixtures::PushAppImage(client, *repo, spec));
  return PushedImage{.registry = std::move(*reg), .image = repo->ToString()};
}

}  // namespace

TEST_CASE("a container task from a registry image runs with its command, env, limits and host ports, then is killed") {
  RequireContainerHost();
  const PushedImage pushed = PushHostAppImage("acme/web:1");

  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  const uint32_t port = testsupport::FreeLoopbackPort();
  auto task = ShellTask("web.c1",
                        "echo \"hello from $TASK_ID on $PORT0 version $SENSOR_VERSION sandbox $SANDBOX\"; "
                        "echo written-in-sandbox > $SANDBOX/marker; "
                        "/bin/busybox cat /proc/self/status > $SANDBOX/proc-status; "
                        "exec /bin/busybox httpd -f -p $PORT0 -h /app",
                        {port});
  task.container.image = pushed.image;
  task.resources = Resources::Make(0.5, 64) + Resources::Ports({port});
  HealthCheck hc;
  hc.type = HealthCheck::Type::kHttp;
  hc.path = "/VERSION";
  hc.grace_period_s = 0;
  hc.interval_s = 0.3;
  task.health_check = hc;
  REQUIRE(runner->Launch(task));
  testsupport::WaitFor([&] { return runner->Get("web.c1")->healthy == true || IsTerminal(StateOf(*runner, "web.c1")); },
                       60s);
  INFO(runner->Get("web.c1")->last.message);
  REQUIRE(runner->Get("web.c1")->healthy == true);
  CHECK(StateOf(*runner, "web.c1") == TaskState::kRunning);

  // It answers on the host's port: no network namespace.
  http::Client http;
  auto res = http.Call("GET", "http://127.0.0.1:" + std::to_string(port) + "/VERSION");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "1\n");

  const std::string sandbox = runner->SandboxOf("web.c1");
  CHECK(Slurp(sandbox + "/stdout") ==
        "hello from web.c1 on " + std::to_string(port) + " version 1 sandbox /mnt/sandbox\n");
  CHECK(Slurp(sandbox + "/marker") == "written-in-sandbox\n");
  // Capabilities: no raw sockets (CAP_NET_RAW, bit 13), no device nodes (CAP_MKNOD, bit 27); low ports still bind.
  const std::string status = Slurp(sandbox + "/proc-status");
  const auto bnd = status.find("CapBnd:");
  REQUIRE(bnd != std::string::npos);
  const uint64_t caps = std::stoull(status.substr(bnd + 7, status.find('\n', bnd) - bnd - 7), nullptr, 16);
  CHECK((caps & (uint64_t{1} << 13)) == 0);
  CHECK((caps & (uint64_t{1} << 27)) == 0);
  CHECK((caps & (uint64_t{1} << 10)) != 0);  // CAP_NET_BIND_SERVICE
  auto v = runner->Get("web.c1");
  CHECK(v->container);
  CHECK(v->limits == "runc linux.resources (memory 64 MiB, cpus 0.5)");
  const std::string config = Slurp(dir.path() + "/containers/web.c1/config.json");
  CHECK(config.find("\"limit\": 67108864") != std::string::npos);
  CHECK(config.find("\"quota\": 50000") != std::string::npos);

  REQUIRE(runner->Kill("web.c1"));
  REQUIRE(WaitTerminal(*runner, "web.c1", 20s));
  CHECK(StateOf(*runner, "web.c1") == TaskState::kKilled);
  CHECK(testsupport::WaitFor([&] { return !core::DefaultEnv()->Exists(dir.path() + "/containers/web.c1"); }, 10s));
  auto gone = http.Call("GET", "http://127.0.0.1:" + std::to_string(port) + "/VERSION");
  CHECK(!gone);

  // A second task from the same image reuses the cached layers and runs the image's own entrypoint.
  auto again = ShellTask("web.c2", "", {});
  again.container.image = pushed.image;
  REQUIRE(runner->Launch(again));
  REQUIRE(WaitState(*runner, "web.c2", TaskState::kRunning, 60s));
  CHECK(testsupport::WaitFor(
      [&] { return Slurp(runner->SandboxOf("web.c2") + "/stdout").find("sensor v1 starting") != std::string::npos; },
      10s));
  REQUIRE(runner->Kill("web.c2"));
  REQUIRE(WaitTerminal(*runner, "web.c2", 20s));
  CHECK(StateOf(*runner, "web.c2") == TaskState::kKilled);
}

TEST_CASE("a container task whose image does not exist fails naming the reference and the registry's answer") {
  RequireContainerHost();
  auto reg = testsupport::RegistryServer::Start();
  REQUIRE(reg);
  testsupport::TempDir dir("tug-node");
  auto runner = OpenRunner(dir.path());
  auto task = ShellTask("ghost", "true");
  task.container.image = (*reg)->host_port() + "/acme/missing:1";
  REQUIRE(runner->Launch(task));
  REQUIRE(WaitState(*runner, "ghost", TaskState::kFailed, 30s));
  auto v = runner->Get("ghost");
  INFO(v->last.message);
  CHECK(v->last.message.rfind("pulling " + task.container.image + ": ", 0) == 0);
  CHECK(v->last.message.find("404") != std::string::npos);
  CHECK(v->last.reason == "REASON_CONTAINER_LAUNCH_FAILED");
  CHECK(StateNames(UpdatesOf(*runner, "ghost")) == std::vector<std::string>{"TASK_STARTING", "TASK_FAILED"});
}

TEST_CASE("image GC keeps the layers of a running container task and removes them after its sandbox is collected") {
  RequireContainerHost();
  const PushedImage pushed = PushHostAppImage("acme/gc:1");

  testsupport::TempDir dir("tug-node");
  auto* env = core::DefaultEnv();
  const std::string blobs = dir.path() + "/images/sha256";
  // A layer of some image no task uses any more, last used an hour ago.
  REQUIRE(env->CreateDirs(blobs));
  const std::string unused = blobs + "/" + std::string(64, 'a');
  REQUIRE(core::WriteFileDurable(*env, unused, "old layer"));
  struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  REQUIRE(::utimensat(AT_FDCWD, unused.c_str(), old, 0) == 0);

  RunnerOptions o = Opts(dir.path());
  o.gc.delay = 100ms;
  o.gc.image_delay = 1s;
  o.gc.interval = 50ms;
  o.gc.disk_usage = [](const std::string&) -> Result<double> { return 10.0; };
  auto opened = TaskRunner::Open(o);
  REQUIRE(opened);
  auto& runner = **opened;
  auto task = ShellTask("gc.c1", "exec /bin/busybox sleep 1000");
  task.container.image = pushed.image;
  REQUIRE(runner.Launch(task));
  REQUIRE(WaitState(runner, "gc.c1", TaskState::kRunning, 60s));
  REQUIRE(testsupport::WaitFor([&] { return !env->Exists(unused); }, 5s));
  auto layers = env->ListDir(blobs);
  REQUIRE(layers);
  REQUIRE_FALSE(layers->empty());

  // Several image delays later, the running task's layers are all still there.
  std::this_thread::sleep_for(2500ms);
  for (const auto& l : *layers) CHECK(env->Exists(blobs + "/" + l));
  CHECK(runner.GcStatus().blobs_in_use == layers->size());

  // Killed and acknowledged: the sandbox goes after 100ms, the layers an image delay after that.
  REQUIRE(runner.Kill("gc.c1"));
  REQUIRE(WaitTerminal(runner, "gc.c1", 20s));
  for (const auto& u : UpdatesOf(runner, "gc.c1")) REQUIRE(runner.Acknowledge("gc.c1", u.uuid));
  REQUIRE(testsupport::WaitFor([&] { return !env->Exists(runner.SandboxOf("gc.c1")); }, 5s));
  CHECK(testsupport::WaitFor([&] { auto left = env->ListDir(blobs); return left && left->empty(); }, 10s));
  CHECK(runner.GcStatus().blobs_in_use == 0);
}

TEST_CASE("a container task (root in its box) that plants host-path symlinks and a FIFO in /mnt/sandbox writes no "
          "host file") {
  RequireContainerHost();
  const PushedImage pushed = PushHostAppImage("acme/box:1");
  testsupport::TempDir dir("tug-node");
  const std::string victim = dir.Sub("victim");  // a host path: meaningless inside the container, not outside
  { std::ofstream(victim) << "precious\n"; }
  auto o = Opts(dir.path());
  o.log_max_bytes = 4096;
  auto r = TaskRunner::Open(o);
  REQUIRE(r);
  auto& runner = **r;
  std::string s(500, 'x');
  auto task = ShellTask(
      "box.c1", "cd $SANDBOX; bb=/bin/busybox; for f in stdout stderr stdout.1 exit_status.json.tmp task.pid; do "
                "$bb rm -f $f; $bb ln -s " + victim + " $f; done; $bb mkfifo exit_status.json; i=0; "
                "while [ $i -lt 100 ]; do $bb ln -sfn " + victim + " stdout; echo \"line $i " + s + s + s + s +
                "\"; i=$((i+1)); done; exit 3");
  task.container.image = pushed.image;
  REQUIRE(runner.Launch(task));
  REQUIRE(WaitTerminal(runner, "box.c1", 60s));
  auto v = runner.Get("box.c1");
  INFO(v->last.message);
  CHECK(v->state == TaskState::kFailed);
  CHECK(v->last.message.find("exited with status 3") == 0);
  CHECK(Slurp(victim) == "precious\n");
  struct stat st{};
  REQUIRE(::lstat((runner.SandboxOf("box.c1") + "/stdout.1").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));  // rotation replaced the planted link with a file of the task's output
}
