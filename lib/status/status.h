// Status: the result of an operation that can fail for reasons a caller must
// handle (bad input, I/O, corruption). Modelled on LevelDB's Status: cheap when
// OK, and carrying a code plus one human-readable line otherwise.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace latch {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,     // the caller's input is malformed or out of range
    kNotFound,            // a named thing does not exist
    kAlreadyExists,       // creating something that is already there
    kCorruption,          // stored or received data fails a consistency check
    kVerifyFailed,        // a proof or signature does not verify
    kIoError,             // the operating system refused or failed an operation
    kFailedPrecondition,  // the object is not in a state that allows the call
    kResourceExhausted,   // a configured limit is reached (a full spool or queue)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) {
    return {Code::kInvalidArgument, std::move(msg)};
  }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status AlreadyExists(std::string msg) { return {Code::kAlreadyExists, std::move(msg)}; }
  static Status Corruption(std::string msg) { return {Code::kCorruption, std::move(msg)}; }
  static Status VerifyFailed(std::string msg) { return {Code::kVerifyFailed, std::move(msg)}; }
  static Status IoError(std::string msg) { return {Code::kIoError, std::move(msg)}; }
  // An I/O error annotated with strerror(errno_value).
  static Status FromErrno(std::string_view what, int errno_value);
  static Status ResourceExhausted(std::string msg) {
    return {Code::kResourceExhausted, std::move(msg)};
  }
  static Status FailedPrecondition(std::string msg) {
    return {Code::kFailedPrecondition, std::move(msg)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corruption: entry 12 ..." ; "ok" when ok.
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace latch

// Returns early from the enclosing function if `expr` is not OK.
#define LATCH_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::latch::Status latch_status_ = (expr);        \
    if (!latch_status_.ok()) return latch_status_; \
  } while (0)
