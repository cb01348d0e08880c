#pragma once
// RetiredStaging: staging memory a transfer may still touch after its connection was lost. A
// direct request's memory may still be written after it settled by a lost connection
// (docs/client.md, "Handles"); the library's own staging (KvStore, the paged pipeline) is then
// kept here, mapped, registered and out of use, instead of being freed, so that a late write of
// the daemon cannot land in memory allocated after it (a new staging region is likely to be
// mapped at the same address). Internal to client/src. Thread-compatible: its owner serializes.

#include <chrono>
#include <cstddef>
#include <deque>

#include "kvault/client.h"
#include "kvault/handles.h"
#include "kvault/kernels/cuda_runtime.h"

namespace kvault::client_internal {

class RetiredStaging {
 public:
  // How long retired memory is kept: past the daemon's default transfer deadline
  // (limits.io_timeout, 30 s) with room to spare.
  static constexpr std::chrono::seconds kHold{120};
  // Most regions kept at once; past it the oldest is freed first.
  static constexpr size_t kMostRegions = 4;

  // Keeps `region` (and the page-locking of it, unlocked before the region is freed) out of use.
  // Frees what was retired more than kHold before `now`, then the oldest beyond kMostRegions.
  void Retire(MemoryRegion region, kernels::HostPinning pinning = {},
              Clock::time_point now = Clock::now());
  // Regions held now.
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    MemoryRegion region;
    kernels::HostPinning pinning;  // declared after `region`: destroyed (unlocked) first
    Clock::time_point retired_at;
  };
  std::deque<Entry> entries_;  // oldest first
};

}  // namespace kvault::client_internal
