#include "lib/status/status.h"

#include <cstring>

namespace latch {

Status Status::FromErrno(std::string_view what, int errno_value) {
  std::string msg(what);
  msg += ": ";
  const char* desc = strerrordesc_np(errno_value);  // thread-safe, unlike strerror
  msg += desc != nullptr ? std::string(desc) : "unknown error " + std::to_string(errno_value);
  return IoError(std::move(msg));
}

std::string Status::ToString() const {
  const char* name = "ok";
  switch (code_) {
    case Code::kOk:
      return "ok";
    case Code::kInvalidArgument:
      name = "invalid argument";
      break;
    case Code::kNotFound:
      name = "not found";
      break;
    case Code::kAlreadyExists:
      name = "already exists";
      break;
    case Code::kCorruption:
      name = "corruption";
      break;
    case Code::kVerifyFailed:
      name = "verification failed";
      break;
    case Code::kIoError:
      name = "I/O error";
      break;
    case Code::kFailedPrecondition:
      name = "failed precondition";
      break;
    case Code::kResourceExhausted:
      name = "resource exhausted";
      break;
  }
  return std::string(name) + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

}  // namespace latch
