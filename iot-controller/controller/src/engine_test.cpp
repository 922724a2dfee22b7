// Rollout engine against an in-memory (or on-disk, for restarts) Store, a fake clock and a recording publisher.
#include <catch2/catch.hpp>

#include <set>

#include <nlohmann/json.hpp>

#include "controller/engine.hpp"
#include "controller/store.hpp"
#include "testsupport/temp_dir.hpp"

using namespace tug;
using namespace tug::controller;
using nlohmann::json;

namespace {

struct Sent {
  std::string topic, payload;
  bool retain;
};

class RecordingPublisher : public Publisher {
 public:
  Status Publish(const std::string& topic, const std::string& payload, bool retain) override {
    sent.push_back(Sent{.topic = topic, .payload = payload, .retain = retain});
    return {};
  }
  std::vector<json> Desired(const std::string& dev) const {
    std::vector<json> out;
    for (const auto& s : sent)
      if (s.topic == fleet::DesiredTopic(dev) && !s.payload.empty()) out.push_back(json::parse(s.payload));
    return out;
  }
  size_t DesiredCount() const {
    size_t n = 0;
    for (const auto& s : sent) n += s.topic.find("/desired") != std::string::npos;
    return n;
  }
  std::vector<Sent> sent;
};

struct Fixture {
  explicit Fixture(const std::string& db = ":memory:", EngineOptions options = {})
      : store(std::move(*Store::Open(db))), clock(core::TimePoint(std::chrono::seconds(1'800'000'000))),
        engine(*store, pub, clock, options) {
    Release r{.version = 5, .name = "sensor 5", .repository = "reg/acme/sensor", .digest = "sha256:aa",
              .expires_at = "2030-01-01T00:00:00Z", .envelope = R"({"payloadType":"x","payload":"","signatures":[]})",
              .created_at = 0};
    REQUIRE(store->PutRelease(r));
  }
  void Online(const std::string& id, Labels labels = {{"site", "a"}}, uint64_t applied_v = 0) {
    REQUIRE(engine.OnPresence(id, json{{"online", true}, {"boot_id", "b-" + id}}.dump()));
    REQUIRE(engine.OnState(id, json{{"boot_id", "b-" + id}, {"seq", ++state_seq[id]}, {"applied_v", applied_v},
                                    {"labels", labels}}.dump()));
  }
  void Offline(const std::string& id) { REQUIRE(engine.OnPresence(id, json{{"online", false}}.dump())); }
  std::string Job(const std::string& dev) {
    auto d = pub.Desired(dev);
    REQUIRE(!d.empty());
    return d.back()["job"].get<std::string>();
  }
  void Report(const std::string& dev, const std::string& state, uint64_t seq, json error = nullptr,
              std::string job = "") {
    if (job.empty()) job = Job(dev);
    REQUIRE(engine.OnJobStatus(dev, job, json{{"state", state}, {"seq", seq}, {"boot_id", "b-" + dev},
                                              {"error", error}}.dump()));
  }
  std::string Create(json spec) {
    auto parsed = ParseRolloutSpec(spec);
    REQUIRE(parsed);
    auto id = engine.CreateRollout(*parsed);
    REQUIRE(id);
    return *id;
  }
  json Report(const std::string& id) {
    // Every look at a rollout also checks that the engine's in-memory counters match the Store.
    auto c = engine.CheckCounters();
    INFO((c ? std::string() : c.error().Message()));
    REQUIRE(c);
    auto r = engine.RolloutReport(id);
    REQUIRE(r);
    // The streamed text (GET /rollouts/{id}) and the summary (GET /rollouts) are the same report.
    auto text = engine.RolloutReportText(id);
    REQUIRE(text);
    CHECK(*text == r->dump());
    auto summary = engine.RolloutSummary(id);
    REQUIRE(summary);
    json without = *r;
    without.erase("devices");
    without.erase("touched");
    CHECK(*summary == without);
    // The summary counts come from the engine's counters and the full report counts rows: they must agree.
    auto none = engine.RolloutReportText(id, ReportDevices{.none = true, .states = {}, .after = "", .limit = 0});
    REQUIRE(none);
    CHECK(json::parse(*none) == without);
    CheckListings(id, *r);
    return *r;
  }
  // A page of the report: its devices, touched and next_after ("" when it is the last page).
  struct Page {
    json devices, touched;
    std::string next_after;
  };
  Page Listing(const std::string& id, std::vector<DeviceJobState> states, const std::string& after, int64_t limit) {
    auto text = engine.RolloutReportText(id, ReportDevices{.none = false, .states = std::move(states),
                                                           .after = after, .limit = limit});
    REQUIRE(text);
    const json j = json::parse(*text);
    return Page{.devices = j.at("devices"), .touched = j.at("touched"), .next_after = j.value("next_after", "")};
  }
  // Walks every page of a listing; each device must come exactly once, in id order.
  std::pair<json, json> Walk(const std::string& id, const std::vector<DeviceJobState>& states, int64_t limit) {
    json devices = json::array(), touched = json::array();
    std::string after;
    for (int pages = 0;; ++pages) {
      REQUIRE(pages <= 1000);
      Page p = Listing(id, states, after, limit);
      CHECK(static_cast<int64_t>(p.devices.size()) <= limit);
      for (auto& d : p.devices) devices.push_back(d);
      for (auto& t : p.touched) touched.push_back(t);
      if (p.next_after.empty()) break;
      CHECK(p.next_after == p.devices.back()["id"]);
      after = p.next_after;
    }
    return {devices, touched};
  }
  // Pages of 1 and 3 and each state's own listing give back exactly the full report's devices.
  void CheckListings(const std::string& id, const json& full) {
    for (int64_t limit : {1, 3}) {
      auto [devices, touched] = Walk(id, {}, limit);
      CHECK(devices == full["devices"]);
      CHECK(touched == full["touched"]);
    }
    // Every state named: the per-state ranges merged back into id order.
    std::vector<DeviceJobState> every;
    for (int s = 0; s < 8; ++s) every.push_back(static_cast<DeviceJobState>(s));
    CHECK(Walk(id, every, 3).first == full["devices"]);
    for (int s = 0; s < 8; ++s) {
      const auto state = static_cast<DeviceJobState>(s);
      json want = json::array();
      for (const auto& d : full["devices"])
        if (d["state"] == ToString(state)) want.push_back(d);
      CHECK(Listing(id, {state}, "", 0).devices == want);
    }
  }
  std::string DeviceState(const std::string& id, const std::string& dev) {
    const json rep = Report(id);
    for (const auto& d : rep["devices"])
      if (d["id"] == dev) return d["state"];
    return "absent";
  }
  static json StatusJson(const std::string& dev, const std::string& state, uint64_t seq, json error = nullptr) {
    return json{{"state", state}, {"seq", seq}, {"boot_id", "b-" + dev}, {"error", error}};
  }
  static DeviceReport JobReport(const std::string& dev, const std::string& job, const json& status) {
    return DeviceReport{.kind = DeviceReport::Kind::kJobStatus, .device_id = dev, .job = job, .payload = status.dump()};
  }
  size_t DesiredTo(const std::string& dev) const { return pub.Desired(dev).size(); }
  void Advance(int seconds) {
    clock.Advance(std::chrono::seconds(seconds));
    REQUIRE(engine.Tick());
  }

  std::unique_ptr<Store> store;
  RecordingPublisher pub;
  core::FakeClock clock;
  Engine engine;
  std::map<std::string, uint64_t> state_seq;
};

}  // namespace

TEST_CASE("the store creates its schema through the latest migration and reopens without re-running it") {
  tug::testsupport::TempDir dir;
  {
    auto s = Store::Open(dir.Sub("c.db"));
    REQUIRE(s);
    REQUIRE(*(*s)->SchemaVersion() == LatestSchemaVersion());
    Device d;
    d.id = "d1";
    REQUIRE((*s)->PutDevice(d));
  }
  auto s = Store::Open(dir.Sub("c.db"));
  REQUIRE(s);
  REQUIRE(*(*s)->SchemaVersion() == LatestSchemaVersion());
  REQUIRE(LatestSchemaVersion() == 4);  // 3: the audit log, 4: revoked devices
  REQUIRE((*(*s)->GetDevice("d1")).has_value());
}

TEST_CASE("devices register on first presence or state with labels, versions and online flag") {
  Fixture f;
  f.Online("d1", {{"site", "x"}}, 3);
  REQUIRE(f.engine.OnState("d2", json{{"boot_id", "b"}, {"seq", 1},
                                      {"active", {{"version", 4}, {"digest", "sha256:x"}, {"name", "n"}}}}.dump()));
  auto d1 = *f.store->GetDevice("d1");
  REQUIRE(d1);
  CHECK(d1->online);
  CHECK(d1->applied_v == 3);
  CHECK(d1->EffectiveLabels().at("site") == "x");
  auto d2 = *f.store->GetDevice("d2");
  REQUIRE(d2);
  CHECK_FALSE(d2->online);
  CHECK(d2->active["version"] == 4);
  f.Offline("d1");
  CHECK_FALSE((*f.store->GetDevice("d1"))->online);
}

TEST_CASE("a desired version is above both the last issued v and the device's applied_v") {
  Fixture f;
  f.Online("d1", {{"site", "a"}}, 7);
  f.Create(json{{"release", 5}});
  auto d = f.pub.Desired("d1");
  REQUIRE(d.size() == 1);
  CHECK(d[0]["v"] == 8);
  CHECK(d[0]["job"] == "r-1.d1.1");
  CHECK(d[0]["release"].is_object());
  CHECK(d[0]["policy"]["deadline"].is_string());
  CHECK(f.pub.sent.back().retain);
  CHECK((*f.store->GetDevice("d1"))->desired_v == 8);
}

TEST_CASE("phases send to cumulative targets, wait for the threshold and the soak, then the rollout succeeds") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3", "d4"}) f.Online(id);
  auto id = f.Create(json{{"release", 5},
                          {"phases", {{{"count", 1}, {"success_threshold", 100}, {"soak", "10s"}},
                                      {{"percent", 50}}, {{"percent", 100}}}}});
  CHECK(f.pub.DesiredCount() == 1);
  CHECK(f.Report(id)["phases"][0]["state"] == "active");
  f.Report("d1", "DOWNLOADING", 1);
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.Report(id)["phases"][0]["state"] == "soaking");
  f.Advance(5);
  CHECK(f.pub.DesiredCount() == 1);  // still soaking
  f.Advance(6);
  CHECK(f.pub.DesiredCount() == 2);  // phase 2: 50% of 4 = 2 cumulative
  CHECK(f.Report(id)["phases"][1]["state"] == "active");
  f.Report("d2", "SUCCEEDED", 5);
  CHECK(f.pub.DesiredCount() == 4);  // phase 3 at once (no soak)
  f.Report("d3", "SUCCEEDED", 5);
  CHECK(f.Report(id)["state"] == "running");
  f.Report("d4", "SUCCEEDED", 5);
  auto rep = f.Report(id);
  CHECK(rep["state"] == "succeeded");
  CHECK(rep["counts"]["succeeded"] == 4);
  CHECK(rep["phases"][2]["state"] == "done");
  CHECK(rep["phases"][1]["target"] == 2);
}

TEST_CASE("the abort rule stops new sends and rolls back the devices that succeeded") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3", "d4", "d5"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"max_concurrency", 3}, {"max_retries", 0},
                          {"abort", {{"failure_percent", 40}, {"min_devices", 2}}}});
  CHECK(f.pub.DesiredCount() == 3);  // d1..d3
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.pub.DesiredCount() == 4);  // d4 takes d1's slot
  f.Report("d2", "FAILED", 4, json{{"code", "integrity"}, {"retryable", false}, {"message", "digest"}});
  auto rep = f.Report(id);
  CHECK(rep["state"] == "aborted");
  CHECK(rep["abort_reason"].get<std::string>().find("1 of 2") != std::string::npos);
  auto d1 = f.pub.Desired("d1");
  REQUIRE(d1.size() == 2);
  CHECK(d1[1]["action"] == "rollback");
  CHECK(d1[1]["v"].get<int>() > d1[0]["v"].get<int>());
  CHECK(f.pub.Desired("d5").empty());
  // d3 was in progress: it finishes; its late success is rolled back as well.
  f.Report("d3", "SUCCEEDED", 5);
  CHECK(f.DeviceState(id, "d3") == "succeeded");
  REQUIRE(f.pub.Desired("d3").size() == 2);
  CHECK(f.pub.Desired("d3")[1]["action"] == "rollback");
  f.Report("d1", "SUCCEEDED", 9, nullptr, "r-1.d1.rollback");
  CHECK(f.DeviceState(id, "d1") == "rolled_back");
  CHECK(f.DeviceState(id, "d5") == "pending");
  CHECK(f.Report(id)["touched"].size() == 4);
}

TEST_CASE("a phase below its success threshold aborts the rollout") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"max_retries", 0}, {"auto_rollback", false},
                          {"phases", {{{"count", 2}, {"success_threshold", 100}}, {{"percent", 100}}}},
                          {"abort", {{"failure_percent", 100}, {"min_devices", 1}}}});
  f.Report("d1", "SUCCEEDED", 5);
  f.Report("d2", "ROLLED_BACK", 6, json{{"code", "health check failed"}, {"retryable", false}, {"message", "x"}});
  auto rep = f.Report(id);
  CHECK(rep["state"] == "aborted");
  CHECK(rep["abort_reason"].get<std::string>().find("phase 1") != std::string::npos);
  CHECK(f.DeviceState(id, "d2") == "failed");
  CHECK(f.pub.Desired("d3").empty());
  CHECK(f.pub.Desired("d1").size() == 1);  // no auto rollback
}

TEST_CASE("no terminal report within device_timeout times out an online device; an offline one is unreached") {
  Fixture f;
  for (auto id : {"d1", "d2"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"device_timeout", "60s"}, {"abort", {{"failure_percent", 100}}}});
  f.Offline("d2");
  f.Advance(59);
  CHECK(f.DeviceState(id, "d1") == "in_progress");
  f.Advance(1);
  CHECK(f.DeviceState(id, "d1") == "timed_out");
  CHECK(f.DeviceState(id, "d2") == "unreached");
  auto rep = f.Report(id);
  CHECK(rep["counts"]["failed"] == 1);
  CHECK(rep["counts"]["unreached"] == 1);
  CHECK(rep["state"] == "aborted");  // 1 of 1 terminal failed >= 100%
}

TEST_CASE("a retryable failure is re-issued with a new job id until max_retries") {
  Fixture f;
  f.Online("d1");
  auto id = f.Create(json{{"release", 5}, {"max_retries", 1}, {"abort", {{"failure_percent", 100}}}});
  json err{{"code", "unavailable"}, {"retryable", true}, {"message", "registry down"}};
  f.Report("d1", "FAILED", 3, err);
  auto d = f.pub.Desired("d1");
  REQUIRE(d.size() == 2);
  CHECK(d[1]["job"] == "r-1.d1.2");
  CHECK(d[1]["v"] == 2);
  f.Report("d1", "FAILED", 3, err);  // the same seq, new job: counts
  auto rep = f.Report(id);
  CHECK(rep["devices"][0]["state"] == "failed");
  CHECK(rep["devices"][0]["attempts"] == 2);
  CHECK(f.pub.Desired("d1").size() == 2);
}

TEST_CASE("offline devices are unreached, get the job when they return, and late devices join") {
  Fixture f;
  f.Online("d1");
  f.Online("d2");
  f.Offline("d2");
  auto id = f.Create(json{{"release", 5}, {"selector", {{"labels", {{"site", "a"}}}}},
                          {"phases", {{{"percent", 100}, {"soak", "1h"}}}}});
  CHECK(f.DeviceState(id, "d2") == "unreached");
  CHECK(f.pub.Desired("d2").empty());
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.Report(id)["phases"][0]["state"] == "soaking");
  f.Online("d3", {{"site", "b"}});            // not selected
  f.Online("d4", {{"site", "a"}});            // joins
  CHECK(f.DeviceState(id, "d3") == "absent");
  CHECK(f.DeviceState(id, "d4") == "in_progress");
  f.Online("d2");
  CHECK(f.DeviceState(id, "d2") == "in_progress");
  CHECK(f.pub.Desired("d2").size() == 1);
  f.Report("d2", "SUCCEEDED", 5);
  f.Report("d4", "SUCCEEDED", 5);
  CHECK(f.Report(id)["state"] == "running");
  f.Advance(3600);
  CHECK(f.Report(id)["state"] == "succeeded");
  CHECK(f.Report(id)["counts"]["succeeded"] == 3);
}

TEST_CASE("duplicate and out-of-order reports do not change counts") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"max_retries", 0}, {"abort", {{"failure_percent", 100}}}});
  f.Report("d1", "SUCCEEDED", 7);
  f.Report("d1", "SUCCEEDED", 7);
  f.Report("d1", "DOWNLOADING", 2);  // older
  f.Report("d1", "FAILED", 8);       // after a terminal outcome: sticky
  f.Report("d2", "FAILED", 4, json{{"code", "x"}, {"retryable", false}, {"message", "m"}});
  f.Report("d2", "FAILED", 4, json{{"code", "x"}, {"retryable", false}, {"message", "m"}});
  f.Report("d2", "SUCCEEDED", 3);
  REQUIRE(f.engine.OnJobStatus("d3", "r-9.d3.1", R"({"state":"SUCCEEDED","seq":1,"boot_id":"b"})"));  // unknown job
  REQUIRE(f.engine.OnJobStatus("d3", f.Job("d3"), "not json"));
  auto rep = f.Report(id);
  CHECK(rep["counts"]["succeeded"] == 1);
  CHECK(rep["counts"]["failed"] == 1);
  CHECK(rep["counts"]["in_progress"] == 1);
  CHECK(f.engine.counters().reports_ignored >= 5);
  // A state message whose job is terminal is the same report as the status with that seq.
  REQUIRE(f.engine.OnState("d3", json{{"boot_id", "b-d3"}, {"seq", 50},
                                      {"job", {{"id", f.Job("d3")}, {"phase", "SUCCEEDED"}, {"seq", 9}}}}.dump()));
  f.Report("d3", "SUCCEEDED", 9, nullptr, "r-1.d3.1");
  rep = f.Report(id);
  CHECK(rep["counts"]["succeeded"] == 2);
  CHECK(rep["state"] == "aborted");  // 1 of 3 failed is below 100%, but d2's phase threshold (100%) failed
}

TEST_CASE("after a restart from the database the engine continues without counting twice") {
  tug::testsupport::TempDir dir;
  const std::string db = dir.Sub("ctrl.db");
  std::string id;
  std::string job1;
  {
    Fixture f(db);
    for (auto d : {"d1", "d2", "d3"}) f.Online(d);
    id = f.Create(json{{"release", 5}, {"phases", {{{"count", 1}}, {{"percent", 100}}}},
                       {"abort", {{"failure_percent", 100}}}});
    job1 = f.Job("d1");
    f.Report("d1", "SUCCEEDED", 5);
    CHECK(f.pub.DesiredCount() == 3);
  }  // "kill": the Engine and Store go away without any shutdown step
  Fixture f(db);
  REQUIRE(f.engine.RepublishDesired());
  CHECK(f.pub.DesiredCount() == 3);  // d1..d3 have not reported applied_v yet
  REQUIRE(f.engine.OnJobStatus("d1", job1, R"({"state":"SUCCEEDED","seq":5,"boot_id":"b-d1"})"));
  CHECK(f.Report(id)["counts"]["succeeded"] == 1);
  f.Report("d2", "SUCCEEDED", 5, nullptr, "r-1.d2.1");
  f.Report("d3", "SUCCEEDED", 5, nullptr, "r-1.d3.1");
  auto rep = f.Report(id);
  CHECK(rep["state"] == "succeeded");
  CHECK(rep["counts"]["succeeded"] == 3);
  CHECK(f.pub.DesiredCount() == 3);  // nothing new was sent
}

TEST_CASE("pause stops new sends, resume continues, cancel and device cancel refuse illegal changes") {
  Fixture f;
  for (auto id : {"d1", "d2"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"max_concurrency", 1}});
  CHECK(f.pub.DesiredCount() == 1);
  REQUIRE(f.engine.Pause(id));
  CHECK(f.engine.Pause(id).error().Is(Errc::kAlreadyExists));
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.pub.DesiredCount() == 1);
  REQUIRE(f.engine.Resume(id));
  CHECK(f.pub.DesiredCount() == 2);
  REQUIRE(f.engine.CancelDevice(id, "d2"));
  CHECK(f.DeviceState(id, "d2") == "cancelled");
  CHECK(f.pub.sent.back().topic == fleet::CmdReqTopic("d2"));
  CHECK(f.engine.CancelDevice(id, "d2").error().Is(Errc::kAlreadyExists));
  CHECK(f.engine.CancelDevice(id, "nope").error().Is(Errc::kNotFound));
  CHECK(f.engine.Pause("r-77").error().Is(Errc::kNotFound));
  REQUIRE(f.engine.Cancel(id));
  CHECK(f.engine.Resume(id).error().Is(Errc::kAlreadyExists));
  auto n = f.engine.Rollback(id);
  REQUIRE(n);
  CHECK(*n == 1);
  CHECK(f.pub.Desired("d1").back()["action"] == "rollback");
  CHECK(f.engine.Rollback(id).error().Is(Errc::kAlreadyExists));
}

TEST_CASE("a batch of reports applies in one call with duplicates counted once") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3"}) f.Online(id);
  auto id = f.Create(json{{"release", 5}, {"max_retries", 0}, {"abort", {{"failure_percent", 100}}},
                          {"phases", {{{"count", 2}}, {{"percent", 100}}}}});
  CHECK(f.pub.DesiredCount() == 2);
  const std::string j1 = f.Job("d1"), j2 = f.Job("d2");
  const uint64_t ignored0 = f.engine.counters().reports_ignored;
  std::vector<DeviceReport> batch = {
      Fixture::JobReport("d1", j1, f.StatusJson("d1", "DOWNLOADING", 1)),
      Fixture::JobReport("d1", j1, f.StatusJson("d1", "SUCCEEDED", 7)),
      Fixture::JobReport("d1", j1, f.StatusJson("d1", "SUCCEEDED", 7)),  // duplicate in the same batch
      // The state that carries the same terminal journal entry: the same report again.
      DeviceReport{.kind = DeviceReport::Kind::kState, .device_id = "d1", .job = "",
                   .payload = json{{"boot_id", "b-d1"}, {"seq", 10},
                                   {"labels", {{"site", "a"}}},
                                   {"job", {{"id", j1}, {"phase", "SUCCEEDED"}, {"seq", 7}}}}.dump()},
      Fixture::JobReport("d1", j1, f.StatusJson("d1", "FAILED", 8)),  // after a terminal outcome: sticky
      Fixture::JobReport("d2", j2, f.StatusJson("d2", "SUCCEEDED", 7)),
      DeviceReport{.kind = DeviceReport::Kind::kJobStatus, .device_id = "d3", .job = "x", .payload = "not json"},
  };
  REQUIRE(f.engine.OnReports(batch));
  CHECK(f.engine.counters().reports_ignored - ignored0 == 3);
  auto rep = f.Report(id);
  CHECK(rep["counts"]["succeeded"] == 2);
  CHECK(rep["counts"]["failed"] == 0);
  // Phase 1 completed inside the batch: phase 2 sent d3 at once.
  CHECK(rep["current_phase"] == 1);
  CHECK(f.DesiredTo("d3") == 1);
  // The same batch again changes nothing.
  REQUIRE(f.engine.OnReports(batch));
  CHECK(f.Report(id)["counts"]["succeeded"] == 2);
  CHECK(f.pub.DesiredCount() == 3);
}

TEST_CASE("the tick sends in batches of tick_send_batch and a freed slot sends at most report_send_batch") {
  Fixture f(":memory:", EngineOptions{.tick_send_batch = 3, .report_send_batch = 1, .limits = {}});
  for (int i = 1; i <= 10; ++i) f.Online("d" + std::to_string(i < 10 ? i : 0) + (i == 10 ? "x" : ""));
  auto id = f.Create(json{{"release", 5}, {"max_concurrency", 100}});
  CHECK(f.pub.DesiredCount() == 3);  // creation sends one batch
  f.Advance(1);
  CHECK(f.pub.DesiredCount() == 6);
  // A terminal report frees a slot (the concurrency is not the limit here, the batch is): one more.
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.pub.DesiredCount() == 7);
  f.Report("d2", "DOWNLOADING", 1);  // not a change of outcome: nothing more
  CHECK(f.pub.DesiredCount() == 7);
  f.Advance(1);
  CHECK(f.pub.DesiredCount() == 10);
  auto rep = f.Report(id);
  CHECK(rep["counts"]["in_progress"] == 9);
  CHECK(rep["counts"]["pending"] == 0);
}

TEST_CASE("offline pending devices become unreached in batches and the phase waits for all of them") {
  Fixture f(":memory:", EngineOptions{.tick_send_batch = 2, .report_send_batch = 1, .limits = {}});
  for (auto id : {"d1", "d2", "d3", "d4", "d5"}) f.Online(id);
  for (auto id : {"d2", "d3", "d4", "d5"}) f.Offline(id);
  auto id = f.Create(json{{"release", 5}, {"phases", {{{"percent", 100}, {"soak", "0s"}}}}});
  CHECK(f.pub.DesiredCount() == 1);  // d1; one of the budget left marks d2
  CHECK(f.DeviceState(id, "d2") == "unreached");
  CHECK(f.DeviceState(id, "d3") == "pending");
  f.Report("d1", "SUCCEEDED", 5);  // the phase cannot end: devices are still pending
  CHECK(f.Report(id)["state"] == "running");
  f.Advance(1);
  f.Advance(1);
  CHECK(f.DeviceState(id, "d5") == "unreached");
  // Every device had its turn and one succeeded: the phase and the rollout are done; the unreached never failed.
  CHECK(f.Report(id)["state"] == "succeeded");
  CHECK(f.Report(id)["counts"]["unreached"] == 4);
}

TEST_CASE("a device that comes back while the concurrency is full is sent on a later tick") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3"}) f.Online(id);
  f.Offline("d3");
  auto id = f.Create(json{{"release", 5}, {"max_concurrency", 1}, {"phases", {{{"percent", 100}, {"soak", "1h"}}}}});
  CHECK(f.DesiredTo("d1") == 1);
  f.Report("d1", "SUCCEEDED", 5);
  CHECK(f.DesiredTo("d2") == 1);
  f.Report("d2", "SUCCEEDED", 5);
  CHECK(f.DeviceState(id, "d3") == "unreached");  // its turn came while offline
  CHECK(f.Report(id)["phases"][0]["state"] == "soaking");
  f.Online("d4");  // joins during the soak and takes the only slot
  CHECK(f.DesiredTo("d4") == 1);
  f.Online("d3");
  CHECK(f.DeviceState(id, "d3") == "unreached");
  CHECK(f.DesiredTo("d3") == 0);
  f.Report("d4", "SUCCEEDED", 5);
  f.Advance(1);
  CHECK(f.DesiredTo("d3") == 1);
  CHECK(f.DeviceState(id, "d3") == "in_progress");
  f.Report("d3", "SUCCEEDED", 5);
  f.Advance(3600);
  CHECK(f.Report(id)["state"] == "succeeded");
  CHECK(f.Report(id)["counts"]["succeeded"] == 4);
}

TEST_CASE("after a restart the counters come from the store: the abort rule fires at the same report") {
  tug::testsupport::TempDir dir;
  const std::string db = dir.Sub("ctrl.db");
  std::string id;
  json spec{{"release", 5}, {"max_retries", 0}, {"auto_rollback", true},
            {"abort", {{"failure_percent", 50}, {"min_devices", 4}}}};
  json fail{{"code", "x"}, {"retryable", false}, {"message", "m"}};
  {
    Fixture f(db);
    for (auto d : {"d1", "d2", "d3", "d4", "d5"}) f.Online(d);
    id = f.Create(spec);
    f.Report("d1", "SUCCEEDED", 5);
    f.Report("d2", "FAILED", 5, fail);
    CHECK(f.Report(id)["state"] == "running");
  }  // killed
  Fixture f(db);
  REQUIRE(f.engine.OnJobStatus("d3", "r-1.d3.1", f.StatusJson("d3", "FAILED", 5, fail).dump()));
  CHECK(f.Report(id)["state"] == "running");  // 2 of 3 terminal failed, but fewer than min_devices
  // A replay of a report the previous process already counted changes nothing.
  REQUIRE(f.engine.OnJobStatus("d2", "r-1.d2.1", f.StatusJson("d2", "FAILED", 5, fail).dump()));
  CHECK(f.Report(id)["state"] == "running");
  REQUIRE(f.engine.OnJobStatus("d4", "r-1.d4.1", f.StatusJson("d4", "SUCCEEDED", 5).dump()));
  auto rep = f.Report(id);
  CHECK(rep["state"] == "aborted");
  CHECK(rep["abort_reason"].get<std::string>().find("2 of 4") != std::string::npos);
  // Both successes (one counted before the restart) get the fleet rollback.
  CHECK(f.pub.Desired("d1").back()["action"] == "rollback");
  CHECK(f.pub.Desired("d4").back()["action"] == "rollback");
  REQUIRE(f.engine.OnJobStatus("d5", "r-1.d5.1", f.StatusJson("d5", "SUCCEEDED", 5).dump()));
  CHECK(f.pub.Desired("d5").back()["action"] == "rollback");  // late success after the abort
  CHECK(f.Report(id)["counts"]["succeeded"] == 3);
}

TEST_CASE("relabelled devices join running rollouts, also when the relabel outlived a restart") {
  tug::testsupport::TempDir dir;
  const std::string db = dir.Sub("ctrl.db");
  std::string id;
  {
    Fixture f(db);
    f.Online("d1", {{"site", "a"}});
    f.Online("d2", {{"site", "b"}});
    f.Online("d3", {{"site", "b"}});
    id = f.Create(json{{"release", 5}, {"selector", {{"labels", {{"site", "a"}}}}}});
    CHECK(f.DeviceState(id, "d2") == "absent");
    auto d = f.engine.SetOperatorLabels("d2", {{"site", "a"}});
    REQUIRE(d);
    CHECK(d->operator_labels.at("site") == "a");
    CHECK(f.DeviceState(id, "d2") == "in_progress");
    CHECK(f.engine.SetOperatorLabels("nope", {}).error().Is(Errc::kNotFound));
    // A relabel written to the store by a controller that died before applying it.
    auto d3 = *f.store->GetDevice("d3");
    d3->operator_labels = {{"site", "a"}};
    REQUIRE(f.store->PutDevice(*d3));
  }
  Fixture f(db);
  CHECK(f.DeviceState(id, "d3") == "absent");
  REQUIRE(f.engine.Tick());  // the first tick joins what matches
  CHECK(f.DeviceState(id, "d3") == "in_progress");
}

TEST_CASE("the counted summary and the paged listings agree with the full report in every device state") {
  Fixture f;
  for (auto id : {"d1", "d2", "d3", "d4", "d5", "d6", "d7"}) f.Online(id);
  f.Offline("d7");
  // Thresholds at 0 and an abort rule that cannot fire keep the rollout going whatever the outcomes.
  auto id = f.Create(json{{"release", 5}, {"max_concurrency", 2}, {"max_retries", 0}, {"device_timeout", "60s"},
                          {"phases",
                           {{{"count", 3}, {"success_threshold", 0}}, {{"percent", 100}, {"success_threshold", 0}}}},
                          {"abort", {{"failure_percent", 100}, {"min_devices", 100}}}});
  std::set<std::string> seen;
  auto look = [&] {
    const json rep = f.Report(id);
    for (const auto& d : rep["devices"]) seen.insert(d["state"].get<std::string>());
  };
  look();  // in progress and pending
  f.Report("d1", "SUCCEEDED", 5);
  f.Report("d2", "FAILED", 4, json{{"code", "integrity"}, {"retryable", false}, {"message", "digest"}});
  look();
  REQUIRE(f.engine.CancelDevice(id, "d3"));
  look();
  f.Advance(60);  // d4 and d5 time out; d6 goes next, d7 is offline at its turn
  look();
  f.Advance(60);
  look();
  auto both = f.Listing(id, {DeviceJobState::kFailed, DeviceJobState::kTimedOut}, "", 2);
  CHECK(both.devices.size() == 2);
  CHECK(both.next_after == both.devices.back()["id"]);
  REQUIRE(f.engine.Rollback(id));
  f.Report("d1", "SUCCEEDED", 9, nullptr, "r-1.d1.rollback");
  look();
  CHECK(seen == std::set<std::string>{"pending", "in_progress", "succeeded", "failed", "timed_out", "unreached",
                                      "cancelled", "rolled_back"});
  // ?devices=none has no device lists at all; a listing only the devices asked for, counts unchanged.
  auto none = f.engine.RolloutReportText(id, ReportDevices{.none = true, .states = {}, .after = "", .limit = 0});
  REQUIRE(none);
  CHECK(!json::parse(*none).contains("devices"));
  CHECK(!json::parse(*none).contains("touched"));
  CHECK(f.engine.RolloutReportText("r-9", ReportDevices{.none = true, .states = {}, .after = "", .limit = 0})
            .error()
            .Is(Errc::kNotFound));
}

TEST_CASE("hostile reports are dropped and counted per reason; the device and the rollouts are untouched") {
  Fixture f;
  f.Online("d1");
  const std::string rid = f.Create(json{{"release", 5}});
  const std::string job = f.Job("d1");
  auto before = f.store->GetDevice("d1");
  REQUIRE(before);
  struct Row {
    const char* name;
    DeviceReport::Kind kind;
    std::string job, payload;
    fleet::Reason reason;
  };
  std::string labels = R"({"boot_id":"x","seq":99,"labels":{)";
  for (int i = 0; i < 40; ++i) labels += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  labels += "}}";
  const std::vector<Row> rows = {
      {"online as a string", DeviceReport::Kind::kPresence, "", R"({"online":"yes"})", fleet::Reason::kBadType},
      {"60k nested [", DeviceReport::Kind::kState, "", std::string(60000, '['), fleet::Reason::kTooDeep},
      {"100k nested [", DeviceReport::Kind::kState, "", std::string(100000, '['), fleet::Reason::kTooLarge},
      {"1 MiB state", DeviceReport::Kind::kState, "",
       R"({"boot_id":"x","seq":99,"pad":")" + std::string(1 << 20, 'x') + "\"}", fleet::Reason::kTooLarge},
      {"long boot_id", DeviceReport::Kind::kState, "", R"({"boot_id":")" + std::string(100000 / 2, 'b') + R"(","seq":99})",
       fleet::Reason::kOutOfRange},
      {"40 labels", DeviceReport::Kind::kState, "", labels, fleet::Reason::kOutOfRange},
      {"bad UTF-8", DeviceReport::Kind::kState, "", "{\"boot_id\":\"\xff\",\"seq\":99}", fleet::Reason::kBadUtf8},
      {"seq as text", DeviceReport::Kind::kJobStatus, job, R"({"state":"SUCCEEDED","seq":"9"})",
       fleet::Reason::kBadType},
      {"long error", DeviceReport::Kind::kJobStatus, job,
       R"({"state":"FAILED","seq":9,"error":{"message":")" + std::string(5000, 'm') + "\"}}", fleet::Reason::kOutOfRange},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    const uint64_t n = f.engine.counters().reports_rejected[row.reason];
    Status st;
    REQUIRE_NOTHROW(st = f.engine.OnReports({DeviceReport{.kind = row.kind, .device_id = "d1", .job = row.job,
                                                          .payload = row.payload}}));
    CHECK(st);
    CHECK(f.engine.counters().reports_rejected[row.reason] == n + 1);
  }
  auto after = f.store->GetDevice("d1");
  REQUIRE(after);
  CHECK((*after)->boot_id == (*before)->boot_id);
  CHECK((*after)->state_seq == (*before)->state_seq);
  CHECK((*after)->online);
  CHECK(f.Report(rid)["counts"]["in_progress"] == 1);
  // The device still reports normally afterwards.
  f.Report("d1", "SUCCEEDED", 7);
  CHECK(f.Report(rid)["state"] == "succeeded");
}

TEST_CASE("a job report counts only for the device that was sent the job, in its current attempt") {
  Fixture f;
  f.Online("d1");
  f.Online("d2");
  const std::string rid = f.Create(json{{"release", 5}, {"max_retries", 1}});
  const std::string job1 = f.Job("d1");
  const std::string job2 = f.Job("d2");
  // d2 forges d1's outcome (on its own topic: the broker lets it write nowhere else) and a job never sent.
  f.Report("d2", "SUCCEEDED", 7, nullptr, job1);
  f.Report("d2", "SUCCEEDED", 7, nullptr, rid + ".d2.7");
  CHECK(f.engine.counters().reports_foreign_job == 2);
  auto r = f.Report(rid);
  CHECK(r["counts"]["succeeded"] == 0);
  CHECK(r["counts"]["in_progress"] == 2);
  // A retryable failure starts attempt 2: reports for attempt 1 no longer count.
  f.Report("d1", "FAILED", 3, json{{"code", "fetch"}, {"retryable", true}, {"message", "503"}});
  const std::string retry = f.Job("d1");
  REQUIRE(retry != job1);
  f.Report("d1", "SUCCEEDED", 9, nullptr, job1);
  CHECK(f.Report(rid)["counts"]["succeeded"] == 0);
  f.Report("d1", "SUCCEEDED", 9, nullptr, retry);
  f.Report("d2", "SUCCEEDED", 9, nullptr, job2);
  CHECK(f.Report(rid)["counts"]["succeeded"] == 2);
}

TEST_CASE("selector.operator_labels matches labels an operator set, never a device's claims") {
  Fixture f;
  f.Online("honest", {{"ring", "canary"}});
  f.Online("claims", {{"ring", "canary"}});  // reports itself into the ring
  REQUIRE(f.engine.SetOperatorLabels("honest", Labels{{"ring", "canary"}}));
  const std::string rid = f.Create(json{{"release", 5}, {"selector", {{"operator_labels", {{"ring", "canary"}}}}}});
  auto r = f.Report(rid);
  REQUIRE(r["devices"].size() == 1);
  CHECK(r["devices"][0]["id"] == "honest");
  CHECK(r["spec"]["selector"]["operator_labels"]["ring"] == "canary");
  // selector.labels still matches effective labels (claims included), as documented.
  const std::string any = f.Create(json{{"release", 5}, {"selector", {{"labels", {{"ring", "canary"}}}}}});
  CHECK(f.Report(any)["devices"].size() == 2);
}
