#include <map>
#include <memory>
#include <set>

#include "command.hpp"
#include "core/env.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/release.hpp"
#include "crypto/sha256.hpp"
#include "crypto/trust_root.hpp"
#include "image_ref.hpp"

namespace tug::cli {
namespace {

struct SignFlags {
  std::vector<std::string> keys;
  std::string image;
  uint64_t version = 0;
  std::string expires = "30d";
  std::string channel = "stable";
  std::string name;
  std::vector<std::string> platform_digests;
  std::vector<std::string> annotations;
};

struct VerifyFlags {
  std::string root;
  std::string release;
  uint64_t ratchet = 0;
  std::string repository;
};

// Splits "K=V" at the first '='; both sides must be non-empty.
Result<std::pair<std::string, std::string>> SplitAssignment(const std::string& flag, const std::string& s) {
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
    return MakeError(Errc::kInvalidArgument, flag + " " + s + " is not of the form KEY=VALUE");
  return std::make_pair(s.substr(0, eq), s.substr(eq + 1));
}

Status ReleaseSign(const Io& io, const SignFlags& f) {
  TUG_ASSIGN_OR_RETURN(PinnedImage image, ParsePinnedImage(f.image));
  TUG_ASSIGN_OR_RETURN(auto ttl, ParseDurationFlag("--expires", f.expires));

  crypto::Release r;
  r.repository = image.repository;
  r.digest = image.digest;
  r.version = f.version;
  r.channel = f.channel;
  if (f.name.empty()) {
    const auto slash = r.repository.rfind('/');
    r.name = r.repository.substr(slash == std::string::npos ? 0 : slash + 1) + " v" + std::to_string(f.version);
  } else {
    r.name = f.name;
  }
  for (const auto& pd : f.platform_digests) {
    TUG_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--platform-digest", pd));
    auto d = crypto::Digest::Parse(kv.second);
    if (!d) return tl::unexpected(Wrap(d.error(), "--platform-digest " + pd));
    if (!r.platforms.emplace(kv.first, d->ToString()).second)
      return MakeError(Errc::kInvalidArgument, "--platform-digest: platform " + kv.first + " given twice");
  }
  for (const auto& a : f.annotations) {
    TUG_ASSIGN_OR_RETURN(auto kv, SplitAssignment("--annotation", a));
    r.annotations[kv.first] = kv.second;
  }
  // Second precision: the payload stores RFC 3339 seconds, so keep the in-memory times equal to what is signed.
  r.issued_at = std::chrono::time_point_cast<std::chrono::seconds>(io.clock.Now());
  r.expires_at = r.issued_at + ttl;

  std::vector<crypto::KeyPair> keys;
  std::set<std::string> seen;
  for (const auto& path : f.keys) {
    TUG_ASSIGN_OR_RETURN(crypto::KeyPair kp, crypto::LoadSecretKeyFile(path));
    if (seen.insert(kp.public_key).second) keys.push_back(std::move(kp));
  }
  io.out << crypto::SignRelease(r, keys) << "\n";
  return {};
}

Status ReleaseVerify(const Io& io, const VerifyFlags& f) {
  const core::TimePoint now = io.clock.Now();
  TUG_ASSIGN_OR_RETURN(std::string root_text, ReadInput(io, f.root));
  auto root = crypto::LoadTrustRoot(root_text, now);
  if (!root) return tl::unexpected(Wrap(root.error(), "trust root " + f.root));
  TUG_ASSIGN_OR_RETURN(std::string envelope, ReadInput(io, f.release));
  auto v = crypto::VerifyRelease(envelope, *root, crypto::ReleasePolicy{now, f.ratchet, f.repository});
  if (!v) return tl::unexpected(Wrap(v.error(), f.release));
  const crypto::Release& r = v->release;
  io.out << "ok name=\"" << r.name << "\" version=" << r.version << " repository=" << r.repository
         << " digest=" << r.digest << " expires=" << core::FormatRfc3339(r.expires_at) << "\n";
  return {};
}

}  // namespace

void AddReleaseCommands(CLI::App& app, Context& ctx) {
  CLI::App* release = app.add_subcommand("release", "Sign and verify releases (signed pins of an image digest).");
  release->require_subcommand(1);

  auto sign = std::make_shared<SignFlags>();
  CLI::App* cmd = release->add_subcommand("sign", "Sign a release for an image digest; prints the envelope JSON.");
  cmd->add_option("--key", sign->keys, "Secret key to sign with (repeat to reach a threshold)")
      ->required()
      ->allow_extra_args(false)
      ->type_name("KEY");
  cmd->add_option("--image", sign->image, "Image pinned by digest")->required()->type_name("HOST/REPO@sha256:HEX");
  cmd->add_option("--version", sign->version, "Release version; devices only accept versions above what they run")
      ->required()
      ->check(AtLeastOne())
      ->type_name("N");
  cmd->add_option("--expires", sign->expires, "Validity from now, e.g. 30d, 12h")
      ->capture_default_str()
      ->type_name("DURATION");
  cmd->add_option("--channel", sign->channel, "Release channel")->capture_default_str()->type_name("C");
  cmd->add_option("--name", sign->name, "Human name (default: '<repo> v<N>')")->type_name("TEXT");
  cmd->add_option("--platform-digest", sign->platform_digests,
                  "Per-platform manifest digest inside the image index (repeat)")
      ->allow_extra_args(false)
      ->type_name("PLATFORM=sha256:HEX");
  cmd->add_option("--annotation", sign->annotations, "Free-form signed annotation (repeat)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  cmd->footer(
      "To roll back, sign the old digest again with a higher --version.\n\n"
      "Example:\n"
      "  tug release sign --key release-key --image 127.0.0.1:5000/acme/sensor@sha256:<64 hex> --version 42 \\\n"
      "      --name 'sensor 2.0.1' --platform-digest linux/arm64/v8=sha256:<64 hex> > release.json");
  cmd->callback([&ctx, sign] { ctx.action = [&ctx, sign] { return ReleaseSign(ctx.io, *sign); }; });

  auto verify = std::make_shared<VerifyFlags>();
  CLI::App* vcmd = release->add_subcommand("verify", "Check a release against a trust root, as a device would.");
  vcmd->add_option("--root", verify->root, "Trust root")->required()->type_name("root.json");
  vcmd->add_option("release", verify->release, "Release envelope ('-' for stdin)")
      ->required()
      ->type_name("release.json");
  vcmd->add_option("--ratchet", verify->ratchet, "Require a version above N (a device's committed version)")
      ->capture_default_str()
      ->type_name("N");
  vcmd->add_option("--repository", verify->repository, "Require this repository")->type_name("HOST/REPO");
  vcmd->footer(
      "Exit 0 only if the release is valid now: threshold of trusted signatures, not expired, matching repository,\n"
      "version above --ratchet. Prints a one-line summary on success, the reason on stderr otherwise.\n\n"
      "Example:\n"
      "  tug release verify --root root.json release.json --ratchet 41 --repository 127.0.0.1:5000/acme/sensor");
  vcmd->callback([&ctx, verify] { ctx.action = [&ctx, verify] { return ReleaseVerify(ctx.io, *verify); }; });
}

}  // namespace tug::cli
