// The distribution protocol on top of the private HTTP transport (http.hpp): auth, redirects, uploads, tags.
#include "registry/client.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "challenge.hpp"
#include "crypto/sha256.hpp"
#include "http.hpp"

namespace tug::registry {

using internal::HttpRequest;
using internal::HttpResponse;
using internal::Url;

namespace {

constexpr size_t kMaxManifestBytes = 4 << 20;  // distribution-spec: registries may refuse larger manifests
constexpr int kMaxRedirects = 5;

std::string PullScope(const Reference& repo) { return "repository:" + repo.repository + ":pull"; }
std::string PushScope(const Reference& repo) { return "repository:" + repo.repository + ":pull,push"; }

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string StripParams(const std::string& content_type) {
  std::string mt = content_type.substr(0, content_type.find(';'));
  while (!mt.empty() && mt.back() == ' ') mt.pop_back();
  return mt;
}

// "HTTP 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)": the registry's own error code helps more than the
// status alone.
std::string DescribeStatus(const HttpResponse& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  if (!r.reason.empty()) s += " " + r.reason;
  try {
    auto j = nlohmann::json::parse(r.body);
    const auto& errs = j.at("errors");
    if (errs.is_array() && !errs.empty()) {
      s += " (" + errs[0].value("code", std::string()) + ": " + errs[0].value("message", std::string()) + ")";
    }
  } catch (const std::exception&) {
    // Not a registry error document; the status says enough.
  }
  return s;
}

tl::unexpected<Error> StatusError(const std::string& what, const HttpResponse& r) {
  Errc code = Errc::kProtocol;
  if (r.status == 404) code = Errc::kNotFound;
  else if (r.status == 401 || r.status == 403) code = Errc::kUnauthorized;
  else if (r.status == 429 || r.status >= 500) code = Errc::kUnavailable;
  else if (r.status == 416) code = Errc::kInvalidArgument;
  return MakeError(code, what + ": " + DescribeStatus(r));
}

std::string AppendQuery(const std::string& target, const std::string& kv) {
  return target + (target.find('?') == std::string::npos ? "?" : "&") + kv;
}

// Reads [offset, offset+len) of the blob being uploaded; `scratch` backs the returned view if needed.
using ChunkReader = std::function<Result<std::string_view>(uint64_t offset, size_t len, std::string& scratch)>;

}  // namespace

struct Client::Impl {
  Impl(ClientOptions o, std::atomic<uint64_t>* counter)
      : opts(std::move(o)),
        http(internal::TransportOptions{opts.timeout, opts.ca_file, 16 << 20}),
        received(counter) {}

  ClientOptions opts;
  internal::HttpTransport http;
  std::atomic<uint64_t>* received;
  std::mutex mu;                                // guards the auth caches below
  std::map<std::string, std::string> tokens;    // "registry scope" -> Authorization value
  std::set<std::string> basic_registries;       // registries that asked for Basic auth

  Result<Url> RegistryUrl(const std::string& registry, const std::string& target) {
    bool insecure = opts.insecure_registries.count(registry) > 0;
    return Url::Parse(std::string(insecure ? "http://" : "https://") + registry + target);
  }

  std::string CachedAuthorization(const std::string& registry, const std::string& scope) {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = tokens.find(registry + " " + scope); it != tokens.end()) return it->second;
    if (basic_registries.count(registry) && !opts.username.empty())
      return "Basic " + internal::BasicCredentials(opts.username, opts.password);
    return "";
  }

  Status FetchToken(const std::string& registry, const std::string& scope, const internal::Challenge& ch) {
    auto realm_it = ch.params.find("realm");
    if (realm_it == ch.params.end()) return MakeError(Errc::kProtocol, "Bearer challenge without realm");
    TUG_ASSIGN_OR_RETURN(Url url, Url::Parse(realm_it->second));
    if (auto it = ch.params.find("service"); it != ch.params.end())
      url.target = AppendQuery(url.target, "service=" + internal::QueryEscape(it->second));
    // Our scope is what this call needs; the challenge's is a hint for requests we did not classify.
    std::string scopes = scope;
    if (scopes.empty())
      if (auto it = ch.params.find("scope"); it != ch.params.end()) scopes = it->second;
    for (size_t start = 0; start < scopes.size();) {
      size_t end = scopes.find(' ', start);
      if (end == std::string::npos) end = scopes.size();
      if (end > start) url.target = AppendQuery(url.target, "scope=" + internal::QueryEscape(scopes.substr(start, end - start)));
      start = end + 1;
    }
    HttpRequest req;
    req.url = url;
    if (!opts.username.empty())
      req.headers.emplace_back("Authorization", "Basic " + internal::BasicCredentials(opts.username, opts.password));
    const std::string what = "fetching token from " + url.ToString();
    TUG_ASSIGN_OR_RETURN(HttpResponse resp, http.Send(req));
    if (resp.status != 200) return StatusError(what, resp);
    std::string token;
    try {
      auto j = nlohmann::json::parse(resp.body);
      token = j.value("token", std::string());
      if (token.empty()) token = j.value("access_token", std::string());
    } catch (const std::exception& e) {
      return MakeError(Errc::kProtocol, what + ": bad token response: " + e.what());
    }
    if (token.empty()) return MakeError(Errc::kProtocol, what + ": response has no token");
    std::lock_guard<std::mutex> lock(mu);
    tokens[registry + " " + scope] = "Bearer " + token;
    return {};
  }

  Status Authenticate(const std::string& registry, const std::string& scope, const HttpResponse& resp,
                      const std::string& what) {
    auto challenges = internal::ParseWwwAuthenticate(resp.Header("WWW-Authenticate"));
    for (const auto& ch : challenges) {
      if (ch.scheme == "bearer") return FetchToken(registry, scope, ch);
    }
    for (const auto& ch : challenges) {
      if (ch.scheme != "basic") continue;
      if (opts.username.empty())
        return MakeError(Errc::kUnauthorized, what + ": registry requires credentials (Basic) and none are configured");
      std::lock_guard<std::mutex> lock(mu);
      basic_registries.insert(registry);
      return {};
    }
    return MakeError(Errc::kUnauthorized, what + ": " + DescribeStatus(resp) + " without a usable WWW-Authenticate");
  }

  // One logical request to `registry`: adds cached auth, answers one 401 by authenticating and retrying, and
  // follows redirects when asked. Credentials only ever go to the registry's own origin. Non-2xx responses are
  // returned for the caller to interpret.
  Result<HttpResponse> Do(const std::string& registry, const std::string& scope, HttpRequest req,
                          const internal::BodySink* sink = nullptr, bool follow_redirects = false) {
    const std::string origin = req.url.Origin();
    bool authenticated = false;
    int redirects = 0;
    for (;;) {
      HttpRequest r = req;
      bool own = r.url.Origin() == origin;
      if (own) {
        std::string authz = CachedAuthorization(registry, scope);
        if (!authz.empty()) r.headers.emplace_back("Authorization", authz);
      }
      TUG_ASSIGN_OR_RETURN(HttpResponse resp, http.Send(r, sink, received));
      const std::string what = r.method + " " + r.url.ToString();
      if (resp.status == 401 && own && !authenticated) {
        authenticated = true;
        TUG_TRY(Authenticate(registry, scope, resp, what));
        continue;
      }
      if (follow_redirects && IsRedirect(resp.status)) {
        if (++redirects > kMaxRedirects) return MakeError(Errc::kProtocol, what + ": too many redirects");
        std::string loc = resp.Header("Location");
        if (loc.empty()) return MakeError(Errc::kProtocol, what + ": redirect without Location");
        TUG_ASSIGN_OR_RETURN(req.url, r.url.Resolve(loc));
        if (resp.status == 303) req.method = "GET";
        continue;
      }
      return resp;
    }
  }

  Status PushBlobImpl(const Reference& repo, const std::string& digest, uint64_t size, const ChunkReader& read,
                      const std::string& mount_from);
};

Client::Client(ClientOptions opts) : impl_(std::make_unique<Impl>(std::move(opts), &bytes_received_)) {}
Client::~Client() = default;

Status Client::Ping(const std::string& registry) {
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(registry, "/v2/"));
  HttpRequest req;
  req.url = url;
  TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(registry, "", req));
  if (resp.status != 200) return StatusError("GET " + url.ToString(), resp);
  return {};
}

Result<FetchedManifest> Client::GetManifest(const Reference& repo, const std::string& ref) {
  bool by_digest = ref.rfind("sha256:", 0) == 0;
  if (by_digest && !IsValidDigest(ref)) return MakeError(Errc::kInvalidArgument, "malformed digest " + ref);
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(repo.registry, "/v2/" + repo.repository + "/manifests/" + ref));
  HttpRequest req;
  req.url = url;
  req.headers.emplace_back("Accept", std::string(oci::media::kOciIndex) + ", " + std::string(oci::media::kOciManifest) +
                                         ", " + std::string(oci::media::kDockerManifestList) + ", " +
                                         std::string(oci::media::kDockerManifest));
  const std::string what = "GET " + url.ToString();
  TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(repo.registry, PullScope(repo), req));
  if (resp.status != 200) return StatusError(what, resp);
  if (resp.body.size() > kMaxManifestBytes)
    return MakeError(Errc::kProtocol, what + ": manifest larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  FetchedManifest m;
  m.digest = crypto::Sha256Digest(resp.body);
  if (by_digest && m.digest != ref)
    return MakeError(Errc::kIntegrity, what + ": manifest content hashes to " + m.digest + ", not the requested digest");
  m.media_type = StripParams(resp.Header("Content-Type"));
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "text/plain") {
    std::string sniffed = oci::SniffMediaType(resp.body);
    if (!sniffed.empty()) m.media_type = sniffed;
  }
  m.bytes = std::move(resp.body);
  return m;
}

Result<std::optional<BlobInfo>> Client::HeadBlob(const Reference& repo, const std::string& digest) {
  if (!IsValidDigest(digest)) return MakeError(Errc::kInvalidArgument, "malformed digest " + digest);
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(repo.registry, "/v2/" + repo.repository + "/blobs/" + digest));
  HttpRequest req;
  req.method = "HEAD";
  req.url = url;
  TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(repo.registry, PullScope(repo), req, nullptr, true));
  if (resp.status == 404) return std::optional<BlobInfo>();
  if (resp.status != 200) return StatusError("HEAD " + url.ToString(), resp);
  BlobInfo info;
  info.digest = digest;
  try {
    info.size = std::stoll(resp.Header("Content-Length"));
  } catch (const std::exception&) {
    return MakeError(Errc::kProtocol, "HEAD " + url.ToString() + ": no usable Content-Length");
  }
  return std::optional<BlobInfo>(info);
}

Status Client::FetchBlob(const Reference& repo, const std::string& digest, uint64_t offset, const BlobSink& sink) {
  if (!IsValidDigest(digest)) return MakeError(Errc::kInvalidArgument, "malformed digest " + digest);
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(repo.registry, "/v2/" + repo.repository + "/blobs/" + digest));
  const std::string what = "GET " + url.ToString();
  HttpRequest req;
  req.url = url;
  if (offset > 0) req.headers.emplace_back("Range", "bytes=" + std::to_string(offset) + "-");
  uint64_t skip = 0;
  bool first = true;
  internal::BodySink wrapped = [&](const HttpResponse& head, std::string_view chunk) -> Status {
    if (first) {
      first = false;
      if (head.status == 200) {
        skip = offset;  // the server ignored Range: drop what the caller already has
      } else if (head.status == 206) {
        std::string cr = head.Header("Content-Range");  // "bytes START-END/TOTAL"
        size_t sp = cr.find(' ');
        if (sp != std::string::npos && cr.substr(sp + 1, cr.find('-') - sp - 1) != std::to_string(offset))
          return MakeError(Errc::kProtocol, what + ": Content-Range " + cr + " does not start at " + std::to_string(offset));
      } else {
        return MakeError(Errc::kProtocol, what + ": unexpected status " + std::to_string(head.status));
      }
    }
    if (skip > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(skip, chunk.size()));
      chunk.remove_prefix(k);
      skip -= k;
    }
    if (chunk.empty()) return {};
    return sink(chunk);
  };
  TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(repo.registry, PullScope(repo), req, &wrapped, true));
  // 416: nothing at or after `offset` (a download that already completed); the caller's digest check decides.
  if (resp.status == 416 && offset > 0) return {};
  if (resp.status != 200 && resp.status != 206) return StatusError(what, resp);
  if (resp.status == 200 && offset > 0 && (first || skip > 0))
    return MakeError(Errc::kInvalidArgument, what + ": offset " + std::to_string(offset) + " is beyond the blob's end");
  return {};
}

Status Client::Impl::PushBlobImpl(const Reference& repo, const std::string& digest, uint64_t size,
                                  const ChunkReader& read, const std::string& mount_from) {
  const std::string registry = repo.registry;
  std::string scope = PushScope(repo);
  TUG_ASSIGN_OR_RETURN(Url base, RegistryUrl(registry, "/v2/" + repo.repository + "/blobs/uploads/"));
  HttpRequest post;
  post.method = "POST";
  post.url = base;
  if (!mount_from.empty()) {
    scope += " repository:" + mount_from + ":pull";
    post.url.target = AppendQuery(post.url.target, "mount=" + internal::QueryEscape(digest) +
                                                       "&from=" + internal::QueryEscape(mount_from));
  }
  std::string what = "POST " + post.url.ToString();
  TUG_ASSIGN_OR_RETURN(HttpResponse started, Do(registry, scope, post));
  if (started.status == 201) return {};  // mounted
  if (started.status != 202) return StatusError(what, started);

  auto next_location = [&](const HttpResponse& r, const Url& from) -> Result<Url> {
    std::string loc = r.Header("Location");
    if (loc.empty()) return MakeError(Errc::kProtocol, what + ": upload response without Location");
    return from.Resolve(loc);
  };
  TUG_ASSIGN_OR_RETURN(Url upload, next_location(started, base));
  std::string scratch;

  if (size <= opts.upload_chunk_size) {
    TUG_ASSIGN_OR_RETURN(std::string_view data, read(0, static_cast<size_t>(size), scratch));
    HttpRequest put;
    put.method = "PUT";
    put.url = upload;
    put.url.target = AppendQuery(put.url.target, "digest=" + internal::QueryEscape(digest));
    put.headers.emplace_back("Content-Type", "application/octet-stream");
    put.body = data;
    what = "PUT " + put.url.ToString();
    TUG_ASSIGN_OR_RETURN(HttpResponse done, Do(registry, scope, put));
    if (done.status != 201) return StatusError(what, done);
    return {};
  }

  for (uint64_t off = 0; off < size;) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(opts.upload_chunk_size, size - off));
    TUG_ASSIGN_OR_RETURN(std::string_view data, read(off, len, scratch));
    HttpRequest patch;
    patch.method = "PATCH";
    patch.url = upload;
    patch.headers.emplace_back("Content-Type", "application/octet-stream");
    // distribution 2.8 wants "start-end" (inclusive), without the "bytes " unit.
    patch.headers.emplace_back("Content-Range", std::to_string(off) + "-" + std::to_string(off + len - 1));
    patch.body = data;
    what = "PATCH " + patch.url.ToString();
    TUG_ASSIGN_OR_RETURN(HttpResponse r, Do(registry, scope, patch));
    if (r.status != 202) return StatusError(what, r);
    TUG_ASSIGN_OR_RETURN(upload, next_location(r, upload));
    off += len;
  }
  HttpRequest put;
  put.method = "PUT";
  put.url = upload;
  put.url.target = AppendQuery(put.url.target, "digest=" + internal::QueryEscape(digest));
  what = "PUT " + put.url.ToString();
  TUG_ASSIGN_OR_RETURN(HttpResponse done, Do(registry, scope, put));
  if (done.status != 201) return StatusError(what, done);
  return {};
}

Status Client::PushBlob(const Reference& repo, const std::string& digest, std::string_view data,
                        const std::string& mount_from) {
  if (!IsValidDigest(digest)) return MakeError(Errc::kInvalidArgument, "malformed digest " + digest);
  TUG_ASSIGN_OR_RETURN(auto existing, HeadBlob(repo, digest));
  if (existing) return {};
  ChunkReader read = [data](uint64_t off, size_t len, std::string&) -> Result<std::string_view> {
    return data.substr(static_cast<size_t>(off), len);
  };
  return impl_->PushBlobImpl(repo, digest, data.size(), read, mount_from);
}

Status Client::PushBlobFile(const Reference& repo, const std::string& digest, const std::string& path,
                            const std::string& mount_from) {
  if (!IsValidDigest(digest)) return MakeError(Errc::kInvalidArgument, "malformed digest " + digest);
  TUG_ASSIGN_OR_RETURN(auto existing, HeadBlob(repo, digest));
  if (existing) return {};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "opening " + path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, "stat " + path);
  }
  // Chunks are read as they are sent, so a large layer never sits in memory whole.
  ChunkReader read = [fd, &path](uint64_t off, size_t len, std::string& scratch) -> Result<std::string_view> {
    scratch.resize(len);
    size_t got = 0;
    while (got < len) {
      ssize_t n = ::pread(fd, scratch.data() + got, len - got, static_cast<off_t>(off + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "reading " + path);
      if (n == 0) return MakeError(Errc::kIo, "reading " + path + ": file shrank during upload");
      got += static_cast<size_t>(n);
    }
    return std::string_view(scratch);
  };
  Status s = impl_->PushBlobImpl(repo, digest, static_cast<uint64_t>(st.st_size), read, mount_from);
  ::close(fd);
  return s;
}

Result<std::string> Client::PushManifest(const Reference& repo, const std::string& ref, std::string_view bytes,
                                         std::string_view media_type) {
  std::string digest = crypto::Sha256Digest(bytes);
  if (ref.rfind("sha256:", 0) == 0 && ref != digest)
    return MakeError(Errc::kIntegrity, "pushing manifest as " + ref + ": its content hashes to " + digest);
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(repo.registry, "/v2/" + repo.repository + "/manifests/" + ref));
  HttpRequest req;
  req.method = "PUT";
  req.url = url;
  req.headers.emplace_back("Content-Type", std::string(media_type));
  req.body = bytes;
  const std::string what = "PUT " + url.ToString();
  TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(repo.registry, PushScope(repo), req));
  if (resp.status != 201 && resp.status != 200) return StatusError(what, resp);
  std::string reported = resp.Header("Docker-Content-Digest");
  if (!reported.empty() && reported != digest)
    return MakeError(Errc::kIntegrity, what + ": registry reports digest " + reported + ", content hashes to " + digest);
  return digest;
}

Result<std::vector<std::string>> Client::ListTags(const Reference& repo) {
  TUG_ASSIGN_OR_RETURN(Url url, impl_->RegistryUrl(repo.registry, "/v2/" + repo.repository + "/tags/list"));
  std::vector<std::string> tags;
  for (int page = 0; page < 10000; ++page) {
    HttpRequest req;
    req.url = url;
    const std::string what = "GET " + url.ToString();
    TUG_ASSIGN_OR_RETURN(HttpResponse resp, impl_->Do(repo.registry, PullScope(repo), req));
    if (resp.status != 200) return StatusError(what, resp);
    try {
      auto j = nlohmann::json::parse(resp.body);
      if (j.contains("tags") && j["tags"].is_array())
        for (const auto& t : j["tags"]) tags.push_back(t.get<std::string>());
    } catch (const std::exception& e) {
      return MakeError(Errc::kProtocol, what + ": bad tag list: " + e.what());
    }
    // Link: </v2/name/tags/list?last=x&n=y>; rel="next"
    std::string link = resp.Header("Link");
    size_t lt = link.find('<'), gt = link.find('>');
    if (link.find("rel=\"next\"") == std::string::npos || lt == std::string::npos || gt == std::string::npos || gt < lt)
      return tags;
    TUG_ASSIGN_OR_RETURN(url, url.Resolve(link.substr(lt + 1, gt - lt - 1)));
  }
  return MakeError(Errc::kProtocol, "listing tags of " + repo.Repo() + ": too many pages");
}

namespace {
std::string FallbackTag(const std::string& digest) { return "sha256-" + digest.substr(7); }
}  // namespace

Result<oci::Index> Client::Referrers(const Reference& repo, const std::string& digest) {
  if (!IsValidDigest(digest)) return MakeError(Errc::kInvalidArgument, "malformed digest " + digest);
  auto m = GetManifest(repo, FallbackTag(digest));
  if (!m) {
    if (m.error().Is(Errc::kNotFound)) return oci::Index{};
    return tl::unexpected(m.error());
  }
  auto idx = oci::ParseIndex(m->bytes);
  if (!idx) return tl::unexpected(Wrap(idx.error(), "referrers index of " + digest + " in " + repo.Repo()));
  return idx;
}

Status Client::AddReferrer(const Reference& repo, const std::string& subject_digest, const oci::Descriptor& referrer) {
  TUG_ASSIGN_OR_RETURN(oci::Index idx, Referrers(repo, subject_digest));
  auto& ms = idx.manifests;
  ms.erase(std::remove_if(ms.begin(), ms.end(), [&](const oci::Descriptor& d) { return d.digest == referrer.digest; }),
           ms.end());
  ms.push_back(referrer);
  std::string bytes = oci::Serialize(idx);
  TUG_TRY(PushManifest(repo, FallbackTag(subject_digest), bytes, oci::media::kOciIndex));
  return {};
}

}  // namespace tug::registry
