// The Dockerfile subset image-builder understands (docs/image-builder.md lists it), parsed into stages.
//
// Parsing is purely syntactic: continuations are joined, comments dropped, flags split off and JSON (exec) forms
// recognised. Variable substitution happens later, at build time, when ARG and ENV values are known (words.hpp).
// Every error is kInvalidArgument with the context "<file>:<line>: <what>", e.g. "Dockerfile:7: unknown
// instruction FORM", so the CLI can print it as is.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::builder {

enum class InstrKind { kFrom, kRun, kCopy, kAdd, kEnv, kArg, kWorkdir, kUser, kEntrypoint, kCmd, kLabel, kExpose,
                       kHealthcheck, kStopSignal };
const char* ToString(InstrKind kind);  // "RUN", "COPY", ...

struct Instruction {
  InstrKind kind = InstrKind::kRun;
  int line = 0;                              // 1-based line of the keyword
  std::map<std::string, std::string> flags;  // "--chown=0:0" -> {"chown","0:0"}; a bare "--x" maps to ""
  std::string rest;                          // text after keyword and flags, continuations joined, trimmed
  bool json_form = false;                    // rest was a JSON array of strings (exec form)
  std::vector<std::string> json_args;        // its elements when json_form
  // HEALTHCHECK only: true for "HEALTHCHECK NONE"; otherwise rest/json_* describe the CMD after "CMD".
  bool healthcheck_none = false;
};

struct Stage {
  int index = 0;
  int line = 0;
  std::string base;      // as written (may hold $VARs): "127.0.0.1:5000/x:1", "oci:dir:tag", "scratch", a stage
  std::string name;      // from "AS name", lowercased; may be empty
  std::string platform;  // --platform= flag as written; empty for the target platform
  std::vector<Instruction> instructions;  // after FROM
};

struct Dockerfile {
  std::string filename;                  // for messages
  std::vector<Instruction> global_args;  // ARGs before the first FROM
  std::vector<Stage> stages;
  // Number of instructions including each FROM, for "[n/total]" progress.
  int StepCount() const;
};

Result<Dockerfile> ParseDockerfile(std::string_view text, const std::string& filename = "Dockerfile");

// "30s", "1m30s", "500ms", "2h", "1.5s" -> nanoseconds (Go duration syntax, as Docker takes).
Result<int64_t> ParseGoDuration(std::string_view s);

}  // namespace tug::builder
