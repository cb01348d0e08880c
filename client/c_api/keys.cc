// The C ABI of the key builders (kvault.h "Keys"): namespace digests, kvault key chains, SGLang
// page hashes and vLLM sha256_cbor block hashes.

#include <span>

#include "internal.h"
#include "kvault/common/vllm_block_hash.h"

namespace kvault::c_api {
namespace {

constexpr int kMaxVllmNesting = 16;

std::span<const uint32_t> Tokens(const uint32_t* tokens, size_t n) {
  return n > 0 ? std::span<const uint32_t>(tokens, n) : std::span<const uint32_t>();
}

// Writes `keys` to the caller's array, or says how many it needs.
Status PutKeys(const char* function, const std::vector<BlockKey>& keys, kvault_key* out,
               size_t capacity, size_t* count) {
  *count = keys.size();
  if (keys.size() > capacity) {
    return Status::InvalidArgument(std::string(function) + ": room for " +
                                   std::to_string(capacity) + " keys, " +
                                   std::to_string(keys.size()) + " needed");
  }
  for (size_t i = 0; i < keys.size(); ++i) PutKey(keys[i], out[i]);
  return Status::Ok();
}

// Checks the arguments every chain builder shares.
Status CheckChainArgs(const char* function, const uint32_t* tokens, size_t num_tokens,
                      const kvault_key* out, size_t capacity, const size_t* count) {
  if (tokens == nullptr && num_tokens > 0) return Null(function, "tokens");
  if (out == nullptr && capacity > 0) return Null(function, "output keys");
  if (count == nullptr) return Null(function, "count");
  return Status::Ok();
}

Result<VllmExtraKey> ToVllm(const kvault_vllm_value& v, int depth) {
  constexpr const char* kFn = "kvault_vllm_block_hashes";
  if (depth > kMaxVllmNesting) {
    return Status::InvalidArgument("kvault_vllm_block_hashes: extra keys nested past 16 levels");
  }
  const int64_t kind = RawEnum(v.kind);
  if (kind == KVAULT_VLLM_INT) return VllmExtraKey(v.int_value);
  if (kind == KVAULT_VLLM_TEXT || kind == KVAULT_VLLM_BYTES) {
    if (v.data == nullptr && v.size > 0) return Null(kFn, "extra key data");
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (kind == KVAULT_VLLM_TEXT) {
      return VllmExtraKey(v.size > 0 ? std::string(reinterpret_cast<const char*>(p), v.size)
                                     : std::string());
    }
    return VllmExtraKey(v.size > 0 ? VllmExtraKey::Bytes(p, p + v.size) : VllmExtraKey::Bytes());
  }
  if (kind == KVAULT_VLLM_LIST) {
    if (v.items == nullptr && v.num_items > 0) return Null(kFn, "extra key items");
    VllmExtraKey::List list;
    list.reserve(v.num_items);
    for (size_t i = 0; i < v.num_items; ++i) {
      KVAULT_ASSIGN_OR_RETURN(VllmExtraKey item, ToVllm(v.items[i], depth + 1));
      list.push_back(std::move(item));
    }
    return VllmExtraKey(std::move(list));
  }
  return Status::InvalidArgument("kvault_vllm_block_hashes: unknown extra key kind " +
                                 std::to_string(kind));
}

}  // namespace
}  // namespace kvault::c_api

using kvault::Status;
using namespace kvault::c_api;  // NOLINT(google-build-using-namespace): this file's own helpers

extern "C" {

void kvault_namespace_init(kvault_namespace* ns) noexcept {
  if (ns == nullptr) return;
  *ns = kvault_namespace{};
  ns->struct_size = sizeof(kvault_namespace);
  ns->tp_size = 1;
  ns->pp_size = 1;
}

kvault_status kvault_namespace_digest(const kvault_namespace* ns, kvault_key* digest) noexcept {
  return Guard("kvault_namespace_digest", [&]() -> Status {
    constexpr const char* kFn = "kvault_namespace_digest";
    if (ns == nullptr) return Null(kFn, "ns");
    if (digest == nullptr) return Null(kFn, "digest");
    KVAULT_RETURN_IF_ERROR(CheckStructSize(kFn, "ns", ns->struct_size, sizeof(kvault_namespace)));
    if (ns->extra_keys == nullptr && ns->num_extra_keys > 0) return Null(kFn, "ns->extra_keys");
    kvault::Namespace cpp;
    cpp.tenant = Str(ns->tenant);
    cpp.model_id = Str(ns->model_id);
    cpp.model_revision = Str(ns->model_revision);
    cpp.num_layers = ns->num_layers;
    cpp.kv_heads = ns->kv_heads;
    cpp.head_dim = ns->head_dim;
    cpp.dtype = Str(ns->dtype);
    cpp.block_tokens = ns->block_tokens;
    cpp.tp_rank = ns->tp_rank;
    cpp.tp_size = ns->tp_size;
    cpp.pp_rank = ns->pp_rank;
    cpp.pp_size = ns->pp_size;
    for (size_t i = 0; i < ns->num_extra_keys; ++i) {
      cpp.extra_keys.push_back({Str(ns->extra_keys[i].name), Str(ns->extra_keys[i].value)});
    }
    KVAULT_ASSIGN_OR_RETURN(kvault::BlockKey d, kvault::NamespaceDigest(cpp));
    PutKey(d, *digest);
    return Status::Ok();
  });
}

kvault_status kvault_chain_block_keys(const kvault_key* ns_digest, const uint32_t* tokens,
                                      size_t num_tokens, uint32_t block_tokens, kvault_key* keys,
                                      size_t key_capacity, size_t* num_keys) noexcept {
  return Guard("kvault_chain_block_keys", [&]() -> Status {
    constexpr const char* kFn = "kvault_chain_block_keys";
    if (ns_digest == nullptr) return Null(kFn, "ns_digest");
    KVAULT_RETURN_IF_ERROR(CheckChainArgs(kFn, tokens, num_tokens, keys, key_capacity, num_keys));
    KVAULT_ASSIGN_OR_RETURN(
        std::vector<kvault::BlockKey> chain,
        kvault::ChainBlockKeys(GetKey(*ns_digest), Tokens(tokens, num_tokens), block_tokens));
    return PutKeys(kFn, chain, keys, key_capacity, num_keys);
  });
}

kvault_status kvault_next_block_key(const kvault_key* parent, const uint32_t* tokens,
                                    size_t num_tokens, kvault_key* key) noexcept {
  return Guard("kvault_next_block_key", [&]() -> Status {
    constexpr const char* kFn = "kvault_next_block_key";
    if (parent == nullptr) return Null(kFn, "parent");
    if (tokens == nullptr && num_tokens > 0) return Null(kFn, "tokens");
    if (key == nullptr) return Null(kFn, "key");
    PutKey(kvault::NextBlockKey(GetKey(*parent), Tokens(tokens, num_tokens)), *key);
    return Status::Ok();
  });
}

kvault_status kvault_sglang_page_hashes(const uint32_t* tokens, size_t num_tokens,
                                        uint32_t page_size, const kvault_key* prior,
                                        kvault_key* hashes, size_t hash_capacity,
                                        size_t* num_hashes) noexcept {
  return Guard("kvault_sglang_page_hashes", [&]() -> Status {
    constexpr const char* kFn = "kvault_sglang_page_hashes";
    KVAULT_RETURN_IF_ERROR(
        CheckChainArgs(kFn, tokens, num_tokens, hashes, hash_capacity, num_hashes));
    std::optional<kvault::BlockKey> parent;
    if (prior != nullptr) parent = GetKey(*prior);
    KVAULT_ASSIGN_OR_RETURN(
        std::vector<kvault::BlockKey> pages,
        kvault::SglangPageHashes(Tokens(tokens, num_tokens), page_size, parent));
    return PutKeys(kFn, pages, hashes, hash_capacity, num_hashes);
  });
}

kvault_status kvault_vllm_none_hash(const char* seed, kvault_key* none_hash) noexcept {
  return Guard("kvault_vllm_none_hash", [&]() -> Status {
    if (seed == nullptr) return Null("kvault_vllm_none_hash", "seed");
    if (none_hash == nullptr) return Null("kvault_vllm_none_hash", "none_hash");
    PutKey(kvault::VllmNoneHash(seed), *none_hash);
    return Status::Ok();
  });
}

kvault_status kvault_vllm_block_hashes(const kvault_key* none_hash, const uint32_t* tokens,
                                       size_t num_tokens, uint32_t block_size,
                                       const kvault_vllm_extra_keys* per_block_extra,
                                       kvault_key* hashes, size_t hash_capacity,
                                       size_t* num_hashes) noexcept {
  return Guard("kvault_vllm_block_hashes", [&]() -> Status {
    constexpr const char* kFn = "kvault_vllm_block_hashes";
    if (none_hash == nullptr) return Null(kFn, "none_hash");
    KVAULT_RETURN_IF_ERROR(
        CheckChainArgs(kFn, tokens, num_tokens, hashes, hash_capacity, num_hashes));
    if (block_size == 0) return Status::InvalidArgument("kvault_vllm_block_hashes: block_size 0");
    std::vector<std::optional<kvault::VllmExtraKeys>> extra;
    if (per_block_extra != nullptr) {
      const size_t blocks = num_tokens / block_size;
      extra.resize(blocks);
      for (size_t b = 0; b < blocks; ++b) {
        const kvault_vllm_extra_keys& e = per_block_extra[b];
        if (e.present == 0) continue;
        if (e.items == nullptr && e.num_items > 0) return Null(kFn, "extra keys items");
        kvault::VllmExtraKeys keys;
        keys.reserve(e.num_items);
        for (size_t i = 0; i < e.num_items; ++i) {
          KVAULT_ASSIGN_OR_RETURN(kvault::VllmExtraKey key, ToVllm(e.items[i], 1));
          keys.push_back(std::move(key));
        }
        extra[b] = std::move(keys);
      }
    }
    KVAULT_ASSIGN_OR_RETURN(
        std::vector<kvault::BlockKey> out,
        kvault::VllmBlockHashes(GetKey(*none_hash), Tokens(tokens, num_tokens), block_size, extra));
    return PutKeys(kFn, out, hashes, hash_capacity, num_hashes);
  });
}

}  // extern "C"
