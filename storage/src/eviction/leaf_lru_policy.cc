// LeafLruPolicy ("leaf-lru"): LRU made chain-aware, with no extra state beyond the chain links.
//
// - Request tails go first. A block inserted and then neither extended (no child inserted under
//   it) nor used again is the last block of its request, which is usually partial and is almost
//   never reused (under 1% on the conversation trace, 5% on the synthetic one). Such tails wait in
//   their own FIFO and are evicted, oldest first, before anything else - except the parent of the
//   block being made room for (from Admit; else the entry touched last), which is spared while
//   anything else can go.
// - Leaves before their ancestors. A block touched right after its parent (one chain walked in
//   order, as lookups and inserts do) is placed just behind that parent in the recency list, so the
//   cold end of the list holds chain tails, and a chain is eaten from its end: the prefix that
//   remains still hits, where plain LRU evicts a chain's first block and strands the rest.
//
// Memory: 8 bytes of list links, 12 of chain links (ChainTracker) and 1 of state per entry. Every
// operation is O(1) apart from PickVictim's walk past blocks that `evictable` refuses, which keep
// their place. Thread-compatible.

#include "eviction/chain_tracker.h"
#include "eviction/entry_list.h"
#include "eviction/policies.h"

namespace kvault::storage {
namespace {

class LeafLruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "leaf-lru"; }

  void OnInsert(EntryId id, EntryId parent, uint64_t /*key_hash*/) override {
    if (id >= state_.size()) state_.resize(static_cast<size_t>(id) + 1, kFree);
    links_.Grow(id);
    chains_.OnInsert(id, parent);
    parent = chains_.Parent(id);
    if (parent != kNoEntry && state_[parent] == kTail) {
      // Extended: no longer a request tail. It was inserted recently and not used since, so it
      // joins the recency list by its own parent (same age) or at the head.
      links_.Unlink(lists_[kTail], parent);
      PlaceInMain(parent, /*walked=*/true);
    }
    state_[id] = kTail;
    links_.PushHead(lists_[kTail], id);
    last_touched_ = id;
    incoming_known_ = false;
  }

  // Remembers the incoming block's parent: the next victims spare it (see Spared()).
  bool Admit(uint64_t /*key_hash*/, EntryId parent) override {
    incoming_parent_ = parent;
    incoming_known_ = true;
    return true;
  }

  void OnAccess(EntryId id) override {
    links_.Unlink(lists_[state_[id]], id);
    PlaceInMain(id, /*walked=*/chains_.Parent(id) == last_touched_);
    last_touched_ = id;
  }

  void OnRemove(EntryId id) override {
    links_.Unlink(lists_[state_[id]], id);
    state_[id] = kFree;
    chains_.OnRemove(id);
    if (last_touched_ == id) last_touched_ = kNoEntry;
    if (incoming_parent_ == id) incoming_parent_ = kNoEntry;
  }

  std::optional<EntryId> PickVictim(const std::function<bool(EntryId)>& evictable) override {
    const EntryId spared = Spared();
    for (State s : {kTail, kMain}) {
      for (EntryId id = lists_[s].tail; id != kNoEntry; id = links_.Prev(id)) {
        if (id != spared && evictable(id)) return id;
      }
    }
    // Only the spared entry is left.
    if (spared != kNoEntry && evictable(spared)) return spared;
    return std::nullopt;
  }

 private:
  enum State : uint8_t { kTail = 0, kMain = 1, kFree = 2 };

  // Head of the recency list, or just behind the block's parent when the parent was touched in the
  // same walk (or has the same age) and sits in the list too.
  void PlaceInMain(EntryId id, bool walked) {
    const EntryId parent = chains_.Parent(id);
    state_[id] = kMain;
    if (walked && parent != kNoEntry && state_[parent] == kMain) {
      links_.InsertAfter(lists_[kMain], parent, id);
    } else {
      links_.PushHead(lists_[kMain], id);
    }
  }

  // The entry PickVictim takes only when nothing else can go.
  EntryId Spared() const { return incoming_known_ ? incoming_parent_ : last_touched_; }

  EntryLinks links_;
  EntryList lists_[2];
  std::vector<State> state_;
  ChainTracker chains_;
  EntryId last_touched_ = kNoEntry;
  // The parent passed to the last Admit, until the next OnInsert: the block being made room for
  // will hang off it. Without an Admit (a background demotion, say), the last touched entry is
  // spared instead: chains are walked and inserted in order, so it is the likely parent.
  EntryId incoming_parent_ = kNoEntry;
  bool incoming_known_ = false;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLeafLruPolicy() { return std::make_unique<LeafLruPolicy>(); }

}  // namespace kvault::storage
