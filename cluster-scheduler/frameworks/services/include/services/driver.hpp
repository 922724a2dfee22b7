// Driver: how the services scheduler talks to the master and the gateway. Every call returns at once. Master calls
// reach the master in the order they were made. The gateway is driven separately (an apply may wait for drains) and
// reports each apply's end through Scheduler::OnGatewayApplied, which is what lets a drained task's KILL go out.
// The production driver (service.cpp) runs master calls on a worker thread through framework::SchedulerClient and
// gateway applies on another, and reports failures back to the scheduler (OnLaunchFailed, OnCallFailed,
// OnGatewayApplied); tests use a recording fake.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/types.hpp"
#include "services/gateway_sink.hpp"

namespace tug::cluster::services {

class Driver {
 public:
  virtual ~Driver() = default;
  virtual void Accept(std::vector<std::string> offer_ids, std::vector<TaskInfo> tasks, double refuse_seconds) = 0;
  virtual void Decline(std::vector<std::string> offer_ids, double refuse_seconds) = 0;
  virtual void Kill(std::string task_id, std::string agent_id) = 0;
  virtual void Acknowledge(TaskStatus status) = 0;
  // Explicit (task id, agent id) pairs; an empty list asks for every task the master knows of this framework.
  virtual void Reconcile(std::vector<std::pair<std::string, std::string>> tasks) = 0;
  virtual void Revive() = 0;
  virtual void Suppress() = 0;
  // The gateway's whole desired configuration, numbered by `seq` (increasing). Only called when the scheduler runs
  // with a gateway. A driver may skip an apply when a newer one is already waiting (the newer one reports).
  virtual void ApplyGateway(uint64_t seq, std::vector<GatewayService> services) = 0;
};

}  // namespace tug::cluster::services
