#include "ucx/ucx_status.h"

#include <string>

#include "kvault/transport/ucx/transfer.h"

namespace kvault::transport {
namespace {

StatusCode CodeFor(ucs_status_t status) {
  switch (status) {
    case UCS_OK:
      return StatusCode::kOk;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
    case UCS_ERR_ALREADY_EXISTS:
      return StatusCode::kInvalidArgument;
    case UCS_ERR_NO_MESSAGE:
    case UCS_ERR_NO_ELEM:
      return StatusCode::kNotFound;
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_NOT_IMPLEMENTED:
      return StatusCode::kUnsupported;
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_BUFFER_TOO_SMALL:
    case UCS_ERR_OUT_OF_RANGE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return StatusCode::kOutOfRange;
    case UCS_ERR_IO_ERROR:
      return StatusCode::kIoError;
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
      return StatusCode::kResourceExhausted;
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_NO_DEVICE:
    case UCS_ERR_BUSY:
    case UCS_ERR_CANCELED:
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NO_PROGRESS:
    case UCS_ERR_SOME_CONNECTS_FAILED:
    case UCS_ERR_SHMEM_SEGMENT:  // attaching to a peer's segment: in practice, the peer is gone
      return StatusCode::kUnavailable;
    default:
      break;
  }
  // Link and endpoint failures are ranges, not single codes.
  if (status <= UCS_ERR_FIRST_LINK_FAILURE && status >= UCS_ERR_LAST_ENDPOINT_FAILURE) {
    return StatusCode::kUnavailable;
  }
  return StatusCode::kInternal;
}

}  // namespace

Status UcsToStatus(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK) return Status::Ok();
  std::string message(what);
  message += ": ";
  message += ucs_status_string(status);
  message += " (ucs ";
  message += std::to_string(static_cast<int>(status));
  message += ")";
  return Status(CodeFor(status), message);
}

Status DeadlineExceededStatus(std::string_view what) {
  std::string message(kDeadlineExceededPrefix);
  message += ": ";
  message += what;
  return Status::Unavailable(message);
}

}  // namespace kvault::transport
