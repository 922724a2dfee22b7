#include "fleet/messages.hpp"

#include <cmath>
#include <limits>

namespace tug::fleet {

using json = nlohmann::json;

// ---- reasons ----

const char* ToString(Reason r) {
  switch (r) {
    case Reason::kTooLarge: return "too_large";
    case Reason::kBadJson: return "bad_json";
    case Reason::kTooDeep: return "too_deep";
    case Reason::kBadUtf8: return "bad_utf8";
    case Reason::kBadType: return "bad_type";
    case Reason::kOutOfRange: return "out_of_range";
    case Reason::kMissingField: return "missing_field";
    case Reason::kBadValue: return "bad_value";
    case Reason::kBadTopic: return "bad_topic";
  }
  return "unknown";
}

namespace {
class ReasonCategoryImpl : public std::error_category {
 public:
  const char* name() const noexcept override { return "fleet"; }
  std::string message(int v) const override { return ToString(static_cast<Reason>(v)); }
};
}  // namespace

const std::error_category& ReasonCategory() {
  static const ReasonCategoryImpl c;
  return c;
}

std::error_code make_error_code(Reason r) { return {static_cast<int>(r), ReasonCategory()}; }

Reason ReasonOf(const Error& e) {
  if (e.code.category() != ReasonCategory()) return Reason::kBadValue;
  const int v = e.code.value();
  if (v < 1 || v > static_cast<int>(kReasonCount)) return Reason::kBadValue;
  return static_cast<Reason>(v);
}

uint64_t ReasonCounts::Total() const {
  uint64_t t = 0;
  for (uint64_t x : n) t += x;
  return t;
}

const Limits& DefaultLimits() {
  static const Limits l;
  return l;
}

size_t MaxPayload(Leaf leaf, const Limits& l) {
  switch (leaf) {
    case Leaf::kPresence: return l.presence_bytes;
    case Leaf::kState: return l.state_bytes;
    case Leaf::kJobStatus: return l.job_status_bytes;
    case Leaf::kJobProgress: return l.progress_bytes;
    case Leaf::kDesired: return l.desired_bytes;
    case Leaf::kCmdReq: return l.cmd_request_bytes;
    case Leaf::kCmdRes: return l.cmd_response_bytes;
  }
  return 0;
}

const char* ToString(Command c) {
  switch (c) {
    case Command::kCancel: return "cancel";
    case Command::kRollback: return "rollback";
    case Command::kRestart: return "restart";
    case Command::kReport: return "report";
    case Command::kLogs: return "logs";
  }
  return "?";
}

// ---- byte-level checks ----

namespace {

tl::unexpected<Error> Fail(Reason r, const std::string& field, const std::string& why) {
  return tl::unexpected(Error{make_error_code(r), field + ": " + why});
}

// Length of the valid UTF-8 sequence at s[i], 0 if invalid (overlong forms, surrogates and > U+10FFFF are invalid).
size_t Utf8Seq(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return n;
}

// Invalid bytes become U+FFFD.
std::string Sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8Seq(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Valid UTF-8 cut to at most `cap` bytes on a character boundary.
std::string Clean(std::string_view s, size_t cap) {
  std::string out = ValidUtf8(s) ? std::string(s) : Sanitize(s);
  if (out.size() <= cap) return out;
  size_t end = cap;
  while (end > 0 && (static_cast<unsigned char>(out[end]) & 0xC0) == 0x80) --end;
  out.resize(end);
  return out;
}

}  // namespace

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    // ASCII fast path.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8Seq(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

Status Prescan(std::string_view payload, size_t max_bytes, size_t max_depth, const char* what) {
  if (payload.size() > max_bytes)
    return Fail(Reason::kTooLarge, what,
                std::to_string(payload.size()) + " bytes, more than " + std::to_string(max_bytes));
  if (!ValidUtf8(payload)) return Fail(Reason::kBadUtf8, what, "not valid UTF-8");
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : payload) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth)
          return Fail(Reason::kTooDeep, what, "nested deeper than " + std::to_string(max_depth));
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced: the parser says bad_json
        break;
      default: break;
    }
  }
  return {};
}

// ---- field readers ----

namespace {

// Reads fields of one JSON object; errors name "<path>.<key>".
class Obj {
 public:
  Obj(const json& j, std::string path) : j_(&j), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  std::string Field(const char* k) const { return path_ + "." + k; }
  const json* Get(const char* k) const {
    auto it = j_->find(k);
    return it == j_->end() ? nullptr : &*it;
  }

  Status Str(const char* k, size_t max, std::string& out, bool required = false) const {
    const json* v = Get(k);
    if (!v) return required ? Fail(Reason::kMissingField, Field(k), "missing") : Status{};
    if (!v->is_string()) return Fail(Reason::kBadType, Field(k), "expected string");
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > max)
      return Fail(Reason::kOutOfRange, Field(k), "longer than " + std::to_string(max) + " bytes");
    out = s;
    return {};
  }

  Status U64(const char* k, uint64_t& out, bool required = false, uint64_t min = 0,
             uint64_t max = std::numeric_limits<uint64_t>::max()) const {
    const json* v = Get(k);
    if (!v) return required ? Fail(Reason::kMissingField, Field(k), "missing") : Status{};
    uint64_t x = 0;
    if (v->is_number_unsigned()) {
      x = v->get<uint64_t>();
    } else if (v->is_number_integer()) {
      return Fail(Reason::kOutOfRange, Field(k), "negative");
    } else if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::isfinite(d) && std::floor(d) == d)
        return Fail(Reason::kOutOfRange, Field(k), "not a 64-bit unsigned integer");
      return Fail(Reason::kBadType, Field(k), "expected unsigned integer");
    } else {
      return Fail(Reason::kBadType, Field(k), "expected unsigned integer");
    }
    if (x < min || x > max)
      return Fail(Reason::kOutOfRange, Field(k),
                  std::to_string(x) + " outside " + std::to_string(min) + ".." + std::to_string(max));
    out = x;
    return {};
  }

  Status Bool(const char* k, bool& out, bool required = false) const {
    const json* v = Get(k);
    if (!v) return required ? Fail(Reason::kMissingField, Field(k), "missing") : Status{};
    if (!v->is_boolean()) return Fail(Reason::kBadType, Field(k), "expected boolean");
    out = v->get<bool>();
    return {};
  }

  // An object member; nullopt when absent or (if nullable) null.
  Result<std::optional<Obj>> Child(const char* k, bool nullable) const {
    const json* v = Get(k);
    if (!v || (nullable && v->is_null())) return std::optional<Obj>();
    if (!v->is_object()) return Fail(Reason::kBadType, Field(k), nullable ? "expected object or null" : "expected object");
    return std::optional<Obj>(Obj(*v, Field(k)));
  }

 private:
  const json* j_;
  std::string path_;
};

// Pre-scan, parse without exceptions, require an object.
Result<json> ParseObject(std::string_view payload, size_t max_bytes, const Limits& l, const char* what) {
  TUG_TRY(Prescan(payload, max_bytes, l.max_depth, what));
  json j;
  try {
    j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {  // not expected with allow_exceptions=false; never let one out
    return Fail(Reason::kBadJson, what, e.what());
  }
  if (j.is_discarded()) return Fail(Reason::kBadJson, what, "not JSON");
  if (!j.is_object()) return Fail(Reason::kBadType, what, "expected object");
  return j;
}

// Upper-case token (job states and phases): A-Z and '_', so a device cannot smuggle text into status columns.
Status Token(const Obj& o, const char* k, const Limits& l, std::string& out, bool required) {
  TUG_TRY(o.Str(k, l.token_bytes, out, required));
  for (char c : out)
    if (!((c >= 'A' && c <= 'Z') || c == '_')) return Fail(Reason::kBadValue, o.Field(k), "expected an upper-case name");
  return {};
}

Result<std::optional<JobError>> ReadError(const Obj& parent, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(auto o, parent.Child("error", true));
  if (!o) return std::optional<JobError>();
  JobError e;
  TUG_TRY(o->Str("code", l.token_bytes, e.code));
  TUG_TRY(o->Bool("retryable", e.retryable));
  TUG_TRY(o->Str("message", l.text_bytes, e.message));
  return std::optional<JobError>(std::move(e));
}

Result<std::optional<SlotInfo>> ReadSlot(const Obj& parent, const char* k, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(auto o, parent.Child(k, true));
  if (!o) return std::optional<SlotInfo>();
  SlotInfo s;
  TUG_TRY(o->Str("slot", l.token_bytes, s.slot));
  TUG_TRY(o->Str("digest", l.digest_bytes, s.digest));
  TUG_TRY(o->U64("version", s.version));
  TUG_TRY(o->Str("name", l.name_bytes, s.name));
  TUG_TRY(o->Str("status", l.token_bytes, s.status));
  TUG_TRY(o->Bool("running", s.running));
  return std::optional<SlotInfo>(std::move(s));
}

json ErrorJson(const std::optional<JobError>& e, const Limits& l) {
  if (!e) return nullptr;
  return {{"code", Clean(e->code, l.token_bytes)}, {"retryable", e->retryable},
          {"message", Clean(e->message, l.text_bytes)}};
}

}  // namespace

// ---- serializers ----

std::string SafeDump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json ToJson(const std::optional<SlotInfo>& s) {
  if (!s) return nullptr;
  const Limits& l = DefaultLimits();
  return {{"slot", Clean(s->slot, l.token_bytes)},     {"digest", Clean(s->digest, l.digest_bytes)},
          {"version", s->version},                    {"name", Clean(s->name, l.name_bytes)},
          {"status", Clean(s->status, l.token_bytes)}, {"running", s->running}};
}

std::string Serialize(const Presence& m) {
  const Limits& l = DefaultLimits();
  return SafeDump({{"online", m.online}, {"boot_id", Clean(m.boot_id, l.token_bytes)}, {"ts", Clean(m.ts, l.token_bytes)}});
}

std::string Serialize(const State& m) {
  const Limits& l = DefaultLimits();
  json labels = json::object();
  for (const auto& [k, v] : m.labels) labels[Clean(k, l.label_key_bytes)] = Clean(v, l.label_value_bytes);
  json s{{"boot_id", Clean(m.boot_id, l.token_bytes)},
         {"seq", m.seq},
         {"applied_v", m.applied_v},
         {"active", ToJson(m.active)},
         {"previous", ToJson(m.previous)},
         {"job",
          {{"id", Clean(m.job.id, kMaxJobId)}, {"phase", Clean(m.job.phase, l.token_bytes)}, {"seq", m.job.seq},
           {"error", ErrorJson(m.job.error, l)}}},
         {"ratchet", m.ratchet},
         {"arch", Clean(m.arch, l.token_bytes)},
         {"agent_version", Clean(m.agent_version, l.token_bytes)},
         {"free_bytes", m.free_bytes},
         {"labels", std::move(labels)}};
  if (!m.rejected.empty()) s["rejected"] = m.rejected;
  return SafeDump(s);
}

std::string Serialize(const JobStatus& m) {
  const Limits& l = DefaultLimits();
  return SafeDump({{"state", Clean(m.state, l.token_bytes)}, {"seq", m.seq},
                   {"boot_id", Clean(m.boot_id, l.token_bytes)}, {"error", ErrorJson(m.error, l)}});
}

std::string Serialize(const Progress& m) {
  return SafeDump({{"phase", Clean(m.phase, DefaultLimits().token_bytes)}, {"bytes", m.bytes}, {"total", m.total}});
}

std::string Serialize(const Desired& m) {
  // Written by hand around the envelope text, which is embedded as it is (no parse and dump per device), with
  // the keys in the order nlohmann would sort them.
  std::string out = "{";
  if (m.action == Desired::Action::kRollback) out += "\"action\":\"rollback\",";
  out += "\"job\":" + SafeDump(json(m.job));
  if (!m.deadline.empty() || !m.window.empty()) {
    json policy = json::object();
    if (!m.deadline.empty()) policy["deadline"] = m.deadline;
    if (!m.window.empty()) policy["window"] = m.window;
    out += ",\"policy\":" + SafeDump(policy);
  }
  if (m.action == Desired::Action::kInstall && !m.release.empty()) out += ",\"release\":" + m.release;
  out += ",\"v\":" + std::to_string(m.v) + "}";
  return out;
}

std::string Serialize(const CmdRequest& m) { return SafeDump({{"cmd", ToString(m.cmd)}}); }

std::string Serialize(const CmdResponse& m) {
  json r{{"ok", m.ok}, {"result", m.result}};
  if (!m.ok) r["error"] = Clean(m.error, DefaultLimits().text_bytes);
  return SafeDump(r);
}

// ---- parsers ----

Result<Presence> ParsePresence(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.presence_bytes, l, "presence"));
  Obj o(j, "presence");
  Presence p;
  TUG_TRY(o.Bool("online", p.online, true));
  TUG_TRY(o.Str("boot_id", l.token_bytes, p.boot_id));
  TUG_TRY(o.Str("ts", l.token_bytes, p.ts));
  return p;
}

Result<State> ParseState(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.state_bytes, l, "state"));
  Obj o(j, "state");
  State s;
  TUG_TRY(o.Str("boot_id", l.token_bytes, s.boot_id, true));
  TUG_TRY(o.U64("seq", s.seq, true));
  TUG_TRY(o.U64("applied_v", s.applied_v));
  TUG_ASSIGN_OR_RETURN(s.active, ReadSlot(o, "active", l));
  TUG_ASSIGN_OR_RETURN(s.previous, ReadSlot(o, "previous", l));
  TUG_ASSIGN_OR_RETURN(auto job, o.Child("job", true));
  if (job) {
    TUG_TRY(job->Str("id", kMaxJobId, s.job.id));
    if (!s.job.id.empty() && !ValidJobId(s.job.id)) return Fail(Reason::kBadValue, job->Field("id"), "not a job id");
    TUG_TRY(Token(*job, "phase", l, s.job.phase, false));
    TUG_TRY(job->U64("seq", s.job.seq));
    TUG_ASSIGN_OR_RETURN(s.job.error, ReadError(*job, l));
  }
  TUG_TRY(o.U64("ratchet", s.ratchet));
  TUG_TRY(o.Str("arch", l.token_bytes, s.arch));
  TUG_TRY(o.Str("agent_version", l.token_bytes, s.agent_version));
  TUG_TRY(o.U64("free_bytes", s.free_bytes));
  if (const json* labels = o.Get("labels"); labels && !labels->is_null()) {
    const std::string f = o.Field("labels");
    if (!labels->is_object()) return Fail(Reason::kBadType, f, "expected object");
    if (labels->size() > l.labels)
      return Fail(Reason::kOutOfRange, f, std::to_string(labels->size()) + " entries, more than " + std::to_string(l.labels));
    for (const auto& [k, v] : labels->items()) {
      if (k.empty() || k.size() > l.label_key_bytes)
        return Fail(Reason::kOutOfRange, f, "a key is empty or longer than " + std::to_string(l.label_key_bytes) + " bytes");
      if (!v.is_string()) return Fail(Reason::kBadType, f + "." + k, "expected string");
      if (v.get_ref<const std::string&>().size() > l.label_value_bytes)
        return Fail(Reason::kOutOfRange, f + "." + k, "longer than " + std::to_string(l.label_value_bytes) + " bytes");
      s.labels.emplace(k, v.get<std::string>());
    }
  }
  if (const json* rejected = o.Get("rejected"); rejected && !rejected->is_null()) {
    const std::string f = o.Field("rejected");
    if (!rejected->is_object()) return Fail(Reason::kBadType, f, "expected object");
    if (rejected->size() > kReasonCount + 1) return Fail(Reason::kOutOfRange, f, "too many entries");
    for (const auto& [k, v] : rejected->items()) {
      if (k.size() > l.token_bytes) return Fail(Reason::kOutOfRange, f, "a key is too long");
      if (!v.is_number_unsigned()) return Fail(Reason::kBadType, f + "." + k, "expected unsigned integer");
      s.rejected.emplace(k, v.get<uint64_t>());
    }
  }
  return s;
}

Result<JobStatus> ParseJobStatus(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.job_status_bytes, l, "job_status"));
  Obj o(j, "job_status");
  JobStatus s;
  TUG_TRY(Token(o, "state", l, s.state, true));
  if (s.state.empty()) return Fail(Reason::kBadValue, o.Field("state"), "empty");
  TUG_TRY(o.U64("seq", s.seq, true));
  TUG_TRY(o.Str("boot_id", l.token_bytes, s.boot_id));
  TUG_ASSIGN_OR_RETURN(s.error, ReadError(o, l));
  return s;
}

Result<Progress> ParseProgress(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.progress_bytes, l, "progress"));
  Obj o(j, "progress");
  Progress p;
  TUG_TRY(o.Str("phase", l.token_bytes, p.phase, true));
  TUG_TRY(o.U64("bytes", p.bytes));
  TUG_TRY(o.U64("total", p.total));
  return p;
}

Result<Desired> ParseDesired(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.desired_bytes, l, "desired"));
  Obj o(j, "desired");
  Desired d;
  TUG_TRY(o.U64("v", d.v, true, 1));
  TUG_TRY(o.Str("job", kMaxJobId, d.job));
  if (d.job.empty()) d.job = "job-v" + std::to_string(d.v);
  if (!ValidJobId(d.job)) return Fail(Reason::kBadValue, o.Field("job"), "not a job id (printable ASCII, no / + #)");
  std::string action;
  TUG_TRY(o.Str("action", l.token_bytes, action));
  if (action == "rollback") {
    d.action = Desired::Action::kRollback;
  } else if (!action.empty()) {
    return Fail(Reason::kBadValue, o.Field("action"), "unknown action (rollback)");
  }
  if (d.action == Desired::Action::kInstall) {
    const json* rel = o.Get("release");
    if (!rel) return Fail(Reason::kMissingField, o.Field("release"), "missing");
    if (rel->is_string()) {
      d.release = rel->get<std::string>();
      // JSON in a string: the agent parses it next, so it gets the same depth check.
      TUG_TRY(Prescan(d.release, l.desired_bytes, l.max_depth, "desired.release"));
    } else if (rel->is_object()) {
      d.release = SafeDump(*rel);
    } else {
      return Fail(Reason::kBadType, o.Field("release"), "expected object or string");
    }
  }
  TUG_ASSIGN_OR_RETURN(auto policy, o.Child("policy", true));
  if (policy) {
    TUG_TRY(policy->Str("deadline", l.token_bytes, d.deadline));
    TUG_TRY(policy->Str("window", l.token_bytes, d.window));
  }
  return d;
}

Result<CmdRequest> ParseCmdRequest(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.cmd_request_bytes, l, "cmd"));
  Obj o(j, "cmd");
  std::string cmd;
  TUG_TRY(o.Str("cmd", l.token_bytes, cmd, true));
  for (Command c : {Command::kCancel, Command::kRollback, Command::kRestart, Command::kReport, Command::kLogs})
    if (cmd == ToString(c)) return CmdRequest{c};
  return Fail(Reason::kBadValue, o.Field("cmd"),
              "unknown command '" + cmd + "' (cancel, rollback, restart, report, logs)");
}

Result<CmdResponse> ParseCmdResponse(std::string_view payload, const Limits& l) {
  TUG_ASSIGN_OR_RETURN(json j, ParseObject(payload, l.cmd_response_bytes, l, "cmd_res"));
  Obj o(j, "cmd_res");
  CmdResponse r;
  TUG_TRY(o.Bool("ok", r.ok, true));
  TUG_TRY(o.Str("error", l.text_bytes, r.error));
  if (const json* res = o.Get("result")) r.result = *res;
  return r;
}

}  // namespace tug::fleet
