// Image references: "HOST[:PORT]/REPO[:TAG][@sha256:HEX]". The host part is required (Tugboat never guesses
// Docker Hub): "127.0.0.1:5000/acme/sensor@sha256:...".
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace tug::registry {

struct Reference {
  std::string registry;    // "127.0.0.1:5000"
  std::string repository;  // "acme/sensor"
  std::string tag;         // may be empty
  std::string digest;      // may be empty
  static Result<Reference> Parse(std::string_view s);
  // "registry/repository" (what a release's "repository" field holds)
  std::string Repo() const { return registry + "/" + repository; }
  // digest if set, else tag, else "latest"
  std::string Ref() const;
  std::string ToString() const;
};

// True for "sha256:" followed by 64 lowercase hex digits (the only digest algorithm Tugboat accepts).
bool IsValidDigest(std::string_view digest);

}  // namespace tug::registry
