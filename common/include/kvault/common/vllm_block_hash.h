#pragma once
// vLLM prefix-caching block hashes with `--prefix-caching-hash-algo sha256_cbor` (DESIGN.md §4,
// docs/keys.md "vLLM sha256_cbor block hashes").
//
// vLLM v1 (vllm/v1/core/kv_cache_utils.py, hash_block_tokens) hashes each full block as
//   block_hash = sha256_cbor((parent or NONE_HASH, tuple(block_token_ids), extra_keys))
//   sha256_cbor(obj) = SHA-256(cbor2.dumps(obj, canonical=True))
// so block i's hash names the whole prefix up to and including block i. This file reproduces those
// bytes so that a client can address blocks by the same 32-byte keys vLLM computes (and vLLM's KV
// events carry), and contains the small canonical CBOR writer that needs.
//
// Every function here is a pure function of its arguments: safe to call from any thread.

#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"

namespace kvault {

// Appends canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding) for exactly the value kinds
// vLLM's block hash input contains: unsigned and negative integers, byte strings, text strings,
// definite-length arrays and null. Every head uses the shortest form (argument < 24 inline, else 1,
// 2, 4 or 8 big-endian bytes), which is what cbor2.dumps(..., canonical=True) writes for these
// kinds. Maps, tags, floats, booleans and indefinite lengths are deliberately not offered.
// Thread-compatible: one writer per thread.
class CanonicalCborWriter {
 public:
  // Major type 0 (unsigned integer).
  void Uint(uint64_t v);
  // Major type 0 for v >= 0, major type 1 (argument -1 - v) for v < 0. The whole int64 range is
  // representable without bignum tags.
  void Int(int64_t v);
  // Major type 2: length head, then the bytes.
  void Bytes(std::span<const uint8_t> bytes);
  // Major type 3: length head, then the bytes as given. The caller supplies UTF-8 (Python str
  // values are always written as UTF-8 by cbor2); it is not validated.
  void Text(std::string_view text);
  // Major type 4 head for a definite-length array; the caller then writes exactly `count` items.
  void ArrayHeader(uint64_t count);
  // Simple value 22 (0xf6): Python's None.
  void Null();

  // The bytes written so far.
  const std::vector<uint8_t>& bytes() const { return out_; }
  // Moves the bytes out and leaves the writer empty.
  std::vector<uint8_t> Take() { return std::move(out_); }
  // Forgets the bytes written but keeps the buffer's capacity for reuse.
  void Clear() { out_.clear(); }

 private:
  void Head(uint8_t major, uint64_t argument);

  std::vector<uint8_t> out_;
};

// Integer types a VllmExtraKey accepts: any that fits int64_t. bool is excluded (cbor2 writes a
// Python bool as true/false, not as an integer), and so is uint64_t (values above INT64_MAX would
// change sign). A concept rather than an int64_t overload so that a literal 0 is an integer, not
// a null const char*.
template <typename T>
concept VllmExtraKeyInt = std::integral<T> && !std::same_as<T, bool> &&
                          (std::is_signed_v<T> || sizeof(T) < sizeof(int64_t));

// One element of vLLM's extra_keys tuple. vLLM builds extra keys from the LoRA name (str), one
// (mm_identifier str, offset int) tuple per multimodal item overlapping the block (the offset is
// relative to the block start and may be negative), the cache salt (str, first block only) and a
// prompt-embeddings digest (bytes). Each Python type maps to one alternative:
//   int -> int64_t (CBOR int), str -> std::string (CBOR text), bytes -> Bytes (CBOR byte string),
//   tuple -> List (CBOR array).
// Plain value type; thread-compatible.
struct VllmExtraKey {
  using Bytes = std::vector<uint8_t>;
  using List = std::vector<VllmExtraKey>;

  // Implicit so that extra keys read like the Python tuple: VllmExtraKeys{"lora", List{"mm", 0}}.
  VllmExtraKey(VllmExtraKeyInt auto v)  // NOLINT(google-explicit-constructor)
      : value(static_cast<int64_t>(v)) {}
  VllmExtraKey(const char* s) : value(std::string(s)) {}  // NOLINT(google-explicit-constructor)
  VllmExtraKey(std::string s) : value(std::move(s)) {}    // NOLINT(google-explicit-constructor)
  VllmExtraKey(Bytes b) : value(std::move(b)) {}          // NOLINT(google-explicit-constructor)
  VllmExtraKey(List l) : value(std::move(l)) {}           // NOLINT(google-explicit-constructor)

  std::variant<int64_t, std::string, Bytes, List> value;
};

// vLLM's extra_keys when it is a tuple. vLLM passes None (std::nullopt here) rather than an empty
// tuple when a block has no extra keys; an empty VllmExtraKeys encodes as an empty array (0x80) and
// so gives a different hash from nullopt (0xf6), exactly as () and None do in Python.
using VllmExtraKeys = std::vector<VllmExtraKey>;

// vLLM's DEFAULT_NONE_HASH_SEED: the seed NONE_HASH is derived from when PYTHONHASHSEED is unset
// and the hash algorithm is cryptographic (sha256, sha256_cbor), in vLLM releases that include
// vllm-project/vllm#51875. Older releases drew NONE_HASH from os.urandom(32) when PYTHONHASHSEED
// was unset (not reproducible: such a NONE_HASH can only be copied, not derived).
inline constexpr std::string_view kVllmDefaultNoneHashSeed = "vllm-none-hash";

// Appends the canonical CBOR of `key` to `out`. Recurses once per nesting level of List values.
void WriteVllmExtraKey(CanonicalCborWriter& out, const VllmExtraKey& key);

// Returns vLLM's NONE_HASH for `seed` under sha256_cbor: SHA-256(CBOR text string(seed)), i.e.
// sha256_cbor(seed) with the seed as a Python str. `seed` is the value of PYTHONHASHSEED when set
// (for example "0"), else kVllmDefaultNoneHashSeed (see there for older releases). Cannot fail;
// aborts the process only if OpenSSL cannot compute SHA-256 at all. Thread-safe (pure).
BlockKey VllmNoneHash(std::string_view seed);

// Returns the exact bytes vLLM hashes for one block: the canonical CBOR of the 3-element array
// [parent as a 32-byte byte string, block_tokens as an array of unsigned ints, extra_keys or null].
// For tests, tools and debugging. Thread-safe (pure).
std::vector<uint8_t> VllmBlockHashInput(const BlockKey& parent,
                                        std::span<const uint32_t> block_tokens,
                                        const std::optional<VllmExtraKeys>& extra_keys);

// Returns SHA-256(VllmBlockHashInput(parent, block_tokens, extra_keys)): vLLM's hash_block_tokens
// with sha256_cbor. `parent` is NONE_HASH for the first block and the previous block's hash after
// that. Any number of tokens is hashed as given (the caller decides what a full block is). Cannot
// fail; aborts the process only if OpenSSL cannot compute SHA-256 at all. Thread-safe (pure).
BlockKey VllmHashBlockTokens(const BlockKey& parent, std::span<const uint32_t> block_tokens,
                             const std::optional<VllmExtraKeys>& extra_keys);

// Returns the hashes of the full blocks of `tokens`, as vLLM's request block hasher computes them:
// hash_0 = VllmHashBlockTokens(none_hash, tokens[0, B), extra_0), hash_i =
// VllmHashBlockTokens(hash_{i-1}, tokens[iB, (i+1)B), extra_i) with B = block_size (vLLM's
// hash_block_size, usually --block-size). A partial tail (tokens.size() % B tokens) gets no hash,
// as in vLLM; fewer than B tokens yields an empty vector.
// `per_block_extra` is either empty (every block's extra_keys is None) or holds exactly one entry
// per full block, tokens.size() / B of them. The caller builds them as vLLM does: LoRA name on
// every block, multimodal (identifier, offset) tuples on the blocks they overlap, cache_salt on
// block 0 only, and std::nullopt where the tuple would be empty.
// Returns InvalidArgument when block_size == 0, or when per_block_extra is non-empty and its size
// differs from the number of full blocks. Thread-safe (pure).
Result<std::vector<BlockKey>> VllmBlockHashes(
    const BlockKey& none_hash, std::span<const uint32_t> tokens, uint32_t block_size,
    std::span<const std::optional<VllmExtraKeys>> per_block_extra = {});

}  // namespace kvault
