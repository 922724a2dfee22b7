// The cluster master's resource allocator (DESIGN §7): weighted DRF over roles, then DRF over the frameworks of a
// role, after Mesos's HierarchicalDRF allocator.
//
// Bookkeeping. Every agent's total is split, always exactly, into `available` and what is allocated to frameworks:
// total == Available(agent) + sum over frameworks of Used(framework, agent). Resources become allocated when
// Allocate offers them; the master hands them back with Recover when an offer is declined, rescinded or expires,
// when a task ends, and, after a launch, for the part of an offer the tasks did not use.
//
// A cycle (Allocate) walks the agents that have something worth offering (at least min_cpus or min_mem_mib
// available) in a fresh random order, and offers each one's whole available resources to one framework: the first
// eligible framework of the role with the lowest weighted dominant share (role's allocation / cluster total, max
// over cpus, mem and disk, divided by the role's weight), taking the role's frameworks by their own dominant share.
// Eligible: active, not suppressed, and not filtering that agent (Decline). Ties go to whoever was offered to
// fewer times, then by order of addition (a removed id's slot is reused by the next one added). Shares include what
// the cycle has offered so far, and a whole agent offered counts until the master recovers the unused part. Ports
// are offered and tracked but do not count in shares.
//
// Cost: shares are kept sorted incrementally, so a cycle is O(offers * (log frameworks + log roles)) plus, per
// agent, one step for each framework skipped because it filters that agent. Changing an agent's total (add,
// remove, update) changes every share and re-sorts everything once, at the next Allocate.
//
// Purity: no I/O, no threads, no clock of its own (callers pass `now`), no randomness but the seeded one; not
// thread-safe (the master calls it from one strand). Errors are returned, never thrown, and leave the state as it
// was: kNotFound for unknown ids, kAlreadyExists for duplicate adds, kInvalidArgument for anything else refused.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/resources.hpp"
#include "model/types.hpp"

namespace tug::cluster {

// One offer to make: the master gives it an offer id and sends it to the framework.
struct OfferedResources {
  std::string framework_id;
  std::string agent_id;
  Resources resources;
};

struct AllocatorOptions {
  // Seeds the per-cycle agent order. Tests pass a fixed one; the master should pass a random one.
  uint64_t seed = 0x7475672d616c6c6fULL;
  // Decline's refuse_seconds when the framework gave a negative or non-finite one (Mesos: 5 s).
  double default_refuse_seconds = 5;
  // An agent whose available resources have less than both is not offered (Mesos MIN_CPUS / MIN_MEM).
  double min_cpus = 0.01;
  double min_mem_mib = 32;
};

class Allocator {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  explicit Allocator(AllocatorOptions options = {});
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  // --- Agents.
  // The whole total starts available. kInvalidArgument for an empty id.
  Status AddAgent(const std::string& agent_id, const Resources& total, const Attributes& attributes = {});
  // What frameworks held on the agent is dropped with it (their tasks are lost); their filters for it go too.
  Status RemoveAgent(const std::string& agent_id);
  // New total; what is allocated stays allocated and the rest becomes available. kInvalidArgument (nothing
  // changed) when the new total does not contain what is allocated there: recover or kill first.
  Status UpdateAgentTotal(const std::string& agent_id, const Resources& total);

  // --- Frameworks. A framework starts active, unsuppressed, with no filters.
  Status AddFramework(const std::string& framework_id, const std::string& role);
  // Everything the framework holds becomes available again (the master has killed or lost its tasks).
  Status RemoveFramework(const std::string& framework_id);
  // Disconnected frameworks keep what they hold but are offered nothing. Deactivate also drops their filters
  // (a re-subscribing scheduler starts afresh, as in Mesos); suppression is kept.
  Status ActivateFramework(const std::string& framework_id);
  Status DeactivateFramework(const std::string& framework_id);

  // Role weight (default 1): a role with weight 2 converges to about twice the dominant share of a role with
  // weight 1. The role need not have frameworks yet. kInvalidArgument unless 0 < weight < infinity.
  Status SetWeight(const std::string& role, double weight);

  // --- Allocation.
  // Gives back resources allocated to the framework on the agent. kInvalidArgument (nothing changed) unless
  // Used(framework, agent) contains them all, ports included.
  Status Recover(const std::string& framework_id, const std::string& agent_id, const Resources& resources);
  // Allocates resources to the framework on the agent outright, without an offer: the tasks a re-registering
  // agent reports as running. kInvalidArgument (nothing changed) unless Available(agent) contains them.
  Status AddUsed(const std::string& framework_id, const std::string& agent_id, const Resources& resources);
  // The framework gets no offer for the agent before now + refuse_seconds (capped at a year). 0 sets no filter;
  // negative or non-finite means options.default_refuse_seconds. Does not recover anything: call Recover too.
  Status Decline(const std::string& framework_id, const std::string& agent_id, double refuse_seconds,
                 TimePoint now);
  // Stops offers to the framework until Revive, which also drops all its filters.
  Status Suppress(const std::string& framework_id);
  Status Revive(const std::string& framework_id);

  // One cycle. Every returned offer is already allocated (Used includes it); each agent appears at most once.
  std::vector<OfferedResources> Allocate(TimePoint now);

  // --- Queries (for the master's endpoints and for tests). Unknown ids give empty / 0 / nullptr.
  Resources Used(const std::string& framework_id, const std::string& agent_id) const;
  Resources Available(const std::string& agent_id) const;
  Resources AgentTotal(const std::string& agent_id) const;
  const Attributes* AgentAttributes(const std::string& agent_id) const;
  // Sum of the agents' cpus, mem and disk (ports are not summed).
  Resources ClusterTotal() const;
  // max(cpus, mem, disk) of the allocation / cluster total; not divided by the weight.
  double DominantShare(const std::string& framework_id) const;
  double RoleDominantShare(const std::string& role) const;
  size_t agent_count() const;
  size_t framework_count() const;

  // Recomputes every sum, share, sorted position and index from scratch and compares: kInternal naming the first
  // difference. O(everything); for tests.
  Status CheckInvariants() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tug::cluster
