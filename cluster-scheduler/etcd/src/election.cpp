#include "etcd/election.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

namespace tug::etcd {

namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

}  // namespace

Result<bool> CommitIfTerm(Client& client, std::string_view leader_key, const LeaderTerm& term,
                          const std::vector<Op>& ops) {
  if (term.create_revision <= 0) return false;
  // create_revision names the incarnation of the key (a later leader's key has a higher one); the lease check also
  // refuses a key someone re-attached by overwriting it.
  TUG_ASSIGN_OR_RETURN(TxnResult r, client.Txn({Compare::CreateRevisionEquals(std::string(leader_key), term.create_revision),
                                                Compare::LeaseEquals(std::string(leader_key), term.lease)},
                                               ops));
  return r.succeeded;
}

struct LeaderElection::Impl {
  ElectionOptions opts;
  milliseconds keepalive_interval{0};
  milliseconds margin{0};
  std::unique_ptr<Client> worker_client;  // campaign + keepalive: may hang up to a call timeout
  std::unique_ptr<Client> user_client;    // CurrentLeader, CommitIfLeader, Resign

  // Lock order: cb_mu before mu. cb_mu is held across every leader/follower transition and its callback so
  // callbacks never overlap and come in the order of the transitions.
  std::mutex cb_mu;
  mutable std::mutex mu;
  std::condition_variable cv;
  bool stop_worker = false;
  bool stop_watchdog = false;
  bool check_now = false;  // a refused fenced write: verify leadership without waiting for the next keepalive
  bool resigned = false;
  bool leader = false;
  LeaderTerm term;
  SteadyClock::time_point demote_at;  // while leader: the watchdog demotes at this instant
  int64_t owned_lease = 0;            // the worker's current lease (Resign revokes it)
  int64_t terms = 0;

  std::thread worker;
  std::thread watchdog;

  // ---- transitions ----

  // Becomes leader for `t` unless stopping or resigned or the deadline already passed. `lease_valid_until` is the
  // local instant before which etcd cannot have expired the lease.
  bool BecomeLeader(const LeaderTerm& t, SteadyClock::time_point lease_valid_until) {
    std::lock_guard<std::mutex> cb(cb_mu);
    {
      std::lock_guard<std::mutex> l(mu);
      if (stop_worker || resigned || leader) return leader && term.create_revision == t.create_revision;
      if (lease_valid_until - margin <= SteadyClock::now()) return false;
      leader = true;
      term = t;
      demote_at = lease_valid_until - margin;
      ++terms;
      cv.notify_all();
    }
    spdlog::info("etcd election {}: elected as {} (lease {:x}, create_revision {})", opts.key, t.value, t.lease,
                 t.create_revision);
    if (opts.on_elected) opts.on_elected(t);
    return true;
  }

  // Ends the current term, if any, and tells the owner. `only_if_due`: the watchdog's variant, which re-checks the
  // deadline under the lock (the worker may have extended it meanwhile).
  void Demote(const char* why, bool only_if_due = false) {
    std::lock_guard<std::mutex> cb(cb_mu);
    {
      std::lock_guard<std::mutex> l(mu);
      if (!leader) return;
      if (only_if_due && SteadyClock::now() < demote_at) return;
      leader = false;
    }
    spdlog::warn("etcd election {}: demoted ({})", opts.key, why);
    if (opts.on_demoted) opts.on_demoted();
  }

  void Extend(int64_t lease, SteadyClock::time_point lease_valid_until) {
    std::lock_guard<std::mutex> l(mu);
    // An overdue term is not revived: its owner may have stepped down on IsLeaderNow() already, and only a new
    // on_elected (after the watchdog's on_demoted) would tell it to lead again.
    if (!leader || term.lease != lease || SteadyClock::now() >= demote_at) return;
    demote_at = std::max(demote_at, lease_valid_until - margin);
    cv.notify_all();
  }

  bool IsLeaderWith(int64_t lease) const {
    std::lock_guard<std::mutex> l(mu);
    return leader && term.lease == lease;
  }

  // Sleeps until `t`, a stop, or a check request; false when stopping.
  bool SleepUntil(SteadyClock::time_point t) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_until(l, t, [&] { return stop_worker || check_now; });
    check_now = false;
    return !stop_worker;
  }
  bool SleepFor(milliseconds d) { return SleepUntil(SteadyClock::now() + d); }

  void SetOwnedLease(int64_t lease) {
    std::lock_guard<std::mutex> l(mu);
    owned_lease = lease;
  }

  // ---- threads ----

  void WatchdogLoop() {
    std::unique_lock<std::mutex> l(mu);
    while (!stop_watchdog) {
      if (!leader) {
        cv.wait(l);
        continue;
      }
      if (SteadyClock::now() < demote_at) {
        cv.wait_until(l, demote_at);
        continue;
      }
      l.unlock();
      Demote("no successful keepalive in time: the lease may expire", /*only_if_due=*/true);
      l.lock();
    }
  }

  void WorkerLoop() {
    int64_t lease = 0;  // the lease we hold; the key may or may not be attached to it
    bool was_failing = false;
    auto note_failure = [&](const Error& e, const char* what) {
      // One line per outage, not one per retry.
      if (!was_failing) spdlog::warn("etcd election {}: {}: {}", opts.key, what, e.Message());
      was_failing = true;
    };
    auto drop_lease = [&] {
      if (lease != 0) (void)worker_client->LeaseRevoke(lease);  // best effort: it expires anyway
      lease = 0;
      SetOwnedLease(0);
    };
    // After a fast failure (refused), retry soon enough for the watchdog margin, but without spinning.
    const milliseconds retry = std::max(milliseconds(50), std::min(opts.poll_interval, keepalive_interval / 4));

    for (;;) {
      bool resigned_now;
      {
        std::lock_guard<std::mutex> l(mu);
        if (stop_worker) return;
        resigned_now = resigned;
      }
      if (resigned_now) {
        drop_lease();
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return stop_worker; });
        return;
      }

      if (lease == 0) {
        // Follower: campaign when the key is free.
        auto kv = worker_client->Get(opts.key);
        if (!kv) {
          note_failure(kv.error(), "reading the leader key");
          if (!SleepFor(retry)) return;
          continue;
        }
        was_failing = false;
        if (*kv) {
          if (!SleepFor(opts.poll_interval)) return;
          continue;
        }
        const auto sent = SteadyClock::now();
        auto grant = worker_client->LeaseGrantTtl(opts.ttl);
        if (!grant) {
          note_failure(grant.error(), "granting a lease");
          if (!SleepFor(retry)) return;
          continue;
        }
        lease = grant->id;
        SetOwnedLease(lease);
        auto txn = worker_client->Txn({Compare::CreateRevisionEquals(opts.key, 0)},
                                      {Op::Put(opts.key, opts.value, lease)});
        if (txn && txn->succeeded) {
          // The put created the key, so its revision is the key's create_revision.
          LeaderTerm t{lease, txn->revision, opts.value};
          if (!BecomeLeader(t, sent + std::chrono::seconds(grant->ttl_seconds))) continue;  // resigned/too late
          if (!SleepUntil(sent + keepalive_interval)) return;
          continue;
        }
        // Lost the race, or the answer was lost and our own put may have won: the keepalive path below reads the
        // key and tells (its lease is ours or not).
        if (!txn) note_failure(txn.error(), "creating the leader key");
        continue;
      }

      // Holding a lease: renew it, then make sure the key is still ours.
      const auto sent = SteadyClock::now();
      auto ttl = worker_client->LeaseKeepAlive(lease);
      if (!ttl) {
        // The watchdog demotes us if this lasts; the lease may well survive (etcd restarts keep leases).
        note_failure(ttl.error(), "keeping the lease alive");
        if (!SleepFor(retry)) return;
        continue;
      }
      if (*ttl == 0) {
        Demote("the lease expired");
        lease = 0;
        SetOwnedLease(0);
        continue;
      }
      const auto valid_until = sent + std::chrono::seconds(*ttl);
      auto kv = worker_client->Get(opts.key);
      if (!kv) {
        note_failure(kv.error(), "reading the leader key");
        if (!SleepFor(retry)) return;
        continue;
      }
      was_failing = false;
      if (*kv && (*kv)->lease == lease && (*kv)->value == opts.value) {
        if (IsLeaderWith(lease)) {
          Extend(lease, valid_until);
        } else if (!BecomeLeader(LeaderTerm{lease, (*kv)->create_revision, opts.value}, valid_until)) {
          continue;
        }
        if (!SleepUntil(sent + keepalive_interval)) return;
        continue;
      }
      // The key is gone or someone else's: whatever we believed, we are not leader.
      Demote(*kv ? "the leader key belongs to another candidate" : "the leader key was deleted");
      drop_lease();
    }
  }
};

LeaderElection::LeaderElection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<LeaderElection>> LeaderElection::Start(const ClientOptions& etcd, ElectionOptions opts) {
  if (opts.key.empty()) return MakeError(Errc::kInvalidArgument, "election: empty key");
  if (opts.value.empty()) return MakeError(Errc::kInvalidArgument, "election: empty value (the candidate's identity)");
  if (opts.ttl < std::chrono::seconds(1)) return MakeError(Errc::kInvalidArgument, "election: TTL below 1 s");
  if (opts.poll_interval <= milliseconds(0)) return MakeError(Errc::kInvalidArgument, "election: poll interval <= 0");
  const milliseconds ttl = opts.ttl;
  auto impl = std::make_unique<Impl>();
  impl->keepalive_interval = opts.keepalive_interval.count() > 0 ? opts.keepalive_interval : ttl / 3;
  impl->margin = opts.safety_margin.count() > 0 ? opts.safety_margin : std::max(milliseconds(200), ttl / 6);
  const milliseconds call_timeout = opts.call_timeout.count() > 0 ? opts.call_timeout : ttl / 3;
  if (impl->keepalive_interval + call_timeout >= ttl - impl->margin)
    return MakeError(Errc::kInvalidArgument,
                     "election: keepalive interval + call timeout must stay below TTL - safety margin (" +
                         std::to_string(impl->keepalive_interval.count()) + " + " +
                         std::to_string(call_timeout.count()) + " >= " + std::to_string((ttl - impl->margin).count()) +
                         " ms)");
  ClientOptions copts = etcd;
  copts.timeout = call_timeout;
  TUG_ASSIGN_OR_RETURN(impl->user_client, Client::Create(copts));
  // One bound per keepalive: a pooled connection going silent would cost two call timeouts (see ClientOptions).
  copts.reuse_connections = false;
  TUG_ASSIGN_OR_RETURN(impl->worker_client, Client::Create(copts));
  impl->opts = std::move(opts);
  Impl* raw = impl.get();
  raw->watchdog = std::thread([raw] { raw->WatchdogLoop(); });
  raw->worker = std::thread([raw] { raw->WorkerLoop(); });
  return std::unique_ptr<LeaderElection>(new LeaderElection(std::move(impl)));
}

LeaderElection::~LeaderElection() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stop_worker = true;
    impl_->cv.notify_all();
  }
  // The watchdog keeps guarding the deadline while the worker finishes a call that may hang.
  impl_->worker.join();
  impl_->Demote("stopping");
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->stop_watchdog = true;
    impl_->cv.notify_all();
  }
  impl_->watchdog.join();
}

bool LeaderElection::IsLeader() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->leader;
}

bool LeaderElection::IsLeaderNow() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->leader && SteadyClock::now() < impl_->demote_at;
}

std::optional<LeaderTerm> LeaderElection::Term() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  if (!impl_->leader) return std::nullopt;
  return impl_->term;
}

int64_t LeaderElection::terms() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  return impl_->terms;
}

Result<std::optional<std::string>> LeaderElection::CurrentLeader() {
  TUG_ASSIGN_OR_RETURN(auto kv, impl_->user_client->Get(impl_->opts.key));
  if (!kv) return std::optional<std::string>();
  return std::optional<std::string>(std::move(kv->value));
}

Status LeaderElection::Resign() {
  int64_t lease = 0;
  {
    std::lock_guard<std::mutex> cb(impl_->cb_mu);
    bool was_leader;
    {
      std::lock_guard<std::mutex> l(impl_->mu);
      impl_->resigned = true;
      lease = impl_->owned_lease;
      was_leader = impl_->leader;
      impl_->leader = false;
      impl_->cv.notify_all();
    }
    // Demoted before the key goes, so no successor can be elected while we still act.
    if (was_leader) {
      spdlog::info("etcd election {}: resigning", impl_->opts.key);
      if (impl_->opts.on_demoted) impl_->opts.on_demoted();
    }
  }
  if (lease == 0) return {};
  return impl_->user_client->LeaseRevoke(lease);
}

Result<bool> LeaderElection::PutIfLeader(std::string_view key, std::string_view value) {
  return CommitIfLeader({Op::Put(std::string(key), std::string(value))});
}

Result<bool> LeaderElection::CommitIfLeader(const std::vector<Op>& ops) {
  auto t = Term();
  if (!t) return false;
  TUG_ASSIGN_OR_RETURN(bool ok, CommitIfTerm(*impl_->user_client, impl_->opts.key, *t, ops));
  if (!ok) {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->check_now = true;
    impl_->cv.notify_all();
  }
  return ok;
}

}  // namespace tug::etcd
