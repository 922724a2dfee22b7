// Error handling shared by every Tugboat module.
//
// Result<T> is tl::expected<T, Error>. An Error carries a std::error_code (either one of Tugboat's Errc values or a
// system errno in std::generic_category) and a human context string that says what was being done. Errors never
// cross module boundaries as exceptions.
//
// Retry policy follows the code, not the message: IsRetryable() is true for transient conditions (network
// unavailable, timeouts, interrupted transfers) and false for integrity and trust failures, which must never be
// retried against the same input.
#pragma once

#include <string>
#include <system_error>
#include <utility>

#include <tl/expected.hpp>

namespace tug {

enum class Errc {
  kOk = 0,
  kInvalidArgument = 1,   // caller passed something malformed (bad flag, bad JSON, bad reference)
  kNotFound,              // file, blob, manifest, tag or key does not exist
  kAlreadyExists,
  kIo,                    // local I/O failed (EIO and friends carry the errno instead where known)
  kNoSpace,               // not enough disk for the operation (checked up front or ENOSPC)
  kIntegrity,             // digest or size mismatch: corrupted or substituted content
  kSignature,             // signature invalid, below threshold, or unknown key
  kExpired,               // release or trust root expired
  kRollbackRejected,      // release version not above the committed ratchet
  kPolicy,                // signed content does not match what was asked (repository, platform, ...)
  kUnsafeArchive,         // tar entry escapes the rootfs, device node, bomb
  kUnavailable,           // network peer unreachable or answered 5xx / 429
  kTimeout,
  kProtocol,              // peer answered something that breaks the protocol
  kUnauthorized,          // registry or API refused our credentials
  kUnsupported,           // media type, platform or feature we do not handle
  kHealthCheckFailed,
  kRuntime,               // the container runtime (runc) failed
  kCancelled,
  kInternal,
};

const char* ToString(Errc code);
const std::error_category& TugCategory();
std::error_code make_error_code(Errc e);

struct Error {
  std::error_code code;
  std::string context;

  // "context: message", the form printed on stderr by the CLIs.
  std::string Message() const;
  bool Is(Errc e) const { return code == make_error_code(e); }
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> MakeError(Errc code, std::string context) {
  return tl::unexpected<Error>(Error{make_error_code(code), std::move(context)});
}
// From an errno value (e.g. ENOSPC, EIO); ENOSPC is mapped to Errc::kNoSpace so callers test one code.
tl::unexpected<Error> ErrnoError(int err, std::string context);

// Adds outer context: "installing release: fetching blob sha256:...: connection refused".
inline Error Wrap(Error e, const std::string& outer) {
  e.context = outer + ": " + e.context;
  return e;
}

bool IsRetryable(const Error& e);

}  // namespace tug

namespace std {
template <>
struct is_error_code_enum<tug::Errc> : true_type {};
}  // namespace std

// Propagates an error from an expression returning Result<...>; usable only in functions returning Result<...>.
#define TUG_TRY(expr)                                          \
  do {                                                         \
    auto tug_try_result_ = (expr);                             \
    if (!tug_try_result_) return tl::unexpected(std::move(tug_try_result_.error())); \
  } while (0)

#define TUG_CONCAT_INNER_(a, b) a##b
#define TUG_CONCAT_(a, b) TUG_CONCAT_INNER_(a, b)
// TUG_ASSIGN_OR_RETURN(auto x, Foo()); declares x from the value or returns the error.
#define TUG_ASSIGN_OR_RETURN(decl, expr)                                   \
  auto TUG_CONCAT_(tug_aor_, __LINE__) = (expr);                           \
  if (!TUG_CONCAT_(tug_aor_, __LINE__))                                    \
    return tl::unexpected(std::move(TUG_CONCAT_(tug_aor_, __LINE__).error())); \
  decl = std::move(*TUG_CONCAT_(tug_aor_, __LINE__))
