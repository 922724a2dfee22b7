// tug::mqtt::Client: an MQTT v5 client on libmosquitto, driven by the caller's Asio io_context (DESIGN §8):
// libmosquitto's socket is watched through a non-owning posix::stream_descriptor and pumped with
// mosquitto_loop_read/loop_write; a 1 s steady_timer runs mosquitto_loop_misc (keepalive). libmosquitto's own
// thread is never started.
//
// Threading: every method must be called on the io_context's thread (or before it runs), and every handler runs
// there. Nothing blocks: connects, TLS handshakes and writes are non-blocking. Do not destroy the Client from inside
// one of its handlers; destroying it elsewhere is safe at any time (pending waits are abandoned).
//
// Connection: Start() begins connecting and returns; the client then stays connected on its own until Stop():
// after a failed attempt, a refused CONNACK, a lost link or a keepalive timeout it retries with exponential backoff
// (reconnect_min doubling up to reconnect_max, each delay drawn uniformly from [d/2, d] so a fleet that lost the
// broker together does not return together). An attempt that gets no CONNACK within connect_timeout is abandoned.
// When a CONNACK says the session was not present, every subscription made through Subscribe() is sent again.
//
// Offline publishing: QoS 1/2 publishes made while disconnected are kept by libmosquitto in memory and sent after
// the next CONNACK (so are unacknowledged ones in flight when the link dropped); QoS 0 publishes while offline fail
// with kUnavailable. At most max_pending_publishes QoS>0 messages may be unacknowledged (offline or in flight); past
// that Publish fails with kUnavailable and the caller decides (drop progress, keep state). The queue is not
// persisted: a process restart loses it, which is why device state topics are retained and re-published on connect.
//
// Errors: kInvalidArgument (bad topic, qos, payload too large, bad TLS files at Start), kUnavailable (not
// connected for QoS 0, pending queue full), kInternal (libmosquitto out of memory or unexpected).
#pragma once

#include <utility>  // before Asio: Debian's Boost 1.74 misses it in awaitable.hpp

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace tug::mqtt {

struct TlsOptions {
  std::string ca_file;    // PEM CA that signed the broker's certificate
  std::string cert_file;  // client certificate (its CN is the MQTT user on a Tugboat broker); empty: none
  std::string key_file;
};

struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = true;
};

using UserProperties = std::vector<std::pair<std::string, std::string>>;

// MQTT v5 PUBLISH properties.
struct PublishProperties {
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;  // binary-safe
  std::optional<std::chrono::seconds> message_expiry;
  std::optional<std::string> content_type;
  UserProperties user_properties;
};

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;
  std::optional<std::chrono::seconds> message_expiry;  // remaining lifetime as forwarded by the broker
  std::optional<std::string> content_type;
  UserProperties user_properties;
};

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 1883;
  std::string client_id;  // required (a Tugboat device uses its device id)
  std::optional<TlsOptions> tls;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::chrono::seconds keepalive{30};  // at least 5 s (libmosquitto's floor)
  // false + session_expiry > 0: the broker keeps subscriptions and queues QoS 1 messages while we are away.
  bool clean_start = false;
  std::chrono::seconds session_expiry{0};
  std::optional<Will> will;
  std::chrono::milliseconds reconnect_min{500};
  std::chrono::milliseconds reconnect_max{std::chrono::seconds(30)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  size_t max_pending_publishes = 1000;
};

class Client {
 public:
  Client(boost::asio::io_context& io, ClientOptions opts);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Validates the options, sets up libmosquitto and starts the first connect attempt. Errors only for
  // configuration problems (bad TLS files, empty client id, Start twice); network trouble is retried, not returned.
  Status Start();
  // Sends DISCONNECT if connected (so no Will is published), stops retrying and releases the socket. Idempotent.
  // Handlers are not called for this disconnect.
  void Stop();
  // Simulates a lost link: closes the socket without DISCONNECT (the broker publishes the Will) and reconnects as
  // after any loss. For tests and for a link the caller knows is dead.
  void AbortConnection();

  // Returns the message id (0 for QoS 0). See the header comment for offline behaviour and errors.
  Result<int> Publish(const std::string& topic, std::string_view payload, int qos = 1, bool retain = false,
                      const PublishProperties& props = {});
  // Remembers the subscription (re-sent after a reconnect without session) and sends it now when connected.
  // Returns the message id, or 0 when it will be sent on the next connect. A broker refusal (ACL) shows up as a
  // granted QoS >= 0x80 in on_subscribe.
  Result<int> Subscribe(const std::string& filter, int qos = 1);
  Status Unsubscribe(const std::string& filter);

  bool connected() const;
  size_t pending_publishes() const;
  // Connect attempts that failed since Start() (refused, TLS failure, timeout), for tests and metrics.
  uint64_t failed_attempts() const;

  // Handlers (set before Start or any time on the io_context thread).
  void on_connect(std::function<void(bool session_present)> h);
  // A connection that had been established was lost (reason says why); the client is already reconnecting.
  void on_disconnect(std::function<void(const Error& reason)> h);
  void on_message(std::function<void(const Message&)> h);
  // A QoS>0 publish was acknowledged (reason_code 0) or refused by the broker (>= 0x80, e.g. 0x87 not authorized).
  void on_publish(std::function<void(int mid, int reason_code)> h);
  void on_subscribe(std::function<void(int mid, const std::vector<int>& granted)> h);
  // A connect attempt failed (no CONNACK, refused CONNACK, TLS failure); a retry is already scheduled.
  void on_connect_failed(std::function<void(const Error& reason)> h);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tug::mqtt
