#pragma once
// GhostSet: the keys a policy evicted most recently, remembered by a 31-bit fingerprint of their
// key hash with a one-bit tag (which list they left), so a block that comes back soon after its
// eviction is recognised. FIFO: once `limit` ghosts are held, adding one forgets the oldest.
//
// Memory: a ring of 4-byte fingerprints and an open-addressing table of 4-byte ring positions at
// most half full: 12 to 20 bytes per remembered key. Only the high 32 bits of a key hash matter.
// Add, Take and SetLimit are O(1) amortised. Fingerprints collide with probability about size/2^31
// per lookup, which only misleads a heuristic. Thread-compatible.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace kvault::storage {

class GhostSet {
 public:
  // The number of ghosts kept; lowering it forgets the oldest on the next Add.
  void SetLimit(size_t limit);
  size_t limit() const { return limit_; }

  // Remembers `key_hash` with `tag`. An older ghost of the same key stays until it expires.
  void Add(uint64_t key_hash, bool tag);
  // Forgets `key_hash` and returns its tag (the newest ghost's), or nullopt if it is not held.
  std::optional<bool> Take(uint64_t key_hash);

  size_t size() const { return count_; }
  size_t size(bool tag) const { return tag_count_[tag ? 1 : 0]; }

 private:
  static uint32_t Fingerprint(uint64_t key_hash);
  size_t Slot(uint32_t fp) const { return (fp * 0x9E3779B1u) & (table_.size() - 1); }
  void PopOldest();
  void Grow();
  // Table slot that points at ring position `pos`, or table_.size() if none.
  size_t FindSlotOf(size_t pos) const;
  void EraseSlot(size_t slot);

  std::vector<uint32_t> ring_;   // fp << 1 | tag, 0 for a taken ghost; oldest at `oldest_`
  std::vector<uint32_t> table_;  // ring position + 1, 0 for empty; linear probing
  size_t oldest_ = 0;
  size_t used_ = 0;   // ring positions in use, taken ones included
  size_t count_ = 0;  // live ghosts
  std::array<size_t, 2> tag_count_{0, 0};
  size_t limit_ = 0;
};

}  // namespace kvault::storage
