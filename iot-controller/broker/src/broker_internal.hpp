// Private helpers shared by broker_config.cpp and certs.cpp.
#pragma once

#include <string>
#include <vector>

#include "broker/broker_config.hpp"

namespace tug::broker {

CertPair CaPaths(const std::string& dir);
CertPair ServerPaths(const std::string& dir);
CertPair ClientPaths(const std::string& dir, const std::string& id);
Result<CertPair> EnsureCa(const std::string& dir, int days);
Result<CertPair> EnsureServerCert(const std::string& dir, const CertPair& ca, const std::vector<std::string>& dns,
                                  const std::vector<std::string>& ips, int days);
// ca/openssl-ca.cnf, ca/index.txt, ca/crlnumber and ca/crl.pem, created once (an existing CRL is kept).
Result<std::string> EnsureCrl(const std::string& dir, const CertPair& ca);

}  // namespace tug::broker
