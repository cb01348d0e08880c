#include "nvme/reserve_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kvault::storage::nvme {
namespace {

Status ErrnoStatus(int err, const std::string& what) {
  std::string message = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return Status::Unavailable(message);
  return Status::IoError(message);
}

// Allocates by writing zeros where the filesystem cannot fallocate.
int WriteZeros(int fd, uint64_t bytes) {
  std::vector<char> zeros(1 << 20, 0);
  uint64_t done = 0;
  while (done < bytes) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(zeros.size(), bytes - done));
    ssize_t n = ::pwrite(fd, zeros.data(), chunk, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<uint64_t>(n);
  }
  return ::fsync(fd) == 0 ? 0 : errno;
}

}  // namespace

bool SupportsDirectIo(const std::string& directory) {
  const std::string path = directory + "/kvault-direct-io-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::close(fd);
  }
  ::unlink(path.c_str());
  return fd >= 0;
}

Status ReserveFile::Hold() {
  if (held_ || bytes_ == 0) return Status::Ok();
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "nvme tier: open reserve file " + path_);
  int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_));
  if (err == EOPNOTSUPP || err == EINVAL) err = WriteZeros(fd, bytes_);
  ::close(fd);
  if (err != 0) {
    ::unlink(path_.c_str());
    return ErrnoStatus(err, "nvme tier: allocate reserve file " + path_);
  }
  held_ = true;
  return Status::Ok();
}

void ReserveFile::Release() {
  ::unlink(path_.c_str());
  held_ = false;
}

}  // namespace kvault::storage::nvme
