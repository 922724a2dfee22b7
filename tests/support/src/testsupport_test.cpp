#include <catch2/catch.hpp>

#include <filesystem>

#include "testsupport/net.hpp"
#include "testsupport/registry_server.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug::testsupport;

TEST_CASE("A temp dir exists while alive and is removed with its contents afterwards") {
  std::string p;
  {
    TempDir d;
    p = d.path();
    REQUIRE(std::filesystem::is_directory(p));
    std::filesystem::create_directories(d.Sub("a/b"));
  }
  REQUIRE_FALSE(std::filesystem::exists(p));
}

TEST_CASE("A free loopback port is nonzero and WaitFor gives up after its timeout") {
  REQUIRE(FreeLoopbackPort() != 0);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE_FALSE(WaitFor([] { return false; }, std::chrono::milliseconds(100)));
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  REQUIRE(WaitFor([] { return true; }, std::chrono::milliseconds(100)));
}

TEST_CASE("The registry server starts, answers /v2/ and is gone after destruction") {
  auto reg = RegistryServer::Start();
  REQUIRE(reg.has_value());
  uint16_t port = (*reg)->port();
  REQUIRE(HttpGetStatus(port, "/v2/") == 200);
  REQUIRE(std::filesystem::is_directory((*reg)->root_dir()));
  reg->reset();
  REQUIRE(HttpGetStatus(port, "/v2/", std::chrono::milliseconds(300)) == 0);
}

TEST_CASE("The registry server with credentials asks for Basic auth") {
  RegistryServerOptions o;
  o.username = "alice";
  o.password = "s3cret";
  auto reg = RegistryServer::Start(o);
  REQUIRE(reg.has_value());
  REQUIRE(HttpGetStatus((*reg)->port(), "/v2/") == 401);
}
