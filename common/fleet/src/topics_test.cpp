#include <catch2/catch.hpp>

#include "fleet/messages.hpp"
#include "fleet/topics.hpp"

using namespace tug::fleet;

TEST_CASE("fleet topics are built and parsed back") {
  CHECK(DevicePrefix("dev-1") == "tug/v1/d/dev-1/");
  CHECK(PresenceTopic("dev-1") == "tug/v1/d/dev-1/presence");
  CHECK(StateTopic("dev-1") == "tug/v1/d/dev-1/state");
  CHECK(DesiredTopic("dev-1") == "tug/v1/d/dev-1/desired");
  CHECK(CmdReqTopic("dev-1") == "tug/v1/d/dev-1/cmd/req");
  CHECK(CmdResTopic("dev-1") == "tug/v1/d/dev-1/cmd/res");
  CHECK(JobStatusTopic("dev-1", "r-1.dev-1.1") == "tug/v1/d/dev-1/jobs/r-1.dev-1.1/status");
  CHECK(JobProgressTopic("dev-1", "j") == "tug/v1/d/dev-1/jobs/j/progress");
  CHECK(ControllerSharedFilters() == std::vector<std::string>{"$share/ctrl/tug/v1/d/+/presence",
                                                              "$share/ctrl/tug/v1/d/+/state",
                                                              "$share/ctrl/tug/v1/d/+/jobs/+/status"});
  CHECK(ControllerSnapshotFilters() == std::vector<std::string>{"tug/v1/d/+/presence", "tug/v1/d/+/state"});

  for (Leaf leaf : {Leaf::kPresence, Leaf::kState, Leaf::kDesired, Leaf::kCmdReq, Leaf::kCmdRes}) {
    const std::string t = leaf == Leaf::kPresence ? PresenceTopic("d.1")
                          : leaf == Leaf::kState  ? StateTopic("d.1")
                          : leaf == Leaf::kDesired ? DesiredTopic("d.1")
                          : leaf == Leaf::kCmdReq  ? CmdReqTopic("d.1")
                                                   : CmdResTopic("d.1");
    auto p = ParseTopic(t);
    REQUIRE(p);
    CHECK(p->device_id == "d.1");
    CHECK(p->leaf == leaf);
  }
  auto j = ParseTopic(JobStatusTopic("d", "local-2026-01-01T00:00:00Z"));
  REQUIRE(j);
  CHECK(j->leaf == Leaf::kJobStatus);
  CHECK(j->job == "local-2026-01-01T00:00:00Z");
  auto pr = ParseTopic(JobProgressTopic("d", "j1"));
  REQUIRE(pr);
  CHECK(pr->leaf == Leaf::kJobProgress);
}

TEST_CASE("fleet topics refuse what is not the protocol") {
  for (const char* t : {"", "tug/v1/d/", "tug/v1/d/dev", "tug/v2/d/dev/state", "tug/v1/d//state", "tug/v1/d/a b/state",
                        "tug/v1/d/dev/other", "tug/v1/d/dev/jobs/j", "tug/v1/d/dev/jobs//status",
                        "tug/v1/d/dev/jobs/j/other", "tug/v1/d/dev/state/extra"}) {
    INFO(t);
    auto p = ParseTopic(t);
    REQUIRE_FALSE(p);
    CHECK(ReasonOf(p.error()) == Reason::kBadTopic);
  }
  CHECK_FALSE(ParseTopic("tug/v1/d/" + std::string(65, 'a') + "/state"));
  CHECK(ValidDeviceId(std::string(64, 'a')));
  CHECK_FALSE(ValidJobId(std::string(201, 'j')));
  CHECK_FALSE(ValidJobId("a+b"));
}
