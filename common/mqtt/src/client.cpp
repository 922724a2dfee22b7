#include "mqtt/client.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "src/properties.hpp"

namespace tug::mqtt {

namespace asio = boost::asio;
using detail::MosqError;

struct Client::Impl : std::enable_shared_from_this<Impl> {
  enum class State { kIdle, kConnecting, kConnected, kBackoff, kStopped };

  Impl(asio::io_context& io, ClientOptions o)
      : io_(io), opts_(std::move(o)), sd_(io), misc_(io), retry_(io), deadline_(io), rng_(std::random_device{}()) {}
  ~Impl() {
    ReleaseSocket();
    if (m_ != nullptr) mosquitto_destroy(m_);  // closes the socket we only borrowed
  }

  Status Start();
  void Stop();
  void Attempt();
  void AttemptFailed(Error e);
  void LinkLost(Error e);
  void ScheduleRetry();
  void ReleaseSocket();
  void AfterIo();
  void ArmRead();
  void ArmWrite();
  void OnReadable();
  void OnWritable();
  bool DeadWhileConnecting();
  void FailDeadAttempt();
  void Tick();

  // libmosquitto callbacks; they run inside our mosquitto_loop_* calls, so on the io_context thread.
  static void OnConnectCb(mosquitto*, void* self, int rc, int flags, const mosquitto_property*);
  static void OnDisconnectCb(mosquitto*, void* self, int rc, const mosquitto_property*);
  static void OnMessageCb(mosquitto*, void* self, const mosquitto_message* m, const mosquitto_property* props);
  static void OnPublishCb(mosquitto*, void* self, int mid, int reason, const mosquitto_property*);
  static void OnSubscribeCb(mosquitto*, void* self, int mid, int count, const int* granted, const mosquitto_property*);

  asio::io_context& io_;
  ClientOptions opts_;
  mosquitto* m_ = nullptr;
  asio::posix::stream_descriptor sd_;
  int fd_ = -1;
  // Bumped whenever the descriptor is released: a wait completing for an older socket is ignored.
  uint64_t gen_ = 0;
  bool read_armed_ = false, write_armed_ = false;
  // Until the first writable event of an attempt, the TCP connect is in progress and TLS has nothing to say yet.
  bool tcp_up_ = false;
  asio::steady_timer misc_, retry_, deadline_;
  State state_ = State::kIdle;
  bool first_connect_ = true;
  int backoff_step_ = 0;
  uint64_t failed_ = 0;
  std::optional<Error> refused_;  // a CONNACK with a failure code; the close that follows reports it
  std::map<std::string, int> subscriptions_;
  std::set<int> pending_;  // mids of unacknowledged QoS>0 publishes
  std::mt19937_64 rng_;

  std::function<void(bool)> on_connect_;
  std::function<void(const Error&)> on_disconnect_, on_connect_failed_;
  std::function<void(const Message&)> on_message_;
  std::function<void(int, int)> on_publish_;
  std::function<void(int, const std::vector<int>&)> on_subscribe_;
};

namespace {
std::once_flag g_lib_init;
}

Status Client::Impl::Start() {
  if (state_ != State::kIdle) return MakeError(Errc::kInvalidArgument, "mqtt client started twice");
  if (opts_.client_id.empty()) return MakeError(Errc::kInvalidArgument, "mqtt client id is empty");
  if (opts_.keepalive < std::chrono::seconds(5)) return MakeError(Errc::kInvalidArgument, "keepalive below 5 s");
  std::call_once(g_lib_init, [] { mosquitto_lib_init(); });
  m_ = mosquitto_new(opts_.client_id.c_str(), opts_.clean_start, this);
  if (m_ == nullptr) return MakeError(Errc::kInternal, "mosquitto_new failed");
  const std::string ctx = "mqtt client " + opts_.client_id;
  int rc = mosquitto_int_option(m_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  if (rc == MOSQ_ERR_SUCCESS && opts_.username)
    rc = mosquitto_username_pw_set(m_, opts_.username->c_str(), opts_.password ? opts_.password->c_str() : nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, ctx));
  if (opts_.tls) {
    const auto& t = *opts_.tls;
    rc = mosquitto_tls_set(m_, t.ca_file.c_str(), nullptr, t.cert_file.empty() ? nullptr : t.cert_file.c_str(),
                           t.key_file.empty() ? nullptr : t.key_file.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, ctx + ": TLS files (" + t.ca_file + ")"));
  }
  if (opts_.will) {
    const auto& w = *opts_.will;
    rc = mosquitto_will_set_v5(m_, w.topic.c_str(), static_cast<int>(w.payload.size()), w.payload.data(), w.qos,
                               w.retain, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, ctx + ": will"));
  }
  if (opts_.session_expiry.count() > 0) {
    // libmosquitto has no asynchronous connect taking CONNECT properties, but mosquitto_connect_bind_v5 stores
    // them (for every later reconnect) before it validates the port. An invalid port therefore stores them
    // without the blocking TCP connect; the real connects below are the async ones.
    detail::PropertyList props;
    rc = mosquitto_property_add_int32(props.out(), MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                      static_cast<uint32_t>(opts_.session_expiry.count()));
    if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, ctx + ": session expiry"));
    rc = mosquitto_connect_bind_v5(m_, opts_.host.c_str(), -1, static_cast<int>(opts_.keepalive.count()), nullptr,
                                   props.get());
    if (rc != MOSQ_ERR_INVAL) return tl::unexpected(MosqError(rc, ctx + ": storing CONNECT properties"));
  }
  mosquitto_connect_v5_callback_set(m_, &Impl::OnConnectCb);
  mosquitto_disconnect_v5_callback_set(m_, &Impl::OnDisconnectCb);
  mosquitto_message_v5_callback_set(m_, &Impl::OnMessageCb);
  mosquitto_publish_v5_callback_set(m_, &Impl::OnPublishCb);
  mosquitto_subscribe_v5_callback_set(m_, &Impl::OnSubscribeCb);
  Tick();
  Attempt();
  return {};
}

void Client::Impl::Attempt() {
  if (state_ == State::kStopped) return;
  state_ = State::kConnecting;
  refused_.reset();
  tcp_up_ = false;
  // Both calls close libmosquitto's old socket and may get the same fd number back: let go of it first.
  ReleaseSocket();
  int rc;
  if (first_connect_) {
    rc = mosquitto_connect_bind_async(m_, opts_.host.c_str(), opts_.port, static_cast<int>(opts_.keepalive.count()),
                                      nullptr);
    // connect_init stored host and port even if the connect itself failed, so later attempts can reconnect.
    first_connect_ = false;
  } else {
    rc = mosquitto_reconnect_async(m_);
  }
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
    AttemptFailed(MosqError(rc, "connecting to " + opts_.host + ":" + std::to_string(opts_.port)));
    return;
  }
  deadline_.expires_after(opts_.connect_timeout);
  deadline_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (!self || ec || self->state_ != State::kConnecting) return;
    self->AttemptFailed(MakeError(Errc::kTimeout, "no CONNACK from " + self->opts_.host + ":" +
                                                      std::to_string(self->opts_.port) + " in time")
                            .value());
  });
  AfterIo();
}

void Client::Impl::AttemptFailed(Error e) {
  deadline_.cancel();
  ReleaseSocket();
  if (state_ == State::kStopped) return;
  ++failed_;
  state_ = State::kBackoff;
  if (on_connect_failed_) on_connect_failed_(e);
  ScheduleRetry();
}

void Client::Impl::LinkLost(Error e) {
  ReleaseSocket();
  if (state_ == State::kStopped) return;
  state_ = State::kBackoff;
  backoff_step_ = 0;  // a link that worked gets a quick first retry
  if (on_disconnect_) on_disconnect_(e);
  ScheduleRetry();
}

void Client::Impl::ScheduleRetry() {
  if (state_ == State::kStopped) return;
  using std::chrono::milliseconds;
  const auto max = std::max(opts_.reconnect_max, opts_.reconnect_min);
  milliseconds d = opts_.reconnect_min;
  for (int i = 0; i < backoff_step_ && d < max; ++i) d *= 2;
  d = std::min(d, max);
  ++backoff_step_;
  // Jitter in [d/2, d]: devices that lost the same broker spread their returns.
  std::uniform_int_distribution<int64_t> dist(d.count() / 2, std::max<int64_t>(d.count(), 1));
  retry_.expires_after(milliseconds(dist(rng_)));
  retry_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (!self || ec || self->state_ != State::kBackoff) return;
    self->Attempt();
  });
}

void Client::Impl::ReleaseSocket() {
  if (fd_ < 0) return;
  // The fd belongs to libmosquitto: release() deregisters it from the reactor without closing it.
  sd_.release();
  fd_ = -1;
  ++gen_;
  read_armed_ = write_armed_ = false;
}

void Client::Impl::AfterIo() {
  if (state_ == State::kStopped || m_ == nullptr) return;
  const int s = mosquitto_socket(m_);
  if (s < 0) {
    if (fd_ >= 0) {
      // libmosquitto closed the socket without a disconnect callback (a fatal TLS handshake error does that).
      ReleaseSocket();
      if (state_ == State::kConnecting)
        AttemptFailed(refused_.value_or(MakeError(Errc::kUnavailable, "TLS handshake with " + opts_.host +
                                                                          " failed").value()));
      else if (state_ == State::kConnected)
        LinkLost(MakeError(Errc::kUnavailable, "connection closed").value());
    }
    return;
  }
  if (s != fd_) {
    ReleaseSocket();
    boost::system::error_code ec;
    sd_.assign(s, ec);
    if (ec) {
      AttemptFailed(MakeError(Errc::kInternal, "watching the MQTT socket: " + ec.message()).value());
      return;
    }
    fd_ = s;
  }
  ArmRead();
  if (!tcp_up_ || mosquitto_want_write(m_)) ArmWrite();
  // OpenSSL may hold decrypted records the kernel no longer reports as readable.
  auto* ssl = static_cast<SSL*>(mosquitto_ssl_get(m_));
  if (ssl != nullptr && SSL_pending(ssl) > 0) {
    asio::post(io_, [w = weak_from_this(), g = gen_] {
      auto self = w.lock();
      if (self && g == self->gen_) self->OnReadable();
    });
  }
}

void Client::Impl::ArmRead() {
  if (fd_ < 0 || read_armed_) return;
  read_armed_ = true;
  sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                 [w = weak_from_this(), g = gen_](const boost::system::error_code& ec) {
                   auto self = w.lock();
                   if (!self || g != self->gen_) return;
                   self->read_armed_ = false;
                   if (!ec) self->OnReadable();
                 });
}

void Client::Impl::ArmWrite() {
  if (fd_ < 0 || write_armed_) return;
  write_armed_ = true;
  sd_.async_wait(asio::posix::stream_descriptor::wait_write,
                 [w = weak_from_this(), g = gen_](const boost::system::error_code& ec) {
                   auto self = w.lock();
                   if (!self || g != self->gen_) return;
                   self->write_armed_ = false;
                   if (!ec) self->OnWritable();
                 });
}

// libmosquitto keeps retrying SSL_connect on a socket whose TCP connect failed or that the peer closed mid-handshake
// (SSL_ERROR_SYSCALL counts as "try again"), which would spin on a permanently ready fd until connect_timeout.
// A socket that signalled readiness while connecting must therefore be connected and open.
bool Client::Impl::DeadWhileConnecting() {
  if (state_ != State::kConnecting || fd_ < 0) return false;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
    errno = err;
    return true;
  }
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) return true;
  char c;
  if (::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
    errno = ECONNRESET;
    return true;
  }
  return false;
}

void Client::Impl::FailDeadAttempt() {
  const int err = errno;
  AttemptFailed(refused_.value_or(
      MakeError(Errc::kUnavailable, "connecting to " + opts_.host + ":" + std::to_string(opts_.port) + ": " +
                                        std::strerror(err))
          .value()));
}

void Client::Impl::OnReadable() {
  if (state_ == State::kStopped) return;
  if (DeadWhileConnecting()) return FailDeadAttempt();
  mosquitto_loop_read(m_, 1);  // failures arrive through the disconnect callback or a closed socket
  AfterIo();
}

void Client::Impl::OnWritable() {
  if (state_ == State::kStopped) return;
  if (DeadWhileConnecting()) return FailDeadAttempt();
  tcp_up_ = true;
  mosquitto_loop_write(m_, 1);
  // During the TLS handshake only loop_read advances SSL_connect (libmosquitto's own loop does the same when the
  // socket turns writable); outside it, a read on a quiet socket is a harmless EAGAIN.
  if (state_ == State::kConnecting && mosquitto_socket(m_) >= 0) mosquitto_loop_read(m_, 1);
  AfterIo();
}

void Client::Impl::Tick() {
  if (state_ == State::kStopped) return;
  if (fd_ >= 0) {
    mosquitto_loop_misc(m_);  // keepalive: PINGREQ when due, close when the broker stopped answering
    AfterIo();
  }
  misc_.expires_after(std::chrono::seconds(1));
  misc_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (self && !ec) self->Tick();
  });
}

void Client::Impl::Stop() {
  if (state_ == State::kStopped || state_ == State::kIdle) {
    state_ = State::kStopped;
    return;
  }
  const bool was_connected = state_ == State::kConnected;
  state_ = State::kStopped;
  misc_.cancel();
  retry_.cancel();
  deadline_.cancel();
  // A DISCONNECT tells the broker not to publish the Will; best effort, the write is attempted at once.
  if (was_connected) mosquitto_disconnect_v5(m_, 0, nullptr);
  ReleaseSocket();
}

void Client::Impl::OnConnectCb(mosquitto*, void* obj, int rc, int flags, const mosquitto_property*) {
  auto* self = static_cast<Impl*>(obj);
  if (self->state_ != State::kConnecting) return;
  if (rc != 0) {
    // The broker closes the connection next; that close reports this reason as the attempt's failure.
    self->refused_ = MakeError(rc == MQTT_RC_NOT_AUTHORIZED || rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
                                       rc == MQTT_RC_BANNED
                                   ? Errc::kUnauthorized
                                   : Errc::kUnavailable,
                               std::string("broker refused the connection: ") + mosquitto_reason_string(rc))
                         .value();
    return;
  }
  self->deadline_.cancel();
  self->state_ = State::kConnected;
  self->backoff_step_ = 0;
  const bool session_present = (flags & 1) != 0;
  if (!session_present) {
    for (const auto& [filter, qos] : self->subscriptions_)
      mosquitto_subscribe_v5(self->m_, nullptr, filter.c_str(), qos, 0, nullptr);
  }
  if (self->on_connect_) self->on_connect_(session_present);
}

void Client::Impl::OnDisconnectCb(mosquitto*, void* obj, int rc, const mosquitto_property*) {
  auto* self = static_cast<Impl*>(obj);
  if (self->state_ == State::kConnected) {
    self->LinkLost(MosqError(rc == 0 ? MOSQ_ERR_CONN_LOST : rc, "connection to " + self->opts_.host + " lost")
                       );
  } else if (self->state_ == State::kConnecting) {
    self->AttemptFailed(self->refused_.value_or(
        MosqError(rc == 0 ? MOSQ_ERR_CONN_LOST : rc, "connecting to " + self->opts_.host)));
  }
}

void Client::Impl::OnMessageCb(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property* props) {
  auto* self = static_cast<Impl*>(obj);
  if (!self->on_message_ || self->state_ == State::kStopped) return;
  Message msg;
  msg.topic = m->topic;
  msg.payload.assign(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen));
  msg.qos = m->qos;
  msg.retain = m->retain;
  detail::ReadMessageProperties(props, msg);
  self->on_message_(msg);
}

void Client::Impl::OnPublishCb(mosquitto*, void* obj, int mid, int reason, const mosquitto_property*) {
  auto* self = static_cast<Impl*>(obj);
  // QoS 0 publishes also report here once written; only tracked mids count against the pending bound.
  if (self->pending_.erase(mid) == 0) return;
  if (self->on_publish_) self->on_publish_(mid, reason);
}

void Client::Impl::OnSubscribeCb(mosquitto*, void* obj, int mid, int count, const int* granted,
                                 const mosquitto_property*) {
  auto* self = static_cast<Impl*>(obj);
  if (self->on_subscribe_) self->on_subscribe_(mid, std::vector<int>(granted, granted + count));
}

// ---- Client ----

Client::Client(asio::io_context& io, ClientOptions opts) : impl_(std::make_shared<Impl>(io, std::move(opts))) {}
Client::~Client() { impl_->Stop(); }

Status Client::Start() { return impl_->Start(); }
void Client::Stop() { impl_->Stop(); }

void Client::AbortConnection() {
  if (impl_->fd_ < 0) return;
  // The socket turns readable at EOF; loop_read then reports the loss like any other and the retry starts.
  ::shutdown(impl_->fd_, SHUT_RDWR);
}

Result<int> Client::Publish(const std::string& topic, std::string_view payload, int qos, bool retain,
                            const PublishProperties& props) {
  Impl& s = *impl_;
  if (qos < 0 || qos > 2) return MakeError(Errc::kInvalidArgument, "qos must be 0, 1 or 2");
  if (s.m_ == nullptr || s.state_ == Impl::State::kStopped || s.state_ == Impl::State::kIdle)
    return MakeError(Errc::kUnavailable, "mqtt client not started");
  if (qos == 0 && s.state_ != Impl::State::kConnected)
    return MakeError(Errc::kUnavailable, "not connected (QoS 0 is not queued): " + topic);
  if (qos > 0 && s.pending_.size() >= s.opts_.max_pending_publishes)
    return MakeError(Errc::kUnavailable, "too many unacknowledged publishes (" +
                                             std::to_string(s.pending_.size()) + "): " + topic);
  if (payload.size() > static_cast<size_t>(MQTT_MAX_PAYLOAD))
    return MakeError(Errc::kInvalidArgument, "payload too large: " + topic);
  detail::PropertyList pl;
  TUG_TRY(detail::BuildPublishProperties(props, pl));
  int mid = 0;
  int rc = mosquitto_publish_v5(s.m_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), qos,
                                retain, pl.get());
  // Offline, libmosquitto has queued a QoS>0 message before saying NO_CONN; it goes out after the next CONNACK.
  const bool queued = qos > 0 && (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST);
  if (rc != MOSQ_ERR_SUCCESS && !queued) return tl::unexpected(MosqError(rc, "publishing to " + topic));
  if (qos > 0) s.pending_.insert(mid);
  s.AfterIo();
  return qos == 0 ? 0 : mid;
}

Result<int> Client::Subscribe(const std::string& filter, int qos) {
  Impl& s = *impl_;
  if (qos < 0 || qos > 2) return MakeError(Errc::kInvalidArgument, "qos must be 0, 1 or 2");
  if (mosquitto_sub_topic_check(filter.c_str()) != MOSQ_ERR_SUCCESS)
    return MakeError(Errc::kInvalidArgument, "invalid topic filter: " + filter);
  s.subscriptions_[filter] = qos;
  if (s.state_ != Impl::State::kConnected) return 0;
  int mid = 0;
  int rc = mosquitto_subscribe_v5(s.m_, &mid, filter.c_str(), qos, 0, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, "subscribing to " + filter));
  s.AfterIo();
  return mid;
}

Status Client::Unsubscribe(const std::string& filter) {
  Impl& s = *impl_;
  s.subscriptions_.erase(filter);
  if (s.state_ != Impl::State::kConnected) return {};
  int rc = mosquitto_unsubscribe_v5(s.m_, nullptr, filter.c_str(), nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, "unsubscribing from " + filter));
  s.AfterIo();
  return {};
}

bool Client::connected() const { return impl_->state_ == Impl::State::kConnected; }
size_t Client::pending_publishes() const { return impl_->pending_.size(); }
uint64_t Client::failed_attempts() const { return impl_->failed_; }

void Client::on_connect(std::function<void(bool)> h) { impl_->on_connect_ = std::move(h); }
void Client::on_disconnect(std::function<void(const Error&)> h) { impl_->on_disconnect_ = std::move(h); }
void Client::on_message(std::function<void(const Message&)> h) { impl_->on_message_ = std::move(h); }
void Client::on_publish(std::function<void(int, int)> h) { impl_->on_publish_ = std::move(h); }
void Client::on_subscribe(std::function<void(int, const std::vector<int>&)> h) {
  impl_->on_subscribe_ = std::move(h);
}
void Client::on_connect_failed(std::function<void(const Error&)> h) { impl_->on_connect_failed_ = std::move(h); }

}  // namespace tug::mqtt
