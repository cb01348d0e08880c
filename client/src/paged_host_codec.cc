// The host wave codec (paged_wave_codec.h): the engine's cache in host memory, the CPU codecs.

#include <string>
#include <utility>

#include "paged_wave_codec.h"

namespace kvault::client_internal {

Result<std::vector<uint16_t*>> CacheLayerPointers(const PagedKvCache& cache) {
  const bool contiguous = cache.layout == kernels::KvLayout::kContiguous;
  for (void* p : cache.tensors) {
    if (p == nullptr) return Status::InvalidArgument("paged cache: a tensor pointer is null");
  }
  if (contiguous || cache.tensors.size() == cache.num_layers) {
    if (contiguous && cache.tensors.size() != 1) {
      return Status::InvalidArgument("paged cache: a contiguous cache is one tensor, got " +
                                     std::to_string(cache.tensors.size()) + " pointers");
    }
    std::vector<uint16_t*> out;
    for (void* p : cache.tensors) out.push_back(static_cast<uint16_t*>(p));
    return out;
  }
  if (cache.tensors.size() != 1) {
    return Status::InvalidArgument("paged cache: expected " + std::to_string(cache.num_layers) +
                                   " layer tensors or one stacked tensor, got " +
                                   std::to_string(cache.tensors.size()));
  }
  std::vector<uint16_t*> out;
  auto* base = static_cast<uint16_t*>(cache.tensors[0]);
  for (uint32_t l = 0; l < cache.num_layers; ++l) out.push_back(base + l * cache.LayerElements());
  return out;
}

Status MakeSequenceView(const PagedKvCache& cache, std::span<uint16_t* const> layer_pointers,
                        std::span<const int32_t> block_ids, uint64_t tokens,
                        kernels::PagedKvView& view, kernels::PagedKvViewStorage& storage) {
  const uint64_t covered = uint64_t{block_ids.size()} * cache.engine_block_tokens;
  if (covered < tokens) {
    return Status::InvalidArgument(std::to_string(block_ids.size()) + " engine blocks of " +
                                   std::to_string(cache.engine_block_tokens) +
                                   " tokens cannot hold " + std::to_string(tokens) + " tokens");
  }
  return kernels::MakePagedKvView(
      cache.layout, cache.dtype, cache.num_layers, cache.kv_heads, cache.head_dim,
      cache.engine_block_tokens, cache.engine_num_blocks, layer_pointers, block_ids, view, storage);
}

namespace {

class HostWaveCodec final : public PagedWaveCodec {
 public:
  HostWaveCodec(PagedKvCache cache, const KvBlockCodec& codec, std::vector<uint16_t*> layers)
      : cache_(std::move(cache)), codec_(codec), layers_(std::move(layers)) {}

  Status Bind(std::span<const int32_t> block_ids, uint64_t tokens) override {
    return MakeSequenceView(cache_, layers_, block_ids, tokens, view_, storage_);
  }

  Status BeginStore(void*) override { return Status::Ok(); }

  Status Encode(uint64_t first, std::span<const BlockKey> keys,
                std::span<const std::span<uint8_t>> objects, uint32_t) override {
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(codec_.Encode(view_, first + i, keys[i], objects[i])
                                 .WithContext("block " + std::to_string(first + i)));
    }
    return Status::Ok();
  }

  std::vector<Status> Decode(uint64_t first, std::span<const BlockKey> keys, uint32_t first_layer,
                             uint32_t layer_count, std::span<const StagedBlock> blocks, uint32_t,
                             void*) override {
    std::vector<Status> out;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const StagedBlock& b = blocks[i];
      Status s = b.object.empty() ? codec_.DecodeLayers(b.header, b.layers, first + i, keys[i],
                                                        first_layer, layer_count, view_)
                                  : codec_.Decode(b.object, first + i, keys[i], view_);
      out.push_back(std::move(s));
      if (!out.back().ok()) break;
    }
    return out;
  }

  std::vector<Status> DecodeImported(uint64_t, std::span<const BlockKey>,
                                     std::span<const kernels::GpuIpcExport>, void*) override {
    return {Status::Unsupported("gpu tier import needs a cache in device memory")};
  }

  Result<PagedOpState::LayerEvents> MarkLayers(uint32_t, uint32_t, void*) override {
    return PagedOpState::LayerEvents{};
  }
  Status ReleaseStaging(uint32_t) override { return Status::Ok(); }
  Status Drain() override { return Status::Ok(); }

 private:
  const PagedKvCache cache_;
  const KvBlockCodec& codec_;
  const std::vector<uint16_t*> layers_;
  kernels::PagedKvView view_;
  kernels::PagedKvViewStorage storage_;
};

}  // namespace

Result<std::unique_ptr<PagedWaveCodec>> MakeHostWaveCodec(const PagedKvCache& cache,
                                                          const KvBlockCodec& codec) {
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint16_t*> layers, CacheLayerPointers(cache));
  return std::unique_ptr<PagedWaveCodec>(new HostWaveCodec(cache, codec, std::move(layers)));
}

}  // namespace kvault::client_internal
