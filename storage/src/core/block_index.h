#pragma once
// BlockIndex: scoped key -> entry, for every block the store knows (resident in any tier, or being
// written). Entries live in a dense vector addressed by EntryId (the ids eviction policies see);
// the hash table is open addressing with linear probing over 8-byte slots holding a 32-bit key
// fingerprint and the entry id, so a probe that misses never touches an entry. About 64 bytes per
// entry plus 11-23 bytes of table.
//
// Thread-compatible: the BlockStore guards it with its index mutex.

#include <cstdint>
#include <cstring>
#include <vector>

#include "kvault/storage/eviction_policy.h"
#include "kvault/storage/scoped_key.h"
#include "kvault/storage/tier.h"

namespace kvault::storage {

enum class EntryState : uint8_t {
  kFree = 0,      // slot of the entry vector not in use
  kReserved = 1,  // a write in progress: invisible to lookups and reads
  kResident = 2,  // readable from `tier`
  kMoving = 3,    // readable from `tier` while a mover copies it to another tier
  kLost = 4,      // failed verification and is gone from its tier; the entry waits for its
                  // last pin or lease to go before it is erased (lookups treat it as absent)
  kDropping = 5,  // evicted from the coldest tier; a mover erases it from the tier without the
                  // index mutex, then erases the entry. Lookups and reads treat it as absent, a
                  // write of its key as already there (as if it came just before the eviction)
};

struct IndexEntry {
  ScopedKey key;
  uint32_t object_bytes = 0;
  TierSlot slot = 0;
  uint32_t pins = 0;          // readers (and a mover) using the bytes at (tier, slot)
  EntryId parent = kNoEntry;  // the chain's previous block when known (may be stale: a hint)
  uint32_t leases = 0;        // live leases covering the block (one per leased Lookup: a hot
                              // prefix block collects tens of thousands within a TTL)
  TierKind tier = TierKind::kHost;
  EntryState state = EntryState::kFree;
};

// 64 bytes: the memory target of a full tier counts 128 bytes per indexed block, index and policy.
static_assert(sizeof(IndexEntry) <= 64);

class BlockIndex {
 public:
  BlockIndex();

  // Where `key` hashes in the table; the batched calls below take it so that a batch hashes each
  // key once.
  // HashScopedKey (scoped_key.h): keyed, so keys a client picks to collide still spread out;
  // the low bits pick the slot, the high 32 are the fingerprint.
  static uint64_t Hash(const ScopedKey& key) { return HashScopedKey(key); }

  // The entry of `key`, or kNoEntry. `hash` is Hash(key).
  EntryId Find(const ScopedKey& key) const { return Find(key, Hash(key)); }
  EntryId Find(const ScopedKey& key, uint64_t hash) const {
    const uint32_t fingerprint = Fingerprint(hash);
    for (uint64_t i = hash & mask_;; i = (i + 1) & mask_) {
      const uint64_t value = table_[i];
      if (value == 0) return kNoEntry;
      if (static_cast<uint32_t>(value >> 32) == fingerprint) {
        const EntryId id = static_cast<EntryId>(value & 0xFFFFFFFF) - 1;
        if (SameKey(entries_[id].key, key)) return id;
      }
    }
  }
  // Hints the CPU to fetch the table slot of the key with Hash `hash` (batched lookups overlap
  // their cache misses).
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&table_[hash & mask_]); }
  // Hints the CPU to fetch the entry the table slot of Hash `hash` points to, when its fingerprint
  // matches. Best issued a few keys after Prefetch(hash), once the slot is likely in cache.
  void PrefetchEntry(uint64_t hash) const {
    const uint64_t value = table_[hash & mask_];
    if (value != 0 && static_cast<uint32_t>(value >> 32) == Fingerprint(hash)) {
      __builtin_prefetch(&entries_[static_cast<EntryId>(value & 0xFFFFFFFF) - 1]);
    }
  }
  // Adds `key` (precondition: absent) with a default entry in state kReserved.
  EntryId Insert(const ScopedKey& key);
  // Removes the entry; its id may be handed out again.
  void Erase(EntryId id);

  IndexEntry& at(EntryId id) { return entries_[id]; }
  const IndexEntry& at(EntryId id) const { return entries_[id]; }
  size_t size() const { return size_; }
  // One past the largest id handed out so far.
  size_t id_limit() const { return entries_.size(); }

 private:
  // ScopedKey's operator== without a call to memcmp (the probe loop's hottest compare).
  static bool SameKey(const ScopedKey& a, const ScopedKey& b) {
    uint64_t x[4], y[4];
    std::memcpy(x, a.key.data(), sizeof x);
    std::memcpy(y, b.key.data(), sizeof y);
    return a.tenant == b.tenant &&
           ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
  }
  static uint32_t Fingerprint(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }
  void Grow();
  void Place(uint64_t slot_value, uint64_t hash);

  std::vector<uint64_t> table_;  // 0 = empty; else fingerprint << 32 | (id + 1)
  uint64_t mask_ = 0;
  std::vector<IndexEntry> entries_;
  std::vector<EntryId> free_ids_;
  size_t size_ = 0;
};

}  // namespace kvault::storage
