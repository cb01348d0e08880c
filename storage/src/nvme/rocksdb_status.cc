#include "nvme/rocksdb_status.h"

#include <string>

namespace kvault::storage::nvme {

bool IsDiskFull(const rocksdb::Status& s) {
  return s.IsNoSpace() || s.subcode() == rocksdb::Status::kSpaceLimit;
}

Status FromRocksDb(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::Ok();
  std::string message(context);
  message += ": ";
  message += s.ToString();
  if (IsDiskFull(s)) return Status::Unavailable(message);
  if (s.subcode() == rocksdb::Status::kMemoryLimit) return Status::ResourceExhausted(message);
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return Status::NotFound(message);
    case rocksdb::Status::kCorruption:
      return Status::Corruption(message);
    case rocksdb::Status::kInvalidArgument:
      return Status::InvalidArgument(message);
    case rocksdb::Status::kNotSupported:
      return Status::Unsupported(message);
    case rocksdb::Status::kIOError:
      return Status::IoError(message);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kAborted:
    case rocksdb::Status::kShutdownInProgress:
      return Status::Unavailable(message);
    default:
      return Status::Internal(message);
  }
}

}  // namespace kvault::storage::nvme
