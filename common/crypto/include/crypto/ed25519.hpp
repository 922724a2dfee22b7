// Ed25519 keys and signatures (libsodium).
//
// Key files are JSON so they say what they are:
//   secret (mode 0600): {"type":"ed25519","keyid":"<hex>","public":"<b64 32B>","secret":"<b64 64B>"}
//   public (KEY.pub):   {"type":"ed25519","keyid":"<hex>","public":"<b64 32B>"}
// keyid = hex sha256 of the raw 32-byte public key (DESIGN.md §3).
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::crypto {

struct KeyPair {
  std::string public_key;  // 32 raw bytes
  std::string secret_key;  // 64 raw bytes (libsodium layout: seed || public)
};

KeyPair GenerateKeyPair();
std::string KeyId(std::string_view public_key);
// 64-byte detached signature.
std::string Sign(const KeyPair& key, std::string_view message);
bool Verify(std::string_view public_key, std::string_view message, std::string_view signature);

// Writes `path` (0600, refusing to overwrite an existing file: kAlreadyExists) and `path`.pub.
Status WriteKeyFiles(const std::string& path, const KeyPair& key);
// Loads a secret key file; checks the public half matches the secret.
Result<KeyPair> LoadSecretKeyFile(const std::string& path);
// Loads a public key file or, for convenience, the public half of a secret key file. Returns 32 raw bytes.
Result<std::string> LoadPublicKeyFile(const std::string& path);

}  // namespace tug::crypto
