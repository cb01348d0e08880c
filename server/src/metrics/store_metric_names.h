#pragma once
// How the storage module's counters (storage::CounterVisitor names) become Prometheus series
// (DESIGN.md §11). Most names map by rule: a store-wide figure "x" is kvault_store_x, a tier's
// figure "x" is kvault_tier_x{tier="..."}. A few get the names operators look for first (stored
// and loaded bytes, checksum failures, rejected writes by reason). New storage counters appear
// without a change here, under the rule. Pure functions; thread-safe.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvault::server {

struct StoreMetricName {
  std::string name;  // full Prometheus name, e.g. "kvault_tier_used_bytes"
  std::string help;
  // Constant labels besides "tier" (which every per-tier series has), e.g. {"reason", "corrupt"}.
  std::vector<std::pair<std::string, std::string>> labels;
};

// `tier` is "" for store-wide figures (then the series has no tier label), else "gpu", "host",
// "nvme". Characters a Prometheus name cannot hold are replaced by '_'.
StoreMetricName MapStoreMetric(std::string_view tier, std::string_view counter_name);

}  // namespace kvault::server
