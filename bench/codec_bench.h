#pragma once
// `kvault-bench codec`: accuracy, size and speed of every codec on Llama-3-8B-shaped KV from the
// realistic generator (and a plain-Gaussian control), each speed beside an in-run baseline.

#include <string>
#include <vector>

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunCodecBench(const std::vector<std::string>& args);

// The codec configurations the benchmark reports by default, as (label, spec) pairs.
std::vector<std::pair<std::string, std::string>> DefaultCodecCases();

}  // namespace kvault::bench
