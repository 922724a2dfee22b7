#include <memory>

#include "command.hpp"
#include "crypto/ed25519.hpp"

namespace tug::cli {
namespace {

Status Keygen(const Io& io, const std::string& out) {
  crypto::KeyPair key = crypto::GenerateKeyPair();
  TUG_TRY(crypto::WriteKeyFiles(out, key));
  io.out << "wrote " << out << " (secret, mode 0600) and " << out << ".pub; keyid "
         << crypto::KeyId(key.public_key) << "\n";
  return {};
}

}  // namespace

void AddKeygenCommand(CLI::App& app, Context& ctx) {
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("keygen", "Generate an ed25519 signing key pair.");
  cmd->add_option("--out", *out, "Path of the secret key file; the public half goes to PATH.pub")
      ->required()
      ->type_name("KEY");
  cmd->footer(
      "Writes KEY (JSON, secret, mode 0600) and KEY.pub (JSON, public). Never overwrites an existing key.\n\n"
      "Example:\n  tug keygen --out keys/release-key");
  cmd->callback([&ctx, out] { ctx.action = [&ctx, out] { return Keygen(ctx.io, *out); }; });
}

}  // namespace tug::cli
