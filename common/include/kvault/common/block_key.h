#pragma once
// Block keys: namespace digests and chained SHA-256 block keys (DESIGN.md §4).
//
// A block key is a 32-byte digest that names a block *and its whole prefix* within a namespace:
//   ns_digest = SHA-256(CanonicalEncoding(ns))
//   key_0     = SHA-256(ns_digest || tokens_0)
//   key_i     = SHA-256(key_{i-1} || tokens_i)
// with every token id written as u32 little-endian. The bytes are documented in docs/keys.md; they
// are part of the on-disk and on-wire contract and never depend on the host's endianness, the
// process or a language runtime's hashing.
//
// Every function here is a pure function of its arguments: safe to call from any thread.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/result.h"

namespace kvault {

// 32 raw SHA-256 bytes. Compared and hashed as bytes; its hex form is for tests and tools only.
using BlockKey = std::array<uint8_t, 32>;

// Lower-case hex of `key` (64 characters). For tests, the CLI and tools; keys never go to logs.
std::string ToHex(const BlockKey& key);

// Limits enforced by CanonicalEncoding (and so by NamespaceDigest).
inline constexpr size_t kMaxNamespaceStringBytes = 4096;  // per string field, name and value
inline constexpr size_t kMaxNamespaceExtraKeys = 64;
// Version byte written after the "KVNS" magic. A new encoding gets a new version; version 1 bytes
// and therefore every digest derived from them never change.
inline constexpr uint8_t kNamespaceEncodingVersion = 1;

// Everything that must match for a block to be reusable (DESIGN.md §2 "namespace"). Strings are
// opaque bytes (UTF-8 expected, not checked) and are compared exactly: "BF16" is not "bf16".
// Plain value type; thread-compatible.
struct Namespace {
  // One extra namespace dimension, e.g. {"lora", "sql-adapter-v3"} or {"cache_salt", "..."}.
  struct ExtraKey {
    std::string name;   // non-empty, unique within the namespace
    std::string value;  // may be empty ("" is a value, distinct from the key being absent)
    bool operator==(const ExtraKey&) const = default;
  };

  // Who owns the blocks. May be empty for single-tenant use; the server additionally scopes every
  // key by the authenticated tenant (DESIGN.md §4).
  std::string tenant;
  // Model identity, e.g. "meta-llama/Llama-3.1-8B-Instruct"; must be non-empty.
  std::string model_id;
  // Weights revision (commit hash, checkpoint tag); may be empty.
  std::string model_revision;

  // Layout fingerprint: all non-zero.
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;  // KV heads held by this shard
  uint32_t head_dim = 0;
  // Source KV dtype by name, spelled as DTypeName() spells it ("f16", "bf16"); non-empty. A string
  // rather than DType so that a dtype added later needs no new encoding version.
  std::string dtype;
  uint32_t block_tokens = 0;  // tokens per block

  // Parallel rank: tp_rank < tp_size, pp_rank < pp_size, sizes >= 1.
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  uint32_t pp_rank = 0;
  uint32_t pp_size = 1;

  // Extra keys (LoRA id, cache salt, ...). The encoding sorts them by name (bytewise), so the
  // order callers list them in does not change the digest.
  std::vector<ExtraKey> extra_keys;

  bool operator==(const Namespace&) const = default;
};

// Returns the canonical, versioned byte encoding of `ns` (docs/keys.md): "KVNS", version byte 1,
// then every field in a fixed order as (field tag u8, type tag u8, length u32 LE, bytes). Every
// field is typed and length-prefixed, so no two distinct valid namespaces share an encoding (a
// salt cannot collide with a LoRA name, nor bytes move between adjacent strings).
// Returns InvalidArgument, naming the field, when: model_id or dtype is empty; a layout dimension
// is zero; tp_size or pp_size is 0; tp_rank >= tp_size or pp_rank >= pp_size; a string (field,
// extra-key name or value) exceeds kMaxNamespaceStringBytes; an extra-key name is empty or
// repeated; or there are more than kMaxNamespaceExtraKeys extra keys.
// Thread-safe (pure).
Result<std::vector<uint8_t>> CanonicalEncoding(const Namespace& ns);

// Returns SHA-256(CanonicalEncoding(ns)): the namespace digest that seeds the block-key chain.
// Returns CanonicalEncoding's InvalidArgument for an invalid namespace. Thread-safe (pure).
Result<BlockKey> NamespaceDigest(const Namespace& ns);

// Returns SHA-256(parent || block_tokens as u32 LE): one step of the chain. `parent` is the
// namespace digest for block 0 and the previous block's key after that. Any number of tokens is
// hashed as given (the caller decides what a full block is). Cannot fail; aborts the process only
// if OpenSSL cannot compute SHA-256 at all (allocation failure). Thread-safe (pure).
BlockKey NextBlockKey(const BlockKey& parent, std::span<const uint32_t> block_tokens);

// Returns the keys of the full blocks of `tokens`: key_0 = NextBlockKey(ns_digest, tokens[0, B)),
// key_i = NextBlockKey(key_{i-1}, tokens[iB, (i+1)B)) with B = block_tokens. A partial tail
// (tokens.size() % B tokens) gets no key: only full blocks are stored (DESIGN.md §4). Fewer than
// B tokens yields an empty vector. Pass the namespace's block_tokens as B.
// Returns InvalidArgument when block_tokens == 0. Thread-safe (pure).
Result<std::vector<BlockKey>> ChainBlockKeys(const BlockKey& ns_digest,
                                             std::span<const uint32_t> tokens,
                                             uint32_t block_tokens);

// Reproduces SGLang's radix-cache page hash (docs/keys.md, "SGLang page hashes"): page i's hash
// is SHA-256(parent || page tokens as u32 LE), where parent is page i-1's digest, `prior` for
// page 0 when given, and nothing for page 0 when `prior` is nullopt (a page under the radix root).
// Returns the raw 32 digest bytes per page (SGLang carries their lower-case hex; ToHex matches
// it). Only full pages get a hash; a partial tail is ignored, as in SGLang's page-aligned radix
// cache. Returns InvalidArgument when page_size == 0. Thread-safe (pure).
Result<std::vector<BlockKey>> SglangPageHashes(std::span<const uint32_t> tokens, uint32_t page_size,
                                               const std::optional<BlockKey>& prior = std::nullopt);

}  // namespace kvault
