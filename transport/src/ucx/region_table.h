#pragma once
// RegionTable: the memory a TransferEngine registered up front, found by address so that a
// transfer's local pointer anywhere inside a region uses that region's registration.
//
// Thread-safe: one mutex guards the table; lookups hold it only for a map search.

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/transfer.h"
#include "kvault/transport/ucx/ucx_memory.h"

namespace kvault::transport {

class RegionTable {
 public:
  // Registers [address, +length) on `context`. InvalidArgument when it overlaps a region.
  Result<RegionId> Add(const UcxContext& context, void* address, size_t length);
  // NotFound for an unknown id.
  Status Remove(RegionId id);
  // The registration covering [p, p + n), or null when none does.
  ucp_mem* Find(const void* p, size_t n) const;
  // Drops every registration (before the context goes).
  void Clear();

 private:
  bool OverlapsLocked(uintptr_t base, size_t length) const;

  mutable std::mutex mu_;
  std::map<uintptr_t, UcxMemory> by_base_;         // guarded by mu_
  std::unordered_map<RegionId, uintptr_t> bases_;  // guarded by mu_
  RegionId next_id_ = 1;                           // guarded by mu_
};

}  // namespace kvault::transport
