#include "nvme/db_layout.h"

#include <cstring>

namespace kvault::storage::nvme {

DbKey EncodeDbKey(const ScopedKey& key) {
  DbKey out;
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(key.tenant >> (24 - 8 * i));
  std::memcpy(out.data() + 4, key.key.data(), key.key.size());
  return out;
}

std::optional<ScopedKey> DecodeDbKey(std::string_view bytes) {
  if (bytes.size() != kDbKeyBytes) return std::nullopt;
  ScopedKey key;
  for (int i = 0; i < 4; ++i) {
    key.tenant = (key.tenant << 8) | static_cast<uint8_t>(bytes[i]);
  }
  std::memcpy(key.key.data(), bytes.data() + 4, key.key.size());
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
