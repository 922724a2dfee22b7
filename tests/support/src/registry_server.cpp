#include "testsupport/registry_server.hpp"

#include <fstream>
#include <sstream>

#include "core/env.hpp"
#include "testsupport/net.hpp"

namespace tug::testsupport {
namespace {

std::string ConfigYaml(const std::string& root, uint16_t port, const std::string& htpasswd_path,
                       const std::string& cert, const std::string& key) {
  std::ostringstream y;
  y << "version: 0.1\n"
    << "log:\n  level: info\n  accesslog:\n    disabled: false\n"
    << "storage:\n  filesystem:\n    rootdirectory: " << root << "\n"
    << "  delete:\n    enabled: true\n"
    << "  maintenance:\n    uploadpurging:\n      enabled: false\n"
    << "http:\n  addr: 127.0.0.1:" << port << "\n  secret: tugboat-test-secret\n"
    << "  headers:\n    X-Content-Type-Options: [nosniff]\n";
  if (!cert.empty()) y << "  tls:\n    certificate: " << cert << "\n    key: " << key << "\n";
  if (!htpasswd_path.empty())
    y << "auth:\n  htpasswd:\n    realm: tugboat-test\n    path: " << htpasswd_path << "\n";
  return y.str();
}

}  // namespace

Result<std::unique_ptr<RegistryServer>> RegistryServer::Start(const RegistryServerOptions& opts) {
  if (core::FindInPath("docker-registry").empty())
    return MakeError(Errc::kNotFound, "docker-registry is not installed (scripts/setup.sh installs it)");
  std::unique_ptr<RegistryServer> s(new RegistryServer());
  core::Env& env = *core::DefaultEnv();
  TUG_TRY(env.CreateDirs(s->root_dir()));

  std::string htpasswd_path;
  if (!opts.username.empty()) {
    if (core::FindInPath("htpasswd").empty())
      return MakeError(Errc::kNotFound, "htpasswd is not installed (package apache2-utils)");
    // bcrypt is the only hash the registry's htpasswd backend accepts.
    TUG_ASSIGN_OR_RETURN(auto hp, core::Run({"htpasswd", "-Bbn", opts.username, opts.password}));
    if (!hp.ok()) return MakeError(Errc::kInternal, "htpasswd -Bbn: " + hp.Describe());
    htpasswd_path = s->dir_.Sub("htpasswd");
    TUG_TRY(core::WriteFileDurable(env, htpasswd_path, hp.out));
  }

  std::string cert, key;
  if (opts.tls) {
    cert = s->ca_file();
    key = s->dir_.Sub("key.pem");
    TUG_ASSIGN_OR_RETURN(auto gen, core::Run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                                              "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                                              "subjectAltName=IP:127.0.0.1"}));
    if (!gen.ok()) return MakeError(Errc::kInternal, "openssl req: " + gen.Describe());
  }

  // The port can be taken between FreeLoopbackPort() and the registry's bind; a couple of attempts cover that.
  std::string last_error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->port_ = FreeLoopbackPort();
    std::string cfg = s->dir_.Sub("config.yml");
    TUG_TRY(core::WriteFileDurable(env, cfg, ConfigYaml(s->root_dir(), s->port_, htpasswd_path, cert, key)));
    TUG_ASSIGN_OR_RETURN(s->process_, core::Spawn({"docker-registry", "serve", cfg}, s->log_path()));
    uint16_t port = s->port_;
    bool exited = false;
    bool up = WaitFor(
        [&] {
          if (!s->process_.Running()) {
            exited = true;
            return true;
          }
          int st = HttpGetStatus(port, "/v2/", std::chrono::milliseconds(500));
          // Over TLS the plain probe gets Go's "400 Client sent an HTTP request to an HTTPS server": it is up.
          return st == 200 || st == 401 || (opts.tls && st == 400);
        },
        opts.start_timeout);
    if (up && !exited) return s;
    s->process_.Stop(std::chrono::seconds(2));
    last_error = exited ? "docker-registry exited" : "docker-registry did not answer GET /v2/ in time";
  }
  return MakeError(Errc::kUnavailable, last_error + "; log tail:\n" + s->LogTail());
}

RegistryServer::~RegistryServer() { process_.Stop(std::chrono::seconds(2)); }

std::string RegistryServer::BlobDataPath(const std::string& digest) const {
  std::string hex = digest.substr(digest.find(':') + 1);
  return root_dir() + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
}

std::string RegistryServer::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > max_bytes ? all.substr(all.size() - max_bytes) : all;
}

}  // namespace tug::testsupport
