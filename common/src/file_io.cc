#include "kvault/common/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvault {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " '" + path + "': " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(msg);
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(msg);
  return Status::IoError(msg);
}


}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

Result<uint64_t> FileSize(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("'" + path + "' is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

Status ReadFileExact(const std::string& path, std::span<uint8_t> out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("cannot open", path, errno);
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot read", path, errno);
    }
    if (n == 0) {
      return Status::Corruption("'" + path + "' ended after " + std::to_string(done) +
                                " bytes, expected " + std::to_string(out.size()));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  KVAULT_ASSIGN_OR_RETURN(uint64_t size, FileSize(path));
  if (size > max_bytes) {
    return Status::OutOfRange("'" + path + "' has " + std::to_string(size) +
                              " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::vector<uint8_t> data(size);
  KVAULT_RETURN_IF_ERROR(ReadFileExact(path, data));
  return data;
}

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data) {
  // A unique temporary name per call, so concurrent writers of one path never share it.
  std::string tmp = path + ".tmp.XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("cannot create", tmp, errno);
  ::fchmod(fd.get(), 0644);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::unlink(tmp.c_str());
      return ErrnoStatus("cannot write", tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  // The data must be durable before the rename makes it visible under the final name.
  if (::fsync(fd.get()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("cannot sync", tmp, err);
  }
  if (::close(fd.Release()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("cannot close", tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus("cannot rename into", path, err);
  }
  // Make the rename itself durable.
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
  return Status::Ok();
}

}  // namespace kvault
