#pragma once
// Whole-file I/O with errno turned into Status in one place. Thread-safe (no shared state).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/result.h"

namespace kvault {

// Owns a file descriptor (closed on destruction; -1 means none). Move-only.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  // Gives up ownership without closing.
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// NotFound if the path does not exist, IoError for other failures.
Result<uint64_t> FileSize(const std::string& path);

// Reads exactly out.size() bytes from the start of the file. Corruption if the file is shorter.
Status ReadFileExact(const std::string& path, std::span<uint8_t> out);

// Reads a whole file (for small files such as block objects). OutOfRange, before any
// allocation, when the file is larger than `max_bytes`.
Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path,
                                           uint64_t max_bytes = uint64_t{1} << 32);

// Writes `data` to `path` through a uniquely named temporary file that is fsynced, renamed into
// place, and its directory fsynced: a crash never leaves a half-written file under the final
// name, and concurrent writers of one path never mix their bytes (the last rename wins).
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data);

}  // namespace kvault
