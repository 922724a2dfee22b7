#include "crypto/ed25519.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "core/env.hpp"
#include "crypto/encoding.hpp"
#include "crypto/sha256.hpp"
#include "json_util.hpp"

namespace tug::crypto {
namespace {

// libsodium must be initialised before first use (it picks implementations and seeds its RNG); a function-local
// static makes that happen exactly once and thread-safely, whichever entry point runs first.
void EnsureSodium() {
  static const bool ok = [] { return sodium_init() >= 0; }();
  if (!ok) std::abort();
}

// Writes `data` to a new file; O_EXCL so an existing key is never clobbered, even by a racing writer.
Status WriteNewFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return MakeError(Errc::kAlreadyExists, path + " exists; refusing to overwrite a key file");
    return ErrnoError(errno, "creating " + path);
  }
  // The umask can only remove bits, but be explicit so the secret is never group/world readable.
  if (::fchmod(fd, mode) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, "chmod " + path);
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoError(err, "writing " + path);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError(err, "fsync " + path);
  }
  if (::close(fd) != 0) return ErrnoError(errno, "closing " + path);
  return {};
}

Result<nlohmann::json> LoadKeyJson(const std::string& path) {
  TUG_ASSIGN_OR_RETURN(std::string text, core::DefaultEnv()->ReadFile(path));
  const std::string what = "key file " + path;
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, internal::ParseObject(text, what));
  TUG_ASSIGN_OR_RETURN(std::string type, internal::GetString(j, "type", what));
  if (type != "ed25519") return MakeError(Errc::kUnsupported, what + ": key type '" + type + "' (expected ed25519)");
  return j;
}

Result<std::string> PublicFromJson(const nlohmann::json& j, const std::string& what) {
  TUG_ASSIGN_OR_RETURN(std::string pub, internal::GetBase64(j, "public", what));
  if (pub.size() != crypto_sign_PUBLICKEYBYTES)
    return MakeError(Errc::kInvalidArgument, what + ": public key is " + std::to_string(pub.size()) + " bytes, expected 32");
  // keyid is informational in the file, but a mismatch means the file was edited or mixed up: refuse it.
  if (j.contains("keyid")) {
    TUG_ASSIGN_OR_RETURN(std::string keyid, internal::GetString(j, "keyid", what));
    if (keyid != KeyId(pub)) return MakeError(Errc::kInvalidArgument, what + ": keyid does not match the public key");
  }
  return pub;
}

}  // namespace

KeyPair GenerateKeyPair() {
  EnsureSodium();
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  KeyPair kp{std::string(reinterpret_cast<char*>(pk), sizeof pk), std::string(reinterpret_cast<char*>(sk), sizeof sk)};
  sodium_memzero(sk, sizeof sk);
  return kp;
}

std::string KeyId(std::string_view public_key) { return Sha256Hex(public_key); }

std::string Sign(const KeyPair& key, std::string_view message) {
  EnsureSodium();
  // A malformed KeyPair is a programming error (keys come from GenerateKeyPair or LoadSecretKeyFile, which check).
  if (key.secret_key.size() != crypto_sign_SECRETKEYBYTES) std::abort();
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(key.secret_key.data()));
  return std::string(reinterpret_cast<char*>(sig), sizeof sig);
}

bool Verify(std::string_view public_key, std::string_view message, std::string_view signature) {
  EnsureSodium();
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) return false;
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                     reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                     reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

Status WriteKeyFiles(const std::string& path, const KeyPair& key) {
  if (key.public_key.size() != crypto_sign_PUBLICKEYBYTES || key.secret_key.size() != crypto_sign_SECRETKEYBYTES)
    return MakeError(Errc::kInvalidArgument, "malformed key pair");
  const std::string pub_path = path + ".pub";
  // Check both names first so we do not leave a secret without its public half.
  if (core::DefaultEnv()->Exists(path))
    return MakeError(Errc::kAlreadyExists, path + " exists; refusing to overwrite a key file");
  if (core::DefaultEnv()->Exists(pub_path))
    return MakeError(Errc::kAlreadyExists, pub_path + " exists; refusing to overwrite a key file");

  nlohmann::json pub = {{"type", "ed25519"}, {"keyid", KeyId(key.public_key)}, {"public", Base64Encode(key.public_key)}};
  nlohmann::json sec = pub;
  sec["secret"] = Base64Encode(key.secret_key);

  TUG_TRY(WriteNewFile(path, internal::Dump(sec) + "\n", 0600));
  if (auto st = WriteNewFile(pub_path, internal::Dump(pub) + "\n", 0644); !st) {
    ::unlink(path.c_str());
    return st;
  }
  TUG_TRY(core::DefaultEnv()->SyncDir(core::Dirname(path)));
  return {};
}

Result<KeyPair> LoadSecretKeyFile(const std::string& path) {
  EnsureSodium();
  const std::string what = "key file " + path;
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, LoadKeyJson(path));
  if (!j.contains("secret"))
    return MakeError(Errc::kInvalidArgument, what + " has no secret key (is it a .pub file?)");
  TUG_ASSIGN_OR_RETURN(std::string sec, internal::GetBase64(j, "secret", what));
  if (sec.size() != crypto_sign_SECRETKEYBYTES)
    return MakeError(Errc::kInvalidArgument, what + ": secret key is " + std::to_string(sec.size()) + " bytes, expected 64");
  TUG_ASSIGN_OR_RETURN(std::string pub, PublicFromJson(j, what));
  // Derive the public key from the seed: the stored halves could disagree, and signing with one while advertising
  // the other would produce signatures nobody can verify.
  unsigned char derived[crypto_sign_PUBLICKEYBYTES];
  unsigned char pk_unused[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk_check[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(pk_unused, sk_check, reinterpret_cast<const unsigned char*>(sec.data()));
  crypto_sign_ed25519_sk_to_pk(derived, sk_check);
  sodium_memzero(sk_check, sizeof sk_check);
  if (std::string_view(reinterpret_cast<char*>(derived), sizeof derived) != pub ||
      std::string_view(sec).substr(crypto_sign_SEEDBYTES) != pub)
    return MakeError(Errc::kInvalidArgument, what + ": public key does not match the secret key");
  return KeyPair{pub, sec};
}

Result<std::string> LoadPublicKeyFile(const std::string& path) {
  TUG_ASSIGN_OR_RETURN(nlohmann::json j, LoadKeyJson(path));
  return PublicFromJson(j, "key file " + path);
}

}  // namespace tug::crypto
