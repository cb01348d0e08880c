#pragma once
// LeaseTable: leases handed out by Lookup. A lease names the entries it keeps readable and an
// expiry on the store's clock; the store releases expired leases lazily at the start of every
// operation (ExpireDue) so no timer thread is needed.
//
// Thread-compatible: the BlockStore guards it with its index mutex.

#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {

class LeaseTable {
 public:
  // Records a lease over `entries` expiring at `expiry_nanos`; returns its id (never 0).
  uint64_t Add(std::vector<EntryId> entries, int64_t expiry_nanos);
  // Removes a lease and calls `release` for each of its entries. False when unknown.
  bool Remove(uint64_t lease, const std::function<void(EntryId)>& release);
  // Removes every lease whose expiry is <= now, calling `release` per entry; returns how many.
  size_t ExpireDue(int64_t now_nanos, const std::function<void(EntryId)>& release);
  // True when `lease` is live: added, and neither removed nor expired by ExpireDue.
  bool Contains(uint64_t lease) const { return leases_.contains(lease); }
  // True when `lease` is live and covers `entry`. Linear in the lease's entries (a lease covers
  // one Lookup's leading hits, at most max_keys_per_batch of them).
  bool Covers(uint64_t lease, EntryId entry) const;
  size_t size() const { return leases_.size(); }

 private:
  struct Lease {
    int64_t expiry;
    std::vector<EntryId> entries;
  };
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Lease> leases_;
  // (expiry, lease id), earliest first; entries of removed leases are skipped when popped.
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>,
                      std::greater<>>
      by_expiry_;
};

}  // namespace kvault::storage
