#include "services/app.hpp"

#include <catch2/catch.hpp>

#include "services/placement.hpp"

using namespace tug;
using namespace tug::cluster;
using namespace tug::cluster::services;
using json = nlohmann::json;

namespace {

json Web() {
  return json::parse(R"({"id":"/web","cmd":"python3 -m http.server $PORT0","instances":3,"cpus":0.1,"mem":64,
    "ports":[0],"env":{"MODE":"prod"},
    "healthChecks":[{"protocol":"HTTP","path":"/health","portIndex":0,"gracePeriodSeconds":10,"intervalSeconds":2,
                     "timeoutSeconds":2,"maxConsecutiveFailures":3}],
    "constraints":[["hostname","UNIQUE"],["zone","CLUSTER","a"],["zone","MAX_PER","2"]],
    "upgradeStrategy":{"minimumHealthCapacity":1.0,"maximumOverCapacity":0.34},
    "labels":{"team":"edge"},"gateway":{"port":10080,"mode":"http"}})");
}

// The field a bad definition is refused for.
std::string FieldOf(json j) {
  auto r = ParseApp(j);
  if (r) return "(accepted)";
  CHECK(r.error().Is(Errc::kInvalidArgument));
  return ErrorField(r.error());
}

}  // namespace

TEST_CASE("app: a full Marathon-like definition parses and writes back the same") {
  auto a = ParseApp(Web());
  REQUIRE(a);
  CHECK(a->id == "/web");
  CHECK(a->instances == 3);
  CHECK(a->ports.size() == 1);
  REQUIRE(a->health_checks.size() == 1);
  CHECK(a->health_checks[0].path == "/health");
  REQUIRE(a->constraints.size() == 3);
  CHECK(a->constraints[0].ToString() == "hostname:UNIQUE");
  CHECK(a->constraints[1].ToString() == "zone:CLUSTER:a");
  CHECK(a->upgrade.maximum_over_capacity == Approx(0.34));
  REQUIRE(a->gateway);
  CHECK(a->gateway->port == 10080);
  auto again = ParseApp(ToJson(*a));
  REQUIRE(again);
  CHECK(*again == *a);
}

TEST_CASE("app: ids are normalised to /-separated lowercase segments") {
  CHECK(*NormalizeAppId("web") == "/web");
  CHECK(*NormalizeAppId("/group/web/") == "/group/web");
  CHECK_FALSE(NormalizeAppId("/Web"));
  CHECK_FALSE(NormalizeAppId("/a//b"));
  CHECK_FALSE(NormalizeAppId("/-a"));
  CHECK_FALSE(NormalizeAppId("/a.b"));
  CHECK(DottedAppId("/group/web") == "group.web");
}

TEST_CASE("app: every invalid definition is refused naming its field") {
  auto with = [](const char* key, json v) {
    json j = Web();
    j[key] = v;
    return j;
  };
  CHECK(FieldOf(with("id", "/Bad_Id")) == "id");
  CHECK(FieldOf(with("instances", -1)) == "instances");
  CHECK(FieldOf(with("instances", 1.5)) == "instances");
  CHECK(FieldOf(with("cpus", 0)) == "cpus");
  CHECK(FieldOf(with("mem", -5)) == "mem");
  CHECK(FieldOf(with("disk", -1)) == "disk");
  CHECK(FieldOf(with("ports", json::array({8080}))) == "ports[0]");
  CHECK(FieldOf(with("env", {{"1BAD", "x"}})) == "env.1BAD");
  CHECK(FieldOf(with("healthcheck", json::array())) == "healthcheck");  // typo: unknown member
  json hc = Web();
  hc["healthChecks"][0]["portIndex"] = 1;
  CHECK(FieldOf(hc) == "healthChecks[0].portIndex");
  hc = Web();
  hc["healthChecks"][0]["protocol"] = "UDP";
  CHECK(FieldOf(hc) == "healthChecks[0].protocol");
  hc = Web();
  hc["healthChecks"][0]["intervalSeconds"] = 0;
  CHECK(FieldOf(hc) == "healthChecks[0].intervalSeconds");
  hc = Web();
  hc["healthChecks"].push_back(hc["healthChecks"][0]);
  CHECK(FieldOf(hc) == "healthChecks[1]");
  hc = Web();
  hc["healthChecks"] = json::parse(R"([{"protocol":"COMMAND"}])");
  CHECK(FieldOf(hc) == "healthChecks[0].command");
  CHECK(FieldOf(with("constraints", json::parse(R"([["hostname","UNIQUE"],["zone","NEAR","a"]])"))) == "constraints[1][1]");
  CHECK(FieldOf(with("constraints", json::parse(R"([["zone","MAX_PER"]])"))) == "constraints[0][2]");
  CHECK(FieldOf(with("constraints", json::parse(R"([["zone","MAX_PER","two"]])"))) == "constraints[0][2]");
  CHECK(FieldOf(with("constraints", json::parse(R"([["zone","LIKE","(("]])"))) == "constraints[0][2]");
  CHECK(FieldOf(with("constraints", json::parse(R"([["zone"]])"))) == "constraints[0]");
  CHECK(FieldOf(with("upgradeStrategy", {{"minimumHealthCapacity", 1.5}})) == "upgradeStrategy.minimumHealthCapacity");
  CHECK(FieldOf(with("upgradeStrategy", {{"maximumOverCapacity", -0.1}})) == "upgradeStrategy.maximumOverCapacity");
  CHECK(FieldOf(with("labels", {{"app", "x"}})) == "labels.app");
  CHECK(FieldOf(with("gateway", {{"port", 0}})) == "gateway.port");
  CHECK(FieldOf(with("gateway", {{"port", 80}, {"mode", "udp"}})) == "gateway.mode");
  json nocmd = Web();
  nocmd.erase("cmd");
  CHECK(FieldOf(nocmd) == "cmd");
  nocmd["container"] = {{"image", "127.0.0.1:5000/acme/web:1"}};
  CHECK(FieldOf(nocmd) == "(accepted)");
  json noports = Web();
  noports["ports"] = json::array();
  CHECK(FieldOf(noports) == "healthChecks[0].portIndex");
}

TEST_CASE("app: GET's read-only members are ignored so a GET-edit-PUT round trip works") {
  json j = Web();
  j["version"] = "2026-01-01T00:00:00.000Z";
  j["tasks"] = json::array();
  j["tasksRunning"] = 3;
  j["deployments"] = json::array();
  CHECK(ParseApp(j));
}

TEST_CASE("app: a URL id must agree with the body's") {
  CHECK(ParseApp(Web(), "/web"));
  auto r = ParseApp(Web(), "/other");
  REQUIRE_FALSE(r);
  CHECK(ErrorField(r.error()) == "id");
  json noid = Web();
  noid.erase("id");
  auto p = ParseApp(noid, "/group/api");
  REQUIRE(p);
  CHECK(p->id == "/group/api");
}

TEST_CASE("app: which changes need new tasks") {
  AppDefinition a = *ParseApp(Web());
  AppDefinition b = a;
  b.instances = 7;
  b.constraints.clear();
  b.upgrade.minimum_health_capacity = 0.5;
  CHECK_FALSE(b.NeedsRestartFrom(a));
  b.env["MODE"] = "debug";
  CHECK(b.NeedsRestartFrom(a));
  b = a;
  b.mem = 128;
  CHECK(b.NeedsRestartFrom(a));
}

TEST_CASE("placement: constraints against the offer and the app's other instances") {
  Attributes n1{{"hostname", "n1"}, {"zone", "a"}};
  Attributes n2{{"hostname", "n2"}, {"zone", "a"}};
  Attributes n3{{"hostname", "n3"}, {"zone", "b"}};
  Attributes bare{{"hostname", "n4"}};
  auto c = [](const char* f, ConstraintOp op, const char* v = "") { return Constraint{f, op, v}; };
  std::string failed;

  const std::vector<Constraint> unique{c("hostname", ConstraintOp::kUnique)};
  CHECK(ConstraintsAllow(unique, n1, {}));
  CHECK_FALSE(ConstraintsAllow(unique, n1, {&n1}, &failed));
  CHECK(failed == "hostname:UNIQUE");
  CHECK(ConstraintsAllow(unique, n2, {&n1}));

  const std::vector<Constraint> cluster{c("zone", ConstraintOp::kCluster, "a")};
  CHECK(ConstraintsAllow(cluster, n1, {}));
  CHECK_FALSE(ConstraintsAllow(cluster, n3, {}));
  CHECK_FALSE(ConstraintsAllow(cluster, bare, {}));
  const std::vector<Constraint> cluster_first{c("zone", ConstraintOp::kCluster)};
  CHECK(ConstraintsAllow(cluster_first, n3, {}));
  CHECK_FALSE(ConstraintsAllow(cluster_first, n3, {&n1}));

  const std::vector<Constraint> max2{c("zone", ConstraintOp::kMaxPer, "2")};
  CHECK(ConstraintsAllow(max2, n2, {&n1}));
  CHECK_FALSE(ConstraintsAllow(max2, n2, {&n1, &n2}, &failed));
  CHECK(failed == "zone:MAX_PER:2");
  CHECK(ConstraintsAllow(max2, n3, {&n1, &n2}));

  const std::vector<Constraint> group{c("zone", ConstraintOp::kGroupBy, "2")};
  CHECK(ConstraintsAllow(group, n1, {}));
  CHECK_FALSE(ConstraintsAllow(group, n2, {&n1}));  // zone b is expected and empty
  CHECK(ConstraintsAllow(group, n3, {&n1}));
  CHECK(ConstraintsAllow(group, n2, {&n1, &n3}));

  CHECK(ConstraintsAllow({c("hostname", ConstraintOp::kLike, "n[12]")}, n2, {}));
  CHECK_FALSE(ConstraintsAllow({c("hostname", ConstraintOp::kLike, "n[12]")}, n3, {}));
  CHECK(ConstraintsAllow({c("zone", ConstraintOp::kUnlike, "b")}, bare, {}));
  CHECK_FALSE(ConstraintsAllow({c("zone", ConstraintOp::kUnlike, "b")}, n3, {}));
  CHECK(ConstraintsAllow({c("zone", ConstraintOp::kIs, "b")}, n3, {}));
}

TEST_CASE("placement: resource shortfalls name the resource, and instances take the lowest free ports") {
  AppDefinition a = *ParseApp(Web());
  a.mem = 4096;
  auto sf = ResourceShortfall(a, *ParseResources("cpus:4;mem:2048;ports:[31000-31009]"));
  REQUIRE(sf);
  CHECK(sf->what == "mem");
  CHECK(sf->need == 4096);
  CHECK(sf->have == 2048);
  a.mem = 64;
  a.ports = {0, 0};
  auto noports = ResourceShortfall(a, *ParseResources("cpus:4;mem:2048;ports:[31000-31000]"));
  REQUIRE(noports);
  CHECK(noports->what == "ports");
  const Resources avail = *ParseResources("cpus:4;mem:2048;ports:[31005-31009]");
  CHECK_FALSE(ResourceShortfall(a, avail));
  Resources take = TakeForInstance(a, avail);
  CHECK(take.FirstPorts(2) == std::vector<uint32_t>{31005, 31006});
  CHECK(take.mem() == 64);
  CHECK(FormatAmount("mem", 4096) == "mem 4096");
  CHECK(FormatAmount("cpus", 0.5) == "cpus 0.5");
}
