// The registry client's names for the shared HTTP client (common/http), kept so the client reads as before.
#pragma once

#include "http/client.hpp"

namespace tug::registry::internal {

using Url = http::Url;
using Headers = http::Headers;
using HttpRequest = http::ClientRequest;
using HttpResponse = http::ClientResponse;
using BodySink = http::BodySink;
using TransportOptions = http::ClientOptions;
using HttpTransport = http::Client;

}  // namespace tug::registry::internal
