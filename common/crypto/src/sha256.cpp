#include "crypto/sha256.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <openssl/evp.h>

#include "crypto/encoding.hpp"

namespace tug::crypto {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {
// EVP failures here mean allocation failure or a broken libcrypto; there is no sensible recovery, so abort loudly
// instead of handing out a digest that is not one.
void CheckEvp(int ok) {
  if (ok != 1) std::abort();
}
}  // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr) std::abort();
  CheckEvp(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr));
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::string_view data) {
  CheckEvp(EVP_DigestUpdate(impl_->ctx, data.data(), data.size()));
}

std::string Sha256::FinishHex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CheckEvp(EVP_DigestFinal_ex(impl_->ctx, md, &len));
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

std::string Sha256Digest(std::string_view data) { return "sha256:" + Sha256Hex(data); }

Result<std::string> Sha256FileHex(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return MakeError(Errc::kNotFound, path);
    return ErrnoError(errno, "opening " + path);
  }
  Sha256 h;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoError(err, "reading " + path);
    }
    if (n == 0) break;
    h.Update(std::string_view(buf, static_cast<size_t>(n)));
  }
  ::close(fd);
  return h.FinishHex();
}

Result<Digest> Digest::Parse(std::string_view s) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return MakeError(Errc::kInvalidArgument, "digest '" + std::string(s) + "' is not of the form sha256:<hex>");
  std::string_view algo = s.substr(0, colon);
  std::string_view hex = s.substr(colon + 1);
  for (char c : algo) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '.' || c == '_' || c == '-';
    if (!ok) return MakeError(Errc::kInvalidArgument, "digest '" + std::string(s) + "' has a malformed algorithm");
  }
  if (algo != "sha256")
    return MakeError(Errc::kUnsupported, "digest algorithm '" + std::string(algo) + "' (only sha256 is supported)");
  if (hex.size() != 64)
    return MakeError(Errc::kInvalidArgument, "digest '" + std::string(s) + "' must have 64 hex characters");
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return MakeError(Errc::kInvalidArgument, "digest '" + std::string(s) + "' must be lowercase hex");
  }
  return Digest{std::string(algo), std::string(hex)};
}

bool IsSha256Digest(std::string_view d) {
  if (d.size() != 71 || d.substr(0, 7) != "sha256:") return false;
  for (char c : d.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace tug::crypto
