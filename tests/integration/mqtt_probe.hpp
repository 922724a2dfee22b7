// A test-side MQTT participant (the controller's identity): its own io_context thread, records every message it
// receives, publishes on request and waits (bounded) for messages matching a predicate.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "mqtt/client.hpp"

namespace tug::itest {

class MqttProbe {
 public:
  explicit MqttProbe(mqtt::ClientOptions opts) : work_(boost::asio::make_work_guard(io_)), client_(io_, std::move(opts)) {
    client_.on_message([this](const mqtt::Message& m) {
      std::lock_guard lk(mu_);
      messages_.push_back(m);
      cv_.notify_all();
    });
    client_.on_connect([this](bool) {
      std::lock_guard lk(mu_);
      connected_ = true;
      cv_.notify_all();
    });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~MqttProbe() {
    Call([this] { client_.Stop(); });
    work_.reset();
    io_.stop();
    thread_.join();
  }

  // Runs f on the io thread and waits for it.
  template <typename F>
  auto Call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return fut.get();
  }

  Status Start() { return Call([this] { return client_.Start(); }); }
  bool WaitConnected(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [this] { return connected_; });
  }
  void Subscribe(const std::string& filter) { Call([&] { (void)client_.Subscribe(filter, 1); }); }
  Result<int> Publish(const std::string& topic, const std::string& payload, bool retain = false,
                      mqtt::PublishProperties props = {}) {
    return Call([&] { return client_.Publish(topic, payload, 1, retain, props); });
  }

  // The first message (in arrival order, from index `from`) matching pred, within the timeout.
  std::optional<mqtt::Message> WaitFor(const std::function<bool(const mqtt::Message&)>& pred,
                                       std::chrono::milliseconds timeout, size_t from = 0) {
    std::unique_lock lk(mu_);
    std::optional<mqtt::Message> found;
    cv_.wait_for(lk, timeout, [&] {
      for (size_t i = from; i < messages_.size(); ++i)
        if (pred(messages_[i])) {
          found = messages_[i];
          return true;
        }
      return false;
    });
    return found;
  }
  size_t Count() {
    std::lock_guard lk(mu_);
    return messages_.size();
  }
  std::vector<mqtt::Message> Messages() {
    std::lock_guard lk(mu_);
    return messages_;
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  mqtt::Client client_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<mqtt::Message> messages_;
  bool connected_ = false;
};

}  // namespace tug::itest
