// Streaming SHA-256 (OpenSSL EVP) and OCI digests ("sha256:<64 lowercase hex>").
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::crypto {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void Update(std::string_view data);
  // Lowercase hex of the digest; the object must not be updated afterwards.
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string Sha256Hex(std::string_view data);
// "sha256:" + Sha256Hex(data)
std::string Sha256Digest(std::string_view data);
// Hashes a file by streaming it; kNotFound if missing.
Result<std::string> Sha256FileHex(const std::string& path);

// True for "sha256:<64 lowercase hex>": the only digest form Tugboat turns into file names or URLs.
bool IsSha256Digest(std::string_view digest);

// A parsed OCI digest. Only sha256 is accepted (sha512 would be kUnsupported).
struct Digest {
  std::string algorithm;  // "sha256"
  std::string hex;        // 64 lowercase hex chars
  std::string ToString() const { return algorithm + ":" + hex; }
  static Result<Digest> Parse(std::string_view s);  // kInvalidArgument on malformed, kUnsupported on other algos
};

}  // namespace tug::crypto
