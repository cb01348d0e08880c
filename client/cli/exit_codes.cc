#include <algorithm>

#include "commands.h"

namespace kvault::cli {

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kCorruption:
    case StatusCode::kOutOfRange:
    case StatusCode::kUnsupported:
      return kExitUsage;
    default:
      return kExitFailure;
  }
}

Status OutputError(const Status& status) {
  if (status.ok() || ExitCodeFor(status) == kExitFailure) return status;
  return Status::IoError(status.message());
}

}  // namespace kvault::cli
