// LeaderElection against a real etcd 3.4. Timing figures are printed (WARN lines) so failover times show in the
// test log; the assertions are the safety properties (never two leaders, demoted before the successor is elected)
// and generous liveness bounds.
#include "etcd/election.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "testsupport/etcd_server.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace tug::etcd;
using testsupport::EtcdServer;
using testsupport::WaitFor;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

namespace {

long long Ms(SteadyClock::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

// One greppable line per measurement in the test's output.
void Report(const std::string& line) { std::fprintf(stderr, "TIMING %s\n", line.c_str()); }

// Leaders across all candidates of one test: on_elected +1, on_demoted -1. Since a demotion must precede the next
// election, the count must never exceed 1.
struct World {
  std::atomic<int> leaders{0};
  std::atomic<int> max_leaders{0};
};

// One candidate's callbacks, with timestamps.
struct Candidate {
  explicit Candidate(World& w, std::string name) : world(w), value(std::move(name)) {}
  World& world;
  std::string value;
  mutable std::mutex mu;
  int elected = 0;
  int demoted = 0;
  SteadyClock::time_point last_elected{};
  SteadyClock::time_point last_demoted{};
  LeaderTerm last_term;

  ElectionOptions Options() {
    ElectionOptions o;
    o.key = "/tugboat/cluster/leader";
    o.value = value;
    o.ttl = seconds(3);
    o.on_elected = [this](const LeaderTerm& t) {
      int now = ++world.leaders;
      int prev = world.max_leaders.load();
      while (now > prev && !world.max_leaders.compare_exchange_weak(prev, now)) {
      }
      std::lock_guard<std::mutex> l(mu);
      ++elected;
      last_elected = SteadyClock::now();
      last_term = t;
    };
    o.on_demoted = [this] {
      --world.leaders;
      std::lock_guard<std::mutex> l(mu);
      ++demoted;
      last_demoted = SteadyClock::now();
    };
    return o;
  }
  int Elected() const {
    std::lock_guard<std::mutex> l(mu);
    return elected;
  }
  int Demoted() const {
    std::lock_guard<std::mutex> l(mu);
    return demoted;
  }
  SteadyClock::time_point ElectedAt() const {
    std::lock_guard<std::mutex> l(mu);
    return last_elected;
  }
  SteadyClock::time_point DemotedAt() const {
    std::lock_guard<std::mutex> l(mu);
    return last_demoted;
  }
  LeaderTerm Term() const {
    std::lock_guard<std::mutex> l(mu);
    return last_term;
  }
};

std::unique_ptr<EtcdServer> StartElectionEtcd() {
  auto s = EtcdServer::Start();
  if (!s) FAIL(s.error().Message());
  return std::move(*s);
}

std::unique_ptr<LeaderElection> Campaign(const std::string& endpoint, Candidate& c) {
  auto e = LeaderElection::Start({{endpoint}, seconds(1)}, c.Options());
  if (!e) FAIL(e.error().Message());
  return std::move(*e);
}

std::unique_ptr<Client> Connect(const std::string& endpoint) {
  auto c = Client::Create({{endpoint}, seconds(1)});
  if (!c) FAIL(c.error().Message());
  return std::move(*c);
}

// A TCP relay to etcd that can be frozen: while frozen it neither accepts nor forwards, so connects still succeed
// (kernel backlog) and requests vanish unanswered: one master cut off from etcd while the others are not.
class FreezableProxy {
 public:
  explicit FreezableProxy(uint16_t target) : target_(target) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Addr(0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0)
      std::abort();
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FreezableProxy() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) {
      ::close(p.first);
      ::close(p.second);
    }
    ::close(listen_fd_);
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void Freeze() { frozen_ = true; }
  void Thaw() { frozen_ = false; }

 private:
  static sockaddr_in Addr(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }

  void Loop() {
    char buf[64 * 1024];
    while (!stop_) {
      if (frozen_) {
        std::this_thread::sleep_for(milliseconds(10));
        continue;
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (auto& p : pairs_) {
        fds.push_back({p.first, POLLIN, 0});
        fds.push_back({p.second, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (frozen_) continue;  // frozen while polling: leave the data where it is
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          sockaddr_in a = Addr(target_);
          if (::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
            pairs_.emplace_back(c, u);
          } else {
            ::close(c);
            ::close(u);
          }
        }
      }
      std::vector<size_t> dead;
      const size_t polled = (fds.size() - 1) / 2;  // pairs accepted just now were not polled
      for (size_t pair = 0; pair < polled; ++pair) {
        for (size_t side = 0; side < 2; ++side) {
          const pollfd& f = fds[1 + 2 * pair + side];
          if (!(f.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          int from = side == 0 ? pairs_[pair].first : pairs_[pair].second;
          int to = side == 0 ? pairs_[pair].second : pairs_[pair].first;
          ssize_t n = ::recv(from, buf, sizeof buf, 0);
          bool ok = n > 0;
          for (ssize_t off = 0; ok && off < n;) {
            ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
            ok = w > 0;
            off += w > 0 ? w : 0;
          }
          if (!ok) {
            dead.push_back(pair);
            break;
          }
        }
      }
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
        ::close(pairs_[*it].first);
        ::close(pairs_[*it].second);
        pairs_.erase(pairs_.begin() + static_cast<long>(*it));
      }
    }
  }

  uint16_t target_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> frozen_{false};
  std::atomic<bool> stop_{false};
  std::vector<std::pair<int, int>> pairs_;  // (client side, etcd side); only the loop thread touches them
  std::thread thread_;
};

}  // namespace

TEST_CASE("election options are checked up front") {
  World w;
  Candidate a(w, "http://a");
  auto o = a.Options();
  o.value.clear();
  CHECK(LeaderElection::Start({{"http://127.0.0.1:1"}, seconds(1)}, o).error().Is(Errc::kInvalidArgument));
  o = a.Options();
  o.keepalive_interval = milliseconds(2000);  // 2 s + 1 s call timeout >= 3 s - 0.5 s margin
  CHECK(LeaderElection::Start({{"http://127.0.0.1:1"}, seconds(1)}, o).error().Is(Errc::kInvalidArgument));
  o = a.Options();
  CHECK(LeaderElection::Start({{"not a url"}, seconds(1)}, o).error().Is(Errc::kInvalidArgument));
}

TEST_CASE("two candidates elect exactly one leader and a resignation hands over within a second") {
  auto etcd = StartElectionEtcd();
  World w;
  Candidate ca(w, "http://master-a:5050"), cb(w, "http://master-b:5050");
  const auto t0 = SteadyClock::now();
  auto a = Campaign(etcd->endpoint(), ca);
  auto b = Campaign(etcd->endpoint(), cb);
  REQUIRE(WaitFor([&] { return a->IsLeader() || b->IsLeader(); }, seconds(5)));
  Report("first election after start: " + std::to_string(Ms(SteadyClock::now() - t0)) + " ms");
  // Hold for a while: the leader keeps its lease across several TTLs and nobody else gets in.
  std::this_thread::sleep_for(seconds(4));
  CHECK(a->IsLeader() != b->IsLeader());
  CHECK(w.max_leaders == 1);
  CHECK(ca.Elected() + cb.Elected() == 1);

  LeaderElection& leader = a->IsLeader() ? *a : *b;
  LeaderElection& follower = a->IsLeader() ? *b : *a;
  Candidate& cl = a->IsLeader() ? ca : cb;
  Candidate& cf = a->IsLeader() ? cb : ca;
  CHECK(*leader.CurrentLeader() == cl.value);
  CHECK(*follower.CurrentLeader() == cl.value);  // what a follower redirects clients to
  REQUIRE(leader.Term());
  CHECK(leader.Term()->create_revision > 0);
  CHECK_FALSE(follower.Term());

  // Fenced writes: the leader's go through, a follower's are refused without a round trip.
  auto w1 = leader.PutIfLeader("/tugboat/cluster/state/x", "1");
  REQUIRE(w1);
  CHECK(*w1);
  auto w2 = follower.PutIfLeader("/tugboat/cluster/state/x", "2");
  REQUIRE(w2);
  CHECK_FALSE(*w2);

  const auto resign_at = SteadyClock::now();
  REQUIRE(leader.Resign());
  CHECK(cl.Demoted() == 1);  // synchronously, before the key went
  CHECK_FALSE(leader.IsLeader());
  // Wait for the callback, not IsLeader(): that turns true just before on_elected records its time.
  REQUIRE(WaitFor([&] { return cf.Elected() == 1; }, seconds(1)));
  const auto handover = Ms(cf.ElectedAt() - resign_at);
  Report("resign -> new leader elected: " + std::to_string(handover) + " ms");
  CHECK(handover < 1000);
  CHECK(cl.DemotedAt() < cf.ElectedAt());
  CHECK(*follower.CurrentLeader() == cf.value);
  // The resigned candidate stays out.
  std::this_thread::sleep_for(milliseconds(500));
  CHECK_FALSE(leader.IsLeader());
  CHECK(w.max_leaders == 1);
}

TEST_CASE("a leader destroyed without resigning is replaced after its lease expires") {
  auto etcd = StartElectionEtcd();
  World w;
  Candidate ca(w, "http://master-a:5050"), cb(w, "http://master-b:5050");
  auto a = Campaign(etcd->endpoint(), ca);
  REQUIRE(WaitFor([&] { return a->IsLeader(); }, seconds(5)));
  auto b = Campaign(etcd->endpoint(), cb);
  std::this_thread::sleep_for(milliseconds(500));
  REQUIRE_FALSE(b->IsLeader());

  const auto t0 = SteadyClock::now();
  a.reset();  // as a crash: no revoke
  CHECK(ca.Demoted() == 1);
  REQUIRE(WaitFor([&] { return cb.Elected() == 1; }, seconds(3 + 3)));
  const auto failover = Ms(cb.ElectedAt() - t0);
  Report("leader destroyed without resign -> new leader: " + std::to_string(failover) + " ms (TTL 3000 ms)");
  CHECK(failover < 3000 + 2000);
  CHECK(ca.DemotedAt() < cb.ElectedAt());
  CHECK(w.max_leaders == 1);
}

TEST_CASE("a leader cut off from etcd demotes itself before its successor is elected, and its writes are fenced") {
  auto etcd = StartElectionEtcd();
  FreezableProxy proxy(etcd->client_port());
  World w;
  Candidate ca(w, "http://master-a:5050"), cb(w, "http://master-b:5050");
  auto a = Campaign(proxy.endpoint(), ca);
  REQUIRE(WaitFor([&] { return a->IsLeader(); }, seconds(5)));
  auto b = Campaign(etcd->endpoint(), cb);
  std::this_thread::sleep_for(milliseconds(1500));
  REQUIRE(a->IsLeader());
  REQUIRE_FALSE(b->IsLeader());
  const LeaderTerm old_term = ca.Term();
  auto before = a->PutIfLeader("/tugboat/cluster/state/owner", "a");
  REQUIRE(before);
  CHECK(*before);

  const auto cut = SteadyClock::now();
  proxy.Freeze();
  REQUIRE(WaitFor([&] { return ca.Demoted() == 1; }, seconds(3)));
  REQUIRE(WaitFor([&] { return cb.Elected() == 1; }, seconds(3 + 3)));
  const auto demote_after = Ms(ca.DemotedAt() - cut);
  const auto elect_after = Ms(cb.ElectedAt() - cut);
  const auto gap = Ms(cb.ElectedAt() - ca.DemotedAt());
  Report("partition: old leader demoted itself after " + std::to_string(demote_after) + " ms, new leader after " +
         std::to_string(elect_after) + " ms, gap " + std::to_string(gap) + " ms (TTL 3000, margin 500)");
  CHECK(ca.DemotedAt() < cb.ElectedAt());
  CHECK(demote_after < 3000);  // TTL - margin after the last keepalive (before the cut), plus wake-up slack
  CHECK(gap > 0);
  CHECK(w.max_leaders == 1);

  // The deposed leader's term is fenced off by etcd itself, whatever the old leader believes ...
  auto direct = Connect(etcd->endpoint());
  auto stale = CommitIfTerm(*direct, "/tugboat/cluster/leader", old_term, {Op::Put("/tugboat/cluster/state/owner", "a")});
  REQUIRE(stale);
  CHECK_FALSE(*stale);
  auto fresh = b->PutIfLeader("/tugboat/cluster/state/owner", "b");
  REQUIRE(fresh);
  CHECK(*fresh);
  CHECK((*direct->Get("/tugboat/cluster/state/owner"))->value == "b");
  CHECK(cb.Term().create_revision > old_term.create_revision);

  // ... and after the partition heals the old leader stays a follower that points at the new one.
  proxy.Thaw();
  auto refused = a->PutIfLeader("/tugboat/cluster/state/owner", "a");
  REQUIRE(refused);
  CHECK_FALSE(*refused);
  REQUIRE(WaitFor([&] { auto l = a->CurrentLeader(); return l && *l == cb.value; }, seconds(3)));
  std::this_thread::sleep_for(milliseconds(1500));
  CHECK_FALSE(a->IsLeader());
  CHECK(b->IsLeader());
  CHECK(w.max_leaders == 1);
}

TEST_CASE("a leader whose lease vanished behind its back has its writes refused and steps down at once") {
  // What a leader frozen past its TTL (SIGSTOP, a VM pause) sees on resuming: it still believes it leads, but etcd
  // has ended its lease. Revoking the lease from outside produces exactly that state without freezing anything.
  auto etcd = StartElectionEtcd();
  World w;
  Candidate ca(w, "http://master-a:5050"), cb(w, "http://master-b:5050");
  auto a = Campaign(etcd->endpoint(), ca);
  REQUIRE(WaitFor([&] { return a->IsLeader(); }, seconds(5)));
  auto b = Campaign(etcd->endpoint(), cb);
  auto direct = Connect(etcd->endpoint());
  REQUIRE(a->Term());
  const LeaderTerm term = *a->Term();

  REQUIRE(direct->LeaseRevoke(term.lease));
  const bool believed = a->IsLeader();  // almost always still true: the next keepalive is up to 1 s away
  const auto t0 = SteadyClock::now();
  auto wrote = a->PutIfLeader("/tugboat/cluster/state/owner", "a");
  REQUIRE(wrote);
  CHECK_FALSE(*wrote);
  CHECK_FALSE(direct->Get("/tugboat/cluster/state/owner")->has_value());
  // The refusal makes the worker re-check at once instead of at its next keepalive.
  REQUIRE(WaitFor([&] { return ca.Demoted() == 1; }, seconds(2)));
  Report(std::string("lease revoked behind the leader's back (it ") + (believed ? "still believed" : "had noticed") +
         "): write refused, demoted " + std::to_string(Ms(ca.DemotedAt() - t0)) + " ms after the refusal");
  // Here, unlike a partition, a successor may be elected before the old leader hears of it (the lease ended without
  // the old leader's clock running out): the two may overlap by a moment, which is why every state write is fenced.
  // The successor (either candidate: the old one campaigns again too) writes; the old term never does.
  REQUIRE(WaitFor([&] { return ca.Elected() + cb.Elected() == 2; }, seconds(3)));
  LeaderElection& next = cb.Elected() == 1 ? *b : *a;
  REQUIRE(next.Term());
  CHECK(next.Term()->create_revision > term.create_revision);
  auto successor = next.PutIfLeader("/tugboat/cluster/state/owner", "next");
  REQUIRE(successor);
  CHECK(*successor);
  auto stale = CommitIfTerm(*direct, "/tugboat/cluster/leader", term, {Op::Put("/tugboat/cluster/state/owner", "a")});
  REQUIRE(stale);
  CHECK_FALSE(*stale);
  CHECK((*direct->Get("/tugboat/cluster/state/owner"))->value == "next");
}

TEST_CASE("when etcd dies the leader demotes itself within the TTL, and the election recovers after a restart") {
  auto etcd = StartElectionEtcd();
  World w;
  Candidate ca(w, "http://master-a:5050"), cb(w, "http://master-b:5050");
  auto a = Campaign(etcd->endpoint(), ca);
  REQUIRE(WaitFor([&] { return a->IsLeader(); }, seconds(5)));
  auto b = Campaign(etcd->endpoint(), cb);
  std::this_thread::sleep_for(milliseconds(1200));

  const auto killed = SteadyClock::now();
  etcd->Kill();
  auto r = a->CurrentLeader();
  REQUIRE_FALSE(r);
  CHECK(r.error().Is(Errc::kUnavailable));
  CHECK(Ms(SteadyClock::now() - killed) < 1000);
  auto fenced = a->PutIfLeader("/tugboat/cluster/state/x", "1");
  REQUIRE_FALSE(fenced);
  CHECK(fenced.error().Is(Errc::kUnavailable));

  REQUIRE(WaitFor([&] { return ca.Demoted() == 1; }, seconds(3)));
  const auto demote_after = Ms(ca.DemotedAt() - killed);
  Report("etcd killed -> leader demoted itself after " + std::to_string(demote_after) + " ms (TTL 3000, margin 500)");
  CHECK(demote_after < 3000);
  CHECK_FALSE(b->IsLeader());

  const auto restart = SteadyClock::now();
  REQUIRE(etcd->Restart());
  const auto up = SteadyClock::now();
  REQUIRE(WaitFor([&] { return a->IsLeader() || b->IsLeader(); }, seconds(10)));
  Report("etcd restart took " + std::to_string(Ms(up - restart)) + " ms; leader again " +
         std::to_string(Ms(SteadyClock::now() - up)) + " ms after it was healthy (" +
         (a->IsLeader() ? "the old leader, its lease survived" : "the other candidate") + ")");
  std::this_thread::sleep_for(seconds(1));
  CHECK(a->IsLeader() != b->IsLeader());
  CHECK(w.max_leaders == 1);
  LeaderElection& leader = a->IsLeader() ? *a : *b;
  auto wrote = leader.PutIfLeader("/tugboat/cluster/state/x", "after restart");
  REQUIRE(wrote);
  CHECK(*wrote);
}

TEST_CASE("destroying a follower or a stopped election returns promptly") {
  auto etcd = StartElectionEtcd();
  World w;
  Candidate ca(w, "http://a"), cb(w, "http://b");
  auto a = Campaign(etcd->endpoint(), ca);
  REQUIRE(WaitFor([&] { return a->IsLeader(); }, seconds(5)));
  auto b = Campaign(etcd->endpoint(), cb);
  std::this_thread::sleep_for(milliseconds(300));
  auto t0 = SteadyClock::now();
  b.reset();
  CHECK(Ms(SteadyClock::now() - t0) < 1200);
  // Against a silent etcd the worker is inside a keepalive that will time out (the next one starts within 1 s of
  // the pause): destruction waits at most that one call timeout (1 s).
  etcd->Pause();
  std::this_thread::sleep_for(milliseconds(1100));
  t0 = SteadyClock::now();
  a.reset();
  const auto took = Ms(SteadyClock::now() - t0);
  Report("destroying a leader whose etcd is paused: " + std::to_string(took) + " ms");
  CHECK(took < 1600);
  CHECK(ca.Demoted() == 1);
  etcd->Resume();
}
