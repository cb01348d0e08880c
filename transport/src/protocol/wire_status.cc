// The one mapping between kvault::StatusCode and the protocol's WireStatus.
#include "kvault/transport/wire_status.h"

#include <string>

namespace kvault::transport {

bool IsKnownWireStatus(uint8_t raw) {
  return WireStatusName(static_cast<WireStatus>(raw)) != "unknown";
}

std::string_view WireStatusName(WireStatus status) {
  switch (status) {
    case WireStatus::kOk:
      return "ok";
    case WireStatus::kInvalidArgument:
      return "invalid_argument";
    case WireStatus::kNotFound:
      return "not_found";
    case WireStatus::kCorruption:
      return "corruption";
    case WireStatus::kUnsupported:
      return "unsupported";
    case WireStatus::kOutOfRange:
      return "out_of_range";
    case WireStatus::kIoError:
      return "io_error";
    case WireStatus::kResourceExhausted:
      return "resource_exhausted";
    case WireStatus::kUnavailable:
      return "unavailable";
    case WireStatus::kInternal:
      return "internal";
    case WireStatus::kUnsupportedVersion:
      return "unsupported_version";
    case WireStatus::kUnauthenticated:
      return "unauthenticated";
    case WireStatus::kLeaseExpired:
      return "lease_expired";
    case WireStatus::kTransferFailed:
      return "transfer_failed";
  }
  return "unknown";
}

WireStatus ToWireStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return WireStatus::kOk;
    case StatusCode::kInvalidArgument:
      return WireStatus::kInvalidArgument;
    case StatusCode::kNotFound:
      return WireStatus::kNotFound;
    case StatusCode::kCorruption:
      return WireStatus::kCorruption;
    case StatusCode::kUnsupported:
      return WireStatus::kUnsupported;
    case StatusCode::kOutOfRange:
      return WireStatus::kOutOfRange;
    case StatusCode::kIoError:
      return WireStatus::kIoError;
    case StatusCode::kResourceExhausted:
      return WireStatus::kResourceExhausted;
    case StatusCode::kUnavailable:
      return WireStatus::kUnavailable;
    case StatusCode::kInternal:
      return WireStatus::kInternal;
  }
  return WireStatus::kInternal;
}

StatusCode ToStatusCode(WireStatus status) {
  switch (status) {
    case WireStatus::kOk:
      return StatusCode::kOk;
    case WireStatus::kInvalidArgument:
      return StatusCode::kInvalidArgument;
    case WireStatus::kNotFound:
      return StatusCode::kNotFound;
    case WireStatus::kCorruption:
      return StatusCode::kCorruption;
    case WireStatus::kUnsupported:
      return StatusCode::kUnsupported;
    case WireStatus::kOutOfRange:
      return StatusCode::kOutOfRange;
    case WireStatus::kIoError:
      return StatusCode::kIoError;
    case WireStatus::kResourceExhausted:
      return StatusCode::kResourceExhausted;
    case WireStatus::kUnavailable:
      return StatusCode::kUnavailable;
    case WireStatus::kInternal:
      return StatusCode::kInternal;
    case WireStatus::kUnsupportedVersion:
      return StatusCode::kUnsupported;
    case WireStatus::kUnauthenticated:
      return StatusCode::kInvalidArgument;
    case WireStatus::kLeaseExpired:
      return StatusCode::kNotFound;
    case WireStatus::kTransferFailed:
      return StatusCode::kIoError;
  }
  return StatusCode::kInternal;
}

Status StatusFromWire(WireStatus status, std::string_view message) {
  if (status == WireStatus::kOk) return Status::Ok();
  std::string text(WireStatusName(status));
  if (!message.empty()) {
    text += ": ";
    text += message;
  }
  return {ToStatusCode(status), text};
}

}  // namespace kvault::transport
