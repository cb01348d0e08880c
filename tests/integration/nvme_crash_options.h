#pragma once
// Options shared by nvme_crash_test and the nvme_crash_writer it kills: small memtables and blob
// files, so that every round flushes several times and kills land in flushes and compactions.

#include <cstdint>
#include <string>

#include "kvault/storage/nvme_tier.h"

namespace kvault::storage::testing {

inline constexpr uint64_t kCrashBlocksPerRound = 120;

inline NvmeTierOptions CrashTestOptions(const std::string& dir) {
  NvmeTierOptions options;
  options.directory = dir;
  options.capacity_bytes = 1ull << 30;
  options.write_buffer_bytes = 512 << 10;
  options.max_write_buffers = 2;
  options.blob_file_bytes = 2 << 20;
  options.reserve_bytes = 1 << 20;
  options.background_jobs = 2;
  return options;
}

}  // namespace kvault::storage::testing
