#pragma once
// Whole-file I/O with errno turned into Status in one place. Thread-safe (no shared state).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/result.h"

namespace kvault {

// NotFound if the path does not exist, IoError for other failures.
Result<uint64_t> FileSize(const std::string& path);

// Reads exactly out.size() bytes from the start of the file. Corruption if the file is shorter.
Status ReadFileExact(const std::string& path, std::span<uint8_t> out);

// Reads a whole file (for small files such as block objects).
Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path);

// Writes `data` to `path` through a temporary file renamed into place, so a crash never leaves a
// half-written file under the final name.
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data);

}  // namespace kvault
