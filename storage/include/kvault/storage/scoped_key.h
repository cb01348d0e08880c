#pragma once
// ScopedKey: the identity of a stored block. Every block is scoped by the tenant that wrote it, so
// the same 32-byte key under two tenants names two unrelated blocks (DESIGN.md §4, §14).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>

#include "kvault/common/block_key.h"
#include "kvault/common/little_endian.h"
#include "kvault/common/siphash.h"

namespace kvault::storage {

// A tenant as the store sees it: a small number the server assigns to each authenticated tenant.
// 0 is the default tenant of a single-tenant deployment.
using TenantId = uint32_t;

// Plain value type; thread-compatible.
struct ScopedKey {
  TenantId tenant = 0;
  BlockKey key{};
  bool operator==(const ScopedKey&) const = default;
};

// The hash of every table indexed by ScopedKey: SipHash-1-3 under this process's random key
// (common/siphash.h) of the 32 key bytes and the tenant (u32 little-endian), 36 bytes. Keys should
// be SHA-256 output, but clients choose them: without the key, a tenant cannot pick keys that
// collide and turn the store's lookups into long probe runs for every tenant. Differs between
// processes; never stored.
inline uint64_t HashScopedKey(const ScopedKey& k) {
  constexpr size_t kBytes = sizeof(BlockKey) + sizeof(TenantId);
  static_assert(sizeof(BlockKey) == 32 && sizeof(TenantId) == 4);
  SipState<1, 3> state(ProcessSipKey());
  for (size_t i = 0; i < sizeof(BlockKey); i += 8) state.Absorb(LoadLe64(k.key.data() + i));
  return state.Finish(uint64_t{kBytes} << 56 | k.tenant);
}

// HashScopedKey of (tenant, keys[i]) into out[i] for every key (out.size() >= keys.size()), a
// vector of keys at a time: what a chain lookup hashes.
inline void HashScopedKeys(TenantId tenant, std::span<const BlockKey> keys,
                           std::span<uint64_t> out) {
  SipHash13Batch(ProcessSipKey(), keys, tenant, out);
}

struct ScopedKeyHash {
  size_t operator()(const ScopedKey& k) const noexcept {
    return static_cast<size_t>(HashScopedKey(k));
  }
};

}  // namespace kvault::storage
