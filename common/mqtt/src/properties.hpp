// Conversions between our MQTT v5 property structs and libmosquitto's property lists; and libmosquitto return
// codes to tug::Error.
#pragma once

#include <mosquitto.h>

#include "core/error.hpp"
#include "mqtt/client.hpp"

namespace tug::mqtt::detail {

// Owns a mosquitto_property list.
class PropertyList {
 public:
  PropertyList() = default;
  ~PropertyList() { mosquitto_property_free_all(&list_); }
  PropertyList(const PropertyList&) = delete;
  PropertyList& operator=(const PropertyList&) = delete;
  mosquitto_property** out() { return &list_; }
  const mosquitto_property* get() const { return list_; }

 private:
  mosquitto_property* list_ = nullptr;
};

Status BuildPublishProperties(const PublishProperties& in, PropertyList& out);
// Fills the v5 fields of `msg` from a received PUBLISH's properties (may be null).
void ReadMessageProperties(const mosquitto_property* props, Message& msg);
Error MosqError(int rc, const std::string& context);

}  // namespace tug::mqtt::detail
