#include "core/fault_env.hpp"

#include <cerrno>

namespace tug::core {

class FaultFile : public WritableFile {
 public:
  FaultFile(FaultInjectionEnv* env, std::string path, std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}
  Status Append(std::string_view data) override {
    TUG_TRY(env_->Tick());
    TUG_TRY(env_->CountBytes(data.size()));
    return base_->Append(data);
  }
  Status Sync() override {
    TUG_TRY(env_->Tick());
    TUG_TRY(base_->Sync());
    env_->files_[path_].synced_size = base_->Size();
    return {};
  }
  Status Close() override { return base_->Close(); }
  uint64_t Size() const override { return base_->Size(); }

 private:
  FaultInjectionEnv* env_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

FaultInjectionEnv::FaultInjectionEnv(Env* base) : base_(base) {}
FaultInjectionEnv::~FaultInjectionEnv() {
  for (auto& r : renames_)
    if (r.backup) (void)base_->RemoveFile(*r.backup);
}

Status FaultInjectionEnv::Tick() {
  if (crashed_) return ErrnoError(EIO, "simulated power cut");
  ++ops_;
  if (crash_after_ && ops_ > *crash_after_) {
    crashed_ = true;
    return ErrnoError(EIO, "simulated power cut");
  }
  return {};
}

Status FaultInjectionEnv::CountBytes(uint64_t n) {
  bytes_written_ += n;
  if (fail_after_bytes_ && bytes_written_ > *fail_after_bytes_) return ErrnoError(fail_errno_, "injected fault");
  return {};
}

Result<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(const std::string& path, bool append) {
  TUG_TRY(Tick());
  const bool existed = base_->Exists(path);
  TUG_ASSIGN_OR_RETURN(auto f, base_->NewWritableFile(path, append));
  auto& st = files_[path];
  if (!existed) st.new_entry = true;
  // Truncation is itself unsynced data loss territory; model the file as synced up to what survives.
  st.synced_size = append ? f->Size() : 0;
  return std::unique_ptr<WritableFile>(new FaultFile(this, path, std::move(f)));
}

Result<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewExclusiveFile(const std::string& path) {
  TUG_TRY(Tick());
  TUG_ASSIGN_OR_RETURN(auto f, base_->NewExclusiveFile(path));
  files_[path] = FileState{0, true};
  return std::unique_ptr<WritableFile>(new FaultFile(this, path, std::move(f)));
}

Result<std::string> FaultInjectionEnv::ReadFile(const std::string& path) { return base_->ReadFile(path); }

Status FaultInjectionEnv::Rename(const std::string& from, const std::string& to) {
  TUG_TRY(Tick());
  PendingRename r{from, to, std::nullopt};
  if (base_->Exists(to)) {
    // Keep the replaced file so a power cut before SyncDir can bring it back.
    std::string backup = to + ".fault-backup." + std::to_string(++backup_seq_);
    TUG_TRY(base_->Rename(to, backup));
    r.backup = backup;
  }
  TUG_TRY(base_->Rename(from, to));
  renames_.push_back(r);
  auto it = files_.find(from);
  if (it != files_.end()) {
    files_[to] = it->second;
    files_.erase(it);
  }
  return {};
}

Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  TUG_TRY(Tick());
  files_.erase(path);
  return base_->RemoveFile(path);
}

Status FaultInjectionEnv::RemoveAll(const std::string& path) {
  TUG_TRY(Tick());
  for (auto it = files_.begin(); it != files_.end();) {
    if (it->first == path || it->first.rfind(path + "/", 0) == 0)
      it = files_.erase(it);
    else
      ++it;
  }
  return base_->RemoveAll(path);
}

Status FaultInjectionEnv::CreateDirs(const std::string& path) {
  TUG_TRY(Tick());
  return base_->CreateDirs(path);
}

Status FaultInjectionEnv::SyncDir(const std::string& path) {
  TUG_TRY(Tick());
  TUG_TRY(base_->SyncDir(path));
  for (auto& [p, st] : files_)
    if (Dirname(p) == path) st.new_entry = false;
  for (auto it = renames_.begin(); it != renames_.end();) {
    if (Dirname(it->to) == path) {
      if (it->backup) (void)base_->RemoveFile(*it->backup);
      it = renames_.erase(it);
    } else {
      ++it;
    }
  }
  return {};
}

Status FaultInjectionEnv::Symlink(const std::string& target, const std::string& link_path) {
  TUG_TRY(Tick());
  TUG_TRY(base_->Symlink(target, link_path));
  files_[link_path] = FileState{0, true};
  return {};
}

Result<std::string> FaultInjectionEnv::ReadLink(const std::string& path) { return base_->ReadLink(path); }

Status FaultInjectionEnv::Truncate(const std::string& path, uint64_t size) {
  TUG_TRY(Tick());
  TUG_TRY(base_->Truncate(path, size));
  auto it = files_.find(path);
  if (it != files_.end() && it->second.synced_size > size) it->second.synced_size = size;
  return {};
}

bool FaultInjectionEnv::Exists(const std::string& path) { return base_->Exists(path); }
Result<uint64_t> FaultInjectionEnv::FileSize(const std::string& path) { return base_->FileSize(path); }
Result<std::vector<std::string>> FaultInjectionEnv::ListDir(const std::string& path) {
  TUG_ASSIGN_OR_RETURN(auto names, base_->ListDir(path));
  std::vector<std::string> out;
  for (auto& n : names)
    if (n.find(".fault-backup.") == std::string::npos) out.push_back(n);
  return out;
}
Result<uint64_t> FaultInjectionEnv::FreeBytes(const std::string& path) { return base_->FreeBytes(path); }

Status FaultInjectionEnv::DropUnsyncedData() {
  // Undo unsynced renames newest first, so a chain a->b->c unwinds correctly.
  for (auto it = renames_.rbegin(); it != renames_.rend(); ++it) {
    if (base_->Exists(it->to)) (void)base_->Rename(it->to, it->from);
    if (it->backup) (void)base_->Rename(*it->backup, it->to);
    auto f = files_.find(it->to);
    if (f != files_.end()) {
      files_[it->from] = f->second;
      files_.erase(f);
    }
  }
  renames_.clear();
  for (auto& [path, st] : files_) {
    if (!base_->Exists(path)) continue;
    if (st.new_entry) {
      (void)base_->RemoveFile(path);
      continue;
    }
    auto size = base_->FileSize(path);
    if (size && *size > st.synced_size) (void)base_->Truncate(path, st.synced_size);
  }
  files_.clear();
  crashed_ = false;
  crash_after_.reset();
  ops_ = 0;
  return {};
}

}  // namespace tug::core
