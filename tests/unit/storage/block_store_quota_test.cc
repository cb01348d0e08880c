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
  EXPECT_NE(over.status().message().find("tenant quota"), std::string::npos);
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

}  // namespace
}  // namespace kvault::storage
