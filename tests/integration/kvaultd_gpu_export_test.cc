// Client::ExportGpuBlocks against a real kvaultd without a GPU: what a co-located client is told
// when the daemon does not export its gpu tier (the default), that kvaultd refuses to start with
// storage.gpu_ipc_export but no gpu tier, that only a live lease of the asking session counts,
// and, as a positive control, that the same lease loads the blocks. The export itself, imported
// through CUDA IPC and compared byte for byte, is tests/gpu/gpu_export_test.cc.

#include <signal.h>

#include <span>
#include <string>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kv_test_util.h"
#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kPayload = 64 << 10;

std::unique_ptr<Client> Connect(const DaemonProcess& d) { return ConnectOrFail(d.server()); }

std::vector<BlockKey> Keys(size_t n) {
  std::vector<uint32_t> tokens(16 * n);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 7919 % 32000);
  return *ChainBlockKeys(TestNamespaceDigest("gpu-export-test", 1, 1, 128, 16), tokens, 16);
}

class KvaultdGpuExportTest : public BinaryTest {
 protected:
  KvaultdGpuExportTest() : BinaryTest("kvaultd") {}
};

TEST_F(KvaultdGpuExportTest, DefaultDaemonAnswersUnsupportedAndTheLeaseStillLoads) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto c = Connect(d);
  ASSERT_NE(c, nullptr);
  const std::vector<BlockKey> keys = Keys(3);
  MemoryRegion stored;
  StoreSyntheticObjects(*c, keys, kPayload, stored);
  const LookupResult hits = c->LookupPrefix(keys, {.want_lease = true, .deadline = std::nullopt});
  ASSERT_TRUE(hits.status.ok()) << hits.status.ToString();
  ASSERT_EQ(hits.leading_hits, keys.size());
  ASSERT_TRUE(hits.lease.valid());

  Result<std::vector<GpuBlockExport>> exported = c->ExportGpuBlocks(hits.lease, keys);
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  ASSERT_EQ(exported->size(), keys.size());
  for (const GpuBlockExport& e : *exported) {
    EXPECT_EQ(e.status.code(), StatusCode::kUnsupported) << e.status.ToString();
    EXPECT_NE(e.status.message().find("storage.gpu_ipc_export"), std::string::npos)
        << e.status.ToString();
    EXPECT_EQ(e.block, kernels::GpuIpcExport{});
  }
  // An empty batch is answered too.
  Result<std::vector<GpuBlockExport>> none = c->ExportGpuBlocks(hits.lease, {});
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());

  // Positive control: the same lease loads every block, byte for byte.
  const uint64_t object = SyntheticObjectBytes(kPayload);
  Result<MemoryRegion> dst = c->AllocateMemory(object * keys.size());
  ASSERT_TRUE(dst.ok()) << dst.status().ToString();
  std::vector<LoadDestination> destinations;
  for (size_t i = 0; i < keys.size(); ++i) {
    destinations.push_back({dst->bytes().subspan(i * object, object)});
  }
  LoadHandle load = c->Load(hits.lease, keys, destinations);
  ASSERT_TRUE(load.Wait(Clock::now() + 30s).ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(load.key_status(i).ok()) << load.key_status(i).ToString();
    EXPECT_TRUE(IsSyntheticBlockFor(keys[i], destinations[i].buffer));
  }
  EXPECT_TRUE(c->ReleaseLease(hits.lease).ok());
  // Released: the lease no longer counts, before the export switch is even looked at.
  Result<std::vector<GpuBlockExport>> after = c->ExportGpuBlocks(hits.lease, keys);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_NE((*after)[0].status.message().find("lease_expired"), std::string::npos)
      << (*after)[0].status.ToString();
}

TEST_F(KvaultdGpuExportTest, ExportWithoutAGpuTierRefusesToStart) {
  DaemonProcess d(dir_, {"--storage.gpu_ipc_export", "true"});
  EXPECT_FALSE(d.ok()) << d.ready_line();
  const int code = d.Terminate(10s);  // already exited: reaps it and reports its exit code
  EXPECT_NE(code, 0);
  EXPECT_NE(code, 128 + SIGTERM) << "kvaultd should have exited on its own";
  const std::string err = d.Stderr();
  EXPECT_NE(err.find("storage.gpu_ipc_export"), std::string::npos) << err;
  EXPECT_NE(err.find("storage.gpu_capacity"), std::string::npos) << err;
}

TEST_F(KvaultdGpuExportTest, OnlyALiveLeaseOfTheAskingSessionCounts) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto a = Connect(d);
  auto b = Connect(d);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::vector<BlockKey> keys = Keys(2);
  MemoryRegion stored;
  StoreSyntheticObjects(*a, keys, kPayload, stored);
  const LookupResult hits = a->LookupPrefix(keys, {.want_lease = true, .deadline = std::nullopt});
  ASSERT_TRUE(hits.lease.valid());

  // No lease: refused before anything is sent.
  Result<std::vector<GpuBlockExport>> no_lease = b->ExportGpuBlocks(Lease{}, keys);
  ASSERT_FALSE(no_lease.ok());
  EXPECT_EQ(no_lease.status().code(), StatusCode::kInvalidArgument);

  // A's lease on B's connection: the client knows it is another session's.
  Result<std::vector<GpuBlockExport>> foreign = b->ExportGpuBlocks(hits.lease, keys);
  ASSERT_TRUE(foreign.ok()) << foreign.status().ToString();
  for (const GpuBlockExport& e : *foreign) {
    EXPECT_EQ(e.status.code(), StatusCode::kNotFound) << e.status.ToString();
    EXPECT_NE(e.status.message().find("lease_expired"), std::string::npos) << e.status.ToString();
  }
  // The same lease id presented as B's own: the daemon finds no such lease in B's session.
  Lease forged = hits.lease;
  forged.session = b->session_id();
  Result<std::vector<GpuBlockExport>> daemon_says = b->ExportGpuBlocks(forged, keys);
  ASSERT_TRUE(daemon_says.ok()) << daemon_says.status().ToString();
  for (const GpuBlockExport& e : *daemon_says) {
    EXPECT_EQ(e.status.code(), StatusCode::kNotFound) << e.status.ToString();
    EXPECT_NE(e.status.message().find("lease_expired"), std::string::npos) << e.status.ToString();
    EXPECT_NE(e.status.message().find("this session"), std::string::npos) << e.status.ToString();
  }
  // Positive control: A's own lease gets past the lease check (to the export switch).
  Result<std::vector<GpuBlockExport>> own = a->ExportGpuBlocks(hits.lease, keys);
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ((*own)[0].status.code(), StatusCode::kUnsupported) << (*own)[0].status.ToString();

  // More keys than one request carries.
  const std::vector<BlockKey> many(4097, keys[0]);
  Result<std::vector<GpuBlockExport>> too_many = a->ExportGpuBlocks(hits.lease, many);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), StatusCode::kInvalidArgument) << too_many.status().ToString();

  // A dead daemon is Unavailable, not a hang.
  d.Kill();
  Result<std::vector<GpuBlockExport>> dead =
      a->ExportGpuBlocks(hits.lease, keys, Clock::now() + 5s);
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.status().code(), StatusCode::kUnavailable) << dead.status().ToString();
}

}  // namespace
}  // namespace kvault::testing
