// DSSE envelopes (https://github.com/secure-systems-lab/dsse): the signature covers
// PAE(payloadType, payload) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, never re-serialised JSON.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "crypto/ed25519.hpp"

namespace tug::crypto {

std::string Pae(std::string_view payload_type, std::string_view payload);

struct DsseSignature {
  std::string keyid;
  std::string sig;  // raw signature bytes
};

struct Envelope {
  std::string payload_type;
  std::string payload;  // raw payload bytes (base64 only in JSON)
  std::vector<DsseSignature> signatures;

  // {"payloadType":..,"payload":<b64>,"signatures":[{"keyid":..,"sig":<b64>}]}
  std::string ToJson() const;
  static Result<Envelope> Parse(std::string_view json);  // kInvalidArgument on malformed JSON/base64
};

Envelope SignEnvelope(std::string_view payload_type, std::string_view payload, const std::vector<KeyPair>& keys);

}  // namespace tug::crypto
