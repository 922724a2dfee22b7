// SHA-256 over OpenSSL EVP, private to the registry client (it must not depend on tug_crypto).
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace tug::registry::internal {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  // "sha256:<hex>"; the hasher is spent afterwards.
  std::string Finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// "sha256:<hex>" of data.
std::string DigestOf(std::string_view data);

}  // namespace tug::registry::internal
