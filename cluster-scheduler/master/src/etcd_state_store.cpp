#include "master/etcd_state_store.hpp"

#include <algorithm>

namespace tug::cluster::master {

Status EtcdStateStore::Commit(const std::vector<StoreOp>& ops) {
  constexpr size_t kChunk = 100;
  for (size_t i = 0; i < ops.size(); i += kChunk) {
    std::vector<etcd::Op> chunk;
    for (size_t k = i; k < std::min(ops.size(), i + kChunk); ++k)
      chunk.push_back(ops[k].value ? etcd::Op::Put(ops[k].key, *ops[k].value) : etcd::Op::Delete(ops[k].key));
    if (!election_) return MakeError(Errc::kPolicy, "not campaigning");
    auto ok = election_->CommitIfLeader(chunk);
    if (!ok) return tl::unexpected(ok.error());
    if (!*ok) return MakeError(Errc::kPolicy, "etcd refused the write: this master's leader term is over");
  }
  return {};
}

Result<std::map<std::string, std::string>> EtcdStateStore::Load(const std::string& prefix) {
  auto kvs = client_.Range(prefix);
  if (!kvs) return tl::unexpected(kvs.error());
  std::map<std::string, std::string> out;
  for (auto& kv : *kvs) out[kv.key] = std::move(kv.value);
  return out;
}

}  // namespace tug::cluster::master
