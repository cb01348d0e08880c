#pragma once
// Region files for the ProcessDataMover tests: a client's shared memory file holding a pattern,
// and the server's side of it.

#include <fcntl.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "../ucx/memory_child.h"
#include "kvault/common/file_io.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/local/shared_memory_file.h"

namespace kvault::server {

// Who handed the test child's memory over, for the region counts.
inline constexpr uint32_t kUser = 1000;

// The server's side of `file`: a RegionFile over a duplicate of its descriptor.
inline transport::RegionFile RegionOf(const transport::SharedMemoryFile& file) {
  UniqueFd dup(fcntl(file.descriptor(), F_DUPFD_CLOEXEC, 0));
  Result<transport::RegionFile> region = transport::RegionFile::Adopt(&dup, file.length());
  EXPECT_TRUE(region.ok()) << region.status().ToString();
  return std::move(*region);
}

inline Result<transport::SharedMemoryFile> FileWith(size_t n, uint8_t seed) {
  Result<transport::SharedMemoryFile> file = transport::SharedMemoryFile::Create(n);
  if (file.ok()) {
    const std::vector<uint8_t> bytes = transport::test::Pattern(n, seed);
    std::memcpy(file->address(), bytes.data(), n);
  }
  return file;
}

}  // namespace kvault::server
