// The update state machine's durable record (journal.json, DESIGN.md §4).
//
// Rule: the journal is persisted (tmp + fsync + rename + dir fsync) *before* the action a state stands for, so after a
// power cut recovery knows what might have been half-done and how to finish or undo it. Each state carries a
// deadline; recovery treats a passed deadline as a failure of that state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "core/env.hpp"
#include "core/error.hpp"

namespace tug::agent {

enum class UpdateState {
  kIdle,
  kAccepted,
  kDownloading,
  kVerified,
  kInstalling,
  kActivating,
  kHealthCheck,
  kSucceeded,
  kFailed,
  kRolledBack,
};

const char* ToString(UpdateState s);
Result<UpdateState> ParseUpdateState(const std::string& s);
// Succeeded, Failed, RolledBack and Idle need no recovery.
bool IsTerminal(UpdateState s);

struct JobError {
  std::string code;  // Errc name, e.g. "signature check failed"
  bool retryable = false;
  std::string message;
};

struct Journal {
  UpdateState state = UpdateState::kIdle;
  std::string job_id;
  std::string release_envelope;  // the signed envelope JSON, verbatim
  uint64_t version = 0;
  std::string repository;
  std::string digest;         // signed digest (index or manifest)
  std::string manifest;       // platform manifest digest, once resolved
  std::string target_slot;    // slot being installed ("a"/"b")
  std::string from_slot;      // slot active when the update started; empty on a fresh device
  int attempt = 0;            // install attempts (an interrupted install is retried a bounded number of times)
  uint64_t seq = 0;           // increases on every transition (reports are idempotent on it)
  core::TimePoint entered_at;
  core::TimePoint deadline;
  std::optional<JobError> error;
};

std::string SerializeJournal(const Journal& j);
Result<Journal> ParseJournal(const std::string& json);

// Loads journal.json; a missing file is an Idle journal. A corrupt journal is an error (never silently reset).
Result<Journal> LoadJournal(core::Env& env, const std::string& path);
Status SaveJournal(core::Env& env, const std::string& path, const Journal& j);

}  // namespace tug::agent
