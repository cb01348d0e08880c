#pragma once
// EvictionPolicy: decides which block a full tier gives up next. A pure interface over small
// integer entry ids, so policies are tested and compared (kvault-bench trace) without any storage.
//
// The store tells the policy what happens to the blocks a tier holds (insert, hit, eviction, other
// removal) and, when it needs room, asks for victims. The store, not the policy, knows which
// blocks are pinned or leased: it passes a predicate and the policy returns the best evictable
// block.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/result.h"

namespace kvault::storage {

// Identifies one resident block to a policy. Ids are dense (the store's entry slots) and reused
// after OnRemove or OnLeave.
using EntryId = uint32_t;
inline constexpr EntryId kNoEntry = UINT32_MAX;

// Thread-compatible: the store serialises calls (it holds its index lock around them).
class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;
  virtual std::string_view name() const = 0;

  // `id` became resident. `parent` is the entry of the block's parent (the previous block of its
  // chain) when that parent is resident in the same tier, else kNoEntry. Blocks of one chain are
  // inserted parent first. `key_hash` identifies the block across evictions (for ghost lists); it
  // is a hash of the scoped key, never the key itself.
  virtual void OnInsert(EntryId id, EntryId parent, uint64_t key_hash) = 0;
  // `id` was used: a lookup found it, a read pinned it, or a request touched it again.
  virtual void OnAccess(EntryId id) = 0;
  // `id` was evicted: the tier gave it up to make room (demoted to the next colder tier, or
  // dropped from the coldest). Its children stay resident until removed. A policy may remember the
  // block (a ghost) and take its quick return as a sign that it should have been kept.
  virtual void OnRemove(EntryId id) = 0;
  // `id` left the tier for another reason than room: promoted to a hotter tier, deleted, or found
  // damaged. Its children stay resident until removed. Nothing to learn from its return, so a
  // policy that remembers evicted blocks keeps no memory of this one. Default: OnRemove, right for
  // policies that remember nothing.
  virtual void OnLeave(EntryId id) { OnRemove(id); }

  // Asked only when the tier is full and a new block would need a victim: false keeps the tier as
  // it is and the new block goes to the next tier (or is not cached). Default: always admit.
  virtual bool Admit(uint64_t key_hash, EntryId parent) {
    (void)key_hash;
    (void)parent;
    return true;
  }

  // The block to evict next among those for which `evictable(id)` is true, or nullopt when none
  // is. Does not remove it: the store calls OnRemove once the block is gone.
  virtual std::optional<EntryId> PickVictim(const std::function<bool(EntryId)>& evictable) = 0;
};

// Names accepted by MakeEvictionPolicy, the default first.
std::vector<std::string> EvictionPolicyNames();

// Creates a policy by name ("lru", "prefix", ...). InvalidArgument names the accepted ones.
Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name);

}  // namespace kvault::storage
