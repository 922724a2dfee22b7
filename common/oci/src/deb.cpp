#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/env.hpp"
#include "entry_writer.hpp"
#include "oci/layer.hpp"

namespace tug::oci {

namespace {

struct Outer {
  archive* a;
  char buf[64 * 1024];
};

la_ssize_t ReadMember(archive* inner, void* opaque, const void** out) {
  auto* o = static_cast<Outer*>(opaque);
  la_ssize_t n = archive_read_data(o->a, o->buf, sizeof(o->buf));
  if (n < 0) {
    archive_set_error(inner, EIO, "reading .deb member: %s", archive_error_string(o->a));
    return -1;
  }
  *out = o->buf;
  return n;
}

struct Reader {
  archive* a = archive_read_new();
  ~Reader() { archive_read_free(a); }
};

}  // namespace

Status ExtractDebData(const std::string& deb_path, const std::string& dir) {
  TUG_TRY(core::DefaultEnv()->CreateDirs(dir));
  Reader outer;
  archive_read_support_format_ar(outer.a);
  if (archive_read_open_filename(outer.a, deb_path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    return MakeError(Errc::kInvalidArgument, "opening " + deb_path + ": " + archive_error_string(outer.a));
  }
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(outer.a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      return MakeError(Errc::kInvalidArgument, "reading " + deb_path + ": " + archive_error_string(outer.a));
    }
    const std::string name = archive_entry_pathname(e) != nullptr ? archive_entry_pathname(e) : "";
    if (name.rfind("data.tar", 0) != 0) continue;

    // .deb data is trusted no more than a layer: the same entry writer, minus whiteouts (a file may really be
    // called .wh.something in a package).
    internal::WriterOptions wopts;
    wopts.whiteouts = false;
    wopts.preserve_owner = ::geteuid() == 0;
    TUG_ASSIGN_OR_RETURN(auto writer, internal::EntryWriter::Open(dir, wopts));
    Outer src{outer.a, {}};
    Reader inner;
    archive_read_support_filter_all(inner.a);
    archive_read_support_format_tar(inner.a);
    if (archive_read_open(inner.a, &src, nullptr, ReadMember, nullptr) != ARCHIVE_OK) {
      return MakeError(Errc::kInvalidArgument, "opening " + deb_path + " " + name + ": " +
                                                   archive_error_string(inner.a));
    }
    auto s = internal::ExtractEntries(inner.a, *writer, [] { return std::optional<Error>(); });
    if (!s) return tl::unexpected(Wrap(s.error(), "unpacking " + deb_path));
    return {};
  }
  return MakeError(Errc::kInvalidArgument, deb_path + " has no data.tar member");
}

}  // namespace tug::oci
