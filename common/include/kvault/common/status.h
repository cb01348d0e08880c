#pragma once
// Status: the one error type of kvault (LevelDB style). OK is free: no allocation, no message.
// A non-OK status carries a code and a human-readable message. Thread-compatible value type.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace kvault {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,    // caller passed something malformed (bad spec, bad shape, bad flag)
  kNotFound = 2,           // a named thing does not exist (a file, a layer)
  kCorruption = 3,         // stored or received bytes fail validation (checksum, key, bounds)
  kUnsupported = 4,        // well-formed request this build or device cannot do
  kOutOfRange = 5,         // size or index beyond a documented limit
  kIoError = 6,            // the operating system refused an I/O operation
  kResourceExhausted = 7,  // no space, no memory, quota reached
  kUnavailable = 8,        // a device or peer is not reachable now (no GPU, dead server)
  kInternal = 9,           // a broken invariant inside kvault: always a bug
};

// Stable lower-case name of a code ("ok", "invalid_argument", ...), for logs and metric labels.
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // OK
  Status(StatusCode code, std::string_view message);

  static Status Ok() noexcept { return Status(); }
  static Status InvalidArgument(std::string_view msg) {
    return {StatusCode::kInvalidArgument, msg};
  }
  static Status NotFound(std::string_view msg) { return {StatusCode::kNotFound, msg}; }
  static Status Corruption(std::string_view msg) { return {StatusCode::kCorruption, msg}; }
  static Status Unsupported(std::string_view msg) { return {StatusCode::kUnsupported, msg}; }
  static Status OutOfRange(std::string_view msg) { return {StatusCode::kOutOfRange, msg}; }
  static Status IoError(std::string_view msg) { return {StatusCode::kIoError, msg}; }
  static Status ResourceExhausted(std::string_view msg) {
    return {StatusCode::kResourceExhausted, msg};
  }
  static Status Unavailable(std::string_view msg) { return {StatusCode::kUnavailable, msg}; }
  static Status Internal(std::string_view msg) { return {StatusCode::kInternal, msg}; }

  bool ok() const noexcept { return rep_ == nullptr; }
  StatusCode code() const noexcept { return rep_ ? rep_->code : StatusCode::kOk; }
  // Empty for OK.
  const std::string& message() const noexcept;
  // "ok" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(std::string_view context) const;

  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;
  ~Status() = default;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

}  // namespace kvault

// Returns from the enclosing function when `expr` yields a non-OK Status.
#define KVAULT_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::kvault::Status kvault_status_ = (expr);        \
    if (!kvault_status_.ok()) return kvault_status_; \
  } while (false)
