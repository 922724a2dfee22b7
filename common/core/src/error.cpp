#include "core/error.hpp"

#include <cerrno>
#include <cstring>

namespace tug {

const char* ToString(Errc code) {
  switch (code) {
    case Errc::kOk: return "ok";
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kNotFound: return "not found";
    case Errc::kAlreadyExists: return "already exists";
    case Errc::kIo: return "I/O error";
    case Errc::kNoSpace: return "not enough disk space";
    case Errc::kIntegrity: return "integrity check failed";
    case Errc::kSignature: return "signature check failed";
    case Errc::kExpired: return "expired";
    case Errc::kRollbackRejected: return "version not above the committed version";
    case Errc::kPolicy: return "policy violation";
    case Errc::kUnsafeArchive: return "unsafe archive";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kTimeout: return "timed out";
    case Errc::kProtocol: return "protocol error";
    case Errc::kUnauthorized: return "unauthorized";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kHealthCheckFailed: return "health check failed";
    case Errc::kRuntime: return "container runtime error";
    case Errc::kCancelled: return "cancelled";
    case Errc::kInternal: return "internal error";
  }
  return "unknown";
}

namespace {
class Category : public std::error_category {
 public:
  const char* name() const noexcept override { return "tugboat"; }
  std::string message(int ev) const override { return ToString(static_cast<Errc>(ev)); }
};
}  // namespace

const std::error_category& TugCategory() {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) { return {static_cast<int>(e), TugCategory()}; }

std::string Error::Message() const {
  if (context.empty()) return code.message();
  // Contexts often end with the code's own words already ("...: health check failed"); do not say it twice.
  const std::string name = code.message();
  if (context.size() >= name.size() && context.compare(context.size() - name.size(), name.size(), name) == 0)
    return context;
  return context + ": " + name;
}

tl::unexpected<Error> ErrnoError(int err, std::string context) {
  if (err == ENOSPC || err == EDQUOT) return MakeError(Errc::kNoSpace, std::move(context));
  return tl::unexpected<Error>(Error{std::error_code(err, std::generic_category()), std::move(context)});
}

bool IsRetryable(const Error& e) {
  if (e.code.category() == TugCategory()) {
    switch (static_cast<Errc>(e.code.value())) {
      case Errc::kUnavailable:
      case Errc::kTimeout:
      case Errc::kIo:
        return true;
      default:
        return false;
    }
  }
  // System errors: connection trouble is transient, everything else is not.
  const int v = e.code.value();
  return v == ECONNREFUSED || v == ECONNRESET || v == ETIMEDOUT || v == EHOSTUNREACH || v == ENETUNREACH ||
         v == EPIPE || v == EAGAIN || v == EINTR;
}

}  // namespace tug
