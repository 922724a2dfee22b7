// http::Client: a blocking HTTP/1.1 client over Boost.Beast (Beast stays in client.cpp: it is slow to compile).
// Used by the registry client, the cluster scheduler's frameworks, nodes and etcd client. Every connect/read/write
// wait has a deadline; idle keep-alive connections are pooled per scheme://host:port. Thread-safe: calls are
// serialised on one private io_context, so a long-lived streamed response (a RecordIO event stream read through a
// BodySink) needs a Client of its own.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace tug::http {

struct Url {
  bool https = false;
  std::string host;  // without brackets for IPv6
  std::string port;  // always set ("80"/"443" by default)
  std::string target;  // path + query, starts with '/'

  // Absolute "http(s)://host[:port]/path?query".
  static Result<Url> Parse(std::string_view s);
  // Resolves a Location header (absolute, scheme-relative or path-relative) against this URL.
  Result<Url> Resolve(std::string_view location) const;
  // "host:port" as sent in Host (port omitted when it is the scheme's default).
  std::string Authority() const;
  // scheme://host:port: equal origins may share credentials and connections.
  std::string Origin() const;
  std::string ToString() const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct ClientRequest {
  std::string method = "GET";
  Url url;
  Headers headers;
  std::string_view body;  // must outlive Send()
};

struct ClientResponse {
  int status = 0;
  std::string reason;
  Headers headers;
  std::string body;  // collected unless a sink took it
  // First header with this name (case-insensitive), or empty.
  std::string Header(std::string_view name) const;
};

// Receives the body of a 2xx response chunk by chunk; `head` has the status and headers. An error aborts.
using BodySink = std::function<Status(const ClientResponse& head, std::string_view chunk)>;

struct ClientOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};
  std::string ca_file;
  // Bodies not given to a sink are collected up to this size (kProtocol beyond).
  size_t max_collected_body = 16 << 20;
  // A client certificate and key (PEM) presented to https servers that ask for one (mutual TLS).
  std::string cert_file{}, key_file{};
};

class Client {
 public:
  explicit Client(ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request and reads the response. Non-2xx responses are returned, not errors; errors are transport
  // failures: kUnavailable (resolve/connect/reset/TLS), kTimeout (a wait passed the deadline), kProtocol (bad HTTP),
  // or whatever the sink returned. `received` (if set) is increased by every body byte read.
  // Send with the URL as text (kInvalidArgument when it does not parse).
  Result<ClientResponse> Call(std::string_view method, std::string_view url, std::string_view body = {},
                              Headers headers = {}, const BodySink* sink = nullptr);
  Result<ClientResponse> Send(const ClientRequest& req, const BodySink* sink = nullptr,
                            std::atomic<uint64_t>* received = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tug::http
