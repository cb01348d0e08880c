// LruPolicy ("lru"): the baseline. Evicts the least recently inserted or accessed block, with no
// regard for chains. One intrusive list over dense entry ids: 8 bytes per entry, O(1) insert,
// access and remove; PickVictim walks from the cold end past the blocks `evictable` refuses
// (pinned or leased), which keep their place. Thread-compatible.

#include "eviction/entry_list.h"
#include "eviction/policies.h"

namespace kvault::storage {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }

  void OnInsert(EntryId id, EntryId /*parent*/, uint64_t /*key_hash*/) override {
    links_.Grow(id);
    links_.PushHead(list_, id);
  }
  void OnAccess(EntryId id) override { links_.MoveToHead(list_, id); }
  void OnRemove(EntryId id) override { links_.Unlink(list_, id); }

  std::optional<EntryId> PickVictim(const std::function<bool(EntryId)>& evictable) override {
    for (EntryId id = list_.tail; id != kNoEntry; id = links_.Prev(id)) {
      if (evictable(id)) return id;
    }
    return std::nullopt;
  }

 private:
  EntryLinks links_;
  EntryList list_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace kvault::storage
