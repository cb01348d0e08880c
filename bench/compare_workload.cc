// The workload of `kvault-bench compare`: the trace sample, the block shape, the KV payloads and
// the engine cache they pass through (compare_bench.h).
#include <algorithm>
#include <unordered_set>

#include "compare_bench.h"

namespace kvault::bench::compare {
namespace {

// SplitMix64's finalizer: a fixed, well-mixed hash of a trace id on every platform.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Counts of a sample's requests (everything but the trace-wide figures).
void Count(TraceSample& s) {
  s.block_refs = 0;
  s.max_blocks = 0;
  std::unordered_set<uint64_t> unique, roots;
  for (const auto& r : s.requests) {
    s.block_refs += r.size();
    s.max_blocks = std::max<uint32_t>(s.max_blocks, static_cast<uint32_t>(r.size()));
    unique.insert(r.begin(), r.end());
    roots.insert(r.front());
  }
  s.unique_blocks = unique.size();
  s.sampled_trees = roots.size();
  s.span_s = s.times_ms.empty() ? 0 : (s.times_ms.back() - s.times_ms.front()) / 1e3;
}

}  // namespace

uint64_t BlockShape::raw_bytes() const {
  return uint64_t{layers} * 2 * block_tokens * kKvHeads * kHeadDim * 2;
}

uint64_t BlockShape::model_block_bytes() {
  return uint64_t{kModelLayers} * 2 * kTraceBlockTokens * kKvHeads * kHeadDim * 2;
}

Result<TraceSample> SampleTrace(const std::vector<TraceRequest>& trace, uint32_t sample,
                                uint64_t limit) {
  TraceSample s;
  s.trace_requests = trace.size();
  std::unordered_set<uint64_t> trees;
  for (const TraceRequest& r : trace) {
    // input_length says how many blocks are full; without it every listed block counts.
    uint64_t full = r.hash_ids.size();
    if (r.input_length > 0) full = std::min<uint64_t>(full, r.input_length / kTraceBlockTokens);
    if (full == 0) {
      ++s.without_full_block;
      continue;
    }
    trees.insert(r.hash_ids.front());
    if (Mix(r.hash_ids.front()) % sample != 0) continue;
    if (limit > 0 && s.requests.size() >= limit) continue;
    s.requests.emplace_back(r.hash_ids.begin(), r.hash_ids.begin() + full);
    s.times_ms.push_back(r.timestamp_ms);
  }
  s.trace_trees = trees.size();
  if (s.requests.empty()) {
    return Status::InvalidArgument(
        "the trace sample is empty: no request with a full " + std::to_string(kTraceBlockTokens) +
        "-token block" +
        (sample > 1 ? " in 1 of " + std::to_string(sample) + " prefix trees" : ""));
  }
  Count(s);
  return s;
}

TraceSample FirstRequests(const TraceSample& sample, size_t count) {
  TraceSample s = sample;
  if (count >= s.requests.size()) return s;
  s.requests.resize(count);
  s.times_ms.resize(count);
  Count(s);
  return s;
}

Result<PayloadLibrary> PayloadLibrary::Create(const BlockShape& shape, uint32_t blocks,
                                              uint64_t seed) {
  PayloadLibrary lib;
  lib.blocks_ = blocks;
  lib.options_.shape = {shape.layers, kKvHeads, kHeadDim, blocks * shape.block_tokens, DType::kF16};
  lib.options_.seed = seed;
  KVAULT_ASSIGN_OR_RETURN(lib.kv_, kernels::GenerateKv(lib.options_));
  KVAULT_ASSIGN_OR_RETURN(lib.queries_, kernels::GenerateQueries(lib.options_));
  return lib;
}

uint32_t PayloadLibrary::BlockFor(uint64_t hash_id) const {
  return static_cast<uint32_t>(Mix(hash_id ^ 0x4B56424Cull) % blocks_);
}

const uint16_t* BlockRun(const kernels::KvTensor& t, uint32_t block_tokens, uint32_t block,
                         uint32_t layer, uint32_t kv) {
  return t.Vector(layer, kv, block * block_tokens, 0);
}

Result<EngineCache> EngineCache::Create(const BlockShape& shape, uint32_t max_blocks) {
  if (shape.engine_block_tokens == 0 || shape.block_tokens % shape.engine_block_tokens != 0) {
    return Status::InvalidArgument("block tokens (" + std::to_string(shape.block_tokens) +
                                   ") must be a multiple of the engine's block size (" +
                                   std::to_string(shape.engine_block_tokens) + ")");
  }
  EngineCache e;
  e.shape_ = shape;
  const uint32_t per = shape.block_tokens / shape.engine_block_tokens;
  e.cache_.memory = MemoryKind::kHost;
  e.cache_.layout = kernels::KvLayout::kVllmNhd;
  e.cache_.dtype = DType::kF16;
  e.cache_.num_layers = shape.layers;
  e.cache_.kv_heads = kKvHeads;
  e.cache_.head_dim = kHeadDim;
  e.cache_.engine_block_tokens = shape.engine_block_tokens;
  e.cache_.engine_num_blocks = max_blocks * per;
  e.run_elements_ = uint64_t{shape.block_tokens} * kKvHeads * kHeadDim;
  e.layers_.resize(shape.layers);
  for (auto& layer : e.layers_) {
    layer.assign(e.cache_.LayerElements(), 0);
    e.cache_.tensors.push_back(layer.data());
  }
  e.ids_.resize(e.cache_.engine_num_blocks);
  for (size_t i = 0; i < e.ids_.size(); ++i) e.ids_[i] = static_cast<int32_t>(i);
  return e;
}

std::span<const int32_t> EngineCache::Ids(uint32_t blocks) const {
  return std::span(ids_).first(uint64_t{blocks} *
                               (shape_.block_tokens / shape_.engine_block_tokens));
}

uint16_t* EngineCache::Run(uint32_t block, uint32_t layer, uint32_t kv) {
  // [2][num_blocks][engine_block_tokens][heads][dim]: K half, then V half.
  const uint64_t half =
      uint64_t{cache_.engine_num_blocks} * shape_.engine_block_tokens * kKvHeads * kHeadDim;
  return layers_[layer].data() + kv * half + uint64_t{block} * run_elements_;
}

const uint16_t* EngineCache::Run(uint32_t block, uint32_t layer, uint32_t kv) const {
  return const_cast<EngineCache*>(this)->Run(block, layer, kv);
}

Result<BlockKey> CompareNamespace(const BlockShape& shape) {
  Namespace ns;
  ns.model_id = "kvault-bench-compare/llama-3-8b-shaped";
  ns.num_layers = shape.layers;
  ns.kv_heads = kKvHeads;
  ns.head_dim = kHeadDim;
  ns.dtype = std::string(DTypeName(DType::kF16));
  ns.block_tokens = shape.block_tokens;
  return NamespaceDigest(ns);
}

std::vector<BlockKey> ChainKeys(const BlockKey& ns, std::span<const uint64_t> hash_ids) {
  std::vector<BlockKey> keys;
  keys.reserve(hash_ids.size());
  BlockKey parent = ns;
  for (uint64_t id : hash_ids) {
    const uint32_t words[2] = {static_cast<uint32_t>(id), static_cast<uint32_t>(id >> 32)};
    parent = NextBlockKey(parent, words);
    keys.push_back(parent);
  }
  return keys;
}

}  // namespace kvault::bench::compare
