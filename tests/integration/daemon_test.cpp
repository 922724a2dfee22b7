// device-agent's daemon mode against a real TLS Mosquitto with the fleet ACL, a real registry and runc, with the test
// playing the controller: desired state is applied once, jobs report their transitions, commands answer with MQTT 5
// correlation data, the Will marks a killed agent offline, and a restarted agent leaves a healthy app alone.
#include <catch2/catch.hpp>

#include <signal.h>

#include <nlohmann/json.hpp>

#include "fleet/topics.hpp"
#include "harness.hpp"
#include "mqtt_probe.hpp"
#include "testsupport/mosquitto_server.hpp"

using namespace tug;
using namespace tug::itest;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

bool Is(const mqtt::Message& m, const std::string& topic) { return m.topic == topic; }

json Body(const mqtt::Message& m) { return json::parse(m.payload.empty() ? "null" : m.payload); }

// The state's count of refused messages for one reason (0 when it has none).
uint64_t RejectedIn(const mqtt::Message& m, const char* reason) {
  const json b = Body(m);
  return b.is_object() && b.contains("rejected") ? b["rejected"].value(reason, uint64_t{0}) : 0;
}

struct AgentProcess {
  std::string config;
  std::string log;
  std::optional<core::Process> proc;
  void Start() {
    auto p = core::Spawn({BuildPath("device-agent/device-agent"), "--config", config, "--log-level", "info", "run"}, log);
    REQUIRE(p);
    proc = std::move(*p);
  }
};

// The test's stand-in for the controller: the "controller" certificate, so the broker ACL lets it see everything.
mqtt::ClientOptions ControllerOptions(testsupport::MosquittoServer& b) {
  auto cert = b.Cert("controller");
  REQUIRE(cert);
  mqtt::ClientOptions co;
  co.port = b.tls_port();
  co.client_id = "test-controller";
  co.tls = mqtt::TlsOptions{b.ca_file(), cert->cert, cert->key};
  return co;
}

}  // namespace

TEST_CASE("the agent daemon follows desired state over TLS MQTT and reports each step") {
  Harness h;
  auto broker = testsupport::MosquittoServer::Start({});
  if (!broker) FAIL("broker did not start: " << broker.error().Message());
  auto& b = **broker;
  const std::string id = "dev-1";
  const std::string prefix = "tug/v1/d/" + id + "/";
  const std::string state = h.InitDevice(id);
  auto cert = b.Cert(id);
  REQUIRE(cert);
  json cfg{{"device_id", id},
           {"state_dir", state},
           {"platform", "linux/amd64"},
           {"labels", {{"site", "lab"}}},
           {"mqtt", {{"host", "127.0.0.1"}, {"port", b.tls_port()}, {"ca", b.ca_file()}, {"cert", cert->cert},
                     {"key", cert->key}, {"keepalive", 5}}},
           {"registry", {{"insecure", {h.registry->host_port()}}}},
           {"commit_window", 1},
           {"supervise_interval", 2}};
  AgentProcess agent{h.dir.Sub("agent.json"), h.dir.Sub("agent.log"), std::nullopt};
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), agent.config, cfg.dump()));

  MqttProbe ctrl(ControllerOptions(b));
  REQUIRE(ctrl.Start());
  REQUIRE(ctrl.WaitConnected(10s));
  ctrl.Subscribe("tug/v1/d/#");

  agent.Start();
  auto online = ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "presence") && Body(m)["online"] == true; }, 20s);
  INFO(core::DefaultEnv()->ReadFile(agent.log).value_or(""));
  REQUIRE(online);
  auto first_state = ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "state"); }, 20s);
  REQUIRE(first_state);
  CHECK(Body(*first_state)["labels"]["site"] == "lab");
  CHECK(Body(*first_state)["active"].is_null());

  // v1: a healthy release through retained desired state.
  auto v1 = h.Push(1);
  auto desired = [&](uint64_t v, const std::string& job, const std::string& envelope) {
    json d{{"v", v}, {"job", job}, {"release", json::parse(envelope)}};
    REQUIRE(ctrl.Publish(prefix + "desired", d.dump(), true));
  };
  desired(1, "job-1", h.Sign(v1, 1));
  auto ok1 = ctrl.WaitFor(
      [&](auto& m) { return Is(m, prefix + "jobs/job-1/status") && Body(m)["state"] == "SUCCEEDED"; }, 120s);
  REQUIRE(ok1);
  auto st1 = ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "state") && Body(m)["active"]["version"] == 1; }, 20s);
  REQUIRE(st1);
  CHECK(Body(*st1)["applied_v"] == 1);
  // Every transition was reported in order.
  std::vector<std::string> phases;
  for (auto& m : ctrl.Messages())
    if (Is(m, prefix + "jobs/job-1/status")) phases.push_back(Body(m)["state"]);
  CHECK(phases == std::vector<std::string>{"ACCEPTED", "DOWNLOADING", "VERIFIED", "INSTALLING", "ACTIVATING",
                                           "HEALTHCHECK", "SUCCEEDED"});

  // A request/response command with correlation data.
  mqtt::PublishProperties props;
  props.response_topic = prefix + "cmd/res";
  props.correlation_data = std::string("\x01\x02corr", 6);
  REQUIRE(ctrl.Publish(prefix + "cmd/req", R"({"cmd":"report"})", false, props));
  auto reply = ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "cmd/res"); }, 20s);
  REQUIRE(reply);
  CHECK(reply->correlation_data == props.correlation_data);
  CHECK(Body(*reply)["ok"] == true);
  CHECK(Body(*reply)["result"]["active"]["version"] == 1);

  // The agent is killed: its Will says offline. Restarted: online again, the app was not restarted, and the
  // retained desired v1 is not applied a second time.
  const std::string container = "tug-";  // any of ours
  auto pid_of_app = [&]() {
    auto list = core::Run({"runc", "--root", state + "/runc", "list", "--format", "json"});
    REQUIRE(list);
    auto arr = json::parse(list->out.empty() ? "[]" : list->out);
    for (auto& c : arr)
      if (c.value("status", "") == "running") return c.value("pid", 0);
    return 0;
  };
  const int app_pid = pid_of_app();
  REQUIRE(app_pid > 0);
  const size_t before_kill = ctrl.Count();
  agent.proc->Kill(SIGKILL);
  agent.proc->Wait(10s);
  auto offline = ctrl.WaitFor(
      [&](auto& m) { return Is(m, prefix + "presence") && Body(m)["online"] == false; }, 30s, before_kill);
  REQUIRE(offline);
  const size_t before_restart = ctrl.Count();
  agent.Start();
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "presence") && Body(m)["online"] == true; }, 20s,
                       before_restart));
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "state"); }, 20s, before_restart));
  std::this_thread::sleep_for(2s);
  CHECK(pid_of_app() == app_pid);
  for (auto& m : ctrl.Messages())
    if (m.topic.find("/jobs/") != std::string::npos) CHECK(m.topic.rfind(prefix + "jobs/job-1/", 0) == 0);

  // v2 fails its health check: the device rolls back and says so.
  auto v2 = h.Push(2, fixtures::AppBehaviour::kFailsHealthCheck);
  desired(2, "job-2", h.Sign(v2, 2));
  auto rb = ctrl.WaitFor([&](auto& m) {
    return Is(m, prefix + "jobs/job-2/status") && (Body(m)["state"] == "ROLLED_BACK" || Body(m)["state"] == "SUCCEEDED");
  }, 120s);
  REQUIRE(rb);
  CHECK(Body(*rb)["state"] == "ROLLED_BACK");
  CHECK(Body(*rb)["error"]["code"] == "health check failed");

  // v3 succeeds; then a fleet rollback through desired state takes the device back to v1.
  auto v3 = h.Push(3);
  desired(3, "job-3", h.Sign(v3, 3));
  REQUIRE(ctrl.WaitFor(
      [&](auto& m) { return Is(m, prefix + "jobs/job-3/status") && Body(m)["state"] == "SUCCEEDED"; }, 120s));
  REQUIRE(ctrl.Publish(prefix + "desired", json{{"v", 4}, {"job", "job-4"}, {"action", "rollback"}}.dump(), true));
  REQUIRE(ctrl.WaitFor(
      [&](auto& m) { return Is(m, prefix + "jobs/job-4/status") && Body(m)["state"] == "SUCCEEDED"; }, 120s));
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, prefix + "state") && Body(m)["active"]["version"] == 1; }, 20s));

  agent.proc->Stop(10s);
  (void)container;
}

TEST_CASE("the agent daemon refuses malformed desired and cmd messages and keeps its app running; a release that "
          "fails verification does not advance applied_v") {
  Harness h;
  auto broker = testsupport::MosquittoServer::Start({});
  if (!broker) FAIL("broker did not start: " << broker.error().Message());
  auto& b = **broker;
  const std::string id = "dev-2";
  const std::string prefix = fleet::DevicePrefix(id);
  const std::string state = h.InitDevice(id);
  auto cert = b.Cert(id);
  REQUIRE(cert);
  json cfg{{"device_id", id},
           {"state_dir", state},
           {"platform", "linux/amd64"},
           {"repository", h.Repo().Repo()},  // pinned, as `device-agent --repository`
           {"mqtt", {{"host", "127.0.0.1"}, {"port", b.tls_port()}, {"ca", b.ca_file()}, {"cert", cert->cert},
                     {"key", cert->key}, {"keepalive", 5}}},
           {"registry", {{"insecure", {h.registry->host_port()}}}},
           {"commit_window", 1},
           {"supervise_interval", 2}};
  AgentProcess agent{h.dir.Sub("agent.json"), h.dir.Sub("agent.log"), std::nullopt};
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), agent.config, cfg.dump()));
  MqttProbe ctrl(ControllerOptions(b));
  REQUIRE(ctrl.Start());
  REQUIRE(ctrl.WaitConnected(10s));
  ctrl.Subscribe("tug/v1/d/#");
  agent.Start();
  INFO(core::DefaultEnv()->ReadFile(agent.log).value_or(""));
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, fleet::StateTopic(id)); }, 20s));

  auto publish_desired = [&](const std::string& payload) {
    REQUIRE(ctrl.Publish(fleet::DesiredTopic(id), payload, true));
  };
  auto v1 = h.Push(1);
  publish_desired(json{{"v", 1}, {"job", "job-1"}, {"release", json::parse(h.Sign(v1, 1))}}.dump());
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, fleet::JobStatusTopic(id, "job-1")) && Body(m)["state"] == "SUCCEEDED"; },
                       120s));
  auto pid_of_app = [&]() {
    auto list = core::Run({"runc", "--root", state + "/runc", "list", "--format", "json"});
    REQUIRE(list);
    auto arr = json::parse(list->out.empty() ? "[]" : list->out);
    for (auto& c : arr)
      if (c.value("status", "") == "running") return c.value("pid", 0);
    return 0;
  };
  const int app_pid = pid_of_app();
  REQUIRE(app_pid > 0);

  // Type confusion and deep nesting: refused, counted in the state, nothing persisted.
  size_t mark = ctrl.Count();
  publish_desired(R"({"v":"9","release":{}})");
  REQUIRE(ctrl.WaitFor(
      [&](auto& m) { return Is(m, fleet::StateTopic(id)) && RejectedIn(m, "bad_type") >= 1; },
      20s, mark));
  publish_desired(R"({"v":2,"release":)" + std::string(100000, '[') + "}");
  REQUIRE(ctrl.WaitFor(
      [&](auto& m) { return Is(m, fleet::StateTopic(id)) && RejectedIn(m, "too_deep") >= 1; }, 20s,
      mark));

  // A huge v whose release is signed by an unknown key, and one signed for another repository: both fail
  // verification (FAILED on their job topics) and leave applied_v at 1.
  mark = ctrl.Count();
  publish_desired(json{{"v", uint64_t{1} << 62}, {"job", "job-huge"},
                       {"release", json::parse(h.Sign(v1, 5, crypto::GenerateKeyPair()))}}.dump());
  REQUIRE(ctrl.WaitFor(
      [&](auto& m) { return Is(m, fleet::JobStatusTopic(id, "job-huge")) && Body(m)["state"] == "FAILED"; }, 30s, mark));
  publish_desired(json{{"v", 3}, {"job", "job-other-repo"},
                       {"release", json::parse(h.Sign(v1, 6, std::nullopt, std::chrono::hours(24),
                                                      h.registry->host_port() + "/evil/other"))}}.dump());
  auto other = ctrl.WaitFor(
      [&](auto& m) { return Is(m, fleet::JobStatusTopic(id, "job-other-repo")) && Body(m)["state"] == "FAILED"; }, 30s,
      mark);
  REQUIRE(other);
  CHECK(core::DefaultEnv()->ReadFile(state + "/applied_v").value_or("") == "1\n");

  // Malformed and unknown commands get a clear error answer.
  mark = ctrl.Count();
  REQUIRE(ctrl.Publish(fleet::CmdReqTopic(id), R"({"cmd":1})", false));
  auto bad_cmd = ctrl.WaitFor([&](auto& m) { return Is(m, fleet::CmdResTopic(id)); }, 20s, mark);
  REQUIRE(bad_cmd);
  CHECK(Body(*bad_cmd)["ok"] == false);
  CHECK(Body(*bad_cmd)["error"].get<std::string>().find("malformed command: cmd.cmd: expected string") == 0);

  // App output that is not UTF-8 comes back from `logs` with U+FFFD instead of killing the agent.
  auto st = ctrl.WaitFor([&](auto& m) { return Is(m, fleet::StateTopic(id)) && Body(m)["active"].is_object(); }, 5s);
  REQUIRE(st);
  const std::string log_file = state + "/slots/" + Body(*st)["active"]["slot"].get<std::string>() + "/container.log";
  auto old_log = core::DefaultEnv()->ReadFile(log_file).value_or("");
  REQUIRE(core::WriteFileDurable(*core::DefaultEnv(), log_file, old_log + "bad bytes \xff\xfe\xc3 end\n"));
  mark = ctrl.Count();
  REQUIRE(ctrl.Publish(fleet::CmdReqTopic(id), R"({"cmd":"logs"})", false));
  auto logs = ctrl.WaitFor([&](auto& m) { return Is(m, fleet::CmdResTopic(id)); }, 20s, mark);
  REQUIRE(logs);
  CHECK(Body(*logs)["ok"] == true);
  CHECK(Body(*logs)["result"].get<std::string>().find("bad bytes \xEF\xBF\xBD") != std::string::npos);
  CHECK(pid_of_app() == app_pid);  // the app ran through all of it

  // The next real rollout (v 2, above applied_v 1 but far below the refused huge v) is taken.
  auto v2 = h.Push(2);
  mark = ctrl.Count();
  publish_desired(json{{"v", 2}, {"job", "job-2"}, {"release", json::parse(h.Sign(v2, 2))}}.dump());
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, fleet::JobStatusTopic(id, "job-2")) && Body(m)["state"] == "SUCCEEDED"; },
                       120s, mark));
  REQUIRE(ctrl.WaitFor([&](auto& m) { return Is(m, fleet::StateTopic(id)) && Body(m)["applied_v"] == 2; }, 20s, mark));
  agent.proc->Stop(10s);
  h.StopContainers(state);
}
