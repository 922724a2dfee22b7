#include "model/types.hpp"

#include <catch2/catch.hpp>

using namespace tug::cluster;
using nlohmann::json;

TEST_CASE("task info round-trips through JSON with container, health check and env") {
  TaskInfo t;
  t.task_id = "web.1";
  t.name = "web";
  t.agent_id = "a-1";
  t.resources = Resources::Make(0.1, 32, 0, {{31000, 31000}});
  t.command.value = "exec python3 -m http.server $PORT0";
  t.command.environment = {{"A", "1"}};
  t.container.image = "127.0.0.1:5000/acme/web:1";
  HealthCheck h;
  h.type = HealthCheck::Type::kHttp;
  h.path = "/health";
  t.health_check = h;
  auto back = TaskInfoFromJson(ToJson(t), "task");
  REQUIRE(back);
  CHECK(back->task_id == "web.1");
  CHECK(back->resources == t.resources);
  CHECK(back->command.environment.at("A") == "1");
  CHECK(back->container.image == t.container.image);
  REQUIRE(back->health_check);
  CHECK(back->health_check->path == "/health");
  CHECK(back->Ports() == std::vector<uint32_t>{31000});
}

TEST_CASE("bad task infos name the field") {
  auto err = [](const char* text) {
    auto r = TaskInfoFromJson(json::parse(text), "task_infos[0]");
    REQUIRE_FALSE(r);
    return r.error().Message();
  };
  CHECK(err(R"({"name":"x","command":{"value":"true"}})").find("task_infos[0].task_id") != std::string::npos);
  CHECK(err(R"({"task_id":{"value":"x"}})").find("task_infos[0].command") != std::string::npos);
  CHECK(err(R"({"task_id":{"value":"x"},"command":{"value":"true"},"health_check":{"type":"HTTP","http":{"port_index":0}}})")
            .find("health_check.port_index") != std::string::npos);
  CHECK(err(R"({"task_id":{"value":"x"},"command":{"value":"true"},"health_check":{"type":"UDP"}})")
            .find("health_check.type") != std::string::npos);
}

TEST_CASE("task status, framework, agent and offer round-trip") {
  TaskStatus s;
  s.task_id = "t";
  s.state = TaskState::kRunning;
  s.healthy = true;
  s.uuid = "u1";
  auto sb = TaskStatusFromJson(ToJson(s), "status");
  REQUIRE(sb);
  CHECK(sb->state == TaskState::kRunning);
  CHECK(sb->healthy == true);
  CHECK(IsTerminal(TaskState::kLost));
  CHECK_FALSE(IsTerminal(TaskState::kUnreachable));

  FrameworkInfo f;
  f.name = "services";
  f.role = "web";
  auto fb = FrameworkInfoFromJson(ToJson(f), "framework_info");
  REQUIRE(fb);
  CHECK(fb->role == "web");
  CHECK_FALSE(FrameworkInfoFromJson(json::parse(R"({"roles":["x"]})"), "framework_info"));

  AgentInfo a;
  a.hostname = "n1";
  a.resources = Resources::Make(2, 1024);
  a.attributes = {{"zone", "a"}};
  auto ab = AgentInfoFromJson(ToJson(a), "agent_info");
  REQUIRE(ab);
  CHECK(ab->attributes.at("zone") == "a");

  Offer o{.id = "o1", .framework_id = "f", .agent_id = "a", .hostname = "n1", .resources = a.resources,
          .attributes = a.attributes};
  auto ob = OfferFromJson(ToJson(o), "offer");
  REQUIRE(ob);
  CHECK(ob->resources == a.resources);
  CHECK(NewId("t").size() == 18);
}
