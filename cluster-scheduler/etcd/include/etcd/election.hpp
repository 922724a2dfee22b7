// LeaderElection: masters elect one leader through an etcd key held by a lease (DESIGN §7).
//
// How it works. A candidate looks at `key` (default "/tugboat/cluster/leader"). When the key is absent it grants a
// lease of `ttl` and creates the key with its `value` (the master's URL) attached to that lease, in one
// transaction that only succeeds if the key still does not exist (PutIfAbsent). The winner is leader while it keeps
// the lease alive (a keepalive every ttl/3) and the key is still its own; losers poll the key every
// `poll_interval` and campaign again as soon as it is gone: when the leader resigns (revoking the lease deletes
// the key) or its lease expires (etcd deletes the key).
//
// Never two leaders at once: the demotion margin. etcd renews a lease when it receives a keepalive, which is after
// we sent it; so if a keepalive (or the grant) was sent at local time T_send and succeeded, etcd cannot expire the
// lease, hence cannot hand the key to someone else, before T_send + TTL (TTL as granted by etcd; etcd's expiry
// check runs every 500 ms and the revoke goes through Raft, which only makes the real expiry later). The leader
// keeps a deadline D = T_send(last successful keepalive) + TTL and a watchdog thread of its own, independent of the
// thread that may be stuck in a keepalive call against a silent etcd, calls on_demoted at D - safety_margin. The
// margin (default TTL/6, at least 200 ms: 500 ms for TTL 3 s) covers what local time cannot: the watchdog's wake-up
// latency on a loaded machine, the on_demoted callback itself and the master stopping its work, and the (ppm-small)
// rate difference between our steady clock and etcd's. Any new leader's on_elected comes after etcd deleted the
// key, i.e. after D, hence after our on_demoted. Defaults for TTL 3 s: keepalive every 1 s, etcd calls time out
// after 1 s, demotion 2.5 s after the last successful keepalive was sent, so one lost keepalive is survived.
//
// What the margin cannot cover: a process that is frozen as a whole (SIGSTOP, a VM pause, swapping) runs neither
// the watchdog nor anything else, and may resume after the TTL with a state write already in flight. That is what
// the fencing token is for: every state write of the master must be conditional on still being leader, in the
// same etcd transaction — CommitIfLeader / PutIfLeader compare the leader key's create_revision (and lease) with the
// term's, so a write from a deposed leader is refused by etcd itself, whatever its local clock believes. The
// create_revision is unique per term and increases with each new term (it is the revision of the put that created
// the key), so it also orders terms for anything outside etcd that wants to reject stale leaders. (A leader demoted
// by its watchdog that finds its key and lease intact afterwards is elected again with the same token: nobody else
// can have led in between.)
//
// Threads and callbacks: a worker thread (etcd calls) and a watchdog thread (demotion deadline), both started by
// Start() and stopped by the destructor. on_elected / on_demoted run on those threads (or on the caller's thread
// inside Resign() and the destructor), never concurrently, and alternate strictly (elected, demoted, elected, ...).
// They must be quick (set a flag, post to an io_context): a slow callback delays the watchdog. They must not call
// Resign() or destroy the LeaderElection (deadlock). The LeaderElection owns two etcd::Clients (one for its worker,
// one for the calls below), so user calls never wait behind a hanging keepalive.
//
// After etcd comes back (restart, partition healed) the election recovers by itself: a leader demoted because etcd
// was unreachable becomes leader again if its lease survived (etcd extends leases across a restart) and the key is
// still its own; otherwise whoever creates the key first wins.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "etcd/client.hpp"

namespace tug::etcd {

// Identifies one term of one leader. `create_revision` is the fencing token.
struct LeaderTerm {
  int64_t lease = 0;            // the lease the leader key is attached to
  int64_t create_revision = 0;  // the leader key's create_revision: unique per term, increasing
  std::string value;            // the leader's value (its URL)
};

struct ElectionOptions {
  std::string key = "/tugboat/cluster/leader";
  // This candidate's identity, e.g. "http://10.0.0.1:5050". Required; unique among candidates.
  std::string value;
  // Requested lease TTL; etcd may grant more (its minimum is 2 s with default settings), the granted TTL is used.
  std::chrono::seconds ttl{3};
  // 0 for the defaults derived from `ttl`: keepalive TTL/3, margin max(TTL/6, 200 ms), call timeout TTL/3.
  // Start() rejects settings where keepalive_interval + call_timeout >= TTL - safety_margin (a single slow
  // keepalive would demote the leader). Demotion deadlines use the TTL etcd granted, never less than asked.
  std::chrono::milliseconds keepalive_interval{0};
  std::chrono::milliseconds safety_margin{0};
  std::chrono::milliseconds call_timeout{0};
  // How often a follower looks at the key; bounds how long a resigned or expired leadership stays vacant.
  std::chrono::milliseconds poll_interval{200};
  std::function<void(const LeaderTerm&)> on_elected;
  std::function<void()> on_demoted;
};

class LeaderElection {
 public:
  // Starts campaigning in the background at once; returns without waiting for an outcome. kInvalidArgument for an
  // empty value or key, inconsistent timings, or bad endpoints. Never fails because etcd is down: the candidate
  // keeps trying.
  static Result<std::unique_ptr<LeaderElection>> Start(const ClientOptions& etcd, ElectionOptions opts);
  // Stops both threads (waits at most about one call timeout) and, if leader, calls on_demoted on this thread
  // before returning. Does NOT resign: the key stays until the lease expires, exactly as after a crash, so other
  // candidates take over after at most the TTL. Call Resign() first for a prompt handover.
  ~LeaderElection();
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // Whether this candidate currently acts as leader. Turns true just before on_elected runs and false just before
  // on_demoted runs (never later than the demotion deadline).
  bool IsLeader() const;
  // IsLeader() and the demotion deadline not yet reached by the local clock. IsLeader() turns false when the
  // watchdog runs; a process resumed from a freeze (SIGSTOP, VM pause) runs its other threads just as soon, and
  // they may act before the watchdog did. This answers false on any thread as soon as the deadline is past. A term
  // past its deadline is never extended: it ends (on_demoted) and a later keepalive elects anew (on_elected).
  bool IsLeaderNow() const;
  // The current term while leader.
  std::optional<LeaderTerm> Term() const;
  // The value of the leader key as etcd has it now (nullopt: no leader at the moment), for followers to redirect
  // clients to the leader. One etcd read; errors as etcd::Client.
  Result<std::optional<std::string>> CurrentLeader();

  // Gives up leadership now and stops campaigning: calls on_demoted (on this thread, before anything else), then
  // revokes the lease, which deletes the key so another candidate is elected within its poll interval. Not leader:
  // just stops campaigning. An error means the revoke did not reach etcd; the key then expires with the lease.
  Status Resign();

  // State writes fenced by the current term, in ONE transaction: they run only if the leader key still has this
  // term's create_revision and lease. false (nothing written) when etcd refused them or this candidate is not
  // leader now; when etcd refused them the worker notices the lost leadership within a keepalive interval.
  Result<bool> PutIfLeader(std::string_view key, std::string_view value);
  Result<bool> CommitIfLeader(const std::vector<Op>& ops);

  // How many times this candidate was elected (for tests and /metrics).
  int64_t terms() const;

 private:
  struct Impl;
  explicit LeaderElection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The fencing transaction on its own, for code that holds a term (from on_elected) and its own Client: runs `ops`
// only if `leader_key` still has `term`'s create_revision and lease. true: written; false: the term is over.
Result<bool> CommitIfTerm(Client& client, std::string_view leader_key, const LeaderTerm& term,
                          const std::vector<Op>& ops);

}  // namespace tug::etcd
