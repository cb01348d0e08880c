#include "core/block_index.h"

namespace kvault::storage {
namespace {
constexpr size_t kInitialSlots = 1024;
// Grow at 70% load: linear probing stays short and the table stays under 23 bytes per entry.
constexpr uint64_t kMaxLoadPercent = 70;
}  // namespace

BlockIndex::BlockIndex() : table_(kInitialSlots, 0), mask_(kInitialSlots - 1) {}

EntryId BlockIndex::Insert(const ScopedKey& key) {
  if ((size_ + 1) * 100 > table_.size() * kMaxLoadPercent) Grow();
  EntryId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<EntryId>(entries_.size());
    entries_.emplace_back();
  }
  IndexEntry& entry = entries_[id];
  entry = IndexEntry{};
  entry.key = key;
  entry.state = EntryState::kReserved;
  const uint64_t hash = Hash(key);
  Place((uint64_t{Fingerprint(hash)} << 32) | (uint64_t{id} + 1), hash);
  ++size_;
  return id;
}

void BlockIndex::Place(uint64_t slot_value, uint64_t hash) {
  uint64_t i = hash & mask_;
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = slot_value;
}

void BlockIndex::Erase(EntryId id) {
  const uint64_t hash = Hash(entries_[id].key);
  const uint64_t wanted = (uint64_t{Fingerprint(hash)} << 32) | (uint64_t{id} + 1);
  uint64_t i = hash & mask_;
  while (table_[i] != wanted) i = (i + 1) & mask_;
  // Backward-shift deletion: pull later members of the probe run into the hole, so lookups never
  // need tombstones.
  uint64_t hole = i;
  for (uint64_t j = (i + 1) & mask_; table_[j] != 0; j = (j + 1) & mask_) {
    const EntryId other = static_cast<EntryId>(table_[j] & 0xFFFFFFFF) - 1;
    const uint64_t home = Hash(entries_[other].key) & mask_;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool home_after_hole = ((j - home) & mask_) < ((j - hole) & mask_);
    if (!home_after_hole) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = 0;
  entries_[id] = IndexEntry{};
  free_ids_.push_back(id);
  --size_;
}

void BlockIndex::Grow() {
  std::vector<uint64_t> old;
  old.swap(table_);
  table_.assign(old.size() * 2, 0);
  mask_ = table_.size() - 1;
  for (uint64_t value : old) {
    if (value == 0) continue;
    const EntryId id = static_cast<EntryId>(value & 0xFFFFFFFF) - 1;
    Place(value, Hash(entries_[id].key));
  }
}

}  // namespace kvault::storage
