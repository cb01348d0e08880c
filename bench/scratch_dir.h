#pragma once
// A benchmark run's scratch directory under the system temp directory: created with mkdtemp and
// removed (with everything in it) on every way out unless kept, a stop by SIGTERM, SIGINT or
// SIGHUP included (signal_cleanup.h). Thread-compatible.

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <utility>

#include "kvault/common/result.h"
#include "signal_cleanup.h"

namespace kvault::bench {

class ScratchDir {
 public:
  // A new directory <temp>/<prefix>.XXXXXX. IoError when it cannot be created.
  static Result<ScratchDir> Create(const std::string& prefix) {
    std::error_code ec;
    std::string pattern =
        (std::filesystem::temp_directory_path(ec) / (prefix + ".XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return Status::IoError("cannot create a scratch directory " + pattern);
    }
    RegisterScratchDir(pattern);
    return ScratchDir(pattern);
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)), keep_(other.keep_) {
    other.path_.clear();
  }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty() && !keep_) std::filesystem::remove_all(path_, ec);
    if (!path_.empty()) UnregisterScratchDir(path_);
  }
  const std::string& path() const { return path_; }
  // Keep the directory (logs that explain a failure, or --keep).
  void set_keep(bool keep) {
    keep_ = keep;
    if (keep) {
      UnregisterScratchDir(path_);
    } else {
      RegisterScratchDir(path_);
    }
  }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
  bool keep_ = false;
};

}  // namespace kvault::bench
