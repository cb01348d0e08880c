#include "kvault/common/file_io.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kvault/common/positional_copy.h"

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

Result<std::unique_ptr<FileReader>> FileReader::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("cannot open", path, errno);
  return std::unique_ptr<FileReader>(new FileReader(std::move(fd), path));
}

void RaiseOpenFileLimit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
}

Status FileReader::ReadAt(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  const int error = PositionalCopy(fd_.get(), false, offset, out.data(), out.size(), &done);
  if (error == -1) {
    return Status::Corruption("'" + path_ + "' ended after " + std::to_string(offset + done) +
                              " bytes, expected " + std::to_string(offset + out.size()));
  }
  if (error != 0) return ErrnoStatus("cannot read", path_, error);
  return Status::Ok();
}

Status ReadFileExact(const std::string& path, std::span<uint8_t> out) {
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<FileReader> file, FileReader::Open(path));
  return file->ReadAt(0, out);
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

Result<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path) {
  // A unique temporary name per writer, so concurrent writers of one path never share it.
  std::string tmp = path + ".tmp.XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("cannot create", tmp, errno);
  ::fchmod(fd.get(), 0644);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(std::move(fd), path, tmp));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

Status AtomicFileWriter::Abandon(Status error) {
  fd_ = UniqueFd();
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
  tmp_.clear();
  return error;
}

Status AtomicFileWriter::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  if (tmp_.empty()) return Status::Internal("write to '" + path_ + "' after commit or failure");
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done,
                               static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Abandon(ErrnoStatus("cannot write", tmp_, errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status AtomicFileWriter::Commit() {
  if (tmp_.empty()) return Status::Internal("commit of '" + path_ + "' after commit or failure");
  // The data must be durable before the rename makes it visible under the final name.
  if (::fsync(fd_.get()) != 0) return Abandon(ErrnoStatus("cannot sync", tmp_, errno));
  if (::close(fd_.Release()) != 0) return Abandon(ErrnoStatus("cannot close", tmp_, errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    return Abandon(ErrnoStatus("cannot rename into", path_, errno));
  }
  tmp_.clear();
  // Make the rename itself durable.
  const size_t slash = path_.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data) {
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Create(path));
  KVAULT_RETURN_IF_ERROR(file->WriteAt(0, data));
  return file->Commit();
}

}  // namespace kvault
