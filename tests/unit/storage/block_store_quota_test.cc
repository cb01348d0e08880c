// Per-tenant quotas of BlockStore (BlockStoreOptions::tenant_quota_bytes): the bytes a tenant
// holds, the refusal past its quota, room returning on delete, other tenants unaffected.

#include <gtest/gtest.h>

#include "kvault/storage/block_store.h"
#include "store_test_util.h"

namespace kvault::storage {
namespace {

using testing::KeyOf;
using testing::ObjectFor;

class BlockStoreQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    BlockStoreOptions options;
    object_ = ObjectFor(KeyOf(0)).size();
    options.tenant_quota_bytes[1] = 3 * object_;  // room for three objects
    HostTierOptions host;
    host.capacity_bytes = 64 << 20;
    host.huge_pages = false;
    StoreTiers tiers;
    tiers.host = std::move(*HostTier::Create(host));
    store_ = std::move(*BlockStore::Create(options, std::move(tiers)));
  }

  Result<bool> Put(TenantId tenant, uint64_t i) {
    return store_->Put(tenant, KeyOf(i), ObjectFor(KeyOf(i)));
  }

  uint64_t object_ = 0;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreQuotaTest, RefusesPastTheQuotaAndCountsHeldBytes) {
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(Put(1, i).ok());
  EXPECT_EQ(store_->TenantBytes(1), 3 * object_);
  const Result<bool> over = Put(1, 3);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(IsTenantQuotaRefusal(over.status())) << over.status().ToString();
  EXPECT_EQ(store_->Lookup(1, std::vector<BlockKey>{KeyOf(3)}).leading_hits, 0u);
  // A block already held is not a new byte: storing it again succeeds.
  EXPECT_TRUE(Put(1, 0).ok());
  // Another tenant (no quota) is unaffected, and its bytes are its own.
  for (uint64_t i = 0; i < 5; ++i) EXPECT_TRUE(Put(2, i).ok());
  EXPECT_EQ(store_->TenantBytes(2), 5 * object_);
  EXPECT_EQ(store_->TenantBytes(1), 3 * object_);
}

TEST_F(BlockStoreQuotaTest, DeleteAndAbortReturnRoom) {
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(Put(1, i).ok());
  ASSERT_TRUE(*store_->Delete(1, KeyOf(0)));
  EXPECT_EQ(store_->TenantBytes(1), 2 * object_);
  {
    auto reservation = store_->Reserve(1, KeyOf(7), static_cast<uint32_t>(object_));
    ASSERT_TRUE(reservation.ok() && reservation->has_value());
    EXPECT_EQ(store_->TenantBytes(1), 3 * object_);  // a reservation counts
    (*reservation)->Abort();
  }
  EXPECT_EQ(store_->TenantBytes(1), 2 * object_);
  EXPECT_TRUE(Put(1, 3).ok());
  EXPECT_FALSE(Put(1, 4).ok());
}

// The daemon retries a refusal for room after freeing what its request holds, never one for a
// quota: the two must stay apart, and a store with no room left is not over any quota.
TEST(BlockStoreQuotaRefusalTest, NoRoomIsNotAQuotaRefusal) {
  const std::vector<uint8_t> object = ObjectFor(KeyOf(0));
  BlockStoreOptions options;
  options.tenant_quota_bytes[1] = 100 * object.size();  // far from reached
  HostTierOptions host;
  host.capacity_bytes = 2 * object.size();
  host.huge_pages = false;
  StoreTiers tiers;
  tiers.host = std::move(*HostTier::Create(host));
  std::unique_ptr<BlockStore> store = std::move(*BlockStore::Create(options, std::move(tiers)));
  const auto bytes = static_cast<uint32_t>(object.size());
  std::vector<WriteReservation> held;
  Result<std::optional<WriteReservation>> next = store->Reserve(1, KeyOf(0), bytes);
  for (uint64_t i = 1; next.ok() && next->has_value() && i < 16; ++i) {
    held.push_back(std::move(**next));
    next = store->Reserve(1, KeyOf(i), bytes);
  }
  ASSERT_FALSE(held.empty());
  ASSERT_FALSE(next.ok()) << "the host tier should have run out of room";
  EXPECT_EQ(next.status().code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(IsTenantQuotaRefusal(next.status())) << next.status().ToString();
  // Positive control: OK and other codes are not quota refusals either, and the quota one is.
  EXPECT_FALSE(IsTenantQuotaRefusal(Status::Ok()));
  EXPECT_FALSE(IsTenantQuotaRefusal(Status::InvalidArgument("tenant quota")));
  options.tenant_quota_bytes[1] = 1;
  HostTierOptions roomy = host;
  roomy.capacity_bytes = 64 << 20;
  StoreTiers other;
  other.host = std::move(*HostTier::Create(roomy));
  std::unique_ptr<BlockStore> tight = std::move(*BlockStore::Create(options, std::move(other)));
  const Result<std::optional<WriteReservation>> over = tight->Reserve(1, KeyOf(0), bytes);
  ASSERT_FALSE(over.ok());
  EXPECT_TRUE(IsTenantQuotaRefusal(over.status())) << over.status().ToString();
}

}  // namespace
}  // namespace kvault::storage
