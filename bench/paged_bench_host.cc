// The host-memory engine cache of `kvault-bench paged` (paged_bench_memory.h): the CPU codecs,
// what StorePaged / LoadPaged run on host memory.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "kvault/kernels/kv_generator.h"
#include "paged_bench_memory.h"

namespace kvault::bench::paged {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One cache's tensors and a view of the whole sequence over them.
struct HostTensors {
  std::vector<std::vector<uint16_t>> layers;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
  std::vector<int32_t> ids;
};

Status Allocate(const PagedKvCache& shape, HostTensors& t, PagedKvCache& out) {
  out = shape;
  t.layers.assign(shape.num_layers, std::vector<uint16_t>(shape.LayerElements(), 0));
  for (auto& layer : t.layers) out.tensors.push_back(layer.data());
  t.ids.resize(shape.engine_num_blocks);
  for (size_t i = 0; i < t.ids.size(); ++i) t.ids[i] = static_cast<int32_t>(i);
  std::vector<uint16_t*> bases;
  for (auto& layer : t.layers) bases.push_back(layer.data());
  return kernels::MakePagedKvView(shape.layout, shape.dtype, shape.num_layers, shape.kv_heads,
                                  shape.head_dim, shape.engine_block_tokens,
                                  shape.engine_num_blocks, bases, t.ids, t.view, t.storage);
}

class HostMemory final : public PagedMemory {
 public:
  explicit HostMemory(const KvBlockCodec& codec) : codec_(codec) {}

  Status Init(const Config& c) {
    const PagedKvCache shape = DescribeCache(c, MemoryKind::kHost);
    KVAULT_RETURN_IF_ERROR(Allocate(shape, source_tensors_, source_));
    KVAULT_RETURN_IF_ERROR(Allocate(shape, loaded_tensors_, loaded_));
    PagedKvCache reference;
    KVAULT_RETURN_IF_ERROR(Allocate(shape, reference_tensors_, reference));
    return FillSource(c, [&](uint32_t layer, uint64_t offset, const uint16_t* src, size_t n) {
      std::memcpy(source_tensors_.layers[layer].data() + offset, src, n * sizeof(uint16_t));
      return Status::Ok();
    });
  }

  void* stream() const override { return nullptr; }

  Status EncodeStages(std::span<const BlockKey> keys, std::span<const std::span<uint8_t>> objects,
                      uint32_t, StageSeconds& t) override {
    const double start = Now();
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(codec_.Encode(source_tensors_.view, i, keys[i], objects[i]));
    }
    t.encode.push_back(Now() - start);
    return Status::Ok();
  }

  Status DecodeStages(std::span<const BlockKey> keys,
                      std::span<const std::span<const uint8_t>> objects, uint32_t,
                      StageSeconds& t) override {
    const double start = Now();
    for (size_t i = 0; i < keys.size(); ++i) {
      KVAULT_RETURN_IF_ERROR(codec_.Decode(objects[i], i, keys[i], reference_tensors_.view));
    }
    t.decode.push_back(Now() - start);
    return Status::Ok();
  }

  Status ClearLoaded() override {
    for (auto& layer : loaded_tensors_.layers) std::fill(layer.begin(), layer.end(), 0);
    return Status::Ok();
  }

  Result<std::string> LoadedVsReference() override {
    for (size_t l = 0; l < loaded_tensors_.layers.size(); ++l) {
      const auto& a = loaded_tensors_.layers[l];
      const auto& b = reference_tensors_.layers[l];
      const auto at = std::mismatch(a.begin(), a.end(), b.begin());
      if (at.first != a.end()) {
        return "layer " + std::to_string(l) + ", element " + std::to_string(at.first - a.begin());
      }
    }
    return std::string();
  }

  Result<double> PinnedHostToDeviceBytesPerSecond() override { return 0.0; }

 private:
  const KvBlockCodec& codec_;
  HostTensors source_tensors_, loaded_tensors_, reference_tensors_;
};

}  // namespace

PagedKvCache DescribeCache(const Config& c, MemoryKind memory) {
  PagedKvCache cache;
  cache.memory = memory;
  cache.layout = kernels::KvLayout::kVllmNhd;
  cache.dtype = DType::kF16;
  cache.num_layers = c.layers;
  cache.kv_heads = c.kv_heads;
  cache.head_dim = c.head_dim;
  cache.engine_block_tokens = c.engine_block_tokens;
  cache.engine_num_blocks = c.blocks * (c.block_tokens / c.engine_block_tokens);
  return cache;
}

Result<std::vector<uint16_t>> RealisticBlock(const Config& c) {
  kernels::KvGeneratorOptions g;
  g.shape = {c.layers, c.kv_heads, c.head_dim, c.block_tokens, DType::kF16};
  KVAULT_ASSIGN_OR_RETURN(kernels::KvTensor kv, kernels::GenerateKv(g));
  const size_t run = size_t{c.block_tokens} * c.kv_heads * c.head_dim;
  std::vector<uint16_t> out(size_t{c.layers} * 2 * run);
  for (uint32_t l = 0; l < c.layers; ++l) {
    for (uint32_t k = 0; k < 2; ++k) {
      std::memcpy(out.data() + (size_t{l} * 2 + k) * run, kv.Vector(l, k, 0, 0),
                  run * sizeof(uint16_t));
    }
  }
  return out;
}

Status FillSource(const Config& c,
                  const std::function<Status(uint32_t, uint64_t, const uint16_t*, size_t)>& copy) {
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint16_t> block, RealisticBlock(c));
  const size_t run = size_t{c.block_tokens} * c.kv_heads * c.head_dim;
  const uint64_t tokens = uint64_t{c.blocks} * c.block_tokens;
  for (uint32_t b = 0; b < c.blocks; ++b) {
    for (uint32_t l = 0; l < c.layers; ++l) {
      for (uint32_t k = 0; k < 2; ++k) {
        // vLLM NHD on blocks 0, 1, 2, ...: each K or V half holds the tokens in order.
        const uint64_t offset =
            (k * tokens + uint64_t{b} * c.block_tokens) * c.kv_heads * c.head_dim;
        KVAULT_RETURN_IF_ERROR(copy(l, offset, block.data() + (uint64_t{l} * 2 + k) * run, run));
      }
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<PagedMemory>> MakeHostMemory(const Config& c, const KvBlockCodec& codec) {
  auto memory = std::make_unique<HostMemory>(codec);
  KVAULT_RETURN_IF_ERROR(memory->Init(c));
  return std::unique_ptr<PagedMemory>(std::move(memory));
}

}  // namespace kvault::bench::paged
