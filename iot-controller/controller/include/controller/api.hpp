// The REST API (/api/v1, docs/api.md) as a pure request -> response function, so it is tested without sockets and
// served by common/http's http::Server (Api::Serve). JSON in and out; `Authorization: Bearer <token>` on every /api/v1 route (401 otherwise);
// GET /metrics and GET /healthz are open. Errors are {"error":"..."} plus "field" for 400s: 400 bad input,
// 401, 404 unknown resource, 405 wrong method, 409 illegal state change or conflicting release.
//
// Threading: call on the io_context thread (it drives the Engine and the Store); blocks on SQLite only.
#pragma once

#include <memory>
#include <string>

#include "controller/engine.hpp"
#include "controller/metrics.hpp"
#include "controller/store.hpp"
#include "core/clock.hpp"
#include "crypto/trust_root.hpp"
#include "http/server.hpp"
#include "http/tokens.hpp"

namespace tug::controller {

struct HttpRequest {
  std::string method;         // "GET", "POST", ...
  std::string target;         // "/api/v1/devices?online=true" (path percent-encoded as sent)
  std::string authorization;  // the Authorization header, "" if none
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

class Api {
 public:
  // `root` verifies registered releases; `token` is compared in constant time.
  Api(Store& store, Engine& engine, Metrics& metrics, crypto::TrustRoot root, std::string token,
      const core::Clock& clock);
  HttpResponse Handle(const HttpRequest& req);
  // Named, scoped tokens (http::TokenTable) besides the shared `token` (which stays an admin token; "" disables
  // it): GET needs viewer, changes operator, GET /api/v1/audit operator. Every mutating call, refused or not, goes
  // to the audit log (Store::AppendAudit) with the token's name.
  void set_tokens(std::shared_ptr<http::TokenTable> tokens) { tokens_ = std::move(tokens); }
  // The same, as the handler of an http::Server (common/http).
  http::Response Serve(const http::Request& req);

 private:
  HttpResponse Route(const HttpRequest& req);

  Store& store_;
  Engine& engine_;
  Metrics& metrics_;
  crypto::TrustRoot root_;
  std::string token_;
  std::shared_ptr<http::TokenTable> tokens_;
  std::string principal_;  // of the request being handled (io thread only)
  const core::Clock& clock_;
};

}  // namespace tug::controller
