// StorePaged / LoadPaged with the engine's cache in device memory, against a real kvaultd: the
// objects the GPU pipeline stores are byte for byte those the CPU codec writes for the same KV,
// and what it loads and scatters into device blocks equals the CPU codec's decode, with one CUDA
// event per layer. Skips visibly without a CUDA device.

#include <cuda_runtime.h>

#include <random>

#include "binary_run.h"
#include "cuda_test_util.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"

namespace kvault::testing {
namespace {

using kernels::KvLayout;

constexpr uint32_t kLayers = 4, kHeads = 4, kDim = 128;
constexpr uint32_t kEngineBlockTokens = 16, kBlockTokens = 64, kEngineBlocks = 64;

struct DeviceCache {
  explicit DeviceCache(KvLayout layout) {
    cache.memory = MemoryKind::kCuda;
    cache.layout = layout;
    cache.dtype = DType::kF16;
    cache.num_layers = kLayers;
    cache.kv_heads = kHeads;
    cache.head_dim = kDim;
    cache.engine_block_tokens = kEngineBlockTokens;
    cache.engine_num_blocks = kEngineBlocks;
    elements = size_t{kLayers} * cache.LayerElements();
    EXPECT_EQ(cudaMalloc(&device, elements * 2), cudaSuccess);
    EXPECT_EQ(cudaMemset(device, 0x7E, elements * 2), cudaSuccess);
    cache.tensors = {device};  // one stacked tensor for all layers
  }
  ~DeviceCache() { cudaFree(device); }
  std::vector<uint16_t> Download() const {
    std::vector<uint16_t> host(elements);
    EXPECT_EQ(cudaMemcpy(host.data(), device, elements * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  void Upload(const std::vector<uint16_t>& host) {
    EXPECT_EQ(cudaMemcpy(device, host.data(), elements * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
  // The same cache's bytes seen from the host: a host PagedKvCache over `host`.
  PagedKvCache HostTwin(std::vector<uint16_t>& host) const {
    PagedKvCache twin = cache;
    twin.memory = MemoryKind::kHost;
    twin.tensors = {host.data()};
    return twin;
  }
  PagedKvCache cache;
  void* device = nullptr;
  size_t elements = 0;
};

std::vector<BlockKey> Keys(const std::string& model, uint32_t blocks) {
  std::vector<uint32_t> tokens(size_t{blocks} * kBlockTokens);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 31 % 128000);
  const BlockKey ns = TestNamespaceDigest(model, kLayers, kHeads, kDim, kBlockTokens);
  return *ChainBlockKeys(ns, tokens, kBlockTokens);
}

class GpuPagedTest : public BinaryTest {
 protected:
  GpuPagedTest() : BinaryTest("kvaultd") {}
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(dir_, std::vector<std::string>{});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    client_ = ConnectOrFail(daemon_->server());
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<PagedKvStore> Paged(const PagedKvCache& cache, const std::string& codec) {
    PagedKvOptions options;
    options.cache = cache;
    options.block_tokens = kBlockTokens;
    options.codec = codec;
    options.staging_bytes = 4 << 20;
    Result<std::unique_ptr<PagedKvStore>> s = PagedKvStore::Create(*client_, options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(GpuPagedTest, GpuPipelinesWriteAndReadTheCpuCodecsBytes) {
  const uint32_t blocks = 6;
  const uint64_t tokens = blocks * kBlockTokens;
  std::vector<int32_t> ids, load_ids;
  for (uint32_t i = 0; i < tokens / kEngineBlockTokens; ++i) {
    ids.push_back(static_cast<int32_t>((i * 5 + 1) % kEngineBlocks));
    load_ids.push_back(static_cast<int32_t>((i * 7 + 2) % kEngineBlocks));
  }
  for (KvLayout layout : {KvLayout::kVllmNhd, KvLayout::kVllmHnd, KvLayout::kFlashInferNhd}) {
    for (const std::string codec :
         {"raw", "fp8", "int8", "k=int4,v=int2", "int2,g=32,rot,sink=4"}) {
      SCOPED_TRACE(std::string(kernels::KvLayoutName(layout)) + " " + codec);
      DeviceCache source(layout);
      std::vector<uint16_t> host(source.elements);
      std::mt19937 rng(3);
      for (uint16_t& x : host) {
        x = static_cast<uint16_t>(((rng() & 1) << 15) | ((12 + rng() % 4) << 10) | (rng() & 0x3FF));
      }
      source.Upload(host);
      const std::vector<BlockKey> keys = Keys("gpu-paged-" + codec, blocks);

      // Store from the GPU, with the engine's work queued on its own stream.
      cudaStream_t stream = nullptr;
      ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
      auto gpu = Paged(source.cache, codec);
      ASSERT_NE(gpu, nullptr);
      PagedStoreHandle stored =
          gpu->StorePaged({ids, tokens, keys},
                          PagedStoreOptions{.deadline = {}, .skip_stored = true, .stream = stream});
      ASSERT_TRUE(stored.Wait().ok());
      ASSERT_EQ(stored.leading_ok(), blocks);

      // The stored objects equal the CPU codec's for the same KV.
      PagedKvCache twin = source.HostTwin(host);
      KvBlockFormat format{kLayers, kHeads, kDim, DType::kF16, kBlockTokens, codec, {}};
      KvBlockCodec cpu = *KvBlockCodec::Create(format);
      kernels::PagedKvView view;
      kernels::PagedKvViewStorage storage;
      std::vector<uint16_t*> bases;
      for (uint32_t l = 0; l < kLayers; ++l)
        bases.push_back(host.data() + l * twin.LayerElements());
      ASSERT_TRUE(kernels::MakePagedKvView(layout, DType::kF16, kLayers, kHeads, kDim,
                                           kEngineBlockTokens, kEngineBlocks, bases, ids, view,
                                           storage)
                      .ok());
      Result<MemoryRegion> region = client_->AllocateMemory(size_t{blocks} * cpu.ObjectBytes(0));
      ASSERT_TRUE(region.ok());
      std::vector<LoadDestination> dests;
      uint64_t used = 0;
      for (uint32_t b = 0; b < blocks; ++b) {
        dests.push_back({{region->data() + used, cpu.ObjectBytes(b)}, 0, 0});
        used += cpu.ObjectBytes(b);
      }
      ASSERT_TRUE(client_->Load(Lease{}, keys, dests).Wait().ok());
      for (uint32_t b = 0; b < blocks; ++b) {
        std::vector<uint8_t> want(cpu.ObjectBytes(b));
        ASSERT_TRUE(cpu.Encode(view, b, keys[b], want).ok());
        ASSERT_TRUE(std::equal(want.begin(), want.end(), dests[b].buffer.begin()))
            << "block " << b << " differs from the CPU codec's object";
      }

      // Load into other device blocks, layer by layer, and compare with the CPU decode.
      DeviceCache target(layout);
      auto loader = Paged(target.cache, codec);
      ASSERT_NE(loader, nullptr);
      PagedLoadHandle loaded = loader->LoadPaged(
          Lease{}, {load_ids, tokens, keys}, blocks,
          PagedLoadOptions{.deadline = {}, .stream = stream, .layers_per_wave = 1});
      for (uint32_t l = 0; l < kLayers; ++l) {
        ASSERT_TRUE(loaded.WaitLayer(l).ok());
        ASSERT_NE(loaded.layer_event(l), nullptr);
        EXPECT_EQ(cudaEventSynchronize(static_cast<cudaEvent_t>(loaded.layer_event(l))),
                  cudaSuccess);
      }
      ASSERT_TRUE(loaded.Wait().ok());
      ASSERT_EQ(loaded.leading_ok(), blocks);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      std::vector<uint16_t> want(target.elements, 0x7E7E);
      std::vector<uint16_t*> want_bases;
      for (uint32_t l = 0; l < kLayers; ++l) {
        want_bases.push_back(want.data() + l * twin.LayerElements());
      }
      kernels::PagedKvView want_view;
      kernels::PagedKvViewStorage want_storage;
      ASSERT_TRUE(kernels::MakePagedKvView(layout, DType::kF16, kLayers, kHeads, kDim,
                                           kEngineBlockTokens, kEngineBlocks, want_bases, load_ids,
                                           want_view, want_storage)
                      .ok());
      for (uint32_t b = 0; b < blocks; ++b) {
        ASSERT_TRUE(cpu.Decode(dests[b].buffer, b, keys[b], want_view).ok());
      }
      EXPECT_EQ(target.Download(), want) << "device cache differs from the CPU decode";
      cudaStreamDestroy(stream);
    }
  }
}

}  // namespace
}  // namespace kvault::testing
