#pragma once
// RetiredStaging: the regions behind Client::RetireMemory. A direct request's memory may still be
// written after it settled by a lost connection (docs/client.md, "Handles"); such memory (the
// staging of KvStore and the paged pipeline, or a caller's) is kept here, mapped, registered and
// out of use, instead of being freed, so that a late write of the daemon cannot land in memory
// allocated after it (a new region is likely to be mapped at the same address). Internal to
// client/src. Thread-compatible: its owner (ClientCore) serializes.

#include <chrono>
#include <cstddef>
#include <deque>

#include "kvault/client.h"
#include "kvault/handles.h"

namespace kvault::client_internal {

class RetiredStaging {
 public:
  // How long retired memory is kept: past the daemon's default transfer deadline
  // (limits.io_timeout, 30 s) with room to spare.
  static constexpr std::chrono::seconds kHold{120};
  // Most regions kept at once; past it the oldest is freed first.
  static constexpr size_t kMostRegions = 4;

  // Keeps `region` out of use. Frees what was retired more than kHold before `now`, then the
  // oldest beyond kMostRegions.
  void Retire(MemoryRegion region, Clock::time_point now = Clock::now());
  // Regions held now.
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    MemoryRegion region;
    Clock::time_point retired_at;
  };
  std::deque<Entry> entries_;  // oldest first
};

}  // namespace kvault::client_internal
