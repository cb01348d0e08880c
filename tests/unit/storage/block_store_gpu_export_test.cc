// BlockStore::ExportGpu with a fake gpu tier at the Tier seam and a manual clock: the lease checks
// (not live, not covering), misses (absent, another tenant's, in another tier), and that a leased
// gpu block stays in the gpu tier while the tier overflows. The fake is not a GpuTier, so a block
// that passes every check ends in Unsupported here; the export itself (handle, offset, length,
// bytes read through CUDA IPC) is covered by tests/gpu/gpu_export_test.cc on a GPU machine.
#include <gtest/gtest.h>

#include "kvault/storage/block_store.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::FakeTier;
using testing::KeyOf;
using testing::ManualClock;
using testing::ObjectFor;

constexpr uint64_t kPayload = 100000;  // ~100 KB objects

struct GpuStore {
  std::unique_ptr<BlockStore> store;
  FakeTier* gpu = nullptr;
};

// Host 4 MiB and, unless `with_gpu` is false, a fake gpu tier of `gpu_capacity` where new blocks
// land (moved there by the one mover thread).
GpuStore MakeStore(const ManualClock* clock, bool with_gpu = true,
                   uint64_t gpu_capacity = 16 << 20) {
  BlockStoreOptions options;
  options.policy = "lru";
  options.clock = clock;
  options.land_on_gpu = with_gpu;
  options.mover_threads = 1;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create({.capacity_bytes = 4 << 20, .huge_pages = false}));
  FakeTier* raw = nullptr;
  if (with_gpu) {
    auto gpu = std::make_unique<FakeTier>(TierKind::kGpu, gpu_capacity);
    raw = gpu.get();
    tiers.gpu = std::move(gpu);
  }
  auto store = BlockStore::Create(options, std::move(tiers));
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return {std::move(*store), raw};
}

void Put(BlockStore& store, TenantId tenant, const BlockKey& key) {
  Result<bool> put = store.Put(tenant, key, ObjectFor(key, kPayload));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
}

// A lease on `keys` (all present) of tenant 0.
LeaseId LeaseOn(BlockStore& store, std::span<const BlockKey> keys) {
  LookupResult r = store.Lookup(0, keys, {.lease_ttl = std::chrono::seconds(10)});
  EXPECT_EQ(r.leading_hits, keys.size());
  EXPECT_NE(r.lease, 0u);
  return r.lease;
}

// Puts `key` for tenant 0 and waits for the mover (which takes it to the gpu tier, if any).
void PutAndMove(GpuStore& s, const BlockKey& key) {
  Put(*s.store, 0, key);
  s.store->WaitForMovers();
}

using ExportResult = Result<std::optional<kernels::GpuIpcExport>>;

void ExpectMiss(const ExportResult& r) {
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value());
}

void ExpectError(const ExportResult& r, StatusCode code) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
}

void ExpectLeaseExpired(const ExportResult& r) {
  ExpectError(r, StatusCode::kNotFound);
  if (r.ok()) return;
  EXPECT_NE(r.status().message().find("lease_expired"), std::string::npos) << r.status().ToString();
}

TEST(BlockStoreGpuExport, BlocksLandInTheFakeGpuTier) {
  // The premise of the other tests: with land_on_gpu the mover puts new blocks in the gpu tier.
  ManualClock clock;
  GpuStore s = MakeStore(&clock);
  const BlockKey key = KeyOf(1);
  PutAndMove(s, key);
  EXPECT_EQ(s.store->Lookup(0, std::span(&key, 1)).tiers[0], TierKind::kGpu);
  EXPECT_EQ(s.gpu->blocks(), 1u);
}

TEST(BlockStoreGpuExport, ALeaseThatIsNotLiveIsLeaseExpiredWhateverTheKey) {
  ManualClock clock;
  GpuStore s = MakeStore(&clock);
  const BlockKey key = KeyOf(1);
  PutAndMove(s, key);
  ExpectLeaseExpired(s.store->ExportGpu(0, key, 0));
  ExpectLeaseExpired(s.store->ExportGpu(0, key, 12345));
  ExpectLeaseExpired(s.store->ExportGpu(0, KeyOf(99), 12345));  // before the key is looked at

  const LeaseId released = LeaseOn(*s.store, std::span(&key, 1));
  ASSERT_TRUE(s.store->ReleaseLease(released).ok());
  ExpectLeaseExpired(s.store->ExportGpu(0, key, released));

  const LeaseId expiring = LeaseOn(*s.store, std::span(&key, 1));
  clock.Advance(std::chrono::seconds(11));
  ExpectLeaseExpired(s.store->ExportGpu(0, key, expiring));
}

TEST(BlockStoreGpuExport, AbsentAndForeignKeysAreMisses) {
  ManualClock clock;
  GpuStore s = MakeStore(&clock);
  const BlockKey key = KeyOf(1);
  PutAndMove(s, key);
  const LeaseId lease = LeaseOn(*s.store, std::span(&key, 1));
  ExpectMiss(s.store->ExportGpu(0, KeyOf(2), lease));
  // The same key bytes under another tenant are another (absent) block, even with the owner's
  // lease.
  ExpectMiss(s.store->ExportGpu(7, key, lease));
  // Positive control: the owner, with the same lease, gets past every check to the tier.
  ExpectError(s.store->ExportGpu(0, key, lease), StatusCode::kUnsupported);
}

TEST(BlockStoreGpuExport, ABlockInAnotherTierIsAMiss) {
  ManualClock clock;
  GpuStore s = MakeStore(&clock, /*with_gpu=*/false);
  const BlockKey key = KeyOf(1);
  Put(*s.store, 0, key);
  const LeaseId lease = LeaseOn(*s.store, std::span(&key, 1));
  ExpectMiss(s.store->ExportGpu(0, key, lease));
}

TEST(BlockStoreGpuExport, ALeaseThatDoesNotCoverTheBlockIsInvalidArgument) {
  ManualClock clock;
  GpuStore s = MakeStore(&clock);
  const BlockKey covered = KeyOf(1), other = KeyOf(2);
  Put(*s.store, 0, covered);
  PutAndMove(s, other);
  const LeaseId lease = LeaseOn(*s.store, std::span(&covered, 1));
  ExpectError(s.store->ExportGpu(0, other, lease), StatusCode::kInvalidArgument);
}

TEST(BlockStoreGpuExport, ACoveredGpuBlockReachesTheTierWhichMustBeAGpuTier) {
  ManualClock clock;
  GpuStore s = MakeStore(&clock);
  const BlockKey key = KeyOf(1);
  PutAndMove(s, key);
  const LeaseId lease = LeaseOn(*s.store, std::span(&key, 1));
  ExpectError(s.store->ExportGpu(0, key, lease), StatusCode::kUnsupported);
}

TEST(BlockStoreGpuExport, ALeasedGpuBlockStaysInTheGpuTierWhileItOverflows) {
  // What the exported description relies on: while the lease lives, the block keeps its place.
  ManualClock clock;
  GpuStore s = MakeStore(&clock, /*with_gpu=*/true, /*gpu_capacity=*/512 << 10);  // ~5 blocks
  const BlockKey leased = KeyOf(0);
  PutAndMove(s, leased);
  const LeaseId lease = LeaseOn(*s.store, std::span(&leased, 1));
  for (int i = 1; i < 20; ++i) PutAndMove(s, KeyOf(i));
  EXPECT_EQ(s.store->Lookup(0, std::span(&leased, 1), {.touch = false}).tiers[0], TierKind::kGpu);
  EXPECT_GT(testing::CounterOf(*s.store, "gpu.demotions_total"), 0) << "the tier did overflow";
  // Still exportable as far as the store is concerned (the fake then refuses).
  EXPECT_EQ(s.store->ExportGpu(0, leased, lease).status().code(), StatusCode::kUnsupported);
  ASSERT_TRUE(s.store->ReleaseLease(lease).ok());
  ExpectLeaseExpired(s.store->ExportGpu(0, leased, lease));
}

}  // namespace
}  // namespace kvault::storage
