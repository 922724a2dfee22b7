#include "src/properties.hpp"

#include <mqtt_protocol.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tug::mqtt::detail {

Error MosqError(int rc, const std::string& context) {
  const std::string what = context + ": " + mosquitto_strerror(rc);
  switch (rc) {
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
    case MOSQ_ERR_OVERSIZE_PACKET:
    case MOSQ_ERR_DUPLICATE_PROPERTY:
    case MOSQ_ERR_NOT_SUPPORTED:
      return MakeError(Errc::kInvalidArgument, what).value();
    case MOSQ_ERR_NOMEM:
      return MakeError(Errc::kInternal, what).value();
    case MOSQ_ERR_AUTH:
    case MOSQ_ERR_ACL_DENIED:
    case MOSQ_ERR_CONN_REFUSED:
      return MakeError(Errc::kUnauthorized, what).value();
    case MOSQ_ERR_KEEPALIVE:
      return MakeError(Errc::kTimeout, what).value();
    case MOSQ_ERR_ERRNO:
      // libmosquitto leaves the cause in errno; keep the words, classify as a transient network failure.
      return MakeError(Errc::kUnavailable, context + ": " + std::strerror(errno)).value();
    default:
      return MakeError(Errc::kUnavailable, what).value();
  }
}

Status BuildPublishProperties(const PublishProperties& in, PropertyList& out) {
  int rc = MOSQ_ERR_SUCCESS;
  if (in.response_topic)
    rc = mosquitto_property_add_string(out.out(), MQTT_PROP_RESPONSE_TOPIC, in.response_topic->c_str());
  if (rc == MOSQ_ERR_SUCCESS && in.correlation_data) {
    if (in.correlation_data->size() > UINT16_MAX)
      return MakeError(Errc::kInvalidArgument, "correlation data longer than 65535 bytes");
    rc = mosquitto_property_add_binary(out.out(), MQTT_PROP_CORRELATION_DATA, in.correlation_data->data(),
                                       static_cast<uint16_t>(in.correlation_data->size()));
  }
  if (rc == MOSQ_ERR_SUCCESS && in.message_expiry)
    rc = mosquitto_property_add_int32(out.out(), MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                      static_cast<uint32_t>(in.message_expiry->count()));
  if (rc == MOSQ_ERR_SUCCESS && in.content_type)
    rc = mosquitto_property_add_string(out.out(), MQTT_PROP_CONTENT_TYPE, in.content_type->c_str());
  for (const auto& [k, v] : in.user_properties) {
    if (rc != MOSQ_ERR_SUCCESS) break;
    rc = mosquitto_property_add_string_pair(out.out(), MQTT_PROP_USER_PROPERTY, k.c_str(), v.c_str());
  }
  if (rc != MOSQ_ERR_SUCCESS) return tl::unexpected(MosqError(rc, "building publish properties"));
  return {};
}

void ReadMessageProperties(const mosquitto_property* props, Message& msg) {
  if (props == nullptr) return;
  // The read functions allocate with malloc; ownership passes to us.
  char* str = nullptr;
  if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &str, false) != nullptr && str != nullptr) {
    msg.response_topic = str;
    std::free(str);
  }
  str = nullptr;
  if (mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &str, false) != nullptr && str != nullptr) {
    msg.content_type = str;
    std::free(str);
  }
  void* bin = nullptr;
  uint16_t len = 0;
  if (mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &bin, &len, false) != nullptr) {
    msg.correlation_data = std::string(static_cast<const char*>(bin), len);
    std::free(bin);
  }
  uint32_t expiry = 0;
  if (mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &expiry, false) != nullptr)
    msg.message_expiry = std::chrono::seconds(expiry);
  char* name = nullptr;
  char* value = nullptr;
  const mosquitto_property* p = mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
  while (p != nullptr) {
    msg.user_properties.emplace_back(name, value);
    std::free(name);
    std::free(value);
    name = value = nullptr;
    p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
  }
}

}  // namespace tug::mqtt::detail
