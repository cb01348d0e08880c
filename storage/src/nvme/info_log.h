#pragma once
// InfoLog: RocksDB's informational log for the nvme tier, written to <directory>/LOG (rolled to
// LOG.old past a size limit). Unlike RocksDB's own file logger, it shrugs off a full disk: a
// failed write is dropped, never retried on a file in an error state (RocksDB 7.8's logger
// asserts there). Thread-safe.

#include <rocksdb/env.h>

#include <cstdarg>
#include <cstdint>
#include <mutex>
#include <string>

namespace kvault::storage::nvme {

class InfoLog final : public rocksdb::Logger {
 public:
  // `path`: the log file; rolled to path + ".old" once it passes `max_bytes`.
  InfoLog(std::string path, uint64_t max_bytes);
  ~InfoLog() override;

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  size_t GetLogFileSize() const override;

 private:
  void OpenLocked(bool truncate);

  const std::string path_;
  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  int fd_ = -1;         // guarded by mu_; -1 when the file cannot be opened
  uint64_t bytes_ = 0;  // guarded by mu_
};

}  // namespace kvault::storage::nvme
