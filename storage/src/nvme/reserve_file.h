#pragma once
// Filesystem helpers of the nvme tier: the reserve file that holds disk space for recovering from
// a full disk (docs/storage_nvme.md, "Disk full"), and the O_DIRECT probe.

#include <cstdint>
#include <string>
#include <utility>

#include "kvault/common/status.h"

namespace kvault::storage::nvme {

// True when files in `directory` can be opened with O_DIRECT (probes with a scratch file).
bool SupportsDirectIo(const std::string& directory);

// Holds `bytes` of disk space in one file. Not thread-safe: the tier calls it under a lock.
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
