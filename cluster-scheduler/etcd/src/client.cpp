#include "etcd/client.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <utility>

#include "crypto/encoding.hpp"
#include "http/client.hpp"

namespace tug::etcd {

using nlohmann::json;

namespace {

// The gateway's JSON breaks our expectations; caught at the API boundary and turned into kProtocol.
struct BadAnswer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string B64(std::string_view bytes) { return crypto::Base64Encode(bytes); }

std::string Unb64(const json& j) {
  if (!j.is_string()) throw BadAnswer("expected a base64 string, got " + j.dump());
  auto r = crypto::Base64Decode(j.get<std::string>());
  if (!r) throw BadAnswer("bad base64: " + j.get<std::string>());
  return std::move(*r);
}

// proto3 JSON: int64 comes as a string, zero values are left out entirely.
int64_t Int(const json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || s.empty()) throw BadAnswer(std::string("field ") + field + " is not an integer: " + s);
    return v;
  }
  throw BadAnswer(std::string("field ") + field + " is not an integer: " + it->dump());
}

bool Bool(const json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw BadAnswer(std::string("field ") + field + " is not a boolean");
  return it->get<bool>();
}

const json& Object(const json& obj, const char* field) {
  static const json kEmpty = json::object();
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return kEmpty;
  if (!it->is_object()) throw BadAnswer(std::string("field ") + field + " is not an object");
  return *it;
}

const json& Array(const json& obj, const char* field) {
  static const json kEmpty = json::array();
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return kEmpty;
  if (!it->is_array()) throw BadAnswer(std::string("field ") + field + " is not an array");
  return *it;
}

KeyValue ParseKv(const json& j) {
  if (!j.is_object()) throw BadAnswer("kv is not an object");
  KeyValue kv;
  kv.key = Unb64(j.value("key", json("")));
  kv.value = j.contains("value") ? Unb64(j.at("value")) : std::string();
  kv.create_revision = Int(j, "create_revision");
  kv.mod_revision = Int(j, "mod_revision");
  kv.version = Int(j, "version");
  kv.lease = Int(j, "lease");
  return kv;
}

std::vector<KeyValue> ParseKvs(const json& range_response) {
  std::vector<KeyValue> out;
  for (const json& k : Array(range_response, "kvs")) out.push_back(ParseKv(k));
  return out;
}

int64_t HeaderRevision(const json& response) { return Int(Object(response, "header"), "revision"); }

json RangeRequest(std::string_view key, bool prefix, int64_t limit) {
  json r = json::object();
  if (prefix) {
    // An empty key is invalid; "\0" .. "\0" is etcd's "every key".
    r["key"] = B64(key.empty() ? std::string_view("\0", 1) : key);
    r["range_end"] = B64(PrefixRangeEnd(key));
    // Key order is what the index yields anyway; asked for explicitly so "sorted by key" is etcd's promise.
    r["sort_order"] = "ASCEND";
    r["sort_target"] = "KEY";
  } else {
    r["key"] = B64(key);
  }
  if (limit > 0) r["limit"] = std::to_string(limit);
  return r;
}

json DeleteRequest(std::string_view key, bool prefix) {
  json r = json::object();
  if (prefix) {
    r["key"] = B64(key.empty() ? std::string_view("\0", 1) : key);
    r["range_end"] = B64(PrefixRangeEnd(key));
  } else {
    r["key"] = B64(key);
  }
  return r;
}

json PutRequest(std::string_view key, std::string_view value, int64_t lease) {
  json r = {{"key", B64(key)}, {"value", B64(value)}};
  if (lease != 0) r["lease"] = std::to_string(lease);
  return r;
}

json CompareJson(const Compare& c) {
  json j = {{"key", B64(c.key)}};
  switch (c.result) {
    case Compare::Result::kEqual: j["result"] = "EQUAL"; break;
    case Compare::Result::kNotEqual: j["result"] = "NOT_EQUAL"; break;
    case Compare::Result::kGreater: j["result"] = "GREATER"; break;
    case Compare::Result::kLess: j["result"] = "LESS"; break;
  }
  switch (c.target) {
    case Compare::Target::kValue:
      j["target"] = "VALUE";
      j["value"] = B64(c.value);
      break;
    case Compare::Target::kCreateRevision:
      j["target"] = "CREATE";
      j["create_revision"] = std::to_string(c.number);
      break;
    case Compare::Target::kModRevision:
      j["target"] = "MOD";
      j["mod_revision"] = std::to_string(c.number);
      break;
    case Compare::Target::kVersion:
      j["target"] = "VERSION";
      j["version"] = std::to_string(c.number);
      break;
    case Compare::Target::kLease:
      j["target"] = "LEASE";
      j["lease"] = std::to_string(c.number);
      break;
  }
  return j;
}

json OpJson(const Op& op) {
  switch (op.type) {
    case Op::Type::kPut: return {{"request_put", PutRequest(op.key, op.value, op.lease)}};
    case Op::Type::kDelete: return {{"request_delete_range", DeleteRequest(op.key, false)}};
    case Op::Type::kDeletePrefix: return {{"request_delete_range", DeleteRequest(op.key, true)}};
    case Op::Type::kGet: return {{"request_range", RangeRequest(op.key, false, 0)}};
  }
  return json::object();
}

// gRPC status codes as the gateway reports them in {"code": N, "message": ...}.
enum GrpcCode : int64_t {
  kGrpcInvalidArgument = 3,
  kGrpcDeadlineExceeded = 4,
  kGrpcNotFound = 5,
  kGrpcPermissionDenied = 7,
  kGrpcResourceExhausted = 8,
  kGrpcFailedPrecondition = 9,
  kGrpcOutOfRange = 11,
  kGrpcUnavailable = 14,
  kGrpcUnauthenticated = 16,
};

// What an error answer means for the call.
struct Verdict {
  enum Kind { kTryNext, kTimedOut, kFinal } kind = kFinal;
  Error error;
};

Verdict ErrorAnswer(int status, const std::string& body) {
  int64_t code = -1;
  std::string message = body;
  try {
    json j = json::parse(body);
    // Unary errors are {"error","message","code"}; stream errors wrap the same in {"error": {...}}.
    const json& e = j.contains("code") ? j : Object(j, "error");
    code = e.contains("grpc_code") ? Int(e, "grpc_code") : Int(e, "code");
    message = e.value("message", body);
  } catch (const std::exception&) {
    // Not JSON (a proxy's error page): the HTTP status decides.
  }
  std::string what = "etcd answered " + std::to_string(status) + ": " + message;
  switch (code) {
    case kGrpcUnavailable:
    case kGrpcResourceExhausted:
      return {Verdict::kTryNext, MakeError(Errc::kUnavailable, what).value()};
    case kGrpcDeadlineExceeded:
      return {Verdict::kTimedOut, MakeError(Errc::kTimeout, what).value()};
    case kGrpcNotFound: return {Verdict::kFinal, MakeError(Errc::kNotFound, what).value()};
    case kGrpcInvalidArgument:
    case kGrpcFailedPrecondition:
    case kGrpcOutOfRange:
      return {Verdict::kFinal, MakeError(Errc::kInvalidArgument, what).value()};
    case kGrpcPermissionDenied:
    case kGrpcUnauthenticated:
      return {Verdict::kFinal, MakeError(Errc::kUnauthorized, what).value()};
    default: break;
  }
  if (status >= 500 || status == 429) return {Verdict::kTryNext, MakeError(Errc::kUnavailable, what).value()};
  if (status == 404) return {Verdict::kFinal, MakeError(Errc::kNotFound, what).value()};
  return {Verdict::kFinal, MakeError(Errc::kProtocol, what).value()};
}

// The first JSON object of a streamed answer ("{...}\n{...}\n"), unwrapped from {"result": ...}.
json FirstStreamMessage(const std::string& body) {
  size_t end = body.find('\n');
  json j = json::parse(body.substr(0, end));
  if (j.contains("error")) {
    Verdict v = ErrorAnswer(200, j.dump());
    throw BadAnswer(v.error.context);
  }
  return Object(j, "result");
}

}  // namespace

// ---- builders ----

Compare Compare::ValueEquals(std::string key, std::string value) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kValue;
  c.value = std::move(value);
  return c;
}

Compare Compare::CreateRevisionEquals(std::string key, int64_t rev) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kCreateRevision;
  c.number = rev;
  return c;
}

Compare Compare::ModRevisionEquals(std::string key, int64_t rev) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kModRevision;
  c.number = rev;
  return c;
}

Compare Compare::LeaseEquals(std::string key, int64_t lease) {
  Compare c;
  c.key = std::move(key);
  c.target = Target::kLease;
  c.number = lease;
  return c;
}

Op Op::Put(std::string key, std::string value, int64_t lease) {
  Op o;
  o.type = Type::kPut;
  o.key = std::move(key);
  o.value = std::move(value);
  o.lease = lease;
  return o;
}

Op Op::Delete(std::string key) {
  Op o;
  o.type = Type::kDelete;
  o.key = std::move(key);
  return o;
}

Op Op::DeletePrefix(std::string prefix) {
  Op o;
  o.type = Type::kDeletePrefix;
  o.key = std::move(prefix);
  return o;
}

Op Op::Get(std::string key) {
  Op o;
  o.type = Type::kGet;
  o.key = std::move(key);
  return o;
}

const char* ToString(WatchEvent::Type t) {
  switch (t) {
    case WatchEvent::Type::kPut: return "PUT";
    case WatchEvent::Type::kDelete: return "DELETE";
  }
  return "?";
}

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string("\0", 1);
}

// ---- transport ----

struct Client::Impl {
  explicit Impl(ClientOptions o) : opts(std::move(o)), http(HttpOptions(opts.timeout)) {}

  static http::ClientOptions HttpOptions(std::chrono::milliseconds timeout) {
    http::ClientOptions h;
    h.timeout = timeout;
    h.max_collected_body = 64 << 20;
    return h;
  }

  ClientOptions opts;
  http::Client http;
  std::atomic<size_t> current{0};

  // POSTs `body` to `path` on the current endpoint, failing over as the header describes; the answer's JSON on 2xx.
  Result<std::string> Post(const std::string& path, const json& body) {
    const std::string payload = body.dump();
    const size_t n = opts.endpoints.size();
    const size_t start = current.load();
    bool timed_out = false;
    std::string tried;
    for (size_t i = 0; i < n; ++i) {
      const size_t idx = (start + i) % n;
      const std::string& ep = opts.endpoints[idx];
      std::optional<http::Client> fresh;
      if (!opts.reuse_connections) fresh.emplace(HttpOptions(opts.timeout));
      auto r = (fresh ? *fresh : http).Call("POST", ep + path, payload, {{"Content-Type", "application/json"}});
      Error err;
      if (!r) {
        if (!r.error().Is(Errc::kUnavailable) && !r.error().Is(Errc::kTimeout)) return tl::unexpected(r.error());
        timed_out = timed_out || r.error().Is(Errc::kTimeout);
        err = r.error();
      } else if (r->status >= 200 && r->status < 300) {
        if (idx != start) {
          spdlog::info("etcd: failed over to {}", ep);
          current.store(idx);
        }
        return std::move(r->body);
      } else {
        Verdict v = ErrorAnswer(r->status, r->body);
        if (v.kind == Verdict::kFinal) {
          current.store(idx);
          return tl::unexpected(Wrap(v.error, "etcd " + path + " at " + ep));
        }
        timed_out = timed_out || v.kind == Verdict::kTimedOut;
        err = v.error;
      }
      if (!tried.empty()) tried += "; ";
      tried += err.Message();
    }
    // Next call starts with the endpoint after the one that failed first, so a dead endpoint is not always first.
    current.store((start + 1) % n);
    return MakeError(timed_out ? Errc::kTimeout : Errc::kUnavailable,
                     "etcd " + path + ": no endpoint answered (" + tried + ")");
  }

  // Post + parse, with JSON/shape trouble as kProtocol.
  template <typename T, typename Parse>
  Result<T> Call(const std::string& path, const json& body, Parse parse) {
    TUG_ASSIGN_OR_RETURN(std::string text, Post(path, body));
    try {
      return parse(text);
    } catch (const std::exception& e) {
      return MakeError(Errc::kProtocol, "etcd " + path + ": unexpected answer: " + e.what());
    }
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions opts) {
  if (opts.endpoints.empty()) return MakeError(Errc::kInvalidArgument, "etcd client: no endpoints");
  for (auto& ep : opts.endpoints) {
    while (!ep.empty() && ep.back() == '/') ep.pop_back();
    auto u = http::Url::Parse(ep);
    if (!u) return MakeError(Errc::kInvalidArgument, "etcd endpoint " + ep + ": " + u.error().Message());
    if (u->target != "/") return MakeError(Errc::kInvalidArgument, "etcd endpoint " + ep + " has a path");
  }
  if (opts.timeout <= std::chrono::milliseconds(0))
    return MakeError(Errc::kInvalidArgument, "etcd client: timeout must be positive");
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(opts))));
}

std::string Client::CurrentEndpoint() const { return impl_->opts.endpoints[impl_->current.load()]; }

Result<std::optional<KeyValue>> Client::Get(std::string_view key) {
  return impl_->Call<std::optional<KeyValue>>("/v3/kv/range", RangeRequest(key, false, 0),
                                              [](const std::string& text) -> std::optional<KeyValue> {
                                                auto kvs = ParseKvs(json::parse(text));
                                                if (kvs.empty()) return std::nullopt;
                                                return std::move(kvs.front());
                                              });
}

Result<std::vector<KeyValue>> Client::Range(std::string_view prefix, int64_t limit) {
  return impl_->Call<std::vector<KeyValue>>("/v3/kv/range", RangeRequest(prefix, true, limit),
                                            [](const std::string& text) { return ParseKvs(json::parse(text)); });
}

Result<int64_t> Client::Put(std::string_view key, std::string_view value, int64_t lease) {
  return impl_->Call<int64_t>("/v3/kv/put", PutRequest(key, value, lease),
                              [](const std::string& text) { return HeaderRevision(json::parse(text)); });
}

Result<int64_t> Client::Delete(std::string_view key) {
  return impl_->Call<int64_t>("/v3/kv/deleterange", DeleteRequest(key, false),
                              [](const std::string& text) { return Int(json::parse(text), "deleted"); });
}

Result<int64_t> Client::DeletePrefix(std::string_view prefix) {
  return impl_->Call<int64_t>("/v3/kv/deleterange", DeleteRequest(prefix, true),
                              [](const std::string& text) { return Int(json::parse(text), "deleted"); });
}

Result<TxnResult> Client::Txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                              const std::vector<Op>& failure) {
  json req = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : compares) req["compare"].push_back(CompareJson(c));
  for (const auto& o : success) req["success"].push_back(OpJson(o));
  for (const auto& o : failure) req["failure"].push_back(OpJson(o));
  return impl_->Call<TxnResult>("/v3/kv/txn", req, [](const std::string& text) {
    json j = json::parse(text);
    TxnResult r;
    r.succeeded = Bool(j, "succeeded");
    r.revision = HeaderRevision(j);
    for (const json& resp : Array(j, "responses")) {
      if (resp.contains("response_range")) r.gets.push_back(ParseKvs(resp.at("response_range")));
    }
    return r;
  });
}

Result<bool> Client::PutIfAbsent(std::string_view key, std::string_view value, int64_t lease) {
  TUG_ASSIGN_OR_RETURN(TxnResult r, Txn({Compare::CreateRevisionEquals(std::string(key), 0)},
                                        {Op::Put(std::string(key), std::string(value), lease)}));
  return r.succeeded;
}

Result<bool> Client::PutIfModRevision(std::string_view key, std::string_view value, int64_t expected_mod_revision,
                                      int64_t lease) {
  TUG_ASSIGN_OR_RETURN(TxnResult r, Txn({Compare::ModRevisionEquals(std::string(key), expected_mod_revision)},
                                        {Op::Put(std::string(key), std::string(value), lease)}));
  return r.succeeded;
}

Result<bool> Client::DeleteIfValue(std::string_view key, std::string_view expected_value) {
  // A missing key compares as an empty value: also require that it exists.
  Compare exists = Compare::CreateRevisionEquals(std::string(key), 0);
  exists.result = Compare::Result::kGreater;
  TUG_ASSIGN_OR_RETURN(TxnResult r, Txn({exists, Compare::ValueEquals(std::string(key), std::string(expected_value))},
                                        {Op::Delete(std::string(key))}));
  return r.succeeded;
}

Result<Client::Lease> Client::LeaseGrantTtl(std::chrono::seconds ttl) {
  if (ttl.count() <= 0) return MakeError(Errc::kInvalidArgument, "etcd lease TTL must be positive");
  json req = {{"TTL", std::to_string(ttl.count())}};
  return impl_->Call<Lease>("/v3/lease/grant", req, [](const std::string& text) {
    json j = json::parse(text);
    if (auto e = j.value("error", std::string()); !e.empty()) throw BadAnswer("lease grant failed: " + e);
    Lease l{Int(j, "ID"), Int(j, "TTL")};
    if (l.id == 0 || l.ttl_seconds <= 0) throw BadAnswer("lease grant without ID or TTL");
    return l;
  });
}

Result<int64_t> Client::LeaseGrant(std::chrono::seconds ttl) {
  TUG_ASSIGN_OR_RETURN(Lease l, LeaseGrantTtl(ttl));
  return l.id;
}

Result<int64_t> Client::LeaseKeepAlive(int64_t lease) {
  // A bidirectional stream in gRPC; through the gateway, one request body gives one answer and the end of it.
  json req = {{"ID", std::to_string(lease)}};
  return impl_->Call<int64_t>("/v3/lease/keepalive", req, [](const std::string& text) {
    json r = FirstStreamMessage(text);
    // An unknown or expired lease is answered with its ID and no TTL (zero, left out).
    int64_t ttl = Int(r, "TTL");
    return ttl > 0 ? ttl : 0;
  });
}

Status Client::LeaseRevoke(int64_t lease) {
  json req = {{"ID", std::to_string(lease)}};
  auto r = impl_->Call<int64_t>("/v3/lease/revoke", req, [](const std::string& text) {
    return HeaderRevision(json::parse(text));
  });
  if (!r && !r.error().Is(Errc::kNotFound)) return tl::unexpected(r.error());
  return {};
}

// ---- watch ----

Status Client::Watch(std::string_view key, bool prefix, int64_t start_revision, std::chrono::milliseconds idle_timeout,
                     const WatchCallback& on_events) {
  json create = RangeRequest(key, prefix, 0);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  const std::string payload = json{{"create_request", create}}.dump();

  // A private connection whose every wait is bounded by the idle timeout: the stream's silence ends the call.
  http::Client stream(Impl::HttpOptions(idle_timeout));
  std::string pending;
  bool stopped_by_caller = false;
  bool got_bytes = false;
  std::optional<Error> stream_error;

  http::BodySink sink = [&](const http::ClientResponse&, std::string_view chunk) -> Status {
    got_bytes = true;
    pending.append(chunk);
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      try {
        json j = json::parse(line);
        if (j.contains("error")) {
          stream_error = ErrorAnswer(200, j.dump()).error;
          return tl::unexpected(*stream_error);
        }
        const json& r = Object(j, "result");
        if (Bool(r, "canceled")) {
          int64_t compacted = Int(r, "compact_revision");
          stream_error = MakeError(compacted > 0 ? Errc::kNotFound : Errc::kUnavailable,
                                    compacted > 0 ? "etcd watch: revision compacted (oldest kept " +
                                                        std::to_string(compacted) + ")"
                                                  : "etcd watch canceled: " + r.value("cancel_reason", ""))
                              .value();
          return tl::unexpected(*stream_error);
        }
        const json& events = Array(r, "events");
        if (events.empty()) continue;  // "created" or a progress notification
        std::vector<WatchEvent> batch;
        for (const json& e : events) {
          WatchEvent ev;
          ev.type = e.value("type", std::string("PUT")) == "DELETE" ? WatchEvent::Type::kDelete : WatchEvent::Type::kPut;
          ev.kv = ParseKv(Object(e, "kv"));
          batch.push_back(std::move(ev));
        }
        if (!on_events(batch, HeaderRevision(r))) {
          stopped_by_caller = true;
          return MakeError(Errc::kCancelled, "watch stopped by the caller");
        }
      } catch (const std::exception& e) {
        stream_error = MakeError(Errc::kProtocol, std::string("etcd watch: unexpected message: ") + e.what()).value();
        return tl::unexpected(*stream_error);
      }
    }
    return {};
  };

  const size_t n = impl_->opts.endpoints.size();
  const size_t start = impl_->current.load();
  Error last = MakeError(Errc::kUnavailable, "etcd watch: no endpoint").value();
  for (size_t i = 0; i < n; ++i) {
    const std::string& ep = impl_->opts.endpoints[(start + i) % n];
    got_bytes = false;
    auto r = stream.Call("POST", ep + "/v3/watch", payload, {{"Content-Type", "application/json"}}, &sink);
    if (stopped_by_caller) return {};
    if (stream_error) return tl::unexpected(*stream_error);
    if (!r) {
      last = Wrap(r.error(), "etcd watch at " + ep);
      // Only a failure to get the stream going moves on; a stream that ran and then went quiet is the caller's.
      if (got_bytes || !(r.error().Is(Errc::kUnavailable))) return tl::unexpected(last);
      continue;
    }
    if (r->status < 200 || r->status >= 300) {
      Verdict v = ErrorAnswer(r->status, r->body);
      last = Wrap(v.error, "etcd watch at " + ep);
      if (v.kind == Verdict::kFinal) return tl::unexpected(last);
      continue;
    }
    return MakeError(Errc::kUnavailable, "etcd watch at " + ep + ": stream ended");
  }
  return tl::unexpected(last);
}

}  // namespace tug::etcd
