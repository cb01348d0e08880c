#include "nvme/db_layout.h"

#include <cstring>

namespace kvault::storage::nvme {
namespace {

void PutBigEndian32(uint32_t value, char* out) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (24 - 8 * i));
}

}  // namespace

BlockDbKey EncodeBlockKey(const ScopedKey& key) {
  BlockDbKey out;
  PutBigEndian32(key.tenant, out.data());
  std::memcpy(out.data() + 4, key.key.data(), key.key.size());
  return out;
}

SizeDbKey EncodeSizeKey(const ScopedKey& key) {
  SizeDbKey out;
  std::memcpy(out.data(), kSizeKeyPrefix.data(), kSizeKeyPrefix.size());
  PutBigEndian32(key.tenant, out.data() + 4);
  std::memcpy(out.data() + 8, key.key.data(), key.key.size());
  return out;
}

std::optional<ScopedKey> DecodeSizeKey(std::string_view bytes) {
  if (bytes.size() != kSizeKeyBytes || bytes.substr(0, 4) != kSizeKeyPrefix) return std::nullopt;
  ScopedKey key;
  for (int i = 4; i < 8; ++i) key.tenant = (key.tenant << 8) | static_cast<uint8_t>(bytes[i]);
  if (key.tenant == kReservedTenant) return std::nullopt;
  std::memcpy(key.key.data(), bytes.data() + 8, key.key.size());
  return key;
}

SizeValue EncodeSize(uint32_t object_bytes) {
  SizeValue out;
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(object_bytes >> (8 * i));
  return out;
}

std::optional<uint32_t> DecodeSize(std::string_view bytes) {
  if (bytes.size() != kSizeValueBytes) return std::nullopt;
  uint32_t size = 0;
  for (int i = 3; i >= 0; --i) size = (size << 8) | static_cast<uint8_t>(bytes[i]);
  return size;
}

}  // namespace kvault::storage::nvme
