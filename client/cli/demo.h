#pragma once
// kvault demo: an end-to-end run of a multi-turn chat workload through libkvault against a
// running kvaultd (demo_workload.h holds the workload; docs/client.md "The demo").

#include <string>
#include <vector>

namespace kvault::cli {

// kvault demo --server HOST:PORT [--codec SPEC] [--conversations N] [--turns N] [--layers N]
//             [--block-tokens N] [--seed N] [--json FILE]
// Exit code: 0 ok; 1 daemon unreachable or failed, or a loaded block did not verify; 2 bad usage.
int Demo(const std::vector<std::string>& args);

}  // namespace kvault::cli
