// BlockStore with a real gpu tier over host: new blocks land in GPU memory (promoted by the
// movers), a full GPU pool demotes to host with CUDA copies, and every block reads back intact.
#include <gtest/gtest.h>

#include <cstring>

#include "gpu_tier_test_util.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/gpu_tier.h"

namespace kvault::storage {
namespace {

BlockKey KeyOf(uint64_t i) {
  BlockKey key{};
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
  std::memcpy(key.data(), &x, 8);
  std::memcpy(key.data() + 8, &i, 8);
  return key;
}

TEST(GpuBlockStore, BlocksLandOnTheGpuAndDemoteToHostWhenItIsFull) {
  if (!gpu_test::HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  constexpr uint64_t kPayload = 256 * 1024;
  auto gpu = GpuTier::Create({.capacity_bytes = 2 << 20});
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  StoreTiers tiers;
  tiers.gpu = std::move(*gpu);
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 64 << 20}));
  auto store = BlockStore::Create({.policy = "lru", .land_on_gpu = true, .mover_threads = 1},
                                  std::move(tiers));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::vector<BlockKey> keys;
  for (int i = 0; i < 20; ++i) {
    keys.push_back(KeyOf(i));
    std::vector<uint8_t> object = *MakeSyntheticBlock(keys.back(), kPayload);
    ASSERT_TRUE((*store)->Put(0, keys.back(), object).ok());
    (*store)->WaitForMovers();
  }
  LookupResult r = (*store)->Lookup(0, keys, {.touch = false});
  ASSERT_EQ(r.leading_hits, 20u);
  int on_gpu = 0, on_host = 0;
  for (const auto& t : r.tiers) (*t == TierKind::kGpu ? on_gpu : on_host) += 1;
  EXPECT_GT(on_gpu, 0) << "new blocks land in GPU memory";
  EXPECT_GT(on_host, 0) << "a full pool demotes to host";
  EXPECT_EQ(r.tiers.back(), TierKind::kGpu) << "the newest block is on the GPU";
  for (const BlockKey& key : keys) {
    auto pin = (*store)->Pin(0, key);
    ASSERT_TRUE(pin.ok() && pin->has_value()) << pin.status().ToString();
    EXPECT_TRUE(IsSyntheticBlockFor(key, (*pin)->bytes()));
  }
}

}  // namespace
}  // namespace kvault::storage
