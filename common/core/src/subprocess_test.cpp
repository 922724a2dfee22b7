#include <catch2/catch.hpp>

#include "core/subprocess.hpp"

using namespace tug::core;

TEST_CASE("Run captures output and exit code") {
  auto r = Run({"sh", "-c", "echo out; echo err >&2; exit 3"}).value();
  CHECK(r.exit_code == 3);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  CHECK(r.Describe() == "exit code 3: err");
}

TEST_CASE("Run feeds stdin") {
  RunOptions o;
  o.stdin_data = "hello";
  auto r = Run({"cat"}, o).value();
  CHECK(r.ok());
  CHECK(r.out == "hello");
}

TEST_CASE("Run kills a command that passes its deadline") {
  RunOptions o;
  o.timeout = std::chrono::milliseconds(200);
  auto r = Run({"sleep", "10"}, o).value();
  CHECK(r.timed_out);
  CHECK_FALSE(r.ok());
}

TEST_CASE("Run says when a command does not exist") {
  auto r = Run({"no-such-command-tugboat"});
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(tug::Errc::kNotFound));
}
