#pragma once
// ReserveFile: a file that holds disk space for the nvme tier so that it can still flush, apply
// erasures and compact after the disk fills (docs/storage.md, "Disk full"). Not thread-safe: the
// tier calls it under its recovery lock.

#include <cstdint>
#include <string>
#include <utility>

#include "kvault/common/status.h"

namespace kvault::storage::nvme {

class ReserveFile {
 public:
  // `path` is the file to use; `bytes` the space to hold (0: never holds anything).
  ReserveFile(std::string path, uint64_t bytes) : path_(std::move(path)), bytes_(bytes) {}

  // Makes the file hold `bytes` of allocated space (a no-op when it already does). Unavailable
  // when the filesystem has no room for it (the partial file is removed), IoError otherwise.
  Status Hold();

  // Removes the file, returning its space to the filesystem. Never fails (a missing file is fine).
  void Release();

  bool held() const { return held_; }

 private:
  std::string path_;
  uint64_t bytes_;
  bool held_ = false;
};

}  // namespace kvault::storage::nvme
