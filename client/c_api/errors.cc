// The C ABI's error model (kvault.h "Errors"): status names, the per-thread last error, and the
// conversions every other file of client/c_api shares.

#include <algorithm>
#include <limits>

#include "internal.h"

namespace kvault::c_api {
namespace {

static_assert(KVAULT_OK == static_cast<int>(StatusCode::kOk));
static_assert(KVAULT_INVALID_ARGUMENT == static_cast<int>(StatusCode::kInvalidArgument));
static_assert(KVAULT_NOT_FOUND == static_cast<int>(StatusCode::kNotFound));
static_assert(KVAULT_CORRUPTION == static_cast<int>(StatusCode::kCorruption));
static_assert(KVAULT_UNSUPPORTED == static_cast<int>(StatusCode::kUnsupported));
static_assert(KVAULT_OUT_OF_RANGE == static_cast<int>(StatusCode::kOutOfRange));
static_assert(KVAULT_IO_ERROR == static_cast<int>(StatusCode::kIoError));
static_assert(KVAULT_RESOURCE_EXHAUSTED == static_cast<int>(StatusCode::kResourceExhausted));
static_assert(KVAULT_UNAVAILABLE == static_cast<int>(StatusCode::kUnavailable));
static_assert(KVAULT_INTERNAL == static_cast<int>(StatusCode::kInternal));
static_assert(sizeof(kvault_key) == sizeof(BlockKey));

// The last error of this thread. `text` points into `storage` or at a static string.
struct LastError {
  std::string storage;
  const char* text = "";
};
thread_local LastError last_error;

void SetLastError(const char* message) noexcept {
  try {
    last_error.storage.assign(message);
    last_error.text = last_error.storage.c_str();
  } catch (...) {
    last_error.text = "out of memory while recording the error";
  }
}

}  // namespace

kvault_status Report(const Status& status) noexcept {
  if (status.ok()) {
    last_error.storage.clear();
    last_error.text = "";
    return KVAULT_OK;
  }
  SetLastError(status.message().c_str());
  return static_cast<kvault_status>(status.code());
}

kvault_status ReportCode(kvault_status code, const char* message) noexcept {
  SetLastError(message);
  return code;
}

Status Null(const char* function, const char* what) {
  return Status::InvalidArgument(std::string(function) + ": " + what + " is null");
}

Status CheckCount(const char* function, const char* what, size_t count, size_t most) {
  if (count <= most) return Status::Ok();
  return Status::InvalidArgument(std::string(function) + ": " + what + " " + std::to_string(count) +
                                 " is over " + std::to_string(most));
}

Status RefusedInput(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kUnsupported) {
    return status;
  }
  return Status::Ok();
}

Result<std::optional<Deadline>> RequestDeadline(const char* function, int64_t timeout_ms) {
  if (timeout_ms < 0 || timeout_ms > kMaxTimeoutMs) {
    return Status::InvalidArgument(std::string(function) + ": timeout_ms " +
                                   std::to_string(timeout_ms) + " is negative or over a year");
  }
  if (timeout_ms == 0) return std::optional<Deadline>();
  return std::optional<Deadline>(Clock::now() + std::chrono::milliseconds(timeout_ms));
}

Deadline WaitDeadline(int64_t timeout_ms) {
  if (timeout_ms < 0) return Deadline::max();
  return Clock::now() + std::chrono::milliseconds(std::min(timeout_ms, kMaxTimeoutMs));
}

std::vector<BlockKey> CopyKeys(const kvault_key* keys, size_t count) {
  std::vector<BlockKey> out(count);
  if (count > 0) std::memcpy(out.data(), keys, count * sizeof(kvault_key));
  return out;
}

Lease FromC(const kvault_lease& lease) {
  Lease out;
  out.id = lease.id;
  out.session = lease.session;
  out.expiry = Deadline(std::chrono::milliseconds(lease.expiry_ms));
  return out;
}

kvault_lease ToC(const Lease& lease) {
  kvault_lease out{};
  out.id = lease.id;
  out.session = lease.session;
  out.expiry_ms =
      lease.valid()
          ? std::chrono::duration_cast<std::chrono::milliseconds>(lease.expiry.time_since_epoch())
                .count()
          : 0;
  return out;
}

void CopyMessage(const Status& status, char* message, size_t capacity) {
  if (message == nullptr || capacity == 0) return;
  const std::string& text = status.message();
  const size_t n = std::min(text.size(), capacity - 1);
  std::memcpy(message, text.data(), n);
  message[n] = '\0';
}

Status CheckStructSize(const char* function, const char* what, size_t got, size_t want) {
  if (got == want) return Status::Ok();
  return Status::InvalidArgument(std::string(function) + ": " + what + "->struct_size is " +
                                 std::to_string(got) + ", this library's is " +
                                 std::to_string(want) + " (call the struct's init function, " +
                                 "and build against the kvault.h of this library)");
}

}  // namespace kvault::c_api

extern "C" {

const char* kvault_status_name(kvault_status status) noexcept {
  // The names of kvault::StatusCodeName, as C strings.
  static constexpr const char* kNames[] = {
      "ok",           "invalid_argument", "not_found",          "corruption",  "unsupported",
      "out_of_range", "io_error",         "resource_exhausted", "unavailable", "internal"};
  const int64_t raw = kvault::c_api::RawEnum(status);
  if (raw < KVAULT_OK || raw > KVAULT_INTERNAL) return "unknown";
  return kNames[raw];
}

const char* kvault_last_error(void) noexcept { return kvault::c_api::last_error.text; }

const char* kvault_version(void) noexcept { return KVAULT_VERSION_STRING; }

}  // extern "C"
