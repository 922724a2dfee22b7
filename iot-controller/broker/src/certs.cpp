// Certificates through the openssl CLI: a few short-lived processes at provisioning time cost nothing, and the CLI's
// defaults (PEM, PKCS#8 keys with mode 0600) are exactly what Mosquitto and libmosquitto read.
#include <sys/stat.h>

#include <random>

#include "broker/broker_config.hpp"
#include "core/env.hpp"
#include "core/subprocess.hpp"
#include "src/broker_internal.hpp"

namespace tug::broker {
namespace {

Status RunOpenssl(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  TUG_ASSIGN_OR_RETURN(auto r, core::Run(argv));
  if (!r.ok()) return MakeError(Errc::kInternal, "openssl " + args.front() + " (" + what + "): " + r.Describe());
  return {};
}

// Random serials avoid a shared serial file (two processes issuing at once would race on it).
std::string RandomSerial() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) | rd();
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v & 0x7fffffffffffffffULL));
  return buf;
}

Status Restrict(const std::string& key) {
  // openssl already creates keys 0600; say so explicitly in case its umask handling ever changes.
  if (::chmod(key.c_str(), 0600) != 0) return ErrnoError(errno, "chmod 0600 " + key);
  return {};
}

const std::vector<std::string> kEcKey{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};

// CSR + signature by the CA with the extensions in `ext` (an openssl extfile body).
Status IssueSigned(const CertPair& ca, const CertPair& out, const std::string& cn, const std::string& ext,
                   int days) {
  core::Env& env = *core::DefaultEnv();
  const std::string csr = out.cert + ".csr", extfile = out.cert + ".ext";
  std::vector<std::string> req{"req", "-new"};
  req.insert(req.end(), kEcKey.begin(), kEcKey.end());
  req.insert(req.end(), {"-keyout", out.key, "-out", csr, "-subj", "/CN=" + cn});
  TUG_TRY(RunOpenssl(req, cn));
  TUG_TRY(Restrict(out.key));
  TUG_TRY(core::WriteFileDurable(env, extfile, ext));
  auto signed_ok = RunOpenssl({"x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial",
                               RandomSerial(), "-days", std::to_string(days), "-extfile", extfile, "-out", out.cert},
                              cn);
  (void)env.RemoveFile(csr);
  (void)env.RemoveFile(extfile);
  return signed_ok;
}

}  // namespace

bool IsValidClientId(const std::string& id) {
  // The id becomes a CN inside -subj (no '/', '=', ',') and an MQTT user name substituted into ACL patterns
  // (no '+', '#', '/'), so a plain conservative alphabet is the contract.
  if (id.empty() || id.size() > 64 || id[0] == '.' || id[0] == '-') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-';
    if (!ok) return false;
  }
  return true;
}

CertPair CaPaths(const std::string& dir) { return {dir + "/ca/ca.crt", dir + "/ca/ca.key"}; }
CertPair ServerPaths(const std::string& dir) { return {dir + "/server/server.crt", dir + "/server/server.key"}; }
CertPair ClientPaths(const std::string& dir, const std::string& id) {
  return {dir + "/clients/" + id + ".crt", dir + "/clients/" + id + ".key"};
}

Result<CertPair> EnsureCa(const std::string& dir, int days) {
  core::Env& env = *core::DefaultEnv();
  CertPair ca = CaPaths(dir);
  if (env.Exists(ca.cert) && env.Exists(ca.key)) return ca;
  if (core::FindInPath("openssl").empty()) return MakeError(Errc::kNotFound, "openssl is not installed");
  TUG_TRY(env.CreateDirs(dir + "/ca"));
  std::vector<std::string> req{"req", "-x509"};
  req.insert(req.end(), kEcKey.begin(), kEcKey.end());
  req.insert(req.end(), {"-keyout", ca.key, "-out", ca.cert, "-days", std::to_string(days), "-subj",
                         "/CN=Tugboat MQTT CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                         "keyUsage=critical,keyCertSign,cRLSign"});
  TUG_TRY(RunOpenssl(req, "CA"));
  TUG_TRY(Restrict(ca.key));
  return ca;
}

Result<CertPair> EnsureServerCert(const std::string& dir, const CertPair& ca, const std::vector<std::string>& dns,
                                  const std::vector<std::string>& ips, int days) {
  core::Env& env = *core::DefaultEnv();
  CertPair out = ServerPaths(dir);
  if (env.Exists(out.cert) && env.Exists(out.key)) return out;
  TUG_TRY(env.CreateDirs(dir + "/server"));
  std::string san;
  for (const auto& d : dns) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : ips) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (san.empty()) return MakeError(Errc::kInvalidArgument, "server certificate needs at least one DNS name or IP");
  std::string ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                    "subjectAltName=" + san + "\n";
  TUG_TRY(IssueSigned(ca, out, dns.empty() ? ips.front() : dns.front(), ext, days));
  return out;
}

Result<CertPair> IssueClientCert(const std::string& dir, const std::string& client_id, int validity_days) {
  if (!IsValidClientId(client_id))
    return MakeError(Errc::kInvalidArgument, "client id '" + client_id + "' is not a safe certificate CN/MQTT user");
  core::Env& env = *core::DefaultEnv();
  CertPair ca = CaPaths(dir);
  if (!env.Exists(ca.cert) || !env.Exists(ca.key))
    return MakeError(Errc::kNotFound, "no CA in " + dir + "/ca (run Generate first)");
  CertPair out = ClientPaths(dir, client_id);
  if (env.Exists(out.cert) && env.Exists(out.key)) return out;
  TUG_TRY(env.CreateDirs(dir + "/clients"));
  TUG_TRY(IssueSigned(ca, out, client_id,
                      "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
                      validity_days));
  return out;
}

}  // namespace tug::broker
