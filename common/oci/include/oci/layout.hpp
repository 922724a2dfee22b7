// OCI image layout on disk: oci-layout, index.json, blobs/sha256/<hex>. Used by image-builder output, the test
// image factory and interop tests with umoci/skopeo. Blocking; one writer at a time.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"
#include "oci/image.hpp"

namespace tug::oci {

class ImageLayout {
 public:
  // Creates the directory structure if missing (idempotent).
  static Result<ImageLayout> Create(const std::string& dir);
  // Opens an existing layout; kNotFound / kInvalidArgument if it is not one.
  static Result<ImageLayout> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string BlobPath(std::string_view digest) const;
  // Stores data under its sha256; returns its descriptor.
  Result<Descriptor> WriteBlob(std::string_view data, std::string_view media_type);
  // Moves an existing file in as a blob. Its digest is computed here; when `expected_digest` is given it must match
  // (kIntegrity otherwise, and the file is left where it was).
  Result<Descriptor> ImportBlobFile(const std::string& path, std::string_view media_type,
                                    std::string_view expected_digest = {});
  Result<std::string> ReadBlob(std::string_view digest) const;
  bool HasBlob(std::string_view digest) const;
  Result<Index> ReadIndex() const;
  // Adds (or replaces, by ref name annotation) a manifest descriptor in index.json;
  // `ref_name` goes to org.opencontainers.image.ref.name when non-empty.
  Status AddToIndex(Descriptor desc, const std::string& ref_name);

 private:
  explicit ImageLayout(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace tug::oci
