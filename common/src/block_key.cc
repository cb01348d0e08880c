#include "kvault/common/block_key.h"

#include <algorithm>
#include <string>
#include <string_view>

#include "kvault/common/little_endian.h"
#include "sha256.h"

namespace kvault {
namespace {

// Field tags of the version-1 namespace encoding (docs/keys.md). Values are frozen.
enum class FieldTag : uint8_t {
  kTenant = 0x01,
  kModelId = 0x02,
  kModelRevision = 0x03,
  kNumLayers = 0x10,
  kKvHeads = 0x11,
  kHeadDim = 0x12,
  kDtype = 0x13,
  kBlockTokens = 0x14,
  kTpRank = 0x20,
  kTpSize = 0x21,
  kPpRank = 0x22,
  kPpSize = 0x23,
  kExtraKeyCount = 0x30,
  kExtraKey = 0x31,
};

// Type tags of the version-1 namespace encoding. Values are frozen.
enum class TypeTag : uint8_t {
  kBytes = 0x01,      // opaque byte string
  kU32 = 0x02,        // 4 bytes, little-endian
  kBytesPair = 0x03,  // u32 LE length + bytes, twice (extra-key name, then value)
};

constexpr std::string_view kMagic = "KVNS";

// Feeds each token as u32 little-endian, written byte by byte so the host's endianness cannot
// leak into the digest.
void UpdateTokens(common_internal::Sha256& sha, std::span<const uint32_t> tokens) {
  constexpr size_t kChunkTokens = 256;
  uint8_t buf[kChunkTokens * 4];
  while (!tokens.empty()) {
    const size_t n = std::min(tokens.size(), kChunkTokens);
    for (size_t i = 0; i < n; ++i) StoreLe32(buf + 4 * i, tokens[i]);
    sha.Update(buf, 4 * n);
    tokens = tokens.subspan(n);
  }
}

// Hashes consecutive full blocks of `unit` tokens, chaining from `first_parent` (none: the first
// block hashes its tokens alone). Shared by the kvault chain and the SGLang builder, which differ
// only in whether block 0 has a parent.
std::vector<BlockKey> HashFullBlocks(std::span<const uint32_t> tokens, uint32_t unit,
                                     const std::optional<BlockKey>& first_parent) {
  const size_t blocks = tokens.size() / unit;
  std::vector<BlockKey> keys;
  keys.reserve(blocks);
  common_internal::Sha256 sha;
  for (size_t i = 0; i < blocks; ++i) {
    if (i > 0) {
      sha.Update(keys.back());
    } else if (first_parent.has_value()) {
      sha.Update(*first_parent);
    }
    UpdateTokens(sha, tokens.subspan(i * unit, unit));
    keys.push_back(sha.Finish());
  }
  return keys;
}

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  uint8_t le[4];
  StoreLe32(le, v);
  out.insert(out.end(), le, le + 4);
}

void PutHeader(std::vector<uint8_t>& out, FieldTag field, TypeTag type, uint32_t length) {
  out.push_back(static_cast<uint8_t>(field));
  out.push_back(static_cast<uint8_t>(type));
  PutU32(out, length);
}

void PutBytes(std::vector<uint8_t>& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}

void PutStringField(std::vector<uint8_t>& out, FieldTag field, std::string_view s) {
  PutHeader(out, field, TypeTag::kBytes, static_cast<uint32_t>(s.size()));
  PutBytes(out, s);
}

void PutU32Field(std::vector<uint8_t>& out, FieldTag field, uint32_t v) {
  PutHeader(out, field, TypeTag::kU32, 4);
  PutU32(out, v);
}

Status CheckString(std::string_view field, std::string_view value, bool required) {
  if (required && value.empty()) {
    return Status::InvalidArgument("namespace: " + std::string(field) + " must be non-empty");
  }
  if (value.size() > kMaxNamespaceStringBytes) {
    return Status::InvalidArgument("namespace: " + std::string(field) + " is " +
                                   std::to_string(value.size()) + " bytes, limit is " +
                                   std::to_string(kMaxNamespaceStringBytes));
  }
  return Status::Ok();
}

Status CheckNonZero(std::string_view field, uint32_t value) {
  if (value == 0) {
    return Status::InvalidArgument("namespace: " + std::string(field) + " must be >= 1");
  }
  return Status::Ok();
}

Status CheckRank(std::string_view rank_name, uint32_t rank, std::string_view size_name,
                 uint32_t size) {
  KVAULT_RETURN_IF_ERROR(CheckNonZero(size_name, size));
  if (rank >= size) {
    return Status::InvalidArgument("namespace: " + std::string(rank_name) + " (" +
                                   std::to_string(rank) + ") must be < " + std::string(size_name) +
                                   " (" + std::to_string(size) + ")");
  }
  return Status::Ok();
}

Status Validate(const Namespace& ns) {
  KVAULT_RETURN_IF_ERROR(CheckString("tenant", ns.tenant, /*required=*/false));
  KVAULT_RETURN_IF_ERROR(CheckString("model_id", ns.model_id, /*required=*/true));
  KVAULT_RETURN_IF_ERROR(CheckString("model_revision", ns.model_revision, /*required=*/false));
  KVAULT_RETURN_IF_ERROR(CheckNonZero("num_layers", ns.num_layers));
  KVAULT_RETURN_IF_ERROR(CheckNonZero("kv_heads", ns.kv_heads));
  KVAULT_RETURN_IF_ERROR(CheckNonZero("head_dim", ns.head_dim));
  KVAULT_RETURN_IF_ERROR(CheckString("dtype", ns.dtype, /*required=*/true));
  KVAULT_RETURN_IF_ERROR(CheckNonZero("block_tokens", ns.block_tokens));
  KVAULT_RETURN_IF_ERROR(CheckRank("tp_rank", ns.tp_rank, "tp_size", ns.tp_size));
  KVAULT_RETURN_IF_ERROR(CheckRank("pp_rank", ns.pp_rank, "pp_size", ns.pp_size));
  if (ns.extra_keys.size() > kMaxNamespaceExtraKeys) {
    return Status::InvalidArgument("namespace: " + std::to_string(ns.extra_keys.size()) +
                                   " extra keys, limit is " +
                                   std::to_string(kMaxNamespaceExtraKeys));
  }
  for (size_t i = 0; i < ns.extra_keys.size(); ++i) {
    const Namespace::ExtraKey& key = ns.extra_keys[i];
    const std::string where = "extra_keys[" + std::to_string(i) + "]";
    KVAULT_RETURN_IF_ERROR(CheckString(where + ".name", key.name, /*required=*/true));
    KVAULT_RETURN_IF_ERROR(CheckString(where + ".value", key.value, /*required=*/false));
  }
  return Status::Ok();
}

}  // namespace

std::string ToHex(const BlockKey& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * key.size());
  for (uint8_t b : key) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

Result<std::vector<uint8_t>> CanonicalEncoding(const Namespace& ns) {
  KVAULT_RETURN_IF_ERROR(Validate(ns));

  // Sorting by name makes the encoding independent of the order the caller listed extra keys in;
  // names are unique (checked below on the sorted list), so the order is total.
  std::vector<const Namespace::ExtraKey*> extra;
  extra.reserve(ns.extra_keys.size());
  for (const Namespace::ExtraKey& key : ns.extra_keys) extra.push_back(&key);
  std::sort(extra.begin(), extra.end(),
            [](const auto* a, const auto* b) { return a->name < b->name; });
  for (size_t i = 1; i < extra.size(); ++i) {
    if (extra[i]->name == extra[i - 1]->name) {
      return Status::InvalidArgument("namespace: extra key name \"" + extra[i]->name +
                                     "\" appears more than once");
    }
  }

  std::vector<uint8_t> out;
  out.reserve(kMagic.size() + 1 + 64 + ns.tenant.size() + ns.model_id.size() +
              ns.model_revision.size() + ns.dtype.size() + 8 * 10 + 16 * extra.size());
  PutBytes(out, kMagic);
  out.push_back(kNamespaceEncodingVersion);

  PutStringField(out, FieldTag::kTenant, ns.tenant);
  PutStringField(out, FieldTag::kModelId, ns.model_id);
  PutStringField(out, FieldTag::kModelRevision, ns.model_revision);
  PutU32Field(out, FieldTag::kNumLayers, ns.num_layers);
  PutU32Field(out, FieldTag::kKvHeads, ns.kv_heads);
  PutU32Field(out, FieldTag::kHeadDim, ns.head_dim);
  PutStringField(out, FieldTag::kDtype, ns.dtype);
  PutU32Field(out, FieldTag::kBlockTokens, ns.block_tokens);
  PutU32Field(out, FieldTag::kTpRank, ns.tp_rank);
  PutU32Field(out, FieldTag::kTpSize, ns.tp_size);
  PutU32Field(out, FieldTag::kPpRank, ns.pp_rank);
  PutU32Field(out, FieldTag::kPpSize, ns.pp_size);
  PutU32Field(out, FieldTag::kExtraKeyCount, static_cast<uint32_t>(extra.size()));
  for (const Namespace::ExtraKey* key : extra) {
    const auto length = static_cast<uint32_t>(8 + key->name.size() + key->value.size());
    PutHeader(out, FieldTag::kExtraKey, TypeTag::kBytesPair, length);
    PutU32(out, static_cast<uint32_t>(key->name.size()));
    PutBytes(out, key->name);
    PutU32(out, static_cast<uint32_t>(key->value.size()));
    PutBytes(out, key->value);
  }
  return out;
}

Result<BlockKey> NamespaceDigest(const Namespace& ns) {
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> encoding, CanonicalEncoding(ns));
  common_internal::Sha256 sha;
  sha.Update(encoding.data(), encoding.size());
  return sha.Finish();
}

BlockKey NextBlockKey(const BlockKey& parent, std::span<const uint32_t> block_tokens) {
  common_internal::Sha256 sha;
  sha.Update(parent);
  UpdateTokens(sha, block_tokens);
  return sha.Finish();
}

Result<std::vector<BlockKey>> ChainBlockKeys(const BlockKey& ns_digest,
                                             std::span<const uint32_t> tokens,
                                             uint32_t block_tokens) {
  if (block_tokens == 0)
    return Status::InvalidArgument("ChainBlockKeys: block_tokens must be >= 1");
  return HashFullBlocks(tokens, block_tokens, ns_digest);
}

Result<std::vector<BlockKey>> SglangPageHashes(std::span<const uint32_t> tokens, uint32_t page_size,
                                               const std::optional<BlockKey>& prior) {
  if (page_size == 0) return Status::InvalidArgument("SglangPageHashes: page_size must be >= 1");
  return HashFullBlocks(tokens, page_size, prior);
}

}  // namespace kvault
