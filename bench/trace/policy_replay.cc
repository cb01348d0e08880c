#include "trace/policy_replay.h"

#include <string>
#include <vector>

namespace kvault::bench {

using storage::EntryId;
using storage::kNoEntry;

uint64_t TraceKeyHash(uint64_t hash_id) {
  uint64_t z = hash_id + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Result<HitStats> ReplayPolicy(const BlockTrace& trace, uint64_t capacity_blocks,
                              storage::EvictionPolicy& policy) {
  HitStats stats;
  stats.block_refs = trace.blocks.size();
  stats.requests = trace.num_requests();
  std::vector<EntryId> entry_of(trace.unique_blocks, kNoEntry);  // dense block -> entry
  std::vector<uint32_t> block_of;                                // entry -> dense block
  std::vector<EntryId> free_ids;
  std::vector<uint32_t> cached_children(trace.unique_blocks, 0);  // by the trace's prefix tree
  const bool tree = trace.prefix_consistent && trace.parent.size() == trace.unique_blocks;
  uint64_t resident = 0;
  const auto always = [](EntryId) { return true; };

  for (size_t r = 0; r < trace.num_requests(); ++r) {
    const auto blocks = trace.request(r);
    size_t lead = 0;
    while (lead < blocks.size() && entry_of[blocks[lead]] != kNoEntry) ++lead;
    stats.hits += lead;

    for (size_t i = 0; i < blocks.size(); ++i) {
      const uint32_t b = blocks[i];
      if (entry_of[b] != kNoEntry) {
        policy.OnAccess(entry_of[b]);
        continue;
      }
      auto parent_entry = [&]() { return i == 0 ? kNoEntry : entry_of[blocks[i - 1]]; };
      const uint64_t key_hash = TraceKeyHash(trace.hash_ids[b]);
      if (resident >= capacity_blocks) {
        if (resident == 0 || !policy.Admit(key_hash, parent_entry())) {
          ++stats.bypassed;
          continue;
        }
        std::optional<EntryId> victim = policy.PickVictim(always);
        if (!victim || *victim >= block_of.size() || entry_of[block_of[*victim]] != *victim) {
          return Status::Internal(
              std::string(policy.name()) +
              ": PickVictim gave no resident victim with every block evictable");
        }
        policy.OnRemove(*victim);
        const uint32_t gone = block_of[*victim];
        if (tree) {
          if (cached_children[gone] > 0) ++stats.orphaning_evictions;
          if (trace.parent[gone] != BlockTrace::kRoot) --cached_children[trace.parent[gone]];
        }
        entry_of[gone] = kNoEntry;
        free_ids.push_back(*victim);
        --resident;
        ++stats.evictions;
      }
      EntryId id;
      if (!free_ids.empty()) {
        id = free_ids.back();
        free_ids.pop_back();
        block_of[id] = b;
      } else {
        id = static_cast<EntryId>(block_of.size());
        block_of.push_back(b);
      }
      entry_of[b] = id;
      if (tree && trace.parent[b] != BlockTrace::kRoot) ++cached_children[trace.parent[b]];
      ++resident;
      ++stats.inserts;
      policy.OnInsert(id, parent_entry(), key_hash);
    }
  }
  return stats;
}

}  // namespace kvault::bench
