// The server and client together on loopback: plain requests, query/headers, streamed responses that end by
// Close, by the client going away, and by the server stopping.
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "http/client.hpp"
#include "http/recordio.hpp"
#include "http/server.hpp"
#include "testsupport/net.hpp"

using namespace tug;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  boost::asio::io_context io;
  std::unique_ptr<http::Server> server;
  std::thread thread;
  std::shared_ptr<http::Stream> last_stream;
  std::atomic<int> closed{0};

  Fixture() {
    auto s = http::Server::Start(io, "127.0.0.1", 0, [this](const http::Request& r) { return Handle(r); });
    REQUIRE(s);
    server = std::move(*s);
  }
  void Run() {
    thread = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  ~Fixture() {
    boost::asio::post(io, [this] { server->Stop(); });
    io.stop();
    if (thread.joinable()) thread.join();
  }
  std::string Base() const { return "http://127.0.0.1:" + std::to_string(server->port()); }

  http::Response Handle(const http::Request& r) {
    if (r.Path() == "/echo") {
      auto q = r.Query();
      http::Response res;
      res.content_type = "text/plain";
      res.headers = {{"X-Seen", r.Header("x-token")}};
      res.body = r.method + " " + q["a"] + " " + q["b"] + " " + r.body;
      return res;
    }
    if (r.Path() == "/stream") {
      auto st = http::Server::MakeStream(io);
      st->OnClose([this] { closed++; });
      st->Write(http::RecordIoEncode("first"));
      last_stream = st;
      http::Response res;
      res.content_type = "application/recordio";
      res.headers = {{"Mesos-Stream-Id", "s-1"}};
      res.stream = st;
      return res;
    }
    return http::JsonError(404, "no route", "path");
  }
};

}  // namespace

TEST_CASE("http server answers requests with query, headers and body; client reads them") {
  Fixture f;
  f.Run();
  http::Client c;
  auto res = c.Call("POST", f.Base() + "/echo?a=1&b=x%20y", "payload", {{"X-Token", "t"}});
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "POST 1 x y payload");
  CHECK(res->Header("x-seen") == "t");
  auto nf = c.Call("GET", f.Base() + "/nope");
  REQUIRE(nf);
  CHECK(nf->status == 404);
  CHECK(nf->body.find("\"field\":\"path\"") != std::string::npos);
}

TEST_CASE("http streamed response delivers records in order and ends on Close") {
  Fixture f;
  f.Run();
  std::thread closer([&] {
    REQUIRE(testsupport::WaitFor([&] { return f.last_stream != nullptr; }, 5s));
    for (int i = 0; i < 100; ++i) f.last_stream->Write(http::RecordIoEncode("rec" + std::to_string(i)));
    f.last_stream->Close();
  });
  http::Client c;
  std::vector<std::string> records;
  http::RecordIoDecoder dec;
  std::string stream_id;
  http::BodySink sink = [&](const http::ClientResponse& head, std::string_view chunk) -> Status {
    stream_id = head.Header("Mesos-Stream-Id");
    auto recs = dec.Feed(chunk);
    if (!recs) return tl::unexpected(recs.error());
    records.insert(records.end(), recs->begin(), recs->end());
    return {};
  };
  auto res = c.Call("POST", f.Base() + "/stream", "", {}, &sink);
  closer.join();
  REQUIRE(res);
  CHECK(stream_id == "s-1");
  REQUIRE(records.size() == 101);
  CHECK(records[0] == "first");
  CHECK(records[100] == "rec99");
  REQUIRE(testsupport::WaitFor([&] { return f.closed == 1; }, 5s));
}

TEST_CASE("http stream ends (OnClose runs) when the client goes away") {
  Fixture f;
  f.Run();
  {
    http::ClientOptions opts;
    opts.timeout = 300ms;
    http::Client c(opts);
    int got = 0;
    http::BodySink sink = [&](const http::ClientResponse&, std::string_view) -> Status {
      ++got;
      return MakeError(Errc::kCancelled, "client done");
    };
    auto res = c.Call("POST", f.Base() + "/stream", "", {}, &sink);
    CHECK_FALSE(res);
    CHECK(got == 1);
  }
  REQUIRE(testsupport::WaitFor([&] { return f.closed == 1; }, 5s));
  CHECK(f.last_stream->closed());
}

TEST_CASE("http streamed record reaches the client's sink at once, not with the next record") {
  Fixture f;
  f.Run();
  http::Client c;
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration first{};
  http::RecordIoDecoder dec;
  http::BodySink sink = [&](const http::ClientResponse&, std::string_view chunk) -> Status {
    auto recs = dec.Feed(chunk);
    if (recs && !recs->empty()) {
      first = std::chrono::steady_clock::now() - t0;
      return MakeError(Errc::kCancelled, "got it");
    }
    return {};
  };
  std::thread closer([&] {
    std::this_thread::sleep_for(3s);
    if (f.last_stream) f.last_stream->Close();
  });
  (void)c.Call("POST", f.Base() + "/stream", "", {}, &sink);
  closer.join();
  CHECK(first > std::chrono::steady_clock::duration{});
  CHECK(first < 1s);
}
