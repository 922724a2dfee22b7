// Pieces of `tug rollout` shared between rollout_cmd.cpp (create, get, actions) and watch.cpp (live progress).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "fleet.hpp"

namespace tug::cli {

// One phase of GET /rollouts/{id} as a progress line; `position` counts from 1 like the docs do:
//   phase 2  50%  [#####.....]  3/6 ok  1 failed  0 unreached  soaking
// Phase targets in the API are cumulative (50% means half the fleet including the canary) while counts are the
// phase's own devices, so the line shows succeeded over target minus `previous_target`. The bar fills with
// succeeded devices only: failures never look like progress.
std::string PhaseLine(const Json& phase, size_t position, int64_t previous_target);
// Every phase line of a rollout, in order.
std::vector<std::string> PhaseLines(const Json& rollout);
// "rollout r-1  running  release 42 "sensor 2.0.1"" — the first line of get and watch.
std::string RolloutHeadline(const Json& rollout);
// Devices whose outcome counts as a failure (failed, timed_out, rolled_back), with attempts and errors.
void PrintFailedDevices(const Io& io, const Json& rollout);

// Which devices GET /rollouts/{id} lists (docs/api.md): `devices` is "", "none" or states joined by commas,
// `limit` 0 for no limit, `after` "" to start at the first device.
struct ReportQuery {
  std::string devices;
  int64_t limit = 0;
  std::string after;
};
// "/rollouts/r-1?devices=failed,timed_out&limit=100&after=pi-0042", escaped; no query for the default.
std::string RolloutPath(const std::string& id, const ReportQuery& q);

struct WatchFlags {
  std::string id;
  std::string interval = "1s";
  std::string timeout = "30m";
};

// Polls the rollout until it ends. OK when it succeeded; an error carrying the abort reason when it was aborted or
// cancelled (exit 1); sets ctx.exit_code = 3 when --timeout passes first.
Status WatchRollout(Context& ctx, const WatchFlags& f);

}  // namespace tug::cli
