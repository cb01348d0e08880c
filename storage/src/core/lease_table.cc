#include "core/lease_table.h"

#include <algorithm>

namespace kvault::storage {

uint64_t LeaseTable::Add(std::vector<EntryId> entries, int64_t expiry_nanos) {
  const uint64_t id = next_id_++;
  leases_.emplace(id, Lease{expiry_nanos, std::move(entries)});
  by_expiry_.emplace(expiry_nanos, id);
  return id;
}

bool LeaseTable::Remove(uint64_t lease, const std::function<void(EntryId)>& release) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return false;
  for (EntryId id : it->second.entries) release(id);
  leases_.erase(it);
  return true;
}

bool LeaseTable::Covers(uint64_t lease, EntryId entry) const {
  const auto it = leases_.find(lease);
  if (it == leases_.end()) return false;
  const std::vector<EntryId>& entries = it->second.entries;
  return std::find(entries.begin(), entries.end(), entry) != entries.end();
}

size_t LeaseTable::ExpireDue(int64_t now_nanos, const std::function<void(EntryId)>& release) {
  size_t expired = 0;
  while (!by_expiry_.empty() && by_expiry_.top().first <= now_nanos) {
    const uint64_t id = by_expiry_.top().second;
    by_expiry_.pop();
    if (Remove(id, release)) ++expired;
  }
  return expired;
}

}  // namespace kvault::storage
