// StorePaged / LoadPaged on host memory against a real kvaultd: every engine layout, kvault
// blocks spanning several engine blocks, codecs with and without sink tokens, layer-wave loads,
// skipping what is stored, misses that stop at the prefix, bounded staging, input errors and a
// dead daemon. The expected KV is always the CPU codec's own encode + decode of the source.

#include <algorithm>
#include <random>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"

namespace kvault::testing {
namespace {

using kernels::KvLayout;

constexpr uint32_t kLayers = 3, kHeads = 2, kDim = 32;
constexpr uint32_t kEngineBlockTokens = 16, kBlockTokens = 32, kEngineBlocks = 24;
constexpr uint16_t kSentinel = 0x7E00;  // an fp16 NaN no codec writes

// An engine's paged cache in host memory: kLayers tensors of kEngineBlocks blocks each (or one
// contiguous tensor), in `layout`.
struct EngineCache {
  EngineCache(KvLayout layout, uint32_t contiguous_tokens = 0) {
    cache.memory = MemoryKind::kHost;
    cache.layout = layout;
    cache.dtype = DType::kF16;
    cache.num_layers = kLayers;
    cache.kv_heads = kHeads;
    cache.head_dim = kDim;
    if (layout == KvLayout::kContiguous) {
      cache.engine_block_tokens = contiguous_tokens;
      cache.engine_num_blocks = 1;
      data.assign(size_t{kLayers} * cache.LayerElements(), kSentinel);
      cache.tensors = {data.data()};
    } else {
      cache.engine_block_tokens = kEngineBlockTokens;
      cache.engine_num_blocks = kEngineBlocks;
      data.assign(size_t{kLayers} * cache.LayerElements(), kSentinel);
      for (uint32_t l = 0; l < kLayers; ++l) {
        cache.tensors.push_back(data.data() + l * cache.LayerElements());
      }
    }
  }
  // The view of a sequence over `ids`.
  kernels::PagedKvView View(const std::vector<int32_t>& ids) {
    std::vector<uint16_t*> bases;
    for (void* p : cache.tensors) bases.push_back(static_cast<uint16_t*>(p));
    EXPECT_TRUE(kernels::MakePagedKvView(cache.layout, cache.dtype, kLayers, kHeads, kDim,
                                         cache.engine_block_tokens, cache.engine_num_blocks, bases,
                                         ids, view, storage)
                    .ok());
    return view;
  }
  // Fills the tokens of a sequence with random fp16 values.
  void Fill(const std::vector<int32_t>& ids, uint64_t tokens, uint32_t seed) {
    const kernels::PagedKvView v = View(ids);
    std::mt19937 rng(seed);
    ForEach(v, tokens, [&](uint16_t& x) {
      x = static_cast<uint16_t>(((rng() & 1) << 15) | ((13 + rng() % 3) << 10) | (rng() & 0x3FF));
    });
  }
  // The sequence's tokens [0, tokens) in [layer][kv][token][head][dim] order.
  std::vector<uint16_t> Gather(const std::vector<int32_t>& ids, uint64_t tokens) {
    std::vector<uint16_t> out;
    ForEach(View(ids), tokens, [&](uint16_t& x) { out.push_back(x); });
    return out;
  }
  template <typename Fn>
  static void ForEach(const kernels::PagedKvView& v, uint64_t tokens, Fn&& fn) {
    for (uint32_t l = 0; l < v.num_layers; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        for (uint64_t t = 0; t < tokens; ++t) {
          for (uint32_t h = 0; h < v.kv_heads; ++h) {
            uint16_t* p = v.layer_bases[l] + kv * v.kv_stride +
                          v.page_ids[t / v.page_tokens] * v.page_stride +
                          (t % v.page_tokens) * v.slot_stride + h * v.head_stride;
            for (uint32_t d = 0; d < v.head_dim; ++d) fn(p[d]);
          }
        }
      }
    }
  }

  PagedKvCache cache;
  std::vector<uint16_t> data;
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
};

std::vector<BlockKey> Keys(const std::string& model, uint32_t blocks, uint32_t seed) {
  std::vector<uint32_t> tokens(size_t{blocks} * kBlockTokens);
  std::mt19937 rng(seed);
  for (uint32_t& t : tokens) t = rng() % 128000;
  const BlockKey ns = TestNamespaceDigest(model, kLayers, kHeads, kDim, kBlockTokens);
  return *ChainBlockKeys(ns, tokens, kBlockTokens);
}

// Engine block ids in a scrambled order, `count` of them, starting at `offset` of the ring.
std::vector<int32_t> Ids(uint32_t count, uint32_t offset) {
  std::vector<int32_t> ids;
  for (uint32_t i = 0; i < count; ++i) ids.push_back((offset + i * 7) % kEngineBlocks);
  return ids;
}

LookupOptions LeaseLookup() {
  LookupOptions o;
  o.want_lease = true;
  return o;
}

class KvaultdPagedTest : public BinaryTest {
 protected:
  KvaultdPagedTest() : BinaryTest("kvaultd") {}
  void SetUp() override {
    BinaryTest::SetUp();
    daemon_ = std::make_unique<DaemonProcess>(dir_, std::vector<std::string>{});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    client_ = ConnectOrFail(daemon_->server());
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<PagedKvStore> Store(const PagedKvCache& cache, const std::string& codec,
                                      size_t staging = 1 << 20, uint32_t depth = 2) {
    PagedKvOptions options;
    options.cache = cache;
    options.block_tokens = kBlockTokens;
    options.codec = codec;
    options.staging_bytes = staging;
    options.pipeline_depth = depth;
    Result<std::unique_ptr<PagedKvStore>> s = PagedKvStore::Create(*client_, options);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // What the CPU codec gives for the source's first `blocks` blocks: encode, then decode.
  static std::vector<uint16_t> Expected(EngineCache& source, const std::vector<int32_t>& ids,
                                        const std::vector<BlockKey>& keys, uint32_t blocks,
                                        const std::string& codec) {
    KvBlockFormat format{kLayers, kHeads, kDim, DType::kF16, kBlockTokens, codec, {}};
    KvBlockCodec local = *KvBlockCodec::Create(format);
    EngineCache want(KvLayout::kContiguous, blocks * kBlockTokens);
    const kernels::PagedKvView from = source.View(ids);
    const kernels::PagedKvView to = want.View({0});
    for (uint32_t b = 0; b < blocks; ++b) {
      std::vector<uint8_t> object(local.ObjectBytes(b));
      EXPECT_TRUE(local.Encode(from, b, keys[b], object).ok());
      EXPECT_TRUE(local.Decode(object, b, keys[b], to).ok());
    }
    return want.Gather({0}, blocks * kBlockTokens);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(KvaultdPagedTest, EveryLayoutAndCodecRoundTripsLikeTheCpuCodec) {
  const uint32_t blocks = 4;
  const uint64_t tokens = blocks * kBlockTokens + 5;  // a partial tail is never stored
  const uint32_t engine_blocks = (tokens + kEngineBlockTokens - 1) / kEngineBlockTokens;
  for (KvLayout layout : {KvLayout::kVllmNhd, KvLayout::kVllmHnd, KvLayout::kFlashInferNhd,
                          KvLayout::kFlashInferHnd, KvLayout::kContiguous}) {
    for (const std::string codec : {"raw", "fp8", "int2,g=32,sink=4", "k=int4,v=int2"}) {
      SCOPED_TRACE(std::string(kernels::KvLayoutName(layout)) + " " + codec);
      const bool contiguous = layout == KvLayout::kContiguous;
      const std::vector<int32_t> ids = contiguous ? std::vector<int32_t>{0} : Ids(engine_blocks, 3);
      const std::vector<int32_t> load_ids =
          contiguous ? std::vector<int32_t>{0} : Ids(engine_blocks, 11);
      EngineCache source(layout, static_cast<uint32_t>(tokens));
      source.Fill(ids, tokens, 5);
      const std::vector<BlockKey> keys =
          Keys(std::string("paged-") + kernels::KvLayoutName(layout) + codec, blocks, 1);
      auto paged = Store(source.cache, codec);
      ASSERT_NE(paged, nullptr);
      PagedStoreHandle stored = paged->StorePaged({ids, tokens, keys});
      ASSERT_TRUE(stored.Wait().ok());
      EXPECT_EQ(stored.size(), blocks);
      EXPECT_EQ(stored.leading_ok(), blocks);
      EXPECT_EQ(stored.skipped(), 0u);
      EXPECT_TRUE(stored.WaitSourceReleased(Clock::now()));

      const LookupResult hit = client_->LookupPrefix(keys, LeaseLookup());
      ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
      ASSERT_EQ(hit.leading_hits, blocks);

      EngineCache target(layout, static_cast<uint32_t>(tokens));
      auto loader = Store(target.cache, codec);
      ASSERT_NE(loader, nullptr);
      PagedLoadHandle loaded = loader->LoadPaged(hit.lease, {load_ids, tokens, keys}, blocks);
      for (uint32_t l = 0; l < kLayers; ++l) {
        EXPECT_TRUE(loaded.WaitLayer(l).ok());
        EXPECT_EQ(loaded.layer_event(l), nullptr);  // host memory: no CUDA events
      }
      ASSERT_TRUE(loaded.Wait().ok());
      EXPECT_EQ(loaded.leading_ok(), blocks);
      EXPECT_EQ(loaded.gpu_tier_blocks(), 0u) << "host memory never reads the gpu tier";
      const std::vector<uint16_t> got = target.Gather(load_ids, blocks * kBlockTokens);
      EXPECT_EQ(got, Expected(source, ids, keys, blocks, codec));
      if (codec == "raw") {
        EXPECT_EQ(got, source.Gather(ids, blocks * kBlockTokens));
      }
      // The partial tail's tokens were not written.
      const std::vector<uint16_t> all = target.Gather(load_ids, tokens);
      EXPECT_EQ(all[blocks * kBlockTokens * kHeads * kDim], kSentinel);
      EXPECT_TRUE(client_->ReleaseLease(hit.lease).ok());
    }
  }
}

TEST_F(KvaultdPagedTest, StoreSkipsTheStoredPrefixAndLoadsInLayerWavesThroughSmallStaging) {
  const uint32_t blocks = 8;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = Ids(blocks * 2, 0);
  EngineCache source(KvLayout::kVllmNhd);
  source.Fill(ids, tokens, 9);
  const std::vector<BlockKey> keys = Keys("paged-skip", blocks, 2);
  const std::string codec = "fp8";
  // Staging for about three objects in all: every transfer takes several waves.
  auto probe = Store(source.cache, codec);
  ASSERT_NE(probe, nullptr);
  const size_t staging = 2 * (probe->ObjectBytes(1) * 3 / 2 + 256);
  auto paged = Store(source.cache, codec, staging, 2);
  ASSERT_NE(paged, nullptr);

  // Half the chain first, then all of it: the second store skips the stored half.
  PagedStoreHandle first = paged->StorePaged({ids, tokens / 2, keys});
  ASSERT_TRUE(first.Wait().ok());
  EXPECT_EQ(first.leading_ok(), blocks / 2);
  PagedStoreHandle second = paged->StorePaged({ids, tokens, keys});
  ASSERT_TRUE(second.Wait().ok());
  EXPECT_EQ(second.skipped(), blocks / 2);
  EXPECT_EQ(second.leading_ok(), blocks);
  PagedStoreHandle again = paged->StorePaged({ids, tokens, keys});
  ASSERT_TRUE(again.Wait().ok());
  EXPECT_EQ(again.skipped(), blocks);
  // Without skipping, everything is sent again (and is already there: OK).
  PagedStoreHandle forced =
      paged->StorePaged({ids, tokens, keys},
                        PagedStoreOptions{.deadline = {}, .skip_stored = false, .stream = nullptr});
  ASSERT_TRUE(forced.Wait().ok());
  EXPECT_EQ(forced.skipped(), 0u);
  EXPECT_EQ(forced.leading_ok(), blocks);

  const LookupResult hit = client_->LookupPrefix(keys, LeaseLookup());
  ASSERT_EQ(hit.leading_hits, blocks);
  const std::vector<uint16_t> want = Expected(source, ids, keys, blocks, codec);
  for (uint32_t per_wave : {1u, 2u, 0u}) {
    SCOPED_TRACE(per_wave);
    EngineCache target(KvLayout::kVllmNhd);
    const std::vector<int32_t> load_ids = Ids(blocks * 2, 5);
    auto loader = Store(target.cache, codec, staging, 2);
    ASSERT_NE(loader, nullptr);
    PagedLoadHandle loaded = loader->LoadPaged(
        hit.lease, {load_ids, tokens, keys}, blocks,
        PagedLoadOptions{.deadline = {}, .stream = nullptr, .layers_per_wave = per_wave});
    for (uint32_t l = 0; l < kLayers; ++l) ASSERT_TRUE(loaded.WaitLayer(l).ok()) << l;
    EXPECT_EQ(loaded.WaitLayer(kLayers).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(loaded.Wait().ok());
    EXPECT_EQ(loaded.leading_ok(), blocks);
    EXPECT_EQ(target.Gather(load_ids, tokens), want);
  }
}

// A sequence longer than one lookup may carry (the daemon takes 4 keys per request here) is
// still skipped as far as it is stored: the store looks the chain up a batch at a time.
TEST_F(KvaultdPagedTest, StoreSkipsAStoredPrefixLongerThanOneLookup) {
  client_.reset();
  daemon_.reset();  // it holds the data directory's lock
  daemon_ = std::make_unique<DaemonProcess>(
      dir_, std::vector<std::string>{"--limits-max-keys-per-request", "4"});
  ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
  client_ = ConnectOrFail(daemon_->server());
  ASSERT_NE(client_, nullptr);
  const uint32_t blocks = 10;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = Ids(blocks * 2, 0);
  EngineCache source(KvLayout::kVllmNhd);
  source.Fill(ids, tokens, 4);
  const std::vector<BlockKey> keys = Keys("paged-long-skip", blocks, 6);
  auto paged = Store(source.cache, "int8");
  ASSERT_NE(paged, nullptr);
  // One lookup of the whole chain is over the daemon's limit: the skip must not depend on it.
  EXPECT_EQ(client_->LookupPrefix(keys).status.code(), StatusCode::kInvalidArgument);

  PagedStoreHandle first = paged->StorePaged({ids, 7 * kBlockTokens, keys});
  ASSERT_TRUE(first.Wait().ok());
  EXPECT_EQ(first.skipped(), 0u);
  EXPECT_EQ(first.leading_ok(), 7u);
  PagedStoreHandle second = paged->StorePaged({ids, tokens, keys});
  ASSERT_TRUE(second.Wait().ok());
  EXPECT_EQ(second.skipped(), 7u);
  EXPECT_EQ(second.leading_ok(), blocks);
  PagedStoreHandle again = paged->StorePaged({ids, tokens, keys});
  ASSERT_TRUE(again.Wait().ok());
  EXPECT_EQ(again.skipped(), blocks);
}

TEST_F(KvaultdPagedTest, AMissStopsTheLoadAtThePrefixAndLeavesLaterBlocksUntouched) {
  const uint32_t blocks = 5;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = Ids(blocks * 2, 1);
  EngineCache source(KvLayout::kFlashInferHnd);
  source.Fill(ids, tokens, 4);
  const std::vector<BlockKey> keys = Keys("paged-miss", blocks, 3);
  auto paged = Store(source.cache, "int8");
  ASSERT_NE(paged, nullptr);
  ASSERT_TRUE(paged->StorePaged({ids, tokens, keys}).Wait().ok());
  // Block 2 disappears; blocks 3 and 4 are still stored but useless without it.
  ASSERT_TRUE(client_->Delete(std::span(keys).subspan(2, 1)).ok());

  for (uint32_t per_wave : {0u, 1u}) {
    SCOPED_TRACE(per_wave);
    EngineCache target(KvLayout::kFlashInferHnd);
    const std::vector<int32_t> load_ids = Ids(blocks * 2, 2);
    auto loader = Store(target.cache, "int8");
    ASSERT_NE(loader, nullptr);
    PagedLoadHandle loaded = loader->LoadPaged(
        Lease{}, {load_ids, tokens, keys}, blocks,
        PagedLoadOptions{.deadline = {}, .stream = nullptr, .layers_per_wave = per_wave});
    ASSERT_TRUE(loaded.Wait().ok());
    EXPECT_EQ(loaded.leading_ok(), 2u);
    EXPECT_EQ(loaded.key_status(2).code(), StatusCode::kNotFound);
    EXPECT_FALSE(loaded.key_status(3).ok());
    EXPECT_FALSE(loaded.key_status(4).ok());
    const std::vector<uint16_t> got = target.Gather(load_ids, tokens);
    const size_t per_block_layer = size_t{kBlockTokens} * kHeads * kDim;
    const std::vector<uint16_t> want = Expected(source, ids, keys, 2, "int8");
    // Positive control: blocks 0 and 1 of every layer and kv arrived.
    for (uint32_t lk = 0; lk < kLayers * 2; ++lk) {
      for (size_t e = 0; e < 2 * per_block_layer; ++e) {
        ASSERT_EQ(got[lk * blocks * per_block_layer + e], want[lk * 2 * per_block_layer + e]);
      }
      for (size_t e = 2 * per_block_layer; e < blocks * per_block_layer; ++e) {
        ASSERT_EQ(got[lk * blocks * per_block_layer + e], kSentinel)
            << "block after a miss written";
      }
    }
  }
}

TEST_F(KvaultdPagedTest, BadInputIsRefusedAtOnceWithAClearStatus) {
  EngineCache cache(KvLayout::kVllmHnd);
  const std::vector<BlockKey> keys = Keys("paged-bad", 2, 4);
  {
    PagedKvOptions options;
    options.cache = cache.cache;
    options.block_tokens = 24;  // not a multiple of 16
    EXPECT_EQ(PagedKvStore::Create(*client_, options).status().code(),
              StatusCode::kInvalidArgument);
    options.block_tokens = kBlockTokens;
    options.pipeline_depth = 0;
    EXPECT_EQ(PagedKvStore::Create(*client_, options).status().code(),
              StatusCode::kInvalidArgument);
    options.pipeline_depth = 2;
    options.staging_bytes = 1024;
    EXPECT_EQ(PagedKvStore::Create(*client_, options).status().code(),
              StatusCode::kInvalidArgument);
    options.staging_bytes = 1 << 20;
    options.codec = "int5";
    EXPECT_EQ(PagedKvStore::Create(*client_, options).status().code(),
              StatusCode::kInvalidArgument);
    options.codec = "fp8";
    options.cache.tensors.pop_back();  // neither one per layer nor one stacked tensor
    EXPECT_EQ(PagedKvStore::Create(*client_, options).status().code(),
              StatusCode::kInvalidArgument);
    options.cache = cache.cache;
    options.cache.memory = MemoryKind::kCuda;  // host pointers (or no CUDA in this build)
    EXPECT_FALSE(PagedKvStore::Create(*client_, options).ok());
  }
  auto paged = Store(cache.cache, "fp8");
  ASSERT_NE(paged, nullptr);
  const std::vector<int32_t> outside = {0, 1, 2, static_cast<int32_t>(kEngineBlocks)};
  PagedStoreHandle h = paged->StorePaged({outside, 2 * kBlockTokens, keys});
  ASSERT_TRUE(h.Poll());
  EXPECT_TRUE(h.refused());
  EXPECT_EQ(h.Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(h.Wait().message().find("outside"), std::string::npos) << h.Wait().ToString();
  const std::vector<int32_t> few = {0, 1};
  EXPECT_EQ(paged->StorePaged({few, 2 * kBlockTokens, keys}).Wait().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(paged->StorePaged({Ids(4, 0), 2 * kBlockTokens, {}}).Wait().code(),
            StatusCode::kInvalidArgument);
  PagedLoadHandle too_many = paged->LoadPaged(Lease{}, {Ids(4, 0), 2 * kBlockTokens, keys}, 3);
  EXPECT_TRUE(too_many.refused());
  EXPECT_EQ(too_many.Wait().code(), StatusCode::kInvalidArgument);
  // Positive control: the same sequence with valid ids stores, and is never refused().
  PagedStoreHandle good = paged->StorePaged({Ids(4, 0), 2 * kBlockTokens, keys});
  EXPECT_TRUE(good.Wait().ok());
  EXPECT_FALSE(good.refused());
  EXPECT_EQ(good.leading_ok(), 2u);
}

TEST_F(KvaultdPagedTest, ALoadWhoseDeadlinePassedSendsNothingAndWritesNothing) {
  const uint32_t blocks = 3;
  const uint64_t tokens = blocks * kBlockTokens;
  const std::vector<int32_t> ids = Ids(blocks * 2, 3);
  EngineCache source(KvLayout::kVllmNhd);
  source.Fill(ids, tokens, 8);
  const std::vector<BlockKey> keys = Keys("paged-late", blocks, 8);
  auto paged = Store(source.cache, "fp8");
  ASSERT_NE(paged, nullptr);
  ASSERT_TRUE(paged->StorePaged({ids, tokens, keys}).Wait().ok());
  auto pins = [&] {
    Result<std::vector<ServerStat>> stats = client_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    for (const ServerStat& s : stats.ok() ? *stats : std::vector<ServerStat>{}) {
      if (s.name == "store.pins_total") return s.AsDouble();
    }
    ADD_FAILURE() << "no store.pins_total";
    return 0.0;
  };
  auto load = [&](EngineCache& into, std::optional<Deadline> deadline) {
    auto loader = Store(into.cache, "fp8");
    PagedLoadHandle h = loader->LoadPaged(Lease{}, {ids, tokens, keys}, blocks,
                                          PagedLoadOptions{.deadline = deadline});
    (void)h.Wait();
    return h;
  };
  // Positive control: a load in time pins the blocks at the daemon and writes the cache.
  EngineCache in_time(KvLayout::kVllmNhd);
  const double before = pins();
  PagedLoadHandle ok = load(in_time, Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(ok.Wait().ok());
  EXPECT_EQ(ok.leading_ok(), blocks);
  const double per_load = pins() - before;
  ASSERT_GT(per_load, 0);
  EXPECT_EQ(in_time.Gather(ids, tokens), Expected(source, ids, keys, blocks, "fp8"));

  // A deadline already passed: Unavailable, no request reaches the daemon, nothing written.
  EngineCache late(KvLayout::kVllmNhd);
  const double before_late = pins();
  PagedLoadHandle expired = load(late, Clock::now() - std::chrono::milliseconds(1));
  const Status s = expired.Wait();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("deadline"), std::string::npos) << s.ToString();
  EXPECT_FALSE(expired.refused());
  EXPECT_EQ(expired.leading_ok(), 0u);
  EXPECT_FALSE(expired.WaitLayer(0, Clock::now()).ok());
  // The connection serves requests in order: a load after it shows what reached the daemon.
  EngineCache after(KvLayout::kVllmNhd);
  ASSERT_TRUE(load(after, std::nullopt).Wait().ok());
  EXPECT_EQ(pins() - before_late, per_load);
  for (uint16_t x : late.data) ASSERT_EQ(x, kSentinel);
}

TEST_F(KvaultdPagedTest, ADeadDaemonFailsTheTransferInsteadOfHanging) {
  EngineCache cache(KvLayout::kVllmNhd);
  const uint32_t blocks = 3;
  const std::vector<int32_t> ids = Ids(blocks * 2, 0);
  cache.Fill(ids, blocks * kBlockTokens, 1);
  const std::vector<BlockKey> keys = Keys("paged-dead", blocks, 5);
  auto paged = Store(cache.cache, "fp8");
  ASSERT_NE(paged, nullptr);
  daemon_->Kill();
  const auto start = Clock::now();
  PagedStoreHandle stored =
      paged->StorePaged({ids, blocks * kBlockTokens, keys},
                        PagedStoreOptions{.deadline = Clock::now() + std::chrono::seconds(3),
                                          .skip_stored = true,
                                          .stream = nullptr});
  const Status s = stored.Wait(Clock::now() + std::chrono::seconds(30));
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(stored.refused());
  EXPECT_NE(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_EQ(stored.leading_ok(), 0u);
  PagedLoadHandle loaded =
      paged->LoadPaged(Lease{}, {ids, blocks * kBlockTokens, keys}, blocks,
                       PagedLoadOptions{.deadline = Clock::now() + std::chrono::seconds(3),
                                        .stream = nullptr,
                                        .layers_per_wave = 0});
  EXPECT_FALSE(loaded.WaitLayer(0, Clock::now() + std::chrono::seconds(30)).ok());
  EXPECT_FALSE(loaded.Wait(Clock::now() + std::chrono::seconds(30)).ok());
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
}  // namespace kvault::testing
