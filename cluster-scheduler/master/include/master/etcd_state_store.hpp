// EtcdStateStore: the master's state in etcd (DESIGN §7). Every write is fenced by the current leader term
// (LeaderElection::CommitIfLeader), so a deposed master's writes are refused by etcd itself.
#pragma once

#include "etcd/client.hpp"
#include "etcd/election.hpp"
#include "master/state_store.hpp"

namespace tug::cluster::master {

class EtcdStateStore : public StateStore {
 public:
  explicit EtcdStateStore(etcd::Client& client) : client_(client) {}
  // Set once the election exists (the master writes only while leading, i.e. after that).
  void set_election(etcd::LeaderElection* e) { election_ = e; }

  // etcd limits a transaction to 128 operations by default: big batches go in several fenced transactions, each
  // all-or-nothing (the master's writes are whole documents, so a batch cut short is rewritten on the next tick).
  // kPolicy when the term is over.
  Status Commit(const std::vector<StoreOp>& ops) override;
  Result<std::map<std::string, std::string>> Load(const std::string& prefix) override;

 private:
  etcd::Client& client_;
  etcd::LeaderElection* election_ = nullptr;
};

}  // namespace tug::cluster::master
