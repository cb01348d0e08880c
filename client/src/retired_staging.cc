#include "retired_staging.h"

#include <utility>

namespace kvault::client_internal {

void RetiredStaging::Retire(MemoryRegion region, kernels::HostPinning pinning,
                            Clock::time_point now) {
  while (!entries_.empty() && now - entries_.front().retired_at > kHold) entries_.pop_front();
  if (region.valid()) entries_.push_back(Entry{std::move(region), std::move(pinning), now});
  while (entries_.size() > kMostRegions) entries_.pop_front();
}

}  // namespace kvault::client_internal
