// StorePaged / LoadPaged with the engine's cache in device memory, against a real kvaultd: the
// objects the GPU pipeline stores are byte for byte those the CPU codec writes for the same KV,
// and what it loads and scatters into device blocks equals the CPU codec's decode, with one CUDA
// event per layer. With a daemon whose gpu tier exports CUDA IPC handles, a leased LoadPaged
// decodes straight from the daemon's device memory, and writes the same bytes as the staged path.
// Skips visibly without a CUDA device.

#include <cuda_runtime.h>

#include <chrono>
#include <random>
#include <thread>

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

// The source cache filled with random finite fp16 values; `host` receives the same values.
void FillRandom(DeviceCache& cache, std::vector<uint16_t>& host, uint32_t seed) {
  host.assign(cache.elements, 0);
  std::mt19937 rng(seed);
  for (uint16_t& x : host) {
    x = static_cast<uint16_t>(((rng() & 1) << 15) | ((12 + rng() % 4) << 10) | (rng() & 0x3FF));
  }
  cache.Upload(host);
}

class GpuPagedTest : public BinaryTest {
 protected:
  GpuPagedTest() : BinaryTest("kvaultd") {}
  virtual std::vector<std::string> DaemonArgs() const { return {}; }
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(dir_, DaemonArgs());
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    client_ = ConnectOrFail(daemon_->server());
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<PagedKvStore> Paged(const PagedKvCache& cache, const std::string& codec,
                                      bool gpu_ipc = true) {
    PagedKvOptions options;
    options.cache = cache;
    options.block_tokens = kBlockTokens;
    options.codec = codec;
    options.staging_bytes = 4 << 20;
    options.gpu_ipc = gpu_ipc;
    Result<std::unique_ptr<PagedKvStore>> s = PagedKvStore::Create(*client_, options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // The stored objects of `keys`, fetched through the plain Load.
  std::vector<std::vector<uint8_t>> StoredObjects(const std::vector<BlockKey>& keys,
                                                  const KvBlockCodec& cpu) {
    uint64_t total = 0;
    for (size_t b = 0; b < keys.size(); ++b) total += cpu.ObjectBytes(b);
    Result<MemoryRegion> region = client_->AllocateMemory(total);
    EXPECT_TRUE(region.ok()) << region.status().ToString();
    if (!region.ok()) return {};
    std::vector<LoadDestination> dests;
    uint64_t used = 0;
    for (size_t b = 0; b < keys.size(); ++b) {
      dests.push_back({{region->data() + used, cpu.ObjectBytes(b)}, 0, 0});
      used += cpu.ObjectBytes(b);
    }
    const Status loaded = client_->Load(Lease{}, keys, dests).Wait();
    EXPECT_TRUE(loaded.ok()) << loaded.ToString();
    std::vector<std::vector<uint8_t>> objects;
    for (const LoadDestination& d : dests) objects.emplace_back(d.buffer.begin(), d.buffer.end());
    return objects;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

// What a cache of `layout` poisoned with 0x7E7E holds after the CPU codec decodes `objects` into
// engine blocks `ids`.
std::vector<uint16_t> CpuDecode(const DeviceCache& shape, const KvBlockCodec& cpu,
                                const std::vector<std::vector<uint8_t>>& objects,
                                const std::vector<BlockKey>& keys,
                                const std::vector<int32_t>& ids) {
  std::vector<uint16_t> want(shape.elements, 0x7E7E);
  std::vector<uint16_t*> bases;
  for (uint32_t l = 0; l < kLayers; ++l)
    bases.push_back(want.data() + l * shape.cache.LayerElements());
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
  EXPECT_TRUE(kernels::MakePagedKvView(shape.cache.layout, DType::kF16, kLayers, kHeads, kDim,
                                       kEngineBlockTokens, kEngineBlocks, bases, ids, view, storage)
                  .ok());
  for (size_t b = 0; b < objects.size(); ++b) {
    EXPECT_TRUE(cpu.Decode(objects[b], b, keys[b], view).ok()) << "block " << b;
  }
  return want;
}

// Engine block ids of a sequence of `blocks` kvault blocks: (i * stride + first) % the cache's
// blocks, scattered so that neighbouring tokens sit in distant engine blocks.
std::vector<int32_t> EngineIds(uint32_t blocks, uint32_t stride, uint32_t first) {
  std::vector<int32_t> ids;
  for (uint32_t i = 0; i < blocks * kBlockTokens / kEngineBlockTokens; ++i) {
    ids.push_back(static_cast<int32_t>((i * stride + first) % kEngineBlocks));
  }
  return ids;
}

TEST_F(GpuPagedTest, GpuPipelinesWriteAndReadTheCpuCodecsBytes) {
  const uint32_t blocks = 6;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = EngineIds(blocks, 5, 1), load_ids = EngineIds(blocks, 7, 2);
  for (KvLayout layout : {KvLayout::kVllmNhd, KvLayout::kVllmHnd, KvLayout::kFlashInferNhd}) {
    for (const std::string codec :
         {"raw", "fp8", "int8", "k=int4,v=int2", "int2,g=32,rot,sink=4"}) {
      SCOPED_TRACE(std::string(kernels::KvLayoutName(layout)) + " " + codec);
      DeviceCache source(layout);
      std::vector<uint16_t> host;
      FillRandom(source, host, 3);
      // Keys of their own per layout and codec: StorePaged skips blocks the daemon already
      // holds, so a shared key would leave the previous layout's object in place.
      const std::vector<BlockKey> keys =
          Keys(std::string("gpu-paged-") + kernels::KvLayoutName(layout) + "-" + codec, blocks);

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
      const std::vector<std::vector<uint8_t>> objects = StoredObjects(keys, cpu);
      ASSERT_EQ(objects.size(), blocks);
      for (uint32_t b = 0; b < blocks; ++b) {
        std::vector<uint8_t> want(cpu.ObjectBytes(b));
        ASSERT_TRUE(cpu.Encode(view, b, keys[b], want).ok());
        ASSERT_EQ(want, objects[b]) << "block " << b << " differs from the CPU codec's object";
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
      EXPECT_EQ(loaded.gpu_tier_blocks(), 0u) << "this daemon has no gpu tier";
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      EXPECT_EQ(target.Download(), CpuDecode(target, cpu, objects, keys, load_ids))
          << "device cache differs from the CPU decode";
      cudaStreamDestroy(stream);
    }
  }
}

// The engine's other work does not hold a load up: with the legacy default stream blocked (a
// host function that sleeps on it, as a long forward pass queued there would), LoadPaged on the
// engine's own non-blocking stream still completes, and writes the right bytes, long before the
// legacy stream is free again. Positive control: the legacy stream really stays blocked.
constexpr std::chrono::milliseconds kLegacyBlocked{1500};

TEST_F(GpuPagedTest, ALoadDoesNotWaitForWorkQueuedOnTheLegacyDefaultStream) {
  using Clock = std::chrono::steady_clock;
  const uint32_t blocks = 4;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = EngineIds(blocks, 5, 3), load_ids = EngineIds(blocks, 9, 2);
  const std::string codec = "fp8";
  DeviceCache source(KvLayout::kVllmNhd), target(KvLayout::kVllmNhd);
  std::vector<uint16_t> host;
  FillRandom(source, host, 11);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const std::vector<BlockKey> keys = Keys("gpu-legacy-" + codec, blocks);
  auto storer = Paged(source.cache, codec);
  auto loader = Paged(target.cache, codec);
  ASSERT_NE(storer, nullptr);
  ASSERT_NE(loader, nullptr);
  PagedStoreOptions store_options;
  store_options.stream = stream;
  ASSERT_TRUE(storer->StorePaged({ids, tokens, keys}, store_options).Wait().ok());
  PagedLoadOptions load_options;
  load_options.stream = stream;
  // Warm-up: staging and device tables exist before the legacy stream is blocked.
  ASSERT_TRUE(
      loader->LoadPaged(Lease{}, {load_ids, tokens, keys}, blocks, load_options).Wait().ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaMemset(target.device, 0x7E, target.elements * 2), cudaSuccess);

  const Clock::time_point start = Clock::now();
  ASSERT_EQ(
      cudaLaunchHostFunc(
          cudaStreamLegacy, [](void*) { std::this_thread::sleep_for(kLegacyBlocked); }, nullptr),
      cudaSuccess);
  PagedLoadHandle loaded =
      loader->LoadPaged(Lease{}, {load_ids, tokens, keys}, blocks, load_options);
  ASSERT_TRUE(loaded.Wait().ok());
  ASSERT_EQ(loaded.leading_ok(), blocks);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const Clock::duration load_took = Clock::now() - start;
  ASSERT_EQ(cudaStreamSynchronize(cudaStreamLegacy), cudaSuccess);
  const Clock::duration legacy_took = Clock::now() - start;
  EXPECT_GE(legacy_took, kLegacyBlocked - std::chrono::milliseconds(50))
      << "the control did not block";
  EXPECT_LT(load_took, kLegacyBlocked / 2)
      << "LoadPaged waited for the legacy default stream: "
      << std::chrono::duration_cast<std::chrono::milliseconds>(load_took).count() << " ms";
  KvBlockCodec cpu =
      *KvBlockCodec::Create({kLayers, kHeads, kDim, DType::kF16, kBlockTokens, codec, {}});
  EXPECT_EQ(target.Download(), CpuDecode(target, cpu, StoredObjects(keys, cpu), keys, load_ids))
      << "device cache differs from the CPU decode";
  cudaStreamDestroy(stream);
}

// A daemon whose blocks land in a gpu tier that exports CUDA IPC handles.
class GpuTierPagedTest : public GpuPagedTest {
 protected:
  std::vector<std::string> DaemonArgs() const override {
    return {"--storage.gpu_capacity",   "256MiB", "--storage.land_on_gpu",   "true",
            "--storage.gpu_ipc_export", "true",   "--storage.nvme_capacity", "0"};
  }
};

TEST_F(GpuTierPagedTest, LeasedLoadDecodesStraightFromTheDaemonsGpuTier) {
  const uint32_t blocks = 5;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = EngineIds(blocks, 3, 4), load_ids = EngineIds(blocks, 11, 1);
  for (const std::string codec : {"fp8", "k=int4,v=int2,sink=4"}) {
    SCOPED_TRACE(codec);
    DeviceCache source(KvLayout::kVllmNhd);
    std::vector<uint16_t> host;
    FillRandom(source, host, 7);
    const std::vector<BlockKey> keys = Keys("gpu-tier-" + codec, blocks);
    cudaStream_t stream = nullptr;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    auto storer = Paged(source.cache, codec);
    ASSERT_NE(storer, nullptr);
    PagedStoreOptions store_options;
    store_options.stream = stream;
    PagedStoreHandle stored = storer->StorePaged({ids, tokens, keys}, store_options);
    ASSERT_TRUE(stored.Wait().ok());
    ASSERT_EQ(stored.leading_ok(), blocks);
    ASSERT_TRUE(WaitUntilAllInTier(*client_, keys, Tier::kGpu))
        << "the blocks never reached the gpu tier";
    KvBlockCodec cpu =
        *KvBlockCodec::Create({kLayers, kHeads, kDim, DType::kF16, kBlockTokens, codec, {}});
    const std::vector<std::vector<uint8_t>> objects = StoredObjects(keys, cpu);
    ASSERT_EQ(objects.size(), blocks);

    // Three loads into fresh caches: leased with IPC on (from the gpu tier), and the two staged
    // controls: no lease (export needs one), and IPC switched off.
    struct Way {
      const char* name;
      bool lease, gpu_ipc;
      size_t want_from_gpu;
    };
    for (const Way way : {Way{"leased, gpu_ipc", true, true, blocks},
                          Way{"no lease", false, true, 0}, Way{"gpu_ipc off", true, false, 0}}) {
      SCOPED_TRACE(way.name);
      LookupOptions lookup;
      lookup.want_lease = way.lease;
      const LookupResult hit = client_->LookupPrefix(keys, lookup);
      ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
      ASSERT_EQ(hit.leading_hits, blocks);
      ASSERT_EQ(hit.lease.valid(), way.lease);
      DeviceCache target(KvLayout::kVllmNhd);
      auto loader = Paged(target.cache, codec, way.gpu_ipc);
      ASSERT_NE(loader, nullptr);
      PagedLoadOptions load_options;
      load_options.stream = stream;
      PagedLoadHandle loaded =
          loader->LoadPaged(hit.lease, {load_ids, tokens, keys}, blocks, load_options);
      for (uint32_t l = 0; l < kLayers; ++l) {
        ASSERT_TRUE(loaded.WaitLayer(l).ok());
        ASSERT_NE(loaded.layer_event(l), nullptr);
      }
      ASSERT_TRUE(loaded.Wait().ok());
      ASSERT_EQ(loaded.leading_ok(), blocks);
      EXPECT_EQ(loaded.gpu_tier_blocks(), way.want_from_gpu);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      EXPECT_EQ(target.Download(), CpuDecode(target, cpu, objects, keys, load_ids))
          << "device cache differs from the CPU decode";
      if (way.lease) {
        EXPECT_TRUE(client_->ReleaseLease(hit.lease).ok());
      }
    }
    cudaStreamDestroy(stream);
  }
}

}  // namespace
}  // namespace kvault::testing
