// Private SHA-256 helper for oci (OpenSSL EVP directly, so oci does not depend on the crypto module).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

namespace tug::oci::internal {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const void* data, size_t n);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // "sha256:<64 lowercase hex>"; the object must not be updated afterwards.
  std::string Digest();

 private:
  evp_md_ctx_st* ctx_;
};

std::string Sha256Digest(std::string_view data);

// True for "sha256:<64 lowercase hex>": the only form we ever turn into a file name.
bool IsSha256Digest(std::string_view digest);

}  // namespace tug::oci::internal
