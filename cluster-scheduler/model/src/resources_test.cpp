#include "model/resources.hpp"

#include <catch2/catch.hpp>

using namespace tug::cluster;

TEST_CASE("resources add, subtract and contain, ports included") {
  auto node = Resources::Make(4, 4096, 1000, {{31000, 31009}, {32000, 32000}});
  auto task = Resources::Make(0.5, 128, 0, {{31003, 31004}});
  REQUIRE(node.Contains(task));
  auto left = node - task;
  CHECK(left.cpus() == 3.5);
  CHECK(left.mem() == 3968);
  CHECK(left.port_count() == 9);
  CHECK_FALSE(left.Contains(task));
  CHECK((left + task) == node);
  CHECK_FALSE(task.Contains(node));
  CHECK(node.FirstPorts(3) == std::vector<uint32_t>{31000, 31001, 31002});
  CHECK(Resources::Ports({5, 6, 7, 9}).ports() == std::vector<PortRange>{{5, 7}, {9, 9}});
}

TEST_CASE("resources do not drift after many fractional add/subtract") {
  auto total = Resources::Make(1, 100);
  auto piece = Resources::Make(0.1, 0.1);
  auto r = total;
  for (int i = 0; i < 10; ++i) r -= piece;
  CHECK(r.cpus_milli() == 0);
  for (int i = 0; i < 10; ++i) r += piece;
  CHECK(r == total);
}

TEST_CASE("resources text and JSON forms round-trip; bad input names the part") {
  auto r = ParseResources("cpus:2.5;mem:1024;disk:10;ports:[31000-31010,31020-31020]");
  REQUIRE(r);
  CHECK(r->ToString() == "cpus:2.5;mem:1024;disk:10;ports:[31000-31010,31020-31020]");
  auto j = ResourcesFromJson(ResourcesToJson(*r));
  REQUIRE(j);
  CHECK(*j == *r);
  CHECK_FALSE(ParseResources("cpus:x"));
  CHECK_FALSE(ParseResources("gpus:1"));
  CHECK_FALSE(ParseResources("ports:[5-3]"));
  auto bad = ResourcesFromJson(nlohmann::json::parse(R"([{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}])"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().Message().find("resources[0].scalar.value") != std::string::npos);
}
