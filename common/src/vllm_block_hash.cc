#include "kvault/common/vllm_block_hash.h"

#include <string>

#include "sha256.h"

namespace kvault {
namespace {

// CBOR major types (RFC 8949 §3.1) and the one simple value used.
constexpr uint8_t kMajorUint = 0;
constexpr uint8_t kMajorNegInt = 1;
constexpr uint8_t kMajorBytes = 2;
constexpr uint8_t kMajorText = 3;
constexpr uint8_t kMajorArray = 4;
constexpr uint8_t kCborNull = 0xf6;

BlockKey Sha256Of(common_internal::Sha256& sha, const std::vector<uint8_t>& bytes) {
  sha.Update(bytes.data(), bytes.size());
  return sha.Finish();
}

// Writes the 3-element array vLLM hashes: (parent bytes, tuple(token ids), extra_keys or None).
void WriteBlockHashInput(CanonicalCborWriter& out, const BlockKey& parent,
                         std::span<const uint32_t> block_tokens,
                         const std::optional<VllmExtraKeys>& extra_keys) {
  out.ArrayHeader(3);
  out.Bytes(parent);
  out.ArrayHeader(block_tokens.size());
  for (uint32_t token : block_tokens) out.Uint(token);
  if (!extra_keys.has_value()) {
    out.Null();
    return;
  }
  out.ArrayHeader(extra_keys->size());
  for (const VllmExtraKey& key : *extra_keys) WriteVllmExtraKey(out, key);
}

}  // namespace

void CanonicalCborWriter::Head(uint8_t major, uint64_t argument) {
  const auto initial = static_cast<uint8_t>(major << 5);
  // Shortest form: the argument inline below 24, else the smallest of 1, 2, 4 or 8 bytes that
  // holds it (additional information 24..27), big-endian.
  if (argument < 24) {
    out_.push_back(static_cast<uint8_t>(initial | argument));
    return;
  }
  int bytes;
  uint8_t info;
  if (argument <= 0xff) {
    bytes = 1;
    info = 24;
  } else if (argument <= 0xffff) {
    bytes = 2;
    info = 25;
  } else if (argument <= 0xffffffff) {
    bytes = 4;
    info = 26;
  } else {
    bytes = 8;
    info = 27;
  }
  out_.push_back(static_cast<uint8_t>(initial | info));
  for (int i = bytes - 1; i >= 0; --i) out_.push_back(static_cast<uint8_t>(argument >> (8 * i)));
}

void CanonicalCborWriter::Uint(uint64_t v) { Head(kMajorUint, v); }

void CanonicalCborWriter::Int(int64_t v) {
  if (v >= 0) {
    Head(kMajorUint, static_cast<uint64_t>(v));
  } else {
    // -1 - v without signed overflow: for v < 0, ~v == -1 - v and lies in [0, INT64_MAX].
    Head(kMajorNegInt, static_cast<uint64_t>(~v));
  }
}

void CanonicalCborWriter::Bytes(std::span<const uint8_t> bytes) {
  Head(kMajorBytes, bytes.size());
  out_.insert(out_.end(), bytes.begin(), bytes.end());
}

void CanonicalCborWriter::Text(std::string_view text) {
  Head(kMajorText, text.size());
  out_.insert(out_.end(), text.begin(), text.end());
}

void CanonicalCborWriter::ArrayHeader(uint64_t count) { Head(kMajorArray, count); }

void CanonicalCborWriter::Null() { out_.push_back(kCborNull); }

void WriteVllmExtraKey(CanonicalCborWriter& out, const VllmExtraKey& key) {
  if (const auto* i = std::get_if<int64_t>(&key.value)) {
    out.Int(*i);
  } else if (const auto* s = std::get_if<std::string>(&key.value)) {
    out.Text(*s);
  } else if (const auto* b = std::get_if<VllmExtraKey::Bytes>(&key.value)) {
    out.Bytes(*b);
  } else {
    const auto& list = std::get<VllmExtraKey::List>(key.value);
    out.ArrayHeader(list.size());
    for (const VllmExtraKey& item : list) WriteVllmExtraKey(out, item);
  }
}

BlockKey VllmNoneHash(std::string_view seed) {
  CanonicalCborWriter cbor;
  cbor.Text(seed);
  common_internal::Sha256 sha;
  return Sha256Of(sha, cbor.bytes());
}

std::vector<uint8_t> VllmBlockHashInput(const BlockKey& parent,
                                        std::span<const uint32_t> block_tokens,
                                        const std::optional<VllmExtraKeys>& extra_keys) {
  CanonicalCborWriter cbor;
  WriteBlockHashInput(cbor, parent, block_tokens, extra_keys);
  return cbor.Take();
}

BlockKey VllmHashBlockTokens(const BlockKey& parent, std::span<const uint32_t> block_tokens,
                             const std::optional<VllmExtraKeys>& extra_keys) {
  CanonicalCborWriter cbor;
  WriteBlockHashInput(cbor, parent, block_tokens, extra_keys);
  common_internal::Sha256 sha;
  return Sha256Of(sha, cbor.bytes());
}

Result<std::vector<BlockKey>> VllmBlockHashes(
    const BlockKey& none_hash, std::span<const uint32_t> tokens, uint32_t block_size,
    std::span<const std::optional<VllmExtraKeys>> per_block_extra) {
  if (block_size == 0) return Status::InvalidArgument("VllmBlockHashes: block_size must be >= 1");
  const size_t blocks = tokens.size() / block_size;
  if (!per_block_extra.empty() && per_block_extra.size() != blocks) {
    return Status::InvalidArgument(
        "VllmBlockHashes: per_block_extra has " + std::to_string(per_block_extra.size()) +
        " entries, expected 0 or one per full block (" + std::to_string(blocks) + ")");
  }
  const std::optional<VllmExtraKeys> none;
  std::vector<BlockKey> hashes;
  hashes.reserve(blocks);
  CanonicalCborWriter cbor;  // reused: one allocation for the whole chain
  common_internal::Sha256 sha;
  for (size_t i = 0; i < blocks; ++i) {
    const BlockKey& parent = i == 0 ? none_hash : hashes.back();
    cbor.Clear();
    WriteBlockHashInput(cbor, parent, tokens.subspan(i * block_size, block_size),
                        per_block_extra.empty() ? none : per_block_extra[i]);
    hashes.push_back(Sha256Of(sha, cbor.bytes()));
  }
  return hashes;
}

}  // namespace kvault
