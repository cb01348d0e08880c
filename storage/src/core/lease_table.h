#pragma once
// LeaseTable: leases handed out by Lookup. A lease names the entries it keeps readable and an
// expiry on the store's clock; the store releases expired leases lazily at the start of every
// operation (ExpireDue) so no timer thread is needed. Memory is bounded by the live leases: a lease
// released early leaves its expiry entry behind only until the entries of released leases
// outnumber the live ones (plus a small slack), when they are dropped all at once.
//
// Thread-compatible: the BlockStore guards it with its index mutex.

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {

class LeaseTable {
 public:
  // Records a lease over `entries` expiring at `expiry_nanos`; returns its id (never 0).
  uint64_t Add(std::vector<EntryId> entries, int64_t expiry_nanos);
  // Removes a lease and calls `release` for each of its entries. False when unknown. Amortised
  // O(1) apart from the release calls.
  bool Remove(uint64_t lease, const std::function<void(EntryId)>& release);
  // Removes every lease whose expiry is <= now, calling `release` per entry; returns how many.
  size_t ExpireDue(int64_t now_nanos, const std::function<void(EntryId)>& release);
  // True when `lease` is live: added, and neither removed nor expired by ExpireDue.
  bool Contains(uint64_t lease) const { return leases_.contains(lease); }
  // True when `lease` is live and covers `entry`. Linear in the lease's entries (a lease covers
  // one Lookup's leading hits, at most max_keys_per_batch of them).
  bool Covers(uint64_t lease, EntryId entry) const;
  size_t size() const { return leases_.size(); }
  // Entries of the expiry heap, those of released leases not yet dropped included (tests).
  size_t expiry_entries() const { return by_expiry_.size(); }

 private:
  struct Lease {
    int64_t expiry;
    std::vector<EntryId> entries;
  };
  using Expiry = std::pair<int64_t, uint64_t>;  // (expiry, lease id)
  // Expiry entries of released leases tolerated beyond as many as there are live leases.
  static constexpr size_t kReleasedSlack = 64;

  // Remove without compaction (ExpireDue pops the lease's expiry entry itself).
  bool Release(uint64_t lease, const std::function<void(EntryId)>& release);
  // Drops the expiry entries of released leases once they outnumber the live ones.
  void MaybeCompact();

  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Lease> leases_;
  // A min-heap (std::push_heap with std::greater) of every live lease's expiry, earliest on top,
  // plus those of released leases until MaybeCompact drops them (ExpireDue skips them).
  std::vector<Expiry> by_expiry_;
};

}  // namespace kvault::storage
