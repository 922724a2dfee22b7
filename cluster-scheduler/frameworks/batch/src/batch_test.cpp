// The batch scheduler's decisions against a recording master: what it launches from which offer, when executors
// start, retries, job outcomes, REST validation. (The end-to-end test runs it with a real master and nodes.)
#include "batch/batch.hpp"

#include <catch2/catch.hpp>

using namespace tug;
using namespace tug::cluster;
using json = nlohmann::json;

namespace {

struct Recorder : batch::MasterCalls {
  std::vector<std::pair<std::vector<std::string>, std::vector<TaskInfo>>> accepts;
  std::vector<std::string> declines, kills, acks;
  int revives = 0, suppresses = 0;
  Status Accept(const std::vector<std::string>& o, const std::vector<TaskInfo>& t, double) override {
    accepts.push_back({o, t});
    return {};
  }
  Status Decline(const std::vector<std::string>& o, double) override {
    declines.insert(declines.end(), o.begin(), o.end());
    return {};
  }
  Status Kill(const std::string& t, const std::string&) override {
    kills.push_back(t);
    return {};
  }
  Status Acknowledge(const TaskStatus& s) override {
    acks.push_back(s.uuid);
    return {};
  }
  Status Reconcile() override { return {}; }
  Status Revive() override {
    ++revives;
    return {};
  }
  Status Suppress() override {
    ++suppresses;
    return {};
  }
};

Offer MakeOffer(const std::string& id, const std::string& agent, double cpus, double mem) {
  return Offer{.id = id, .framework_id = "f", .agent_id = agent, .hostname = agent + ".local",
               .resources = Resources::Make(cpus, mem, 0, {{31000, 31010}}), .attributes = {}};
}

TaskStatus Update(const std::string& task, TaskState st, const std::string& uuid = "u") {
  TaskStatus s;
  s.task_id = task;
  s.state = st;
  s.uuid = uuid;
  return s;
}

http::Response Post(batch::BatchScheduler& b, const std::string& body) {
  http::Request r;
  r.method = "POST";
  r.target = "/v1/jobs";
  r.body = body;
  return b.Handle(r);
}

}  // namespace

TEST_CASE("batch: driver first, then executors with the driver's address; job ends with the driver") {
  boost::asio::io_context io;
  Recorder m;
  batch::BatchScheduler b(io, m, "");
  b.OnSubscribed("f");
  auto r = Post(b, R"({"id":"pi","driver":{"cmd":"drv","cpus":1,"mem":128},
                       "executors":{"instances":3,"cmd":"exe","cpus":1,"mem":128}})");
  REQUIRE(r.status == 201);

  b.OnOffers({MakeOffer("o1", "a1", 4, 1024)});
  REQUIRE(m.accepts.size() == 1);
  REQUIRE(m.accepts[0].second.size() == 1);  // only the driver: executors wait for it
  const TaskInfo driver = m.accepts[0].second[0];
  CHECK(driver.command.value == "drv");
  CHECK(driver.Ports().size() == 1);

  b.OnOffers({MakeOffer("o2", "a2", 4, 1024)});
  CHECK(m.declines == std::vector<std::string>{"o2"});

  b.OnUpdate(Update(driver.task_id, TaskState::kRunning));
  b.OnOffers({MakeOffer("o3", "a2", 2, 1024)});  // room for two executors
  REQUIRE(m.accepts.size() == 2);
  REQUIRE(m.accepts[1].second.size() == 2);
  const TaskInfo& e0 = m.accepts[1].second[0];
  CHECK(e0.command.environment.at("DRIVER_HOST") == "a1.local");
  CHECK(e0.command.environment.at("DRIVER_PORT") == std::to_string(driver.Ports()[0]));
  b.OnOffers({MakeOffer("o4", "a3", 2, 1024)});
  REQUIRE(m.accepts.size() == 3);
  CHECK(m.accepts[2].second.size() == 1);
  CHECK(b.JobJson("pi")["state"] == "RUNNING");

  b.OnUpdate(Update(driver.task_id, TaskState::kFinished));
  CHECK(b.JobJson("pi")["state"] == "FINISHED");
  CHECK(m.kills.size() == 3);  // the executors
  CHECK(m.suppresses >= 1);
}

TEST_CASE("batch: a failing task is retried up to maxRetries, then the job fails") {
  boost::asio::io_context io;
  Recorder m;
  batch::BatchScheduler b(io, m, "");
  b.OnSubscribed("f");
  REQUIRE(Post(b, R"({"id":"etl","maxRetries":1,"tasks":[{"cmd":"ok"},{"cmd":"bad"}]})").status == 201);
  b.OnOffers({MakeOffer("o1", "a1", 4, 1024)});
  REQUIRE(m.accepts.size() == 1);
  REQUIRE(m.accepts[0].second.size() == 2);
  const std::string ok = m.accepts[0].second[0].task_id, bad = m.accepts[0].second[1].task_id;
  b.OnUpdate(Update(ok, TaskState::kFinished, "u1"));
  b.OnUpdate(Update(bad, TaskState::kFailed, "u2"));
  CHECK(b.JobJson("etl")["state"] == "RUNNING");
  b.OnOffers({MakeOffer("o2", "a1", 4, 1024)});
  REQUIRE(m.accepts.size() == 2);
  const std::string retry = m.accepts[1].second[0].task_id;
  CHECK(retry != bad);
  b.OnUpdate(Update(retry, TaskState::kFailed, "u3"));
  auto job = b.JobJson("etl");
  CHECK(job["state"] == "FAILED");
  CHECK(job["message"].get<std::string>().find("task-1 TASK_FAILED after 2 attempts") != std::string::npos);
  CHECK(m.acks == std::vector<std::string>{"u1", "u2", "u3"});
}

TEST_CASE("batch: a task-list job finishes when every task has; bad job specs name the field") {
  boost::asio::io_context io;
  Recorder m;
  batch::BatchScheduler b(io, m, "");
  b.OnSubscribed("f");
  auto bad = Post(b, R"({"id":"x","driver":{"cmd":"d"},"executors":{"cmd":"e","instances":0}})");
  CHECK(bad.status == 400);
  CHECK(json::parse(bad.body)["field"] == "executors.instances");
  CHECK(json::parse(Post(b, R"({"id":"Bad_Id","tasks":[{"cmd":"x"}]})").body)["field"] == "id");
  CHECK(json::parse(Post(b, R"({"id":"y","tasks":[{"cmd":"x","mem":-1}]})").body)["field"] == "tasks[0].mem");
  CHECK(Post(b, "not json").status == 400);

  REQUIRE(Post(b, R"({"id":"two","tasks":[{"cmd":"a"},{"cmd":"b","cpus":8}]})").status == 201);
  CHECK(Post(b, R"({"id":"two","tasks":[{"cmd":"a"}]})").status == 409);
  b.OnOffers({MakeOffer("o1", "a1", 2, 1024)});  // the 8-cpu task does not fit here
  REQUIRE(m.accepts.size() == 1);
  REQUIRE(m.accepts[0].second.size() == 1);
  b.OnOffers({MakeOffer("o2", "a2", 8, 1024)});
  REQUIRE(m.accepts.size() == 2);
  b.OnUpdate(Update(m.accepts[0].second[0].task_id, TaskState::kFinished));
  CHECK(b.JobJson("two")["state"] == "RUNNING");
  b.OnUpdate(Update(m.accepts[1].second[0].task_id, TaskState::kFinished));
  CHECK(b.JobJson("two")["state"] == "FINISHED");
}
