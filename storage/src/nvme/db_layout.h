#pragma once
// How the nvme tier lays blocks out in RocksDB (docs/storage.md, "nvme tier"):
//   column family "default": key = tenant (u32 big-endian) || block key (32 bytes),
//                            value = the sealed block object, byte for byte;
//   column family "sizes":   same key, value = object size (u32 little-endian).
// The two are written in one WriteBatch and flushed atomically, so after any crash a key is in
// both or in neither. "sizes" lets the tier rebuild its index and account bytes without reading
// block bytes. Pure functions: thread-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kvault/storage/scoped_key.h"

namespace kvault::storage::nvme {

inline constexpr char kSizesColumnFamily[] = "sizes";
inline constexpr size_t kDbKeyBytes = 4 + 32;
inline constexpr size_t kSizeValueBytes = 4;

using DbKey = std::array<char, kDbKeyBytes>;
using SizeValue = std::array<char, kSizeValueBytes>;

// Big-endian tenant first, so that a tenant's blocks sort together.
DbKey EncodeDbKey(const ScopedKey& key);
// nullopt unless `bytes` is exactly kDbKeyBytes long.
std::optional<ScopedKey> DecodeDbKey(std::string_view bytes);

SizeValue EncodeSize(uint32_t object_bytes);
// nullopt unless `bytes` is exactly kSizeValueBytes long.
std::optional<uint32_t> DecodeSize(std::string_view bytes);

}  // namespace kvault::storage::nvme
