#include "nvme/info_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <utility>

namespace kvault::storage::nvme {

InfoLog::InfoLog(std::string path, uint64_t max_bytes)
    : path_(std::move(path)), max_bytes_(max_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenLocked(/*truncate=*/false);
}

InfoLog::~InfoLog() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) ::close(fd_);
}

void InfoLog::OpenLocked(bool truncate) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0),
               0644);
  struct stat st;
  bytes_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

void InfoLog::Logv(const char* format, va_list ap) {
  char line[1024];
  timeval now;
  ::gettimeofday(&now, nullptr);
  tm local;
  ::localtime_r(&now.tv_sec, &local);
  int n = std::snprintf(line, sizeof line, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ",
                        local.tm_year + 1900, local.tm_mon + 1, local.tm_mday, local.tm_hour,
                        local.tm_min, local.tm_sec, static_cast<long>(now.tv_usec));
  if (n < 0) return;
  size_t used = static_cast<size_t>(n);
  va_list copy;
  va_copy(copy, ap);
  int m = std::vsnprintf(line + used, sizeof line - used, format, copy);
  va_end(copy);
  if (m < 0) return;
  used = std::min(sizeof line - 2, used + static_cast<size_t>(m));
  if (line[used - 1] != '\n') line[used++] = '\n';

  std::lock_guard<std::mutex> lock(mu_);
  if (bytes_ + used > max_bytes_) {
    std::rename(path_.c_str(), (path_ + ".old").c_str());
    OpenLocked(/*truncate=*/true);
  }
  if (fd_ < 0) return;
  // On a full disk the write fails or is cut short: the line is lost, the log goes on.
  ssize_t written = ::write(fd_, line, used);
  if (written > 0) bytes_ += static_cast<uint64_t>(written);
}

size_t InfoLog::GetLogFileSize() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(bytes_);
}

}  // namespace kvault::storage::nvme
