#pragma once
// Byte-size command-line values of kvault-bench ("64KiB", "64K", "1MiB", "4M", "1GiB", "4096").
// Thread-safe (pure).

#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault::bench {

// Parses `text` as a byte count with an optional binary suffix (KiB/K, MiB/M, GiB/G) and checks
// it lies in [min, max]. InvalidArgument naming `what` (the flag) otherwise.
Result<uint64_t> ParseSizeArg(std::string_view what, const std::string& text, uint64_t min,
                              uint64_t max);

}  // namespace kvault::bench
