// The daemon's gpu tier read by a co-located client through CUDA IPC: a real kvaultd with a gpu
// tier where blocks land and export switched on, blocks stored through libkvault, leased, exported
// with Client::ExportGpuBlocks and copied out of the daemon's pool by this process (not the
// daemon, so CUDA lets it open the handle) with kernels::GpuIpcImporter. Every copy must equal the
// stored object byte for byte. Skips visibly without a CUDA device.

#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "binary_run.h"
#include "cuda_test_util.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/kernels/gpu_ipc.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kPayload = 256 << 10;
constexpr size_t kBlocks = 4;

std::vector<BlockKey> Keys(size_t n) {
  std::vector<uint32_t> tokens(16 * n);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 104729 % 32000);
  return *ChainBlockKeys(TestNamespaceDigest("gpu-export", 2, 1, 128, 16), tokens, 16);
}

class GpuExportTest : public BinaryTest {
 protected:
  GpuExportTest() : BinaryTest("kvaultd") {}
  void SetUp() override {
    SKIP_WITHOUT_CUDA();
    BinaryTest::SetUp();
    // No nvme tier: this test needs no RocksDB, and nothing is evicted from a 64 MiB pool.
    daemon_ = std::make_unique<DaemonProcess>(
        dir_, std::vector<std::string>{"--storage.gpu_capacity", "64MiB", "--storage.land_on_gpu",
                                       "true", "--storage.gpu_ipc_export", "true",
                                       "--storage.nvme_capacity", "0"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->Stderr();
    EXPECT_NE(daemon_->ready_line().find("tiers=gpu,host"), std::string::npos)
        << daemon_->ready_line();
    client_ = ConnectOrFail(daemon_->server());
    ASSERT_NE(client_, nullptr);
  }

  std::span<const uint8_t> StoredObject(size_t i) const {
    const uint64_t object = SyntheticObjectBytes(kPayload);
    return stored_.bytes().subspan(i * object, object);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
  MemoryRegion stored_;
};

TEST_F(GpuExportTest, ExportedBlocksCopiedThroughIpcEqualTheStoredObjects) {
  const std::vector<BlockKey> keys = Keys(kBlocks);
  StoreSyntheticObjects(*client_, keys, kPayload, stored_);
  ASSERT_TRUE(WaitUntilAllInTier(*client_, keys, Tier::kGpu))
      << "the blocks never reached the gpu tier";
  const LookupResult hits =
      client_->LookupPrefix(keys, {.want_lease = true, .deadline = std::nullopt});
  ASSERT_EQ(hits.leading_hits, keys.size());
  ASSERT_TRUE(hits.lease.valid());

  // One key more that was never stored: a miss beside the exports.
  std::vector<BlockKey> asked = keys;
  const BlockKey absent = Keys(kBlocks + 1).back();
  asked.push_back(absent);
  Result<std::vector<GpuBlockExport>> exported = client_->ExportGpuBlocks(hits.lease, asked);
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  ASSERT_EQ(exported->size(), asked.size());
  EXPECT_EQ(exported->back().status.code(), StatusCode::kNotFound);

  Result<std::unique_ptr<kernels::GpuIpcImporter>> importer = kernels::GpuIpcImporter::Create();
  ASSERT_TRUE(importer.ok()) << importer.status().ToString();
  std::set<uint64_t> offsets;
  for (size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(i);
    const GpuBlockExport& e = (*exported)[i];
    ASSERT_TRUE(e.status.ok()) << e.status.ToString();
    const std::span<const uint8_t> want = StoredObject(i);
    EXPECT_EQ(e.block.length, want.size());
    EXPECT_LE(e.block.offset + e.block.length, e.block.pool_bytes);
    EXPECT_EQ(e.block.pool_bytes, 64u << 20);
    EXPECT_TRUE(offsets.insert(e.block.offset).second) << "two blocks at one offset";
    EXPECT_EQ(e.block.pool_handle, (*exported)[0].block.pool_handle) << "one pool, one handle";
    std::vector<uint8_t> copy(e.block.length, 0xA5);
    const Status copied = (*importer)->CopyToHost(e.block, copy);
    ASSERT_TRUE(copied.ok()) << copied.ToString();
    EXPECT_TRUE(std::equal(copy.begin(), copy.end(), want.begin(), want.end()))
        << "the copy differs from the stored object";
    EXPECT_TRUE(IsSyntheticBlockFor(keys[i], copy));
  }
  EXPECT_EQ((*importer)->open_pools(), 1u);

  // Once the lease is released the daemon no longer vouches for the range.
  ASSERT_TRUE(client_->ReleaseLease(hits.lease).ok());
  Result<std::vector<GpuBlockExport>> after = client_->ExportGpuBlocks(hits.lease, keys);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  for (const GpuBlockExport& e : *after) {
    EXPECT_NE(e.status.message().find("lease_expired"), std::string::npos) << e.status.ToString();
  }
}

}  // namespace
}  // namespace kvault::testing
