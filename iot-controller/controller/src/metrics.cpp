#include "controller/metrics.hpp"

#include <map>
#include <sstream>

namespace tug::controller {

Result<std::string> RenderMetrics(Store& store, const Metrics& m, const EngineCounters& c) {
  std::ostringstream o;
  // Counted by SQLite: a scrape at 100,000 devices must not read (and parse the JSON columns of) every row.
  TUG_ASSIGN_OR_RETURN(const auto devices, store.CountDevices());
  const int64_t total = devices.total, online = devices.online;
  o << "# HELP tug_devices_total Devices known to the controller.\n# TYPE tug_devices_total gauge\n"
    << "tug_devices_total " << total << "\n";
  o << "# HELP tug_devices_online Devices whose last presence said online.\n# TYPE tug_devices_online gauge\n"
    << "tug_devices_online " << online << "\n";
  TUG_ASSIGN_OR_RETURN(auto rollouts, store.ListRollouts());
  o << "# HELP tug_rollouts Rollouts by state.\n# TYPE tug_rollouts gauge\n";
  std::map<std::string, int> by_state;
  for (const auto& r : rollouts) by_state[ToString(r.state)]++;
  for (auto s : {RolloutState::kRunning, RolloutState::kPaused, RolloutState::kSucceeded, RolloutState::kAborted,
                 RolloutState::kCancelled})
    o << "tug_rollouts{state=\"" << ToString(s) << "\"} " << by_state[ToString(s)] << "\n";
  o << "# HELP tug_rollout_devices Devices of a rollout by outcome state.\n# TYPE tug_rollout_devices gauge\n";
  for (const auto& r : rollouts) {
    // Counted by SQLite, not by reading every row of the rollout.
    TUG_ASSIGN_OR_RETURN(auto counts, store.CountRolloutDevices(r.id));
    std::map<std::string, int64_t> n;
    for (const auto& cnt : counts) n[ToString(cnt.state)] += cnt.count;
    for (int i = 0; i <= static_cast<int>(DeviceJobState::kRolledBack); ++i) {
      const char* s = ToString(static_cast<DeviceJobState>(i));
      o << "tug_rollout_devices{rollout=\"" << r.id << "\",state=\"" << s << "\"} " << n[s] << "\n";
    }
  }
  o << "# TYPE tug_mqtt_messages_received_total counter\ntug_mqtt_messages_received_total "
    << m.mqtt_messages_received << "\n";
  o << "# TYPE tug_mqtt_messages_invalid_total counter\ntug_mqtt_messages_invalid_total " << m.mqtt_messages_invalid
    << "\n";
  o << "# HELP tug_reports_rejected_total Device reports dropped because the payload or topic broke the protocol.\n"
    << "# TYPE tug_reports_rejected_total counter\n";
  for (size_t i = 1; i <= fleet::kReasonCount; ++i) {
    const auto r = static_cast<fleet::Reason>(i);
    o << "tug_reports_rejected_total{reason=\"" << fleet::ToString(r) << "\"} "
      << m.reports_rejected[r] + c.reports_rejected[r] << "\n";
  }
  o << "# HELP tug_reports_foreign_job_total Job reports for a job the controller did not send that device.\n"
    << "# TYPE tug_reports_foreign_job_total counter\ntug_reports_foreign_job_total " << c.reports_foreign_job << "\n";
  o << "# HELP tug_mqtt_reports_dropped_total Reports dropped because the report queue was full.\n"
    << "# TYPE tug_mqtt_reports_dropped_total counter\ntug_mqtt_reports_dropped_total{reason=\"queue_full\"} "
    << m.reports_dropped_queue_full << "\n";
  o << "# TYPE tug_mqtt_connected gauge\ntug_mqtt_connected " << (m.mqtt_connected ? 1 : 0) << "\n";
  o << "# TYPE tug_reports_applied_total counter\ntug_reports_applied_total " << c.reports_applied << "\n";
  o << "# TYPE tug_reports_ignored_total counter\ntug_reports_ignored_total " << c.reports_ignored << "\n";
  o << "# HELP tug_reports_revoked_total Reports dropped because their device is revoked.\n"
    << "# TYPE tug_reports_revoked_total counter\ntug_reports_revoked_total " << c.reports_revoked << "\n";
  o << "# TYPE tug_desired_published_total counter\ntug_desired_published_total " << c.desired_published << "\n";
  o << "# TYPE tug_http_requests_total counter\ntug_http_requests_total " << m.http_requests << "\n";
  if (const http::ServerStats* h = m.http_server) {
    o << "# HELP tug_http_connections_open Connections the API server holds now.\n"
      << "# TYPE tug_http_connections_open gauge\ntug_http_connections_open " << h->open << "\n"
      << "# HELP tug_http_refused_total What the API server refused or cut, by reason.\n"
      << "# TYPE tug_http_refused_total counter\n";
    const std::pair<const char*, uint64_t> refused[] = {
        {"at_capacity", h->paused_at_capacity}, {"per_peer", h->refused_per_peer},
        {"accept_error", h->accept_errors},     {"header_too_large", h->header_too_large},
        {"body_too_large", h->body_too_large},  {"timeout", h->timeouts},
        {"bad_request", h->bad_requests},       {"tls", h->tls_failures},
        {"host", h->host_refused}};
    for (const auto& [reason, n] : refused) o << "tug_http_refused_total{reason=\"" << reason << "\"} " << n << "\n";
  }
  return o.str();
}

}  // namespace tug::controller
