#include "retired_staging.h"

#include <utility>

namespace kvault::client_internal {

void RetiredStaging::Retire(MemoryRegion region, Clock::time_point now) {
  while (!entries_.empty() && now - entries_.front().retired_at > kHold) entries_.pop_front();
  if (region.valid()) entries_.push_back(Entry{std::move(region), now});
  while (entries_.size() > kMostRegions) entries_.pop_front();
}

}  // namespace kvault::client_internal
