#include "core/lease_table.h"

#include <algorithm>

namespace kvault::storage {

uint64_t LeaseTable::Add(std::vector<EntryId> entries, int64_t expiry_nanos) {
  const uint64_t id = next_id_++;
  leases_.emplace(id, Lease{expiry_nanos, std::move(entries)});
  by_expiry_.emplace_back(expiry_nanos, id);
  std::push_heap(by_expiry_.begin(), by_expiry_.end(), std::greater<>());
  return id;
}

bool LeaseTable::Remove(uint64_t lease, const std::function<void(EntryId)>& release) {
  if (!Release(lease, release)) return false;
  MaybeCompact();
  return true;
}

bool LeaseTable::Release(uint64_t lease, const std::function<void(EntryId)>& release) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return false;
  for (EntryId id : it->second.entries) release(id);
  leases_.erase(it);
  return true;
}

void LeaseTable::MaybeCompact() {
  // Each entry dropped here was left by one Remove since the last compaction, and more than half
  // the heap is dropped: linear work, O(1) per Remove amortised.
  if (by_expiry_.size() <= 2 * leases_.size() + kReleasedSlack) return;
  std::erase_if(by_expiry_, [this](const Expiry& e) { return !leases_.contains(e.second); });
  std::make_heap(by_expiry_.begin(), by_expiry_.end(), std::greater<>());
}

bool LeaseTable::Covers(uint64_t lease, EntryId entry) const {
  const auto it = leases_.find(lease);
  if (it == leases_.end()) return false;
  const std::vector<EntryId>& entries = it->second.entries;
  return std::find(entries.begin(), entries.end(), entry) != entries.end();
}

size_t LeaseTable::ExpireDue(int64_t now_nanos, const std::function<void(EntryId)>& release) {
  size_t expired = 0;
  while (!by_expiry_.empty() && by_expiry_.front().first <= now_nanos) {
    std::pop_heap(by_expiry_.begin(), by_expiry_.end(), std::greater<>());
    const uint64_t id = by_expiry_.back().second;
    by_expiry_.pop_back();
    if (Release(id, release)) ++expired;
  }
  return expired;
}

}  // namespace kvault::storage
