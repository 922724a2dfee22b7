#include "image_ref.hpp"

#include "crypto/sha256.hpp"

namespace tug::cli {

Result<PinnedImage> ParsePinnedImage(std::string_view ref) {
  const std::string shown(ref);
  const auto at = ref.rfind('@');
  if (at == std::string_view::npos)
    return MakeError(Errc::kInvalidArgument,
                     "--image " + shown + " has no digest; use HOST/REPO@sha256:HEX (tags are not signed)");
  std::string repo(ref.substr(0, at));
  auto digest = crypto::Digest::Parse(ref.substr(at + 1));
  if (!digest) return tl::unexpected(Wrap(digest.error(), "--image " + shown));
  // A tag after the last path component (not the registry port) is decoration: the digest is what gets signed.
  const auto slash = repo.rfind('/');
  const auto colon = repo.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) repo.resize(colon);
  if (repo.empty() || repo.front() == '/' || repo.back() == '/')
    return MakeError(Errc::kInvalidArgument, "--image " + shown + " has an empty or malformed repository");
  for (char c : repo) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '/' || c == ':';
    if (!ok)
      return MakeError(Errc::kInvalidArgument,
                       "--image " + shown + ": repository contains '" + std::string(1, c) + "'");
  }
  return PinnedImage{std::move(repo), digest->ToString()};
}

}  // namespace tug::cli
