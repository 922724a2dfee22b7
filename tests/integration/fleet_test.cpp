// The fleet story end to end with every real part: Mosquitto (TLS, fleet ACL), the registry, iot-controller, five
// device-agent daemons running arm64 images in runc under QEMU, and the operator's tug CLI. v2 rolls out in phases
// (1 device, 50%, all) and lands everywhere; a broken v3 fails on the canary, which rolls itself back, the rollout
// aborts and no other device is touched.
#include <catch2/catch.hpp>

#include <signal.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <regex>
#include <thread>

#include "harness.hpp"
#include "http/client.hpp"
#include "http/tokens.hpp"
#include "testsupport/mosquitto_server.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::itest;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Fleet {
  Harness h;
  std::unique_ptr<testsupport::MosquittoServer> broker;
  std::optional<core::Process> controller;
  std::string url, token = "s3cret-token";
  std::vector<std::string> ids;
  std::vector<core::Process> agents;
  std::string root_file;

  Fleet() {
    auto b = testsupport::MosquittoServer::Start({});
    if (!b) FAIL("broker: " << b.error().Message());
    broker = std::move(*b);
    root_file = h.dir.Sub("root.json");
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), root_file, h.root_json));
  }
  ~Fleet() {
    for (auto& a : agents) a.Stop(std::chrono::seconds(5));
    if (controller) controller->Stop(std::chrono::seconds(5));
  }

  void StartController() {
    auto cert = broker->Cert("controller");
    REQUIRE(cert);
    const std::string log = h.dir.Sub("controller.log");
    (void)core::DefaultEnv()->RemoveFile(log);
    const uint16_t port = testsupport::FreeLoopbackPort();
    // HTTPS with a named operator token (stored hashed), as in production; tug pins the CA.
    const std::string tokens = h.dir.Sub("api.tokens");
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), tokens, http::TokenLine("ops", http::Scope::kOperator, token)));
    const auto tls = broker->server_cert();
    auto p = core::Spawn({BuildPath("iot-controller/controller/iot-controller"), "--db", h.dir.Sub("ctrl.db"),
                          "--listen", "127.0.0.1:" + std::to_string(port), "--api-tokens", tokens, "--tls-cert",
                          tls.cert, "--tls-key", tls.key, "--root", root_file,
                          "--mqtt-host", "127.0.0.1", "--mqtt-port", std::to_string(broker->tls_port()), "--mqtt-ca",
                          broker->ca_file(), "--mqtt-cert", cert->cert, "--mqtt-key", cert->key, "--tick", "300ms"},
                         log);
    REQUIRE(p);
    controller = std::move(*p);
    url = "https://127.0.0.1:" + std::to_string(port);
    http::ClientOptions co;
    co.ca_file = broker->ca_file();
    co.timeout = 2s;
    REQUIRE(testsupport::WaitFor(
        [&] {
          http::Client c(co);
          auto r = c.Call("GET", url + "/healthz");
          return r && r->status == 200;
        },
        15s));
  }

  // Starts (or, with the same id, restarts) one device-agent daemon; returns its index in `agents`.
  size_t StartDevice(const std::string& id) {
    const bool known = std::find(ids.begin(), ids.end(), id) != ids.end();
    const std::string state = known ? h.dir.Sub(id) : h.InitDevice(id);
    auto cert = broker->Cert(id);
    REQUIRE(cert);
    json cfg{{"device_id", id},
             {"state_dir", state},
             {"platform", "linux/arm64/v8"},
             {"labels", {{"fleet", "demo"}}},
             {"mqtt", {{"host", "127.0.0.1"}, {"port", broker->tls_port()}, {"ca", broker->ca_file()},
                       {"cert", cert->cert}, {"key", cert->key}, {"keepalive", 5}}},
             {"registry", {{"insecure", {h.registry->host_port()}}}},
             {"commit_window", 1}};
    const std::string path = h.dir.Sub(id + ".json");
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, cfg.dump()));
    auto p = core::Spawn({BuildPath("device-agent/device-agent"), "--config", path, "run"}, h.dir.Sub(id + ".log"));
    REQUIRE(p);
    if (known) {
      const size_t i = static_cast<size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin());
      agents[i] = std::move(*p);
      return i;
    }
    agents.push_back(std::move(*p));
    ids.push_back(id);
    return agents.size() - 1;
  }

  core::RunResult Tug(std::vector<std::string> args, std::chrono::seconds timeout = 60s) {
    std::vector<std::string> argv{BuildPath("iot-controller/cli/tug"), "--controller", url, "--ca", broker->ca_file(),
                                  "--token", token};
    argv.insert(argv.end(), args.begin(), args.end());
    core::RunOptions o;
    o.timeout = timeout;
    auto r = core::Run(argv, o);
    REQUIRE(r);
    return *r;
  }
  json TugJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    auto r = Tug(args);
    INFO(r.Describe());
    REQUIRE(r.ok());
    return json::parse(r.out);
  }
  std::string AddRelease(const fixtures::PushedImage& img, uint64_t version) {
    const std::string path = h.dir.Sub("release-" + std::to_string(version) + ".json");
    REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), path, h.Sign(img, version)));
    auto r = Tug({"releases", "add", path});
    INFO(r.Describe());
    REQUIRE(r.ok());
    return path;
  }
  std::string CreateRollout(uint64_t version, std::vector<std::string> phases) {
    std::vector<std::string> args{"rollout", "create", "--release", std::to_string(version), "--label", "fleet=demo",
                                  "--abort-failure-percent", "1", "--abort-min-devices", "1", "--device-timeout",
                                  "5m"};
    for (auto& p : phases) {
      args.push_back("--phase");
      args.push_back(p);
    }
    auto r = Tug(args);
    INFO(r.Describe());
    REQUIRE(r.ok());
    std::smatch m;
    std::string out = r.out;
    REQUIRE(std::regex_search(out, m, std::regex("r-[0-9A-Za-z-]+")));
    return m.str();
  }
  json Rollout(const std::string& id) { return TugJson({"rollout", "get", id}); }
  json Device(const std::string& id) { return TugJson({"devices", "get", id}); }
};

}  // namespace

TEST_CASE("a fleet of five arm64 devices takes v2 in phases and a broken v3 stops at the canary") {
  Fleet f;
  f.StartController();
  for (int i = 1; i <= 5; ++i) f.StartDevice("dev-" + std::to_string(i));
  // Every device registers itself on first presence.
  REQUIRE(testsupport::WaitFor(
      [&] {
        auto r = f.Tug({"--json", "devices", "list", "--online"});
        return r.ok() && json::parse(r.out)["devices"].size() == 5;
      },
      60s));

  auto v1 = f.h.Push(1, fixtures::AppBehaviour::kHealthy, {"arm64"});
  auto v2 = f.h.Push(2, fixtures::AppBehaviour::kHealthy, {"arm64"});
  auto v3 = f.h.Push(3, fixtures::AppBehaviour::kFailsHealthCheck, {"arm64"});
  f.AddRelease(v1, 1);
  f.AddRelease(v2, 2);
  f.AddRelease(v3, 3);

  // v1 everywhere in one phase.
  auto r1 = f.CreateRollout(1, {"100%"});
  auto w1 = f.Tug({"rollout", "watch", r1, "--timeout", "5m"}, 400s);
  INFO(w1.out << w1.err);
  REQUIRE(w1.exit_code == 0);

  // v2 in phases: canary, half, all.
  auto r2 = f.CreateRollout(2, {"1", "50%", "100%"});
  auto w2 = f.Tug({"rollout", "watch", r2, "--timeout", "5m"}, 400s);
  INFO(w2.out << w2.err);
  REQUIRE(w2.exit_code == 0);
  auto ro2 = f.Rollout(r2);
  CHECK(ro2["state"] == "succeeded");
  CHECK(ro2["phases"].size() == 3);
  for (auto& id : f.ids) CHECK(f.Device(id)["active"]["version"] == 2);

  // v3 is broken: the canary rolls back, the rollout aborts, nobody else is touched.
  auto r3 = f.CreateRollout(3, {"1", "50%", "100%"});
  auto w3 = f.Tug({"rollout", "watch", r3, "--timeout", "5m"}, 400s);
  INFO(w3.out << w3.err);
  CHECK(w3.exit_code == 1);
  auto ro3 = f.Rollout(r3);
  CHECK(ro3["state"] == "aborted");
  int touched = 0, failed = 0;
  for (auto& d : ro3["devices"]) {
    const std::string s = d["state"];
    if (s != "pending") ++touched;
    if (s == "failed") ++failed;
  }
  CHECK(touched == 1);
  CHECK(failed == 1);
  for (auto& id : f.ids) {
    auto d = f.Device(id);
    CHECK(d["active"]["version"] == 2);  // the canary rolled itself back; the others never saw v3
  }

  // Everything went over HTTPS with the named token: the audit log says who did it.
  auto audit = f.TugJson({"audit", "--limit", "100"});
  bool saw_release = false, saw_rollout = false;
  for (const auto& e : audit["entries"]) {
    CHECK(e["principal"] == "ops");
    saw_release |= e["method"] == "POST" && e["target"] == "/api/v1/releases" && e["status"] == 201;
    saw_rollout |= e["method"] == "POST" && e["target"] == "/api/v1/rollouts" && e["status"] == 201;
  }
  CHECK(saw_release);
  CHECK(saw_rollout);
  // Without the CA pinned the controller's certificate is not trusted; in plain HTTP the TLS port answers nothing.
  auto unpinned = core::Run({BuildPath("iot-controller/cli/tug"), "--controller", f.url, "--token", f.token,
                             "releases", "list"});
  REQUIRE(unpinned);
  CHECK(unpinned->exit_code != 0);
  std::string plain_url = f.url;
  plain_url.replace(0, 5, "http");
  auto plain = core::Run({BuildPath("iot-controller/cli/tug"), "--controller", plain_url, "--token", f.token,
                          "releases", "list"});
  REQUIRE(plain);
  CHECK(plain->exit_code != 0);
}

TEST_CASE("a rollout survives a controller kill -9, a broker restart and a device offline for its first phase") {
  Fleet f;
  f.StartController();
  for (int i = 1; i <= 4; ++i) f.StartDevice("dev-" + std::to_string(i));
  REQUIRE(testsupport::WaitFor(
      [&] {
        auto r = f.Tug({"--json", "devices", "list", "--online"});
        return r.ok() && json::parse(r.out)["devices"].size() == 4;
      },
      60s));
  // dev-4 goes offline (SIGTERM: it says so on presence) and stays away through the first phase.
  f.agents[3].Stop(std::chrono::seconds(10));
  REQUIRE(testsupport::WaitFor(
      [&] {
        auto r = f.Tug({"--json", "devices", "list", "--online"});
        return r.ok() && json::parse(r.out)["devices"].size() == 3;
      },
      30s));

  auto v1 = f.h.Push(1, fixtures::AppBehaviour::kHealthy, {"arm64"});
  f.AddRelease(v1, 1);
  auto id = f.CreateRollout(1, {"1@3s", "100%"});

  // The controller dies mid-rollout and comes back on the same database.
  std::this_thread::sleep_for(1500ms);
  REQUIRE(f.Rollout(id)["state"] == "running");  // the faults below really land mid-rollout
  f.controller->Kill(SIGKILL);
  f.controller->Wait(10s);
  f.StartController();
  // The broker restarts too: daemons and controller reconnect on their own.
  REQUIRE(f.broker->Restart());
  // dev-4 returns and is included.
  f.StartDevice("dev-4");

  auto w = f.Tug({"rollout", "watch", id, "--timeout", "5m"}, 400s);
  INFO(w.out << w.err << "\ncontroller log:\n" << core::DefaultEnv()->ReadFile(f.h.dir.Sub("controller.log")).value_or(""));
  REQUIRE(w.exit_code == 0);
  auto r = f.Rollout(id);
  CHECK(r["state"] == "succeeded");
  int succeeded = 0;
  for (auto& d : r["devices"]) {
    if (d["state"] == "succeeded") ++succeeded;
    CHECK(d["attempts"] == 1);  // nothing sent or counted twice across the restarts
  }
  CHECK(succeeded == 4);
  CHECK(r["counts"]["succeeded"] == 4);
  CHECK(r["counts"]["failed"] == 0);
  for (auto& dev : f.ids) CHECK(f.Device(dev)["active"]["version"] == 1);
}
