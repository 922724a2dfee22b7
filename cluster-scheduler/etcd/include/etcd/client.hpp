// etcd::Client: a blocking client for etcd's v3 API through its JSON gateway (POST /v3/kv/range, /v3/kv/put,
// /v3/kv/deleterange, /v3/kv/txn, /v3/lease/{grant,keepalive,revoke}, /v3/watch), over http::Client. Keys and
// values are raw bytes here; base64 and the gateway's 64-bit-numbers-as-strings stay inside client.cpp.
//
// Endpoints and failover: the client talks to one endpoint at a time and sticks to it while it answers. A call
// whose endpoint is unreachable (refused, reset), silent past the timeout, or answering "unavailable" (HTTP 5xx,
// gRPC UNAVAILABLE such as "no leader") moves on to the next endpoint, each endpoint being tried at most once per
// call. Any other answer (success or a definite error) ends the call.
//
// Timeouts: `timeout` bounds each network wait (connect, send, waiting for the answer) against one endpoint, so a
// call that fails over across N silent endpoints can take about N x timeout (2 x with pooled connections, see
// reuse_connections); against refused endpoints it fails in milliseconds.
//
// Errors: kUnavailable when no endpoint answered (all refused / 5xx); kTimeout when no endpoint answered and at
// least one of them was silent past the deadline; kProtocol when an answer was not the JSON we expect;
// kNotFound for etcd's NOT_FOUND (e.g. a put with an unknown lease); kInvalidArgument for etcd's INVALID_ARGUMENT,
// FAILED_PRECONDITION and OUT_OF_RANGE (compacted revision); kUnauthorized for auth failures.
//
// Writes and failover: a write whose answer was lost (kTimeout, or a failover after the request was sent) may
// have been applied. Conditional writes make this visible: PutIfAbsent that was applied by a lost first attempt
// answers false to the retry. Callers that must know tell by reading the key back (value, lease or revisions);
// LeaderElection does.
//
// Thread-safe; calls are serialised (one request in flight per Client). Give a latency-critical user (an election's
// keepalive, a long Watch) a Client of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::etcd {

struct ClientOptions {
  // Client URLs, e.g. {"http://10.0.0.1:2379", "http://10.0.0.2:2379"}. At least one.
  std::vector<std::string> endpoints;
  // Per network wait against one endpoint (see above).
  std::chrono::milliseconds timeout{std::chrono::seconds(2)};
  // Keep-alive connections are pooled. http::Client re-sends a request once on a fresh connection when a pooled
  // one fails before the answer starts, timeouts included, so a silent endpoint can cost 2 x timeout. false: a
  // new connection per call (one more connect on loopback or LAN), for callers that need the single bound.
  bool reuse_connections = true;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // revision of the put that created the key (changes if deleted and re-created)
  int64_t mod_revision = 0;     // revision of the last write to the key
  int64_t version = 0;          // writes since creation (1 after the creating put)
  int64_t lease = 0;            // lease the key is attached to, 0 for none
};

// One condition of a transaction, compared against the key's current state. A missing key has create_revision,
// mod_revision, version and lease 0 and an empty value.
struct Compare {
  enum class Target { kValue, kCreateRevision, kModRevision, kVersion, kLease };
  enum class Result { kEqual, kNotEqual, kGreater, kLess };
  std::string key;
  Target target = Target::kValue;
  Result result = Result::kEqual;
  std::string value;    // for kValue
  int64_t number = 0;   // for the other targets

  static Compare ValueEquals(std::string key, std::string value);
  static Compare CreateRevisionEquals(std::string key, int64_t rev);  // 0: the key does not exist
  static Compare ModRevisionEquals(std::string key, int64_t rev);
  static Compare LeaseEquals(std::string key, int64_t lease);
};

// One operation of a transaction.
struct Op {
  enum class Type { kPut, kDelete, kDeletePrefix, kGet };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // for kPut
  int64_t lease = 0;  // for kPut

  static Op Put(std::string key, std::string value, int64_t lease = 0);
  static Op Delete(std::string key);
  static Op DeletePrefix(std::string prefix);
  static Op Get(std::string key);
};

struct TxnResult {
  bool succeeded = false;  // every Compare held, so the success ops ran (else the failure ops)
  int64_t revision = 0;    // store revision after the transaction (the writes' revision when it wrote)
  // For each kGet op that ran, in order: the keys it found (empty when absent).
  std::vector<std::vector<KeyValue>> gets;
};

// One event of a watch.
struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete only key and mod_revision (the deletion's revision) are set
};

const char* ToString(WatchEvent::Type t);

class Client {
 public:
  // kInvalidArgument when there is no endpoint or one is not an http(s) URL.
  static Result<std::unique_ptr<Client>> Create(ClientOptions opts);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- key-value ----
  // The key, or nullopt when it does not exist.
  Result<std::optional<KeyValue>> Get(std::string_view key);
  // Every key starting with `prefix` (all keys for ""), sorted by key; at most `limit` of them when limit > 0.
  Result<std::vector<KeyValue>> Range(std::string_view prefix, int64_t limit = 0);
  // Writes the key (attached to `lease` when non-zero: it disappears when the lease ends). Returns the revision of
  // the write. kNotFound when the lease does not exist (expired or revoked).
  Result<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0);
  // Number of keys deleted (0 when none existed).
  Result<int64_t> Delete(std::string_view key);
  Result<int64_t> DeletePrefix(std::string_view prefix);

  // ---- compare-and-swap ----
  // Creates the key only if it does not exist. true: written; false: it existed (nothing written).
  Result<bool> PutIfAbsent(std::string_view key, std::string_view value, int64_t lease = 0);
  // Writes only if the key's mod_revision is `expected_mod_revision` (0: the key must not exist), i.e. nobody wrote
  // it since it was read. `lease` as for Put: a put without a lease detaches the key from the lease it had.
  Result<bool> PutIfModRevision(std::string_view key, std::string_view value, int64_t expected_mod_revision,
                                int64_t lease = 0);
  // Deletes the key only if its value is `expected_value`. false: absent or another value.
  Result<bool> DeleteIfValue(std::string_view key, std::string_view expected_value);
  // The general form: if every compare holds, runs `success`, else `failure`; atomically, in one revision.
  Result<TxnResult> Txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                        const std::vector<Op>& failure = {});

  // ---- leases ----
  // A new lease; returns its id. etcd may grant a longer TTL than asked (its minimum is 1.5 x election timeout,
  // 2 s with default settings): LeaseGrantTtl reports what was granted.
  Result<int64_t> LeaseGrant(std::chrono::seconds ttl);
  struct Lease {
    int64_t id = 0;
    int64_t ttl_seconds = 0;
  };
  Result<Lease> LeaseGrantTtl(std::chrono::seconds ttl);
  // Renews the lease for its full TTL; returns that TTL in seconds, or 0 when the lease no longer exists (expired
  // or revoked): then every key attached to it is gone.
  Result<int64_t> LeaseKeepAlive(int64_t lease);
  // Ends the lease now, deleting its keys. Revoking an unknown or already expired lease succeeds.
  Status LeaseRevoke(int64_t lease);

  // ---- watch ----
  // Watches `key` (or every key under it when `prefix`) from `start_revision` (0: from now) and calls `on_events`
  // with each batch of events (one revision's events arrive together). Blocks until `on_events` returns false
  // (-> Ok), no event arrives for `idle_timeout` (-> kTimeout: re-watch from the last revision seen + 1), or the
  // stream fails (kUnavailable; kNotFound when start_revision was compacted away). Uses its own connection, so it
  // does not hold up other calls on this Client; not failed over mid-stream.
  using WatchCallback = std::function<bool(const std::vector<WatchEvent>& events, int64_t revision)>;
  Status Watch(std::string_view key, bool prefix, int64_t start_revision, std::chrono::milliseconds idle_timeout,
               const WatchCallback& on_events);

  // The endpoint the next call tries first (the last one that answered).
  std::string CurrentEndpoint() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The first key after every key starting with `prefix` (etcd's range_end for a prefix): the prefix with its last
// byte below 0xff incremented and what follows dropped; "\0" (meaning "to the end") for "" or an all-0xff prefix.
std::string PrefixRangeEnd(std::string_view prefix);

}  // namespace tug::etcd
