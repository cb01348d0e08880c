#pragma once
// ScopedKey: the identity of a stored block. Every block is scoped by the tenant that wrote it, so
// the same 32-byte key under two tenants names two unrelated blocks (DESIGN.md §4, §14).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

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

// The hash of every table indexed by ScopedKey: SipHash-2-4 under this process's random key
// (common/siphash.h) of the 32 key bytes and the tenant (u32 little-endian). Keys should be
// SHA-256 output, but clients choose them: without the key, a tenant cannot pick keys that
// collide and turn the store's lookups into long probe runs for every tenant. Differs between
// processes; never stored.
inline uint64_t HashScopedKey(const ScopedKey& k) {
  uint8_t bytes[sizeof(BlockKey) + sizeof(TenantId)];
  std::memcpy(bytes, k.key.data(), sizeof(BlockKey));
  StoreLe32(bytes + sizeof(BlockKey), k.tenant);
  return SipHash24(ProcessSipKey(), bytes);
}

struct ScopedKeyHash {
  size_t operator()(const ScopedKey& k) const noexcept {
    return static_cast<size_t>(HashScopedKey(k));
  }
};

}  // namespace kvault::storage
