#pragma once
// CounterVisitor: how the store reports its counters and gauges without knowing about Prometheus.
// Metrics (server/) walk the store with a visitor; tests walk it with a map-filling one.

#include <cstdint>
#include <string_view>

namespace kvault::storage {

// Names are stable snake_case without the kvault_ prefix (e.g. "checksum_failures_total"); `tier`
// is "gpu", "host", "nvme" or "" for store-wide figures. Called synchronously from Visit*.
class CounterVisitor {
 public:
  virtual ~CounterVisitor() = default;
  // A monotonically increasing count (events, bytes).
  virtual void Counter(std::string_view tier, std::string_view name, uint64_t value) = 0;
  // A value that goes up and down (bytes used, blocks held, fragmentation).
  virtual void Gauge(std::string_view tier, std::string_view name, double value) = 0;
};

}  // namespace kvault::storage
