#pragma once
// `kvault-bench trace`: replays a Mooncake-format trace through the real BlockStore and reports
// the prefix hit ratio of the chosen eviction policy beside LRU (also through the store) and
// Belady's optimum (offline simulation), at the same capacity, in the same run.

#include <string>
#include <vector>

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunTraceBench(const std::vector<std::string>& args);

}  // namespace kvault::bench
