#include "eviction/ghost_set.h"

#include <algorithm>

namespace kvault::storage {

uint32_t GhostSet::Fingerprint(uint64_t key_hash) {
  const uint32_t fp = static_cast<uint32_t>(key_hash >> 33);  // 31 bits
  return fp == 0 ? 1 : fp;
}

void GhostSet::SetLimit(size_t limit) { limit_ = limit; }

size_t GhostSet::FindSlotOf(size_t pos) const {
  const size_t mask = table_.size() - 1;
  for (size_t s = Slot(ring_[pos] >> 1);; s = (s + 1) & mask) {
    if (table_[s] == 0) return table_.size();
    if (table_[s] == pos + 1) return s;
  }
}

void GhostSet::EraseSlot(size_t slot) {
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  const size_t mask = table_.size() - 1;
  size_t hole = slot;
  table_[hole] = 0;
  for (size_t j = (hole + 1) & mask; table_[j] != 0; j = (j + 1) & mask) {
    const size_t home = Slot(ring_[table_[j] - 1] >> 1);
    // Move j into the hole when its home slot does not lie cyclically in (hole, j].
    const bool home_in_between =
        hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!home_in_between) {
      table_[hole] = table_[j];
      table_[j] = 0;
      hole = j;
    }
  }
}

void GhostSet::PopOldest() {
  const uint32_t entry = ring_[oldest_];
  if (entry != 0) {
    EraseSlot(FindSlotOf(oldest_));
    --count_;
    --tag_count_[entry & 1];
  }
  oldest_ = (oldest_ + 1) % ring_.size();
  --used_;
}

void GhostSet::Grow() {
  const size_t new_size = std::max<size_t>({16, ring_.size() * 2, limit_});
  std::vector<uint32_t> ring(new_size, 0);
  for (size_t i = 0; i < used_; ++i) ring[i] = ring_[(oldest_ + i) % ring_.size()];
  ring_.swap(ring);
  oldest_ = 0;
  size_t table_size = 16;
  while (table_size < 2 * new_size) table_size *= 2;
  table_.assign(table_size, 0);
  const size_t mask = table_size - 1;
  for (size_t pos = 0; pos < used_; ++pos) {
    if (ring_[pos] == 0) continue;
    size_t s = Slot(ring_[pos] >> 1);
    while (table_[s] != 0) s = (s + 1) & mask;
    table_[s] = static_cast<uint32_t>(pos + 1);
  }
}

void GhostSet::Add(uint64_t key_hash, bool tag) {
  if (limit_ == 0) return;
  (void)Take(key_hash);  // at most one ghost per key: the newest
  while (used_ >= limit_) PopOldest();
  if (used_ == ring_.size()) Grow();
  const uint32_t fp = Fingerprint(key_hash);
  const size_t pos = (oldest_ + used_) % ring_.size();
  ring_[pos] = fp << 1 | (tag ? 1u : 0u);
  ++used_;
  ++count_;
  ++tag_count_[tag ? 1 : 0];
  const size_t mask = table_.size() - 1;
  size_t s = Slot(fp);
  while (table_[s] != 0) s = (s + 1) & mask;
  table_[s] = static_cast<uint32_t>(pos + 1);
}

std::optional<bool> GhostSet::Take(uint64_t key_hash) {
  if (count_ == 0) return std::nullopt;
  const uint32_t fp = Fingerprint(key_hash);
  const size_t mask = table_.size() - 1;
  for (size_t s = Slot(fp); table_[s] != 0; s = (s + 1) & mask) {
    const size_t pos = table_[s] - 1;
    if ((ring_[pos] >> 1) != fp) continue;
    const bool tag = (ring_[pos] & 1) != 0;
    EraseSlot(s);
    ring_[pos] = 0;
    --count_;
    --tag_count_[tag ? 1 : 0];
    return tag;
  }
  return std::nullopt;
}

}  // namespace kvault::storage
