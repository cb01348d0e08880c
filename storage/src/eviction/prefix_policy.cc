// PrefixPolicy ("prefix"): the best measured policy on the Mooncake traces (docs/eviction.md has
// the figures of `kvault-bench trace`). ARC's adaptive split between recency and frequency, applied
// to chains:
//
// - Three lists. `tail`: blocks inserted and not yet extended nor reused - request tails, usually
//   the partial last block, almost never reused. `recent`: blocks seen once that were extended.
//   `frequent`: blocks used at least twice, or readmitted soon after an eviction.
// - Victims: the oldest request tail first; then, as in ARC, the cold end of `recent` while the
//   once-seen blocks exceed their adaptive target, else the cold end of `frequent`. The parent of
//   the block being made room for (from Admit; else the entry touched last) is spared while
//   anything else can go.
// - Leaves before ancestors: a block touched right after its parent goes just behind it in the same
//   list, so each list's cold end holds chain ends, chains are eaten from the end, and the prefix
//   that stays still hits. PickVictim also steps past up to kLeafLookahead blocks that still have
//   resident children before taking one.
// - Ghosts (GhostSet, as many as the tier holds blocks) remember evicted blocks (OnRemove; not
//   those that leave otherwise, OnLeave) by key hash and which side they left. A block reinserted
//   while its ghost lives goes straight to `frequent`, and the ghost's side moves the target: a
//   `recent` ghost hit grows the share of once-seen blocks, a `frequent` one shrinks it (steps as
//   in ARC; the target starts at half the capacity). The capacity is the largest resident count
//   seen.
//
// Memory per resident block: 8 bytes of list links, 12 of chain links, 4 of key hash and 1 of
// state, plus 12 to 20 per ghost (one ghost per resident block): about 40 bytes. Every call is
// O(1) apart from PickVictim's walk past blocks that `evictable` refuses, which keep their place.
// Thread-compatible.

#include <algorithm>

#include "eviction/chain_tracker.h"
#include "eviction/entry_list.h"
#include "eviction/ghost_set.h"
#include "eviction/policies.h"

namespace kvault::storage {
namespace {

constexpr int kLeafLookahead = 8;

class PrefixPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "prefix"; }

  void OnInsert(EntryId id, EntryId parent, uint64_t key_hash) override {
    if (id >= state_.size()) {
      state_.resize(static_cast<size_t>(id) + 1, kFree);
      key_high_.resize(static_cast<size_t>(id) + 1, 0);
    }
    links_.Grow(id);
    chains_.OnInsert(id, parent);
    key_high_[id] = static_cast<uint32_t>(key_hash >> 32);
    ++resident_;
    if (resident_ > capacity_) {
      capacity_ = resident_;
      ghosts_.SetLimit(capacity_);
      if (!adapted_) target_recent_ = capacity_ / 2.0;
    }
    parent = chains_.Parent(id);
    if (parent != kNoEntry && state_[parent] == kTail) {
      // Extended in this walk (a resident parent is always touched before its child is inserted).
      links_.Unlink(lists_[kTail], parent);
      Place(parent, kRecent, /*walked=*/true);
    }
    if (std::optional<bool> was_frequent = ghosts_.Take(key_hash)) {
      Adapt(*was_frequent);
      Place(id, kFrequent, /*walked=*/true);
    } else {
      state_[id] = kTail;
      links_.PushHead(lists_[kTail], id);
    }
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
    const bool walked = chains_.Parent(id) == last_touched_;
    // A chain looked up again is usually in place already (each block in `frequent` right
    // behind its parent, the first at the head): then the move would change nothing.
    if (!AlreadyPlaced(id, walked)) {
      links_.Unlink(lists_[state_[id]], id);
      Place(id, kFrequent, walked);
    }
    last_touched_ = id;
  }

  void OnRemove(EntryId id) override {
    ghosts_.Add(uint64_t{key_high_[id]} << 32, /*tag=*/state_[id] == kFrequent);
    OnLeave(id);
  }

  // A block promoted away, deleted or lost was not this policy's choice: no ghost, so its return
  // (a demotion back into this tier, say) neither counts as reuse nor moves the target.
  void OnLeave(EntryId id) override {
    links_.Unlink(lists_[state_[id]], id);
    state_[id] = kFree;
    chains_.OnRemove(id);
    --resident_;
    if (last_touched_ == id) last_touched_ = kNoEntry;
    if (incoming_parent_ == id) incoming_parent_ = kNoEntry;
  }

  std::optional<EntryId> PickVictim(const std::function<bool(EntryId)>& evictable) override {
    if (std::optional<EntryId> v = ColdestIn(kTail, evictable)) return v;
    const double once_seen = lists_[kTail].size + lists_[kRecent].size;
    const State first =
        (lists_[kRecent].size > 0 && (once_seen > target_recent_ || lists_[kFrequent].size == 0))
            ? kRecent
            : kFrequent;
    const State second = first == kRecent ? kFrequent : kRecent;
    if (std::optional<EntryId> v = ColdestIn(first, evictable)) return v;
    if (std::optional<EntryId> v = ColdestIn(second, evictable)) return v;
    const EntryId spared = Spared();
    if (Holds(spared) && evictable(spared)) return spared;
    return std::nullopt;
  }

 private:
  // True when `id` is one of this tier's blocks (an Admit parent may live in another tier).
  bool Holds(EntryId id) const { return id < state_.size() && state_[id] != kFree; }

  enum State : uint8_t { kTail = 0, kRecent = 1, kFrequent = 2, kFree = 3 };

  // ARC's adaptation of the target size of the once-seen lists.
  void Adapt(bool was_frequent) {
    adapted_ = true;
    const double recent_ghosts = std::max<size_t>(ghosts_.size(false), 1);
    const double frequent_ghosts = std::max<size_t>(ghosts_.size(true), 1);
    if (was_frequent) {
      target_recent_ -= std::max(1.0, recent_ghosts / frequent_ghosts);
    } else {
      target_recent_ += std::max(1.0, frequent_ghosts / recent_ghosts);
    }
    target_recent_ = std::clamp(target_recent_, 0.0, static_cast<double>(capacity_));
  }

  // Puts `id` at the head of `s`, or just behind its parent when the parent is in `s` and was
  // touched in the same walk.
  void Place(EntryId id, State s, bool walked) {
    const EntryId parent = chains_.Parent(id);
    state_[id] = s;
    if (walked && parent != kNoEntry && state_[parent] == s) {
      links_.InsertAfter(lists_[s], parent, id);
    } else {
      links_.PushHead(lists_[s], id);
    }
  }

  // True when Place(id, kFrequent, walked) after an Unlink would leave `frequent` as it is.
  bool AlreadyPlaced(EntryId id, bool walked) const {
    if (state_[id] != kFrequent) return false;
    const EntryId parent = chains_.Parent(id);
    if (walked && parent != kNoEntry && state_[parent] == kFrequent) {
      return links_.Prev(id) == parent;
    }
    return lists_[kFrequent].head == id;
  }

  // The coldest evictable entry of `s` other than the spared one, preferring one without resident
  // children among the first kLeafLookahead candidates.
  std::optional<EntryId> ColdestIn(State s, const std::function<bool(EntryId)>& evictable) const {
    const EntryId spared = Spared();
    EntryId fallback = kNoEntry;
    int looked = 0;
    for (EntryId id = lists_[s].tail; id != kNoEntry; id = links_.Prev(id)) {
      if (id == spared || !evictable(id)) continue;
      if (chains_.Children(id) == 0) return id;
      if (fallback == kNoEntry) fallback = id;
      if (++looked >= kLeafLookahead) break;
    }
    if (fallback != kNoEntry) return fallback;
    return std::nullopt;
  }

  // The entry PickVictim takes only when nothing else can go.
  EntryId Spared() const { return incoming_known_ ? incoming_parent_ : last_touched_; }

  EntryLinks links_;
  EntryList lists_[3];
  std::vector<State> state_;
  std::vector<uint32_t> key_high_;  // key_hash >> 32: all a ghost fingerprint needs
  ChainTracker chains_;
  GhostSet ghosts_;
  EntryId last_touched_ = kNoEntry;
  // The parent passed to the last Admit, until the next OnInsert: the block being made room for
  // will hang off it. Without an Admit (a background demotion, say), the last touched entry is
  // spared instead: chains are walked and inserted in order, so it is the likely parent.
  EntryId incoming_parent_ = kNoEntry;
  bool incoming_known_ = false;

  uint32_t resident_ = 0;
  uint32_t capacity_ = 0;
  // Target size of the once-seen lists (tail + recent): half the capacity until a ghost hit first
  // moves it (ARC starts at 0, which adapts too slowly once a tier holds tens of thousands of
  // blocks: 1.6 points lost on the conversation trace at 25%).
  double target_recent_ = 0;
  bool adapted_ = false;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakePrefixPolicy() { return std::make_unique<PrefixPolicy>(); }

}  // namespace kvault::storage
