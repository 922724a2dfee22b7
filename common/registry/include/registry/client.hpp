// OCI distribution client (distribution-spec 1.1) over Boost.Beast, HTTPS (OpenSSL) or plain HTTP for registries
// listed as insecure (loopback test registries).
//
// Blocking API: each call runs its own Asio operations with a deadline (ClientOptions::timeout per network wait),
// so a stalled 4G link never hangs the caller. Auth: anonymous first; on 401 with WWW-Authenticate Basic it sends the
// configured credentials, with Bearer it fetches a token from the realm (with credentials if any) and caches it per
// repository scope. Every manifest fetched by digest is verified against that digest; FetchBlob hashes nothing (the
// caller hashes what it stores), but counts bytes.
//
// Errors: kUnavailable (connect failure, 5xx, 429), kTimeout, kNotFound (404), kUnauthorized (401/403 after auth),
// kIntegrity (manifest digest mismatch), kProtocol (malformed responses).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "oci/image.hpp"
#include "registry/reference.hpp"

namespace tug::registry {

struct ClientOptions {
  std::set<std::string> insecure_registries;  // "host:port" spoken to over plain HTTP
  std::string username, password;             // optional
  std::string ca_file;                        // extra CA bundle for HTTPS; system store otherwise
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // per connect/read/write wait
  size_t upload_chunk_size = 8 << 20;         // PATCH chunk size for blob uploads
};

struct FetchedManifest {
  std::string bytes;
  std::string media_type;  // from Content-Type, or sniffed from the body
  std::string digest;      // sha256 of bytes
};

struct BlobInfo {
  std::string digest;
  int64_t size = 0;
};

// Receives blob bytes as they arrive; returning an error aborts the transfer with that error.
using BlobSink = std::function<Status(std::string_view chunk)>;

// Thread-safe: calls from several threads are serialised on the client's one connection pool, so use one Client
// per concurrent transfer when parallelism matters. Idle keep-alive connections are reused per registry.
class Client {
 public:
  explicit Client(ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // GET /v2/ (after auth if the registry asks for it).
  Status Ping(const std::string& registry);

  // GET a manifest or index by tag or digest, with an Accept header listing OCI and Docker types.
  // When `ref` is a digest the body must hash to it (kIntegrity otherwise).
  Result<FetchedManifest> GetManifest(const Reference& repo, const std::string& ref);

  // HEAD a blob; nullopt when it does not exist.
  Result<std::optional<BlobInfo>> HeadBlob(const Reference& repo, const std::string& digest);

  // GET a blob from `offset` (Range: bytes=offset-). If the registry ignores Range (200), the first `offset`
  // bytes are skipped locally so the sink still sees only new bytes. Redirects (to a CDN or object store) are
  // followed; credentials are never sent to another origin. A 416 for offset > 0 (nothing left after `offset`)
  // succeeds with no bytes: the caller's digest check decides whether the blob is complete.
  Status FetchBlob(const Reference& repo, const std::string& digest, uint64_t offset, const BlobSink& sink);

  // Uploads a blob unless the registry has it. With `mount_from` (another repository on the same registry)
  // it first tries a cross-repository mount. Monolithic for small blobs, chunked PATCH for large ones.
  Status PushBlob(const Reference& repo, const std::string& digest, std::string_view data,
                  const std::string& mount_from = "");
  Status PushBlobFile(const Reference& repo, const std::string& digest, const std::string& path,
                      const std::string& mount_from = "");

  // PUT a manifest/index under a tag or its digest; returns the digest the registry reports.
  Result<std::string> PushManifest(const Reference& repo, const std::string& ref, std::string_view bytes,
                                   std::string_view media_type);

  Result<std::vector<std::string>> ListTags(const Reference& repo);

  // Referrers of `digest` through the tag fallback (distribution-spec 1.1): the index tagged "sha256-<hex>".
  // An empty index when there is none.
  Result<oci::Index> Referrers(const Reference& repo, const std::string& digest);
  // Adds `referrer` to the fallback index of `subject_digest` (read-modify-write of the tag).
  Status AddReferrer(const Reference& repo, const std::string& subject_digest, const oci::Descriptor& referrer);

  // Body bytes received from registries by this client (blobs and manifests), for tests and benchmarks.
  uint64_t bytes_received() const { return bytes_received_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> bytes_received_{0};
};

}  // namespace tug::registry
