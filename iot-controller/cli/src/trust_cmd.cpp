#include <memory>
#include <set>

#include "command.hpp"
#include "core/env.hpp"
#include "crypto/ed25519.hpp"
#include "crypto/trust_root.hpp"

namespace tug::cli {
namespace {

struct InitFlags {
  std::vector<std::string> keys;
  int threshold = 0;
  std::string expires = "365d";
  uint64_t version = 1;
  std::vector<std::string> sign_keys;
  std::string out;
};

struct TrustVerifyFlags {
  std::string root;
  std::string current;
};

// Without --sign-key, look for the secret beside each KEY.pub: the common single-operator setup keeps both in one
// directory, and it spares typing every key twice.
Result<std::vector<crypto::KeyPair>> SecretsBesidePublics(const Io& io, const std::vector<std::string>& pub_paths,
                                                          const std::vector<std::string>& pubs) {
  std::vector<crypto::KeyPair> signers;
  for (size_t i = 0; i < pub_paths.size(); ++i) {
    const std::string& p = pub_paths[i];
    if (p.size() <= 4 || p.compare(p.size() - 4, 4, ".pub") != 0) {
      io.err << "tug: " << p << " does not end in .pub; no secret key looked for beside it\n";
      continue;
    }
    const std::string secret_path = p.substr(0, p.size() - 4);
    if (!core::DefaultEnv()->Exists(secret_path)) {
      io.err << "tug: no secret key beside " << p << " (looked for " << secret_path << ")\n";
      continue;
    }
    TUG_ASSIGN_OR_RETURN(crypto::KeyPair kp, crypto::LoadSecretKeyFile(secret_path));
    if (kp.public_key != pubs[i]) {
      io.err << "tug: " << secret_path << " is not the secret half of " << p << "; not using it\n";
      continue;
    }
    signers.push_back(std::move(kp));
  }
  return signers;
}

Status TrustInit(const Io& io, const InitFlags& f) {
  TUG_ASSIGN_OR_RETURN(auto ttl, ParseDurationFlag("--expires", f.expires));
  std::vector<std::string> pubs;
  std::set<std::string> seen;
  for (const auto& path : f.keys) {
    TUG_ASSIGN_OR_RETURN(std::string pub, crypto::LoadPublicKeyFile(path));
    if (!seen.insert(pub).second) return MakeError(Errc::kInvalidArgument, "--key " + path + " repeats a key");
    pubs.push_back(std::move(pub));
  }
  std::vector<crypto::KeyPair> signers;
  if (f.sign_keys.empty()) {
    TUG_ASSIGN_OR_RETURN(signers, SecretsBesidePublics(io, f.keys, pubs));
  } else {
    for (const auto& path : f.sign_keys) {
      TUG_ASSIGN_OR_RETURN(crypto::KeyPair kp, crypto::LoadSecretKeyFile(path));
      signers.push_back(std::move(kp));
    }
  }
  const core::TimePoint expires = io.clock.Now() + ttl;
  auto json = crypto::MakeTrustRoot(pubs, f.threshold, f.version, expires, signers);
  if (!json) {
    Error e = json.error();
    if (e.Is(Errc::kSignature))
      e.context += f.sign_keys.empty() ? "; pass the secret keys with --sign-key" : "; add --sign-key files";
    return tl::unexpected(std::move(e));
  }
  TUG_TRY(core::WriteFileDurable(*core::DefaultEnv(), f.out, *json + "\n"));
  io.out << "wrote " << f.out << ": trust root version " << f.version << ", " << pubs.size() << " key(s), threshold "
         << f.threshold << ", expires " << core::FormatRfc3339(expires) << "\n";
  return {};
}

Status TrustVerify(const Io& io, const TrustVerifyFlags& f) {
  TUG_ASSIGN_OR_RETURN(std::string text, ReadInput(io, f.root));
  const core::TimePoint now = io.clock.Now();
  Result<crypto::TrustRoot> root;
  if (f.current.empty()) {
    root = crypto::LoadTrustRoot(text, now);
  } else {
    TUG_ASSIGN_OR_RETURN(std::string current_text, ReadInput(io, f.current));
    // The current root may already have expired: rotation is exactly how a fleet recovers from that.
    auto current = crypto::LoadTrustRoot(current_text, core::TimePoint::min());
    if (!current) return tl::unexpected(Wrap(current.error(), "current root " + f.current));
    root = crypto::VerifyRootUpdate(*current, text, now);
  }
  if (!root) return tl::unexpected(Wrap(root.error(), f.root));
  io.out << "ok trust root version " << root->version << ", " << root->keys.size() << " key(s), threshold "
         << root->threshold << ", expires " << core::FormatRfc3339(root->expires) << "\n";
  for (const auto& [keyid, pub] : root->keys) io.out << "  key " << keyid << "\n";
  return {};
}

}  // namespace

void AddTrustCommands(CLI::App& app, Context& ctx) {
  CLI::App* trust = app.add_subcommand("trust", "Create and check device trust roots (keys + signing threshold).");
  trust->require_subcommand(1);

  auto init = std::make_shared<InitFlags>();
  CLI::App* cmd = trust->add_subcommand("init", "Create a signed trust root (root.json) for devices.");
  cmd->add_option("--key", init->keys, "Public key file trusted by the root (repeat for several)")
      ->required()
      ->allow_extra_args(false)
      ->type_name("KEY.pub");
  cmd->add_option("--threshold", init->threshold, "How many of the keys must sign a release (and the root)")
      ->required()
      ->check(AtLeastOne())
      ->type_name("K");
  cmd->add_option("--expires", init->expires, "Validity from now, e.g. 365d, 12h")
      ->capture_default_str()
      ->type_name("DURATION");
  cmd->add_option("--version", init->version, "Root version; a replacement root needs a higher one")
      ->capture_default_str()
      ->check(AtLeastOne())
      ->type_name("N");
  cmd->add_option("--sign-key", init->sign_keys,
                  "Secret key to sign the root with (repeat). Default: the secret file beside each KEY.pub. "
                  "For a rotation, include a threshold of the previous root's keys too.")
      ->allow_extra_args(false)
      ->type_name("SECRET");
  cmd->add_option("--out", init->out, "Where to write the root")->required()->type_name("root.json");
  cmd->footer(
      "A root must be signed by at least K of its own keys. To rotate keys, create a root with a higher --version\n"
      "signed by K of the old root's keys as well as K of the new ones.\n\n"
      "Examples:\n"
      "  tug trust init --key ops-a.pub --key ops-b.pub --key ops-c.pub --threshold 2 --out root.json\n"
      "  tug trust init --key new.pub --threshold 1 --version 2 --sign-key old --sign-key new --out root-v2.json");
  cmd->callback([&ctx, init] { ctx.action = [&ctx, init] { return TrustInit(ctx.io, *init); }; });

  auto verify = std::make_shared<TrustVerifyFlags>();
  CLI::App* vcmd = trust->add_subcommand("verify", "Check a trust root (self-signed, not expired), or a rotation.");
  vcmd->add_option("root", verify->root, "Root file to check ('-' for stdin)")->required()->type_name("root.json");
  vcmd->add_option("--current", verify->current,
                   "Root the devices hold now: also require the new root to be signed by its threshold and to "
                   "have a higher version")
      ->type_name("OLD.json");
  vcmd->footer(
      "Exit 0 if the root would be accepted now.\n\n"
      "Examples:\n"
      "  tug trust verify root.json\n"
      "  tug trust verify root-v2.json --current root.json");
  vcmd->callback([&ctx, verify] { ctx.action = [&ctx, verify] { return TrustVerify(ctx.io, *verify); }; });
}

}  // namespace tug::cli
