#include <catch2/catch.hpp>

#include "gateway/config.hpp"
#include "src/model.hpp"

namespace tug::cluster::gateway {
namespace {

GatewayConfig Valid() {
  GatewayConfig c;
  c.services.push_back({"web", 8080, "http", {{"127.0.0.1", 9001}, {"::1", 9002}}, "/health"});
  c.services.push_back({"raw", 8081, "tcp", {{"10.0.0.7", 5432}}, ""});
  return c;
}

// The error is kInvalidArgument and its message starts with the field.
void RequireFieldError(const GatewayConfig& c, const std::string& field) {
  auto st = Validate(c);
  REQUIRE_FALSE(st);
  CHECK(st.error().Is(Errc::kInvalidArgument));
  INFO(st.error().Message());
  CHECK(st.error().context.rfind(field + ":", 0) == 0);
}

TEST_CASE("A well-formed gateway config validates, including IPv6 and empty backends") {
  auto c = Valid();
  CHECK(Validate(c));
  c.services[1].backends.clear();
  c.bind_host = "::";
  CHECK(Validate(c));
  CHECK(Validate(GatewayConfig{}));
}

TEST_CASE("Each kind of bad input names the offending field") {
  auto c = Valid();
  SECTION("duplicate service names") {
    c.services[1].name = "web";
    RequireFieldError(c, "services[1].name");
    CHECK(Validate(c).error().context.find("also services[0]") != std::string::npos);
  }
  SECTION("invalid service names") {
    for (const std::string& bad : std::vector<std::string>{"", "a b", "we/b", "-web", "web#1", std::string(65, 'a')}) {
      c.services[0].name = bad;
      RequireFieldError(c, "services[0].name");
    }
  }
  SECTION("frontend port 0") {
    c.services[0].frontend_port = 0;
    RequireFieldError(c, "services[0].frontend_port");
  }
  SECTION("two services on one frontend port") {
    c.services[1].frontend_port = 8080;
    RequireFieldError(c, "services[1].frontend_port");
  }
  SECTION("unknown mode") {
    c.services[1].mode = "udp";
    RequireFieldError(c, "services[1].mode");
  }
  SECTION("health path") {
    for (const std::string& bad : std::vector<std::string>{"health", "/a b", "/a#b", "/\"x\""}) {
      c.services[0].health_path = bad;
      RequireFieldError(c, "services[0].health_path");
    }
  }
  SECTION("backend host that is a name, backend port 0, duplicate backend") {
    c.services[0].backends[1].host = "localhost";
    RequireFieldError(c, "services[0].backends[1].host");
    c = Valid();
    c.services[1].backends[0].port = 0;
    RequireFieldError(c, "services[1].backends[0].port");
    c = Valid();
    c.services[0].backends[1] = c.services[0].backends[0];
    RequireFieldError(c, "services[0].backends[1]");
  }
  SECTION("bind host") {
    c.bind_host = "localhost";
    RequireFieldError(c, "bind_host");
  }
}

TEST_CASE("Pools hold twice the instances rounded up to a power of two, never fewer than the minimum") {
  CHECK(detail::PoolSize(0, 8) == 8);
  CHECK(detail::PoolSize(3, 8) == 8);
  CHECK(detail::PoolSize(5, 8) == 16);
  CHECK(detail::PoolSize(1, 1) == 2);
  auto pool = detail::NewPool(Valid().services[0], 4);
  REQUIRE(pool.slots.size() == 4);
  CHECK(pool.slots[0] == Backend{"127.0.0.1", 9001});
  CHECK(pool.slots[1] == Backend{"::1", 9002});
  CHECK_FALSE(pool.slots[2]);
  CHECK(pool.spec.backends.empty());
  CHECK(detail::Instances(pool).size() == 2);
}

TEST_CASE("The rendered config has one frontend and backend per service with a disabled slot per free place") {
  detail::GatewayState state;
  state.bind_host = "127.0.0.1";
  for (const auto& s : Valid().services) state.services.emplace(s.name, detail::NewPool(s, 4));
  std::string cfg = detail::RenderConfig(state, "/run/gw/admin.sock", HaproxyOptions{});
  INFO(cfg);
  CHECK(cfg.find("stats socket /run/gw/admin.sock mode 600 level admin expose-fd listeners") != std::string::npos);
  CHECK(cfg.find("frontend fe_web\n    mode http\n    bind 127.0.0.1:8080\n") != std::string::npos);
  CHECK(cfg.find("frontend fe_raw\n    mode tcp\n    bind 127.0.0.1:8081\n") != std::string::npos);
  CHECK(cfg.find("    server s1 127.0.0.1:9001 check\n    server s2 [::1]:9002 check\n"
                 "    server s3 0.0.0.0:0 disabled check\n    server s4 0.0.0.0:0 disabled check\n") !=
        std::string::npos);
  CHECK(cfg.find("option httpchk GET /health") != std::string::npos);
  CHECK(cfg.find("option redispatch 1") != std::string::npos);
  CHECK(cfg.find("retries 3") != std::string::npos);
  // HTTP-only directives stay out of the tcp sections.
  auto raw = cfg.substr(cfg.find("backend be_raw"), cfg.find("frontend fe_web") - cfg.find("backend be_raw"));
  CHECK(raw.find("retry-on") == std::string::npos);
  CHECK(raw.find("httpchk") == std::string::npos);
  auto fe_raw = cfg.substr(cfg.find("frontend fe_raw"), cfg.find("backend be_raw") - cfg.find("frontend fe_raw"));
  CHECK(fe_raw.find("idle-close-on-response") == std::string::npos);
}

TEST_CASE("show proc answers are parsed with current and old workers and the failed reload count") {
  auto info = detail::ParseShowProc(
      "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
      "13829           master          2 [failed: 1]   0d00h11m16s     2.6.12-1+deb12u4\n"
      "# workers\n"
      "23295           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n"
      "# old workers\n"
      "23001           worker          1               0d00h00m09s     2.6.12-1+deb12u4\n"
      "# programs\n\n");
  REQUIRE(info);
  CHECK(info->master == 13829);
  CHECK(info->reloads == 2);
  CHECK(info->failed_reloads == 1);
  CHECK(info->workers == std::vector<pid_t>{23295});
  CHECK(info->old_workers == std::vector<pid_t>{23001});
  CHECK_FALSE(detail::ParseShowProc("garbage"));
}

TEST_CASE("show stat and show info answers are parsed by their header") {
  auto rows = detail::ParseShowStat(
      "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,\n"
      "fe_web,FRONTEND,,,3,5,100,9,OPEN,,\n"
      "be_web,s1,0,0,2,4,,7,UP,1,\n"
      "be_web,s2,1,1,0,0,,0,DRAIN,0,\n\n");
  REQUIRE(rows);
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[1].proxy == "be_web");
  CHECK((*rows)[1].server == "s1");
  CHECK((*rows)[1].scur == 2);
  CHECK((*rows)[1].status == "UP");
  CHECK((*rows)[2].qcur == 1);
  CHECK((*rows)[2].weight == 0);
  CHECK((*rows)[1].check.empty());  // no check_status column (older versions): empty, not an error
  auto checked = detail::ParseShowStat(
      "# pxname,svname,qcur,scur,status,weight,check_status,\n"
      "be_web,s1,0,0,UP 1/2,1,INI,\n"
      "be_web,s2,0,0,DOWN,1,* L4CON,\n");
  REQUIRE(checked);
  CHECK((*checked)[0].status == "UP 1/2");
  CHECK((*checked)[0].check == "INI");
  CHECK((*checked)[1].check == "* L4CON");
  CHECK_FALSE(detail::ParseShowStat("no header\n"));

  auto pid = detail::ParseInfoPid("Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime: 0d\n");
  REQUIRE(pid);
  CHECK(*pid == 4242);
  CHECK_FALSE(detail::ParseInfoPid("Name: HAProxy\n"));
}

}  // namespace
}  // namespace tug::cluster::gateway
