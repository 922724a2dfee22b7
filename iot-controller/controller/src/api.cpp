#include "controller/api.hpp"

#include "fleet/topics.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

#include <nlohmann/json.hpp>

#include <set>

#include "crypto/release.hpp"

namespace tug::controller {

using nlohmann::json;

namespace {

HttpResponse Json(int status, const json& body) {
  return HttpResponse{.status = status, .content_type = "application/json", .body = body.dump()};
}

HttpResponse Err(int status, const std::string& message, const std::string& field = "") {
  json b{{"error", message}};
  if (!field.empty()) b["field"] = field;
  return Json(status, b);
}

// Maps an engine/store error to its HTTP answer: the error code decides, never the message.
HttpResponse FromError(const Error& e) {
  if (e.Is(Errc::kNotFound)) return Err(404, e.context);
  if (e.Is(Errc::kAlreadyExists)) return Err(409, e.context);
  if (e.Is(Errc::kInvalidArgument)) return Err(400, e.context, FieldOf(e));
  spdlog::error("api: {}", e.Message());
  return Err(500, e.Message());
}

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) parts.push_back(PercentDecode(path.substr(start, end - start)));
    start = end + 1;
  }
  return parts;
}

std::vector<std::pair<std::string, std::string>> ParseQuery(const std::string& q) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start < q.size()) {
    size_t end = q.find('&', start);
    if (end == std::string::npos) end = q.size();
    const std::string kv = q.substr(start, end - start);
    const size_t eq = kv.find('=');
    if (!kv.empty())
      out.emplace_back(PercentDecode(kv.substr(0, eq)), eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1)));
    start = end + 1;
  }
  return out;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string Time(Millis ms) {
  if (ms == 0) return "";
  return core::FormatRfc3339(core::TimePoint(std::chrono::milliseconds(ms)));
}

json DeviceJson(const Device& d) {
  return {{"id", d.id},
          {"labels", d.EffectiveLabels()},
          {"reported_labels", d.reported_labels},
          {"operator_labels", d.operator_labels},
          {"online", d.online},
          {"last_seen", Time(d.last_seen)},
          {"boot_id", d.boot_id},
          {"active", d.active},
          {"previous", d.previous},
          {"job", {{"id", d.job_id}, {"phase", d.job_phase}}},
          {"applied_v", d.applied_v},
          {"desired_v", d.desired_v},
          {"arch", d.arch},
          {"agent_version", d.agent_version}};
}

json ReleaseJson(const Release& r) {
  return {{"version", r.version}, {"name", r.name}, {"repository", r.repository}, {"digest", r.digest},
          {"expires_at", r.expires_at}, {"registered_at", Time(r.created_at)}};
}

// Devices one GET /rollouts/{id} lists at most: ~1.6 MB of JSON at ~160 bytes a device.
constexpr uint64_t kMaxReportLimit = 10000;
// Devices one page of GET /devices lists at most: ~5 MB of JSON at ~500 bytes a device, what the whole fleet of
// 10,000 cost before paging.
constexpr uint64_t kMaxDevicesLimit = 10000;

std::optional<uint64_t> ParseU64(const std::string& s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

using Query = std::vector<std::pair<std::string, std::string>>;

// "failed,timed_out" -> those states; "none" alone -> no device lists. Errors are "<field>: <why>" (FieldOf).
Status ParseDeviceStates(const std::string& v, ReportDevices& which) {
  if (v == "none") {
    which.none = true;
    return {};
  }
  size_t start = 0;
  for (;;) {
    const size_t comma = std::min(v.find(',', start), v.size());
    const std::string name = v.substr(start, comma - start);
    auto state = ParseDeviceJobState(name);
    if (!state)
      return MakeError(Errc::kInvalidArgument,
                       "devices: must be none or device states separated by commas (pending, in_progress, "
                       "succeeded, failed, timed_out, unreached, cancelled, rolled_back), not '" + name + "'");
    which.states.push_back(*state);
    if (comma == v.size()) return {};
    start = comma + 1;
  }
}

// "limit" (1..max) and "after" (a device id) of GET /rollouts/{id} and GET /devices: one page cursor, the same
// errors for the same mistakes.
Status ParsePage(const std::string& k, const std::string& v, uint64_t max, std::string& after, int64_t& limit) {
  if (k == "limit") {
    const auto n = ParseU64(v);
    if (!n || *n < 1 || *n > max)
      return MakeError(Errc::kInvalidArgument, "limit: must be a number from 1 to " + std::to_string(max));
    limit = static_cast<int64_t>(*n);
    return {};
  }
  if (v.empty()) return MakeError(Errc::kInvalidArgument, "after: must be a device id");
  after = v;
  return {};
}

// The query of GET /rollouts/{id}: devices, limit, after (docs/api.md). None of them: every device, as always.
Result<ReportDevices> ParseReportQuery(const Query& query) {
  ReportDevices which;
  std::set<std::string> seen;
  for (const auto& [k, v] : query) {
    // A repeated parameter is refused rather than guessed at (union? last one?).
    if (!seen.insert(k).second) return MakeError(Errc::kInvalidArgument, k + ": given more than once");
    if (k == "devices") {
      TUG_TRY(ParseDeviceStates(v, which));
    } else if (k == "limit" || k == "after") {
      TUG_TRY(ParsePage(k, v, kMaxReportLimit, which.after, which.limit));
    } else {
      return MakeError(Errc::kInvalidArgument, k + ": unknown query parameter");
    }
  }
  // Paging a list that is not there is a caller's mistake worth saying.
  if (which.none && which.limit > 0)
    return MakeError(Errc::kInvalidArgument, "limit: cannot be combined with devices=none");
  if (which.none && !which.after.empty())
    return MakeError(Errc::kInvalidArgument, "after: cannot be combined with devices=none");
  return which;
}

// The query of GET /devices: filters (label, online, version) and a page (limit, after), docs/api.md.
struct DevicesQuery {
  Store::DeviceFilter filter;
  std::string after;  // "": from the first device
  int64_t limit = 0;  // 0: no limit
};

Result<DevicesQuery> ParseDevicesQuery(const Query& query) {
  DevicesQuery q;
  std::set<std::string> seen;
  for (const auto& [k, v] : query) {
    // label repeats (all must match); any other parameter twice is refused rather than guessed at.
    if (k != "label" && !seen.insert(k).second)
      return MakeError(Errc::kInvalidArgument, k + ": given more than once");
    if (k == "label") {
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return MakeError(Errc::kInvalidArgument, "label: must be key=value");
      q.filter.labels[v.substr(0, eq)] = v.substr(eq + 1);
    } else if (k == "online") {
      if (v != "true" && v != "false") return MakeError(Errc::kInvalidArgument, "online: must be true or false");
      q.filter.online = v == "true";
    } else if (k == "version") {
      q.filter.version = ParseU64(v);
      if (!q.filter.version)
        return MakeError(Errc::kInvalidArgument, "version: must be a release version number");
    } else if (k == "limit" || k == "after") {
      TUG_TRY(ParsePage(k, v, kMaxDevicesLimit, q.after, q.limit));
    } else {
      return MakeError(Errc::kInvalidArgument, k + ": unknown query parameter");
    }
  }
  return q;
}

// The GET /devices body; with no query, every device, as it always was.
Result<std::string> DevicesText(Store& store, const DevicesQuery& q) {
  // Written device by device: a JSON tree of 10,000 devices would take ~100 MiB for a ~5 MB answer. One row beyond
  // the limit tells whether another page exists.
  std::string out = R"({"devices":[)";
  int64_t listed = 0;
  std::string last;
  bool more = false;
  TUG_TRY(store.ForEachDevice(q.filter, q.after, q.limit > 0 ? q.limit + 1 : -1, [&](const Device& d) -> Status {
    if (q.limit > 0 && listed == q.limit) {
      more = true;
      return {};
    }
    if (listed++ > 0) out += ',';
    out += DeviceJson(d).dump();
    last = d.id;
    return {};
  }));
  out += ']';
  if (more) out += R"(,"next_after":)" + json(last).dump();
  out += '}';
  return out;
}

}  // namespace

Api::Api(Store& store, Engine& engine, Metrics& metrics, crypto::TrustRoot root, std::string token,
         const core::Clock& clock)
    : store_(store), engine_(engine), metrics_(metrics), root_(std::move(root)), token_(std::move(token)),
      clock_(clock) {}

HttpResponse Api::Handle(const HttpRequest& req) {
  HttpResponse out = Route(req);
  const bool mutating = req.method != "GET" && req.method != "HEAD";
  if (mutating && req.target.rfind("/api/v1/", 0) == 0) {
    // Every change, and every refused attempt at one: who, what, when, result.
    Store::AuditEntry e;
    e.at = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch()).count();
    e.principal = principal_;
    e.method = req.method.substr(0, 16);
    e.target = req.target.substr(0, 512);
    e.status = out.status;
    if (out.status >= 400) {
      auto j = json::parse(out.body, nullptr, false);
      if (j.is_object() && j.contains("error") && j["error"].is_string()) e.detail = j["error"].get<std::string>();
      if (e.detail.size() > 512) e.detail.resize(512);
    }
    if (auto st = store_.AppendAudit(e); !st) spdlog::error("audit log: {}", st.error().Message());
  }
  return out;
}

HttpResponse Api::Route(const HttpRequest& req) {
  ++metrics_.http_requests;
  const size_t qpos = req.target.find('?');
  const std::string path = req.target.substr(0, qpos);
  const auto query = qpos == std::string::npos ? decltype(ParseQuery("")){} : ParseQuery(req.target.substr(qpos + 1));
  const auto p = SplitPath(path);
  const std::string& m = req.method;

  if (p.size() == 1 && p[0] == "healthz") {
    if (m != "GET") return Err(405, "method not allowed");
    return Json(200, {{"status", "ok"}, {"mqtt_connected", metrics_.mqtt_connected}});
  }
  if (p.size() == 1 && p[0] == "metrics") {
    if (m != "GET") return Err(405, "method not allowed");
    auto text = RenderMetrics(store_, metrics_, engine_.counters());
    if (!text) return FromError(text.error());
    return HttpResponse{.status = 200, .content_type = "text/plain; version=0.0.4", .body = *text};
  }
  if (p.size() < 3 || p[0] != "api" || p[1] != "v1") return Err(404, "no such route: " + path);

  // Who is calling: a named token of the table (its scope must cover the call), or the one shared --token (admin).
  principal_.clear();
  const std::string kBearer = "Bearer ";
  const bool shared_ok = !token_.empty() && req.authorization.rfind(kBearer, 0) == 0 &&
                         ConstantTimeEquals(req.authorization.substr(kBearer.size()), token_);
  if (shared_ok) {
    principal_ = "token";
  } else if (tokens_) {
    http::Request hr;
    hr.method = m;
    hr.target = req.target;
    hr.headers.emplace_back("Authorization", req.authorization);
    const bool audit_read = p[2] == "audit";  // who did what is for operators, not every viewer
    auto d = tokens_->Authorize(hr, audit_read ? http::Scope::kOperator : http::ScopeForMethod(m));
    if (!d) return HttpResponse{.status = d.error_response.status, .content_type = "application/json",
                                .body = d.error_response.body};
    principal_ = d.principal->name;
  } else {
    return Err(401, "missing or wrong bearer token");
  }

  json body;
  if (m == "POST" || m == "PUT") {
    body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    if (body.is_discarded()) return Err(400, "body is not valid JSON", "body");
  }
  const std::string& coll = p[2];

  // ---- audit ----
  if (coll == "audit" && p.size() == 3) {
    if (m != "GET") return Err(405, "method not allowed");
    int64_t limit = 100, before = 0;
    for (const auto& [k, v] : query) {
      if (k != "limit" && k != "before") return Err(400, "unknown parameter " + k, k);
      int64_t n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size()) return Err(400, k + " must be an integer", k);
      (k == "limit" ? limit : before) = n;
    }
    if (limit < 1 || limit > 1000) return Err(400, "limit must be 1..1000", "limit");
    auto rows = store_.ListAudit(before, limit);
    if (!rows) return FromError(rows.error());
    json entries = json::array();
    for (const auto& e : *rows)
      entries.push_back({{"id", e.id}, {"at", e.at}, {"principal", e.principal}, {"method", e.method},
                         {"target", e.target}, {"status", e.status}, {"detail", e.detail}});
    json out{{"entries", entries}};
    if (static_cast<int64_t>(rows->size()) == limit) out["next_before"] = rows->back().id;
    return Json(200, out);
  }

  // ---- devices ----
  if (coll == "devices") {
    if (p.size() == 3) {
      if (m != "GET") return Err(405, "method not allowed");
      auto q = ParseDevicesQuery(query);
      if (!q) return FromError(q.error());
      auto text = DevicesText(store_, *q);
      if (!text) return FromError(text.error());
      return HttpResponse{.status = 200, .content_type = "application/json", .body = std::move(*text)};
    }
    if (p.size() == 5 && p[4] == "revoke") {
      // Also for a device that never reported: its certificate may be revoked before it is ever used.
      if (m != "POST") return Err(405, "method not allowed");
      if (!fleet::ValidDeviceId(p[3])) return Err(400, "not a device id", "id");
      std::string reason;
      if (body.contains("reason")) {
        if (!body["reason"].is_string() || body["reason"].get<std::string>().size() > 512)
          return Err(400, "reason must be a string of at most 512 bytes", "reason");
        reason = body["reason"].get<std::string>();
      }
      if (auto st = engine_.RevokeDevice(p[3], principal_, reason); !st) return FromError(st.error());
      auto r = store_.GetRevocation(p[3]);
      if (!r) return FromError(r.error());
      return Json(200, {{"id", p[3]}, {"revoked", {{"at", (*r)->at}, {"by", (*r)->by}, {"reason", (*r)->reason}}}});
    }
    auto dev = store_.GetDevice(p[3]);
    if (!dev) return FromError(dev.error());
    if (!*dev) return Err(404, "device " + p[3] + " not found");
    if (p.size() == 4) {
      if (m != "GET") return Err(405, "method not allowed");
      json out = DeviceJson(**dev);
      auto r = store_.GetRevocation(p[3]);
      if (!r) return FromError(r.error());
      if (*r) out["revoked"] = {{"at", (*r)->at}, {"by", (*r)->by}, {"reason", (*r)->reason}};
      return Json(200, out);
    }
    if (p.size() == 5 && p[4] == "labels") {
      if (m != "PUT") return Err(405, "method not allowed");
      if (!body.contains("labels") || !body["labels"].is_object())
        return Err(400, "labels must be an object of strings", "labels");
      Labels l;
      for (const auto& [k, v] : body["labels"].items()) {
        if (k.empty() || !v.is_string()) return Err(400, "labels must be an object of strings", "labels." + k);
        l[k] = v.get<std::string>();
      }
      // The engine stores the labels and joins the device to the running rollouts it now matches.
      auto d = engine_.SetOperatorLabels(p[3], l);
      if (!d) return FromError(d.error());
      return Json(200, DeviceJson(*d));
    }
    return Err(404, "no such route: " + path);
  }

  // ---- releases ----
  if (coll == "releases") {
    if (p.size() == 3 && m == "GET") {
      auto rels = store_.ListReleases();
      if (!rels) return FromError(rels.error());
      json out = json::array();
      for (const auto& r : *rels) out.push_back(ReleaseJson(r));
      return Json(200, {{"releases", out}});
    }
    if (p.size() == 3 && m == "POST") {
      auto v = crypto::VerifyRelease(req.body, root_, crypto::ReleasePolicy{.now = clock_.Now(), .ratchet = 0,
                                                                              .expected_repository = ""});
      if (!v) {
        const auto& e = v.error();
        std::string field = "envelope";
        if (e.Is(Errc::kSignature)) field = "signatures";
        if (e.Is(Errc::kExpired)) field = "expires_at";
        return Err(400, "release refused: " + e.context, field);
      }
      const auto& rel = v->release;
      if (rel.version == 0) return Err(400, "release version must be above 0", "version");
      auto existing = store_.GetRelease(rel.version);
      if (!existing) return FromError(existing.error());
      if (*existing) {
        if ((*existing)->digest != rel.digest)
          return Err(409, "release version " + std::to_string(rel.version) + " is already registered with digest " +
                              (*existing)->digest);
        return Json(200, ReleaseJson(**existing));  // the same release again: idempotent
      }
      Release r{.version = rel.version,
                .name = rel.name,
                .repository = rel.repository,
                .digest = rel.digest,
                .expires_at = core::FormatRfc3339(rel.expires_at),
                .envelope = req.body,
                .created_at = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch())
                                  .count()};
      if (auto st = store_.PutRelease(r); !st) return FromError(st.error());
      return Json(201, ReleaseJson(r));
    }
    if (p.size() == 4 && m == "GET") {
      auto version = ParseU64(p[3]);
      if (!version) return Err(400, "release version must be a number", "version");
      auto rel = store_.GetRelease(*version);
      if (!rel) return FromError(rel.error());
      if (!*rel) return Err(404, "release " + p[3] + " not found");
      json out = ReleaseJson(**rel);
      out["envelope"] = json::parse((*rel)->envelope, nullptr, false);
      return Json(200, out);
    }
    if (p.size() <= 4) return Err(405, "method not allowed");
    return Err(404, "no such route: " + path);
  }

  // ---- rollouts ----
  if (coll == "rollouts") {
    if (p.size() == 3 && m == "POST") {
      auto spec = ParseRolloutSpec(body);
      if (!spec) return FromError(spec.error());
      auto id = engine_.CreateRollout(*spec);
      if (!id) {
        if (id.error().Is(Errc::kNotFound)) return Err(400, id.error().context, "release");
        return FromError(id.error());
      }
      auto rep = engine_.RolloutReport(*id);
      if (!rep) return FromError(rep.error());
      return Json(201, *rep);
    }
    if (p.size() == 3 && m == "GET") {
      auto rollouts = store_.ListRollouts();
      if (!rollouts) return FromError(rollouts.error());
      json out = json::array();
      for (const auto& r : *rollouts) {
        auto rep = engine_.RolloutSummary(r.id);
        if (!rep) return FromError(rep.error());
        out.push_back(*rep);
      }
      return Json(200, {{"rollouts", out}});
    }
    if (p.size() == 4) {
      if (m != "GET") return Err(405, "method not allowed");
      auto which = ParseReportQuery(query);
      if (!which) return FromError(which.error());
      auto rep = engine_.RolloutReportText(p[3], *which);
      if (!rep) return FromError(rep.error());
      return HttpResponse{.status = 200, .content_type = "application/json", .body = std::move(*rep)};
    }
    if (p.size() == 5 || (p.size() == 7 && p[4] == "devices" && p[6] == "cancel")) {
      if (m != "POST") return Err(405, "method not allowed");
      const std::string& id = p[3];
      Status st;
      int rollback_sent = -1;
      if (p.size() == 7) {
        st = engine_.CancelDevice(id, p[5]);
      } else if (p[4] == "pause") {
        st = engine_.Pause(id);
      } else if (p[4] == "resume") {
        st = engine_.Resume(id);
      } else if (p[4] == "cancel") {
        st = engine_.Cancel(id);
      } else if (p[4] == "rollback") {
        auto n = engine_.Rollback(id);
        if (n) rollback_sent = *n;
        else st = tl::unexpected(n.error());
      } else {
        return Err(404, "no such route: " + path);
      }
      if (!st) return FromError(st.error());
      auto rep = engine_.RolloutReport(id);
      if (!rep) return FromError(rep.error());
      if (rollback_sent >= 0) (*rep)["rollback_sent"] = rollback_sent;
      return Json(200, *rep);
    }
    return Err(404, "no such route: " + path);
  }
  return Err(404, "no such route: " + path);
}

http::Response Api::Serve(const http::Request& req) {
  HttpResponse out = Handle(HttpRequest{.method = req.method, .target = req.target,
                                        .authorization = req.Header("Authorization"), .body = req.body});
  http::Response res;
  res.status = out.status;
  res.content_type = std::move(out.content_type);
  res.body = std::move(out.body);
  return res;
}

}  // namespace tug::controller
