#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "fleet/messages.hpp"

using namespace tug;
using namespace tug::fleet;

namespace {

// One row: a payload, the parser to run, and the reason and field the error must name.
struct Bad {
  const char* name;
  std::function<Status(const std::string&)> parse;
  std::string payload;
  Reason reason;
  std::string field;  // expected at the start of the error context
};

template <typename F>
std::function<Status(const std::string&)> P(F f) {
  return [f](const std::string& s) -> Status {
    auto r = f(s, DefaultLimits());
    if (!r) return tl::unexpected(r.error());
    return {};
  };
}

const std::string kState =
    R"({"boot_id":"b1","seq":3,"applied_v":2,"active":{"slot":"a","digest":"sha256:aa","version":7,"name":"app",)"
    R"("status":"COMMITTED","running":true},"previous":null,"job":{"id":"r-1.dev-1.1","phase":"SUCCEEDED","seq":7,)"
    R"("error":null},"ratchet":7,"arch":"linux/arm64/v8","agent_version":"0.1.0","free_bytes":1000,)"
    R"("labels":{"site":"berlin"}})";

}  // namespace

TEST_CASE("fleet parsers accept what the agent and the controller send") {
  auto p = ParsePresence(R"({"online":true,"boot_id":"b1","ts":"2026-01-01T00:00:00Z"})");
  REQUIRE(p);
  CHECK(p->online);
  CHECK(p->boot_id == "b1");
  CHECK(ParsePresence(R"({"online":false})"));

  auto s = ParseState(kState);
  REQUIRE(s);
  CHECK(s->seq == 3);
  REQUIRE(s->active);
  CHECK(s->active->digest == "sha256:aa");
  CHECK(s->active->version == 7);
  CHECK_FALSE(s->previous);
  CHECK(s->job.id == "r-1.dev-1.1");
  CHECK(s->job.phase == "SUCCEEDED");
  CHECK(s->labels.at("site") == "berlin");

  auto js = ParseJobStatus(
      R"({"state":"FAILED","seq":4,"boot_id":"b","error":{"code":"fetch","retryable":true,"message":"x"}})");
  REQUIRE(js);
  REQUIRE(js->error);
  CHECK(js->error->retryable);

  auto d = ParseDesired(R"({"job":"r-1.d.1","policy":{"deadline":"2026-01-01T00:00:00Z"},"release":{"payload":"e30=",)"
                        R"("payloadType":"x","signatures":[{"keyid":"k","sig":"s"}]},"v":5})");
  REQUIRE(d);
  CHECK(d->v == 5);
  CHECK(d->action == Desired::Action::kInstall);
  CHECK(d->release.find("\"signatures\"") != std::string::npos);
  CHECK(d->deadline == "2026-01-01T00:00:00Z");
  auto rb = ParseDesired(R"({"action":"rollback","job":"r-1.d.rollback","v":6})");
  REQUIRE(rb);
  CHECK(rb->action == Desired::Action::kRollback);
  auto str_release = ParseDesired(R"({"v":1,"release":"{\"payload\":\"e30=\"}"})");
  REQUIRE(str_release);
  CHECK(str_release->job == "job-v1");
  CHECK(str_release->release == R"({"payload":"e30="})");

  auto c = ParseCmdRequest(R"({"cmd":"logs"})");
  REQUIRE(c);
  CHECK(c->cmd == Command::kLogs);
  auto res = ParseCmdResponse(R"({"ok":false,"error":"nope","result":null})");
  REQUIRE(res);
  CHECK(res->error == "nope");
  CHECK(ParseProgress(R"({"phase":"downloading","bytes":1,"total":2})"));
}

TEST_CASE("fleet serializers round-trip through the parsers and keep today's bytes") {
  Presence p{.online = true, .boot_id = "b1", .ts = "2026-01-01T00:00:00Z"};
  CHECK(Serialize(p) == R"({"boot_id":"b1","online":true,"ts":"2026-01-01T00:00:00Z"})");
  auto s = ParseState(kState);
  REQUIRE(s);
  auto again = ParseState(Serialize(*s));
  REQUIRE(again);
  CHECK(Serialize(*again) == Serialize(*s));
  CHECK(Serialize(*s).find("rejected") == std::string::npos);  // only sent when something was refused

  Desired d;
  d.v = 9;
  d.job = "r-1.d.1";
  d.release = R"({"payload":"e30="})";
  d.deadline = "2026-01-01T00:00:00Z";
  CHECK(Serialize(d) ==
        R"({"job":"r-1.d.1","policy":{"deadline":"2026-01-01T00:00:00Z"},"release":{"payload":"e30="},"v":9})");
  Desired rb;
  rb.v = 10;
  rb.job = "r-1.d.rollback";
  rb.action = Desired::Action::kRollback;
  CHECK(Serialize(rb) == R"({"action":"rollback","job":"r-1.d.rollback","v":10})");
  auto back = ParseDesired(Serialize(d));
  REQUIRE(back);
  CHECK(back->release == d.release);
  CHECK(Serialize(JobStatus{.state = "SUCCEEDED", .seq = 2, .boot_id = "b", .error = std::nullopt}) ==
        R"({"boot_id":"b","error":null,"seq":2,"state":"SUCCEEDED"})");
  CHECK(Serialize(CmdRequest{Command::kCancel}) == R"({"cmd":"cancel"})");
}

TEST_CASE("fleet serializers never throw on invalid UTF-8 and cut long text on a character boundary") {
  CmdResponse r;
  r.ok = true;
  r.result = std::string("log line \xff\xfe end");
  std::string out;
  REQUIRE_NOTHROW(out = Serialize(r));
  CHECK(ParseCmdResponse(out));
  CHECK(out.find("\xEF\xBF\xBD") != std::string::npos);

  JobStatus s{.state = "FAILED", .seq = 1, .boot_id = "b", .error = JobError{}};
  s.error->code = "fetch";
  s.error->message = std::string(5000, 'x') + "\xc3\xa9";  // far beyond text_bytes
  s.error->message[10] = '\x80';                            // and a stray continuation byte
  REQUIRE_NOTHROW(out = Serialize(s));
  auto back = ParseJobStatus(out);
  REQUIRE(back);
  CHECK(back->error->message.size() <= DefaultLimits().text_bytes);
  CHECK(ValidUtf8(back->error->message));
  std::string e_acute(3000, 'y');
  e_acute[DefaultLimits().text_bytes - 1] = '\xc3';  // a two-byte character straddling the cap
  e_acute[DefaultLimits().text_bytes] = '\xa9';
  s.error->message = e_acute;
  back = ParseJobStatus(Serialize(s));
  REQUIRE(back);
  CHECK(back->error->message.size() == DefaultLimits().text_bytes - 1);
}

TEST_CASE("fleet parsers refuse hostile payloads, naming the field and the reason") {
  const std::string deep(60000, '[');  // under the 64 KiB cap: the depth check must catch it
  std::string deep_in_field = R"({"boot_id":"b","seq":1,"active":)" + std::string(20, '{');
  std::string big_state = R"({"boot_id":"b","seq":1,"pad":")" + std::string(70 * 1024, 'x') + "\"}";
  std::string many_labels = R"({"boot_id":"b","seq":1,"labels":{)";
  for (int i = 0; i < 40; ++i) many_labels += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":\"v\"";
  many_labels += "}}";
  const std::vector<Bad> rows = {
      // type confusion
      {"online as a string", P(ParsePresence), R"({"online":"yes"})", Reason::kBadType, "presence.online"},
      {"presence not an object", P(ParsePresence), R"([true])", Reason::kBadType, "presence"},
      {"seq as a string", P(ParseState), R"({"boot_id":"b","seq":"1"})", Reason::kBadType, "state.seq"},
      {"seq as a fraction", P(ParseState), R"({"boot_id":"b","seq":1.5})", Reason::kBadType, "state.seq"},
      {"digest as a number", P(ParseState), R"({"boot_id":"b","seq":1,"active":{"digest":5}})", Reason::kBadType,
       "state.active.digest"},
      {"active as a list", P(ParseState), R"({"boot_id":"b","seq":1,"active":[]})", Reason::kBadType, "state.active"},
      {"label value a number", P(ParseState), R"({"boot_id":"b","seq":1,"labels":{"a":1}})", Reason::kBadType,
       "state.labels.a"},
      {"retryable as a string", P(ParseJobStatus), R"({"state":"FAILED","seq":1,"error":{"retryable":"yes"}})",
       Reason::kBadType, "job_status.error.retryable"},
      {"release as a number", P(ParseDesired), R"({"v":1,"release":5})", Reason::kBadType, "desired.release"},
      {"v as a string", P(ParseDesired), R"({"v":"9","release":{}})", Reason::kBadType, "desired.v"},
      {"cmd as a number", P(ParseCmdRequest), R"({"cmd":1})", Reason::kBadType, "cmd.cmd"},
      {"ok as a number", P(ParseCmdResponse), R"({"ok":1})", Reason::kBadType, "cmd_res.ok"},
      // nesting
      {"60k nested [", P(ParseState), deep, Reason::kTooDeep, "state"},
      {"100k nested [", P(ParseState), std::string(100000, '['), Reason::kTooLarge, "state"},
      {"deep with tight size", P(ParseCmdResponse), std::string(500000, '['), Reason::kTooDeep, "cmd_res"},
      {"nested in a field", P(ParseState), deep_in_field, Reason::kTooDeep, "state"},
      {"deep desired", P(ParseDesired), R"({"v":1,"release":)" + std::string(40, '[') + std::string(40, ']') + "}",
       Reason::kTooDeep, "desired"},
      {"deep release in a string", P(ParseDesired), R"({"v":1,"release":")" + std::string(40, '[') + "\"}",
       Reason::kTooDeep, "desired.release"},
      // size
      {"state over 64 KiB", P(ParseState), big_state, Reason::kTooLarge, "state"},
      {"presence over 1 KiB", P(ParsePresence), R"({"online":true,"x":")" + std::string(2000, 'x') + "\"}",
       Reason::kTooLarge, "presence"},
      {"long boot_id", P(ParseState), R"({"boot_id":")" + std::string(200, 'b') + R"(","seq":1})",
       Reason::kOutOfRange, "state.boot_id"},
      {"40 labels", P(ParseState), many_labels, Reason::kOutOfRange,
       "state.labels"},
      {"long label value", P(ParseState), R"({"boot_id":"b","seq":1,"labels":{"a":")" + std::string(300, 'v') + "\"}}",
       Reason::kOutOfRange, "state.labels.a"},
      {"long error message", P(ParseJobStatus),
       R"({"state":"FAILED","seq":1,"error":{"message":")" + std::string(3000, 'm') + "\"}}", Reason::kOutOfRange,
       "job_status.error.message"},
      // UTF-8
      {"bad byte in a string", P(ParsePresence), "{\"online\":true,\"boot_id\":\"\xff\"}", Reason::kBadUtf8,
       "presence"},
      {"overlong encoding", P(ParseState), "{\"boot_id\":\"\xc0\xaf\",\"seq\":1}", Reason::kBadUtf8, "state"},
      {"surrogate", P(ParseState), "{\"boot_id\":\"\xed\xa0\x80\",\"seq\":1}", Reason::kBadUtf8, "state"},
      {"truncated sequence", P(ParseCmdRequest), "{\"cmd\":\"\xe2\x82\"}", Reason::kBadUtf8, "cmd"},
      // ranges
      {"negative seq", P(ParseState), R"({"boot_id":"b","seq":-1})", Reason::kOutOfRange, "state.seq"},
      {"seq beyond 64 bits", P(ParseState), R"({"boot_id":"b","seq":1e30})", Reason::kOutOfRange, "state.seq"},
      {"v zero", P(ParseDesired), R"({"v":0,"release":{}})", Reason::kOutOfRange, "desired.v"},
      // missing fields
      {"presence without online", P(ParsePresence), R"({"boot_id":"b"})", Reason::kMissingField, "presence.online"},
      {"state without seq", P(ParseState), R"({"boot_id":"b"})", Reason::kMissingField, "state.seq"},
      {"status without state", P(ParseJobStatus), R"({"seq":1})", Reason::kMissingField, "job_status.state"},
      {"desired without v", P(ParseDesired), R"({"release":{}})", Reason::kMissingField, "desired.v"},
      {"install without release", P(ParseDesired), R"({"v":1})", Reason::kMissingField, "desired.release"},
      {"cmd without cmd", P(ParseCmdRequest), R"({})", Reason::kMissingField, "cmd.cmd"},
      // values
      {"unknown command", P(ParseCmdRequest), R"({"cmd":"format-disk"})", Reason::kBadValue, "cmd.cmd"},
      {"unknown action", P(ParseDesired), R"({"v":1,"action":"wipe"})", Reason::kBadValue, "desired.action"},
      {"job id with a slash", P(ParseDesired), R"({"v":1,"job":"a/b","release":{}})", Reason::kBadValue,
       "desired.job"},
      {"lower-case status", P(ParseJobStatus), R"({"state":"succeeded; drop","seq":1})", Reason::kBadValue,
       "job_status.state"},
      // not JSON
      {"garbage", P(ParseState), "not json", Reason::kBadJson, "state"},
      {"unbalanced", P(ParseState), R"({"boot_id":"b","seq":1]})", Reason::kBadJson, "state"},
      {"empty", P(ParseJobStatus), "", Reason::kBadJson, "job_status"},
  };
  for (const auto& row : rows) {
    INFO(row.name);
    Status st;
    REQUIRE_NOTHROW(st = row.parse(row.payload));
    REQUIRE_FALSE(st);
    CHECK(std::string(ToString(ReasonOf(st.error()))) == ToString(row.reason));
    CHECK(st.error().context.rfind(row.field + ":", 0) == 0);
  }
}

TEST_CASE("fleet parsers take tighter limits from the caller") {
  Limits l;
  l.state_bytes = 100;
  CHECK(ParseState(kState));
  auto r = ParseState(kState, l);
  REQUIRE_FALSE(r);
  CHECK(ReasonOf(r.error()) == Reason::kTooLarge);
  ReasonCounts counts;
  counts.Add(r.error());
  counts.Add(r.error());
  CHECK(counts[Reason::kTooLarge] == 2);
  CHECK(counts.Total() == 2);
  CHECK(r.error().Message().find("too_large") != std::string::npos);
}
