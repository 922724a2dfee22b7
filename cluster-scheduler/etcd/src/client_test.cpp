// etcd::Client against a real etcd 3.4 (tests/support EtcdServer) and, for malformed answers, a fake HTTP server.
#include "etcd/client.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "testsupport/etcd_server.hpp"
#include "testsupport/fake_http_server.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::etcd;
using testsupport::EtcdServer;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::unique_ptr<EtcdServer> StartEtcd() {
  auto s = EtcdServer::Start();
  if (!s) FAIL(s.error().Message());
  return std::move(*s);
}

std::unique_ptr<Client> Connect(std::vector<std::string> endpoints, milliseconds timeout = seconds(2)) {
  auto c = Client::Create({std::move(endpoints), timeout});
  if (!c) FAIL(c.error().Message());
  return std::move(*c);
}

long long MsSince(SteadyClock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - t).count();
}

}  // namespace

TEST_CASE("the prefix range end increments the last byte below 0xff") {
  CHECK(PrefixRangeEnd("abc") == "abd");
  CHECK(PrefixRangeEnd(std::string("a\xff", 2)) == "b");
  CHECK(PrefixRangeEnd("") == std::string("\0", 1));
  CHECK(PrefixRangeEnd(std::string("\xff\xff", 2)) == std::string("\0", 1));
}

TEST_CASE("a client needs at least one http endpoint") {
  CHECK(Client::Create({{}, seconds(1)}).error().Is(Errc::kInvalidArgument));
  CHECK(Client::Create({{"127.0.0.1:2379"}, seconds(1)}).error().Is(Errc::kInvalidArgument));
  CHECK(Client::Create({{"http://127.0.0.1:2379/v3"}, seconds(1)}).error().Is(Errc::kInvalidArgument));
  CHECK(Client::Create({{"http://127.0.0.1:2379/"}, seconds(1)}));
}

TEST_CASE("the etcd fixture serves, restarts with its data and stops") {
  auto etcd = StartEtcd();
  CHECK(testsupport::HttpGetStatus(etcd->client_port(), "/health") == 200);
  auto c = Connect({etcd->endpoint()});
  REQUIRE(c->Put("/keep", "me"));
  const auto t0 = SteadyClock::now();
  REQUIRE(etcd->Restart());
  INFO("restart took " << MsSince(t0) << " ms");
  auto got = c->Get("/keep");
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->value == "me");
  etcd->Stop();
  CHECK_FALSE(etcd->running());
}

TEST_CASE("put, get and delete keep revisions and arbitrary bytes") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()});

  auto none = c->Get("/a");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());

  const std::string bytes("v\0\xff\n\"x", 6);
  auto r1 = c->Put("/a", bytes);
  REQUIRE(r1);
  auto got = c->Get("/a");
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->key == "/a");
  CHECK((*got)->value == bytes);
  CHECK((*got)->create_revision == *r1);
  CHECK((*got)->mod_revision == *r1);
  CHECK((*got)->version == 1);
  CHECK((*got)->lease == 0);

  auto r2 = c->Put("/a", "");
  REQUIRE(r2);
  CHECK(*r2 > *r1);
  got = c->Get("/a");
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->value.empty());  // the gateway leaves an empty value out entirely
  CHECK((*got)->create_revision == *r1);
  CHECK((*got)->mod_revision == *r2);
  CHECK((*got)->version == 2);

  auto del = c->Delete("/a");
  REQUIRE(del);
  CHECK(*del == 1);
  del = c->Delete("/a");
  REQUIRE(del);
  CHECK(*del == 0);
  got = c->Get("/a");
  REQUIRE(got);
  CHECK_FALSE(got->has_value());
}

TEST_CASE("ranges and deletes by prefix stay inside the prefix") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()});
  for (const char* k : {"/tasks/b", "/tasks/a", "/tasks/c", "/tasksx", "/task", "/other"}) REQUIRE(c->Put(k, k));

  auto r = c->Range("/tasks/");
  REQUIRE(r);
  REQUIRE(r->size() == 3);
  CHECK((*r)[0].key == "/tasks/a");  // sorted by key
  CHECK((*r)[1].key == "/tasks/b");
  CHECK((*r)[2].key == "/tasks/c");
  CHECK((*r)[2].value == "/tasks/c");

  auto limited = c->Range("/tasks/", 2);
  REQUIRE(limited);
  CHECK(limited->size() == 2);

  auto all = c->Range("");
  REQUIRE(all);
  CHECK(all->size() == 6);

  auto empty = c->Range("/nothing/");
  REQUIRE(empty);
  CHECK(empty->empty());

  auto n = c->DeletePrefix("/tasks/");
  REQUIRE(n);
  CHECK(*n == 3);
  auto rest = c->Range("");
  REQUIRE(rest);
  CHECK(rest->size() == 3);
}

TEST_CASE("compare-and-swap writes only when the condition holds") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()});

  SECTION("put if absent") {
    auto first = c->PutIfAbsent("/lock", "a");
    REQUIRE(first);
    CHECK(*first);
    auto second = c->PutIfAbsent("/lock", "b");
    REQUIRE(second);
    CHECK_FALSE(*second);
    CHECK((*c->Get("/lock"))->value == "a");
  }

  SECTION("put if the mod revision is unchanged") {
    auto created = c->PutIfModRevision("/cfg", "v1", 0);  // 0: must not exist
    REQUIRE(created);
    CHECK(*created);
    auto kv = c->Get("/cfg");
    REQUIRE(kv);
    const int64_t seen = (*kv)->mod_revision;
    REQUIRE(c->Put("/cfg", "someone else"));
    auto stale = c->PutIfModRevision("/cfg", "v2", seen);
    REQUIRE(stale);
    CHECK_FALSE(*stale);
    const int64_t now = (*c->Get("/cfg"))->mod_revision;
    auto fresh = c->PutIfModRevision("/cfg", "v2", now);
    REQUIRE(fresh);
    CHECK(*fresh);
    CHECK((*c->Get("/cfg"))->value == "v2");
    auto exists = c->PutIfModRevision("/cfg", "v3", 0);
    REQUIRE(exists);
    CHECK_FALSE(*exists);
  }

  SECTION("delete if the value matches") {
    REQUIRE(c->Put("/owner", "me"));
    auto wrong = c->DeleteIfValue("/owner", "you");
    REQUIRE(wrong);
    CHECK_FALSE(*wrong);
    auto right = c->DeleteIfValue("/owner", "me");
    REQUIRE(right);
    CHECK(*right);
    auto absent = c->DeleteIfValue("/owner", "");
    REQUIRE(absent);
    CHECK_FALSE(*absent);  // a missing key is not "a key with an empty value"
  }

  SECTION("a transaction runs the failure branch and reports its reads") {
    REQUIRE(c->Put("/x", "1"));
    auto r = c->Txn({Compare::ValueEquals("/x", "2")}, {Op::Put("/x", "3")}, {Op::Get("/x"), Op::Get("/missing")});
    REQUIRE(r);
    CHECK_FALSE(r->succeeded);
    REQUIRE(r->gets.size() == 2);
    REQUIRE(r->gets[0].size() == 1);
    CHECK(r->gets[0][0].value == "1");
    CHECK(r->gets[1].empty());
    auto ok = c->Txn({Compare::ValueEquals("/x", "1")}, {Op::Put("/x", "3"), Op::Put("/y", "4")});
    REQUIRE(ok);
    CHECK(ok->succeeded);
    CHECK((*c->Get("/x"))->mod_revision == ok->revision);
    CHECK((*c->Get("/y"))->mod_revision == ok->revision);  // one revision for the whole transaction
  }
}

TEST_CASE("keys attached to a lease vanish when it expires or is revoked") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()});

  auto lease = c->LeaseGrantTtl(seconds(2));
  REQUIRE(lease);
  CHECK(lease->ttl_seconds >= 2);
  REQUIRE(c->Put("/eph", "x", lease->id));
  CHECK((*c->Get("/eph"))->lease == lease->id);

  // Kept alive past its TTL, the key stays.
  for (int i = 0; i < 4; ++i) {
    auto ttl = c->LeaseKeepAlive(lease->id);
    REQUIRE(ttl);
    CHECK(*ttl == lease->ttl_seconds);
    std::this_thread::sleep_for(milliseconds(700));
  }
  REQUIRE(c->Get("/eph")->has_value());

  // Left alone, it expires: etcd checks every 500 ms, then revokes through Raft.
  const auto t0 = SteadyClock::now();
  bool gone = testsupport::WaitFor([&] { return !c->Get("/eph")->has_value(); }, seconds(lease->ttl_seconds + 3));
  CHECK(gone);
  INFO("expired after " << MsSince(t0) << " ms");
  CHECK(MsSince(t0) >= lease->ttl_seconds * 1000 - 800);  // the last keepalive was up to 700 ms before t0
  auto after = c->LeaseKeepAlive(lease->id);
  REQUIRE(after);
  CHECK(*after == 0);
  // Writing with the dead lease is refused.
  CHECK(c->Put("/eph", "y", lease->id).error().Is(Errc::kNotFound));

  // Revoking ends it at once.
  auto l2 = c->LeaseGrant(seconds(30));
  REQUIRE(l2);
  REQUIRE(c->Put("/eph2", "x", *l2));
  REQUIRE(c->LeaseRevoke(*l2));
  CHECK_FALSE(c->Get("/eph2")->has_value());
  CHECK(c->LeaseRevoke(*l2));  // idempotent
  CHECK(*c->LeaseKeepAlive(*l2) == 0);
}

TEST_CASE("a watch delivers puts and deletes in revision order and ends when idle") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()});
  auto writer = Connect({etcd->endpoint()});
  auto start = c->Put("/w/start", "0");
  REQUIRE(start);

  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(200));
    (void)writer->Put("/w/a", "1");
    (void)writer->Put("/other", "x");
    (void)writer->Delete("/w/a");
  });
  std::vector<WatchEvent> seen;
  auto st = c->Watch("/w/", true, *start + 1, seconds(5), [&](const std::vector<WatchEvent>& evs, int64_t) {
    seen.insert(seen.end(), evs.begin(), evs.end());
    return seen.size() < 2;
  });
  t.join();
  REQUIRE(st);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].type == WatchEvent::Type::kPut);
  CHECK(seen[0].kv.key == "/w/a");
  CHECK(seen[0].kv.value == "1");
  CHECK(seen[1].type == WatchEvent::Type::kDelete);
  CHECK(seen[1].kv.key == "/w/a");
  CHECK(seen[1].kv.mod_revision > seen[0].kv.mod_revision);

  // History: from an old revision the same events come back at once.
  std::vector<WatchEvent> replay;
  REQUIRE(c->Watch("/w/a", false, *start, seconds(5), [&](const std::vector<WatchEvent>& evs, int64_t) {
    replay.insert(replay.end(), evs.begin(), evs.end());
    return replay.size() < 2;
  }));
  CHECK(replay.size() == 2);

  const auto t0 = SteadyClock::now();
  auto idle = c->Watch("/quiet", false, 0, milliseconds(300), [](const std::vector<WatchEvent>&, int64_t) {
    return true;
  });
  CHECK(idle.error().Is(Errc::kTimeout));
  CHECK(MsSince(t0) < 2000);
}

TEST_CASE("the client fails over to the endpoint that answers and sticks to it") {
  auto etcd = StartEtcd();
  const std::string dead = "http://127.0.0.1:" + std::to_string(testsupport::FreeLoopbackPort());
  auto c = Connect({dead, etcd->endpoint()}, milliseconds(500));
  REQUIRE(c->Put("/f", "1"));
  CHECK(c->CurrentEndpoint() == etcd->endpoint());
  REQUIRE(c->Get("/f"));
  CHECK(c->CurrentEndpoint() == etcd->endpoint());

  // A silent endpoint (accepts, never answers) costs one timeout, then the next one answers.
  testsupport::SilentListener silent;
  auto c2 = Connect({"http://" + silent.host_port(), etcd->endpoint()}, milliseconds(300));
  const auto t0 = SteadyClock::now();
  auto got = c2->Get("/f");
  REQUIRE(got);
  CHECK((*got)->value == "1");
  CHECK(MsSince(t0) < 1500);
}

TEST_CASE("no endpoint answering is kUnavailable (refused) or kTimeout (silent), within the timeout") {
  auto etcd = StartEtcd();
  auto c = Connect({etcd->endpoint()}, milliseconds(500));
  REQUIRE(c->Put("/k", "v"));

  SECTION("killed") {
    etcd->Kill();
    const auto t0 = SteadyClock::now();
    auto r = c->Get("/k");
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kUnavailable));
    CHECK(IsRetryable(r.error()));
    CHECK(MsSince(t0) < 500);
    CHECK(c->Put("/k", "w").error().Is(Errc::kUnavailable));
    CHECK(c->LeaseKeepAlive(1).error().Is(Errc::kUnavailable));
    // Back on the same port with the same data: the client carries on.
    REQUIRE(etcd->Restart());
    auto back = c->Get("/k");
    REQUIRE(back);
    CHECK((*back)->value == "v");
  }

  SECTION("paused") {
    etcd->Pause();
    const auto t0 = SteadyClock::now();
    auto r = c->Get("/k");
    REQUIRE_FALSE(r);
    CHECK(r.error().Is(Errc::kTimeout));
    const auto took = MsSince(t0);
    INFO("took " << took << " ms");
    CHECK(took >= 450);
    CHECK(took < 1500);
    etcd->Resume();
    REQUIRE(c->Get("/k"));
  }
}

TEST_CASE("answers that are not the gateway's JSON are kProtocol; etcd errors keep their meaning") {
  testsupport::FakeHttpServer fake([](const testsupport::FakeRequest& req) {
    testsupport::FakeResponse r;
    if (req.target == "/v3/kv/range") {
      r.body = "<html>not json</html>";
    } else if (req.target == "/v3/kv/put") {
      r.body = R"({"header":{"revision":"many"}})";
    } else if (req.target == "/v3/lease/grant") {
      r.status = 400;
      r.body = R"({"error":"etcdserver: too many","message":"etcdserver: too many","code":3})";
    } else {
      r.status = 503;
      r.body = R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})";
    }
    return r;
  });
  auto c = Connect({"http://" + fake.host_port()}, milliseconds(500));
  CHECK(c->Get("/k").error().Is(Errc::kProtocol));
  CHECK(c->Put("/k", "v").error().Is(Errc::kProtocol));
  CHECK(c->LeaseGrant(seconds(5)).error().Is(Errc::kInvalidArgument));
  auto unavailable = c->Delete("/k");
  REQUIRE_FALSE(unavailable);
  CHECK(unavailable.error().Is(Errc::kUnavailable));
  CHECK(unavailable.error().context.find("no leader") != std::string::npos);
}
