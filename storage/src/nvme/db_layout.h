#pragma once
// How the nvme tier lays blocks out in its RocksDB database (docs/storage_nvme.md, "nvme tier").
// One column family holds two kinds of entries:
//   block entry: key = tenant (u32 big-endian) || block key (32 bytes)        36 bytes
//                value = the sealed block object, byte for byte
//   size entry:  key = FF FF FF FF || tenant (u32 big-endian) || block key    40 bytes
//                value = object size (u32 little-endian)
// A block's two entries are written and deleted in one WriteBatch, and one column family has one
// memtable, so after any crash a block has both entries or neither. Size entries sort after every
// block entry (tenant FFFFFFFF is reserved), so the tier rebuilds its index and byte accounting by
// scanning them alone, without reading block bytes. Pure functions: thread-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kvault/storage/nvme_tier.h"
#include "kvault/storage/scoped_key.h"

namespace kvault::storage::nvme {

// The tenant whose block keys would collide with the size entries: the tier refuses it.
inline constexpr TenantId kReservedTenant = kNvmeReservedTenant;
static_assert(kReservedTenant == 0xFFFFFFFF, "size entries start with FF FF FF FF");

inline constexpr size_t kBlockKeyBytes = 4 + 32;
inline constexpr size_t kSizeKeyBytes = 4 + kBlockKeyBytes;
inline constexpr size_t kSizeValueBytes = 4;
inline constexpr std::string_view kSizeKeyPrefix{"\xFF\xFF\xFF\xFF", 4};

using BlockDbKey = std::array<char, kBlockKeyBytes>;
using SizeDbKey = std::array<char, kSizeKeyBytes>;
using SizeValue = std::array<char, kSizeValueBytes>;

// Big-endian tenant first, so that a tenant's blocks sort together.
BlockDbKey EncodeBlockKey(const ScopedKey& key);
SizeDbKey EncodeSizeKey(const ScopedKey& key);
// nullopt unless `bytes` is a well-formed size-entry key.
std::optional<ScopedKey> DecodeSizeKey(std::string_view bytes);

SizeValue EncodeSize(uint32_t object_bytes);
// nullopt unless `bytes` is exactly kSizeValueBytes long.
std::optional<uint32_t> DecodeSize(std::string_view bytes);

}  // namespace kvault::storage::nvme
