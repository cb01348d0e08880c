#pragma once
// File I/O with errno turned into Status in one place. Thread-safe (no shared state).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
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

// Raises this process's soft limit of open files (RLIMIT_NOFILE) to its hard limit, as daemons
// holding a descriptor per client resource do; nothing happens when that is refused.
void RaiseOpenFileLimit();

// A file opened for reads at any offset, to stream a large file through a bounded buffer.
// Thread-safe: ReadAt may be called concurrently.
class FileReader {
 public:
  // NotFound if the path does not exist, IoError for other failures.
  static Result<std::unique_ptr<FileReader>> Open(const std::string& path);
  // Reads exactly out.size() bytes at `offset`. Corruption if the file ends first.
  Status ReadAt(uint64_t offset, std::span<uint8_t> out) const;

 private:
  FileReader(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

// Writes a file at any offsets through a uniquely named temporary file beside it; Commit makes
// it durable and renames it into place (as WriteFileAtomic). Destroyed without a successful
// Commit, it removes the temporary file, so the final name never holds a partial file.
// Not thread-safe.
class AtomicFileWriter {
 public:
  // Creates the temporary file (mode 0644). NotFound when the directory does not exist,
  // ResourceExhausted for a full disk or quota, IoError for other failures.
  static Result<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Errors as Create.
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data);
  // fsync, rename into place, fsync the directory. Call once; the writer is spent afterwards,
  // and on failure the temporary file is gone.
  Status Commit();

 private:
  AtomicFileWriter(UniqueFd fd, std::string path, std::string tmp)
      : fd_(std::move(fd)), path_(std::move(path)), tmp_(std::move(tmp)) {}
  // Removes the temporary file and returns `error`.
  Status Abandon(Status error);

  UniqueFd fd_;
  std::string path_;
  std::string tmp_;  // empty once committed or abandoned
};

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
