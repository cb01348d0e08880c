#pragma once
// ChainTracker: what the prefix-aware policies remember about the chain structure of resident
// entries: each entry's resident parent and its number of resident children. 12 bytes per entry,
// every operation O(1). Thread-compatible.
//
// A removed parent is detected without a child list: every id carries a 16-bit generation that
// OnRemove bumps, and a child keeps the generation its parent had, so a stale parent link (the
// parent left, maybe its id was reused) reads as "no parent". A wrap after 65,536 reuses of one id
// could revive a stale link; that only costs a placement heuristic, never correctness.

#include <cstdint>
#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {

class ChainTracker {
 public:
  // Records a newly resident `id` with `parent` (resident, or kNoEntry; `id` itself counts as
  // kNoEntry: an entry is never its own parent).
  void OnInsert(EntryId id, EntryId parent) {
    if (id >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    Node& n = nodes_[id];
    n.parent = parent;
    n.children = 0;
    if (parent != kNoEntry && parent != id && parent < nodes_.size()) {
      n.parent_gen = nodes_[parent].gen;
      ++nodes_[parent].children;
    } else {
      n.parent = kNoEntry;
    }
  }

  void OnRemove(EntryId id) {
    Node& n = nodes_[id];
    const EntryId p = Parent(id);
    if (p != kNoEntry) --nodes_[p].children;
    n.parent = kNoEntry;
    ++n.gen;
  }

  // The resident parent of resident `id`, or kNoEntry (none given, or it has left since).
  EntryId Parent(EntryId id) const {
    const Node& n = nodes_[id];
    if (n.parent == kNoEntry || nodes_[n.parent].gen != n.parent_gen) return kNoEntry;
    return n.parent;
  }

  // Resident entries whose resident parent is `id`.
  uint32_t Children(EntryId id) const { return nodes_[id].children; }

 private:
  struct Node {
    EntryId parent = kNoEntry;
    uint32_t children = 0;
    uint16_t gen = 0;
    uint16_t parent_gen = 0;
  };
  std::vector<Node> nodes_;
};

}  // namespace kvault::storage
