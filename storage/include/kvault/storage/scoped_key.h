#pragma once
// ScopedKey: the identity of a stored block. Every block is scoped by the tenant that wrote it, so
// the same 32-byte key under two tenants names two unrelated blocks (DESIGN.md §4, §14).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#include "kvault/common/block_key.h"

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

// Keys are SHA-256 output, so their first bytes are already uniformly distributed.
struct ScopedKeyHash {
  size_t operator()(const ScopedKey& k) const noexcept {
    uint64_t h;
    std::memcpy(&h, k.key.data(), sizeof h);
    return static_cast<size_t>(h ^ (uint64_t{k.tenant} * 0x9E3779B97F4A7C15ull));
  }
};

}  // namespace kvault::storage
