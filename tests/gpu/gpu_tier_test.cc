// GpuTier against a real device: round trips, the byte cap, space reuse, key and size checks,
// concurrent self-checking traffic, counters, and CUDA IPC with a second process
// (gpu_ipc_reader, exec'd beside this binary). Without a CUDA device every device test skips
// visibly; option validation and the no-device path run everywhere.

#include "kvault/storage/gpu_tier.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpu_tier_test_util.h"
#include "kvault/kernels/gpu_ipc.h"

namespace kvault::storage {
namespace {

using gpu_test::FillPayload;
using gpu_test::FirstMismatch;
using gpu_test::HasCudaDevice;
using kernels::GpuIpcExport;
using kernels::GpuIpcImporter;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

ScopedKey MakeKey(uint64_t i, TenantId tenant = 0) {
  ScopedKey k;
  k.tenant = tenant;
  uint64_t state = i * 0x51ED27ull + 11;
  for (size_t off = 0; off < k.key.size(); off += 8) {
    uint64_t word = gpu_test::SplitMix64(state);
    for (size_t b = 0; b < 8; ++b, word >>= 8) k.key[off + b] = static_cast<uint8_t>(word);
  }
  return k;
}

std::vector<uint8_t> Payload(uint64_t seed, size_t bytes) {
  std::vector<uint8_t> v(bytes);
  FillPayload(seed, v);
  return v;
}

// Counters and gauges by name, all from the "gpu" tier.
class MapVisitor : public CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    EXPECT_EQ(tier, "gpu");
    values[std::string(name)] = static_cast<double>(value);
  }
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    EXPECT_EQ(tier, "gpu");
    values[std::string(name)] = value;
  }
  std::map<std::string, double> values;
};

std::map<std::string, double> Counters(const GpuTier& tier) {
  MapVisitor v;
  tier.VisitCounters(v);
  return v.values;
}

// ---- runs everywhere -------------------------------------------------------------------------

TEST(GpuTierOptionsTest, RejectsBadOptionsBeforeTouchingTheDevice) {
  auto expect_invalid = [](GpuTierOptions o, const char* what) {
    Result<std::unique_ptr<GpuTier>> t = GpuTier::Create(o);
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument)
        << what << ": " << t.status().ToString();
  };
  GpuTierOptions o;
  o.device = -1;
  expect_invalid(o, "negative device");
  for (uint64_t a :
       {uint64_t{0}, uint64_t{3}, uint64_t{128}, uint64_t{4096 + 256}, uint64_t{2} << 30}) {
    o = {};
    o.alignment_bytes = a;
    expect_invalid(o, "alignment");
  }
  o = {};
  o.capacity_bytes = o.alignment_bytes - 1;
  expect_invalid(o, "capacity below alignment");
  o = {};
  o.copy_streams = 0;
  expect_invalid(o, "no streams");
  o.copy_streams = 65;
  expect_invalid(o, "too many streams");
}

TEST(GpuTierNoDeviceTest, CreateIsUnavailableWithoutADevice) {
  if (HasCudaDevice()) GTEST_SKIP() << "a CUDA device is present; this test checks its absence";
  GpuTierOptions o;
  o.capacity_bytes = kMiB;
  EXPECT_EQ(GpuTier::Create(o).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(GpuIpcImporter::Create().status().code(), StatusCode::kUnavailable);
}

// ---- device tests ----------------------------------------------------------------------------

class GpuTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  }

  static std::unique_ptr<GpuTier> Make(uint64_t capacity, uint64_t alignment = 4 * kKiB) {
    GpuTierOptions o;
    o.capacity_bytes = capacity;
    o.alignment_bytes = alignment;
    Result<std::unique_ptr<GpuTier>> t = GpuTier::Create(o);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? std::move(t).value() : nullptr;
  }

  // Puts the payload of `seed`; returns the slot.
  static TierSlot PutOk(GpuTier& tier, const ScopedKey& key, uint64_t seed, size_t bytes) {
    const std::vector<uint8_t> data = Payload(seed, bytes);
    Result<TierSlot> slot = tier.Put(key, data);
    EXPECT_TRUE(slot.ok()) << bytes << " bytes: " << slot.status().ToString();
    return slot.ok() ? *slot : ~TierSlot{0};
  }

  // Reads the block back and compares it with the payload of `seed`.
  static void ExpectBlock(GpuTier& tier, const ScopedKey& key, TierSlot slot, uint64_t seed,
                          size_t bytes) {
    std::vector<uint8_t> out(bytes, 0xEE);
    const Status st = tier.Read(key, slot, static_cast<uint32_t>(bytes), out);
    ASSERT_TRUE(st.ok()) << st.ToString();
    const std::optional<size_t> at = FirstMismatch(seed, out);
    EXPECT_FALSE(at.has_value()) << "block of " << bytes << " bytes differs at byte " << *at;
  }
};

TEST_F(GpuTierTest, RoundTripsSeveralSizes) {
  std::unique_ptr<GpuTier> tier = Make(8 * kMiB);
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->kind(), TierKind::kGpu);
  EXPECT_EQ(tier->capacity_bytes(), 8 * kMiB);
  const std::vector<size_t> sizes = {1, 255, 256, 4095, 4096, 4097, 64 * kKiB, kMiB + 3};
  std::vector<TierSlot> slots;
  uint64_t used = 0, reserved = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    slots.push_back(PutOk(*tier, MakeKey(i), 100 + i, sizes[i]));
    EXPECT_EQ(slots.back() % (4 * kKiB), 0u) << "slots are aligned to the granularity";
    used += sizes[i];
    reserved += (sizes[i] + 4 * kKiB - 1) / (4 * kKiB) * (4 * kKiB);
  }
  for (size_t i = 0; i < sizes.size(); ++i)
    ExpectBlock(*tier, MakeKey(i), slots[i], 100 + i, sizes[i]);
  const TierUsage u = tier->Usage();
  EXPECT_EQ(u.capacity_bytes, 8 * kMiB);
  EXPECT_EQ(u.used_bytes, used);
  EXPECT_EQ(u.reserved_bytes, reserved);
  EXPECT_EQ(u.blocks, sizes.size());
  EXPECT_EQ(tier->Put(MakeKey(99), {}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(GpuTierTest, PutsFromAndReadsIntoDeviceMemory) {
  std::unique_ptr<GpuTier> tier = Make(kMiB);
  ASSERT_NE(tier, nullptr);
  constexpr size_t kBytes = 70000;
  const std::vector<uint8_t> data = Payload(31, kBytes);
  void* src = nullptr;
  void* dst = nullptr;
  ASSERT_EQ(cudaMalloc(&src, kBytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dst, kBytes), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(src, data.data(), kBytes, cudaMemcpyHostToDevice), cudaSuccess);
  Result<TierSlot> slot = tier->Put(MakeKey(31), {static_cast<const uint8_t*>(src), kBytes});
  ASSERT_TRUE(slot.ok()) << slot.status().ToString();
  ExpectBlock(*tier, MakeKey(31), *slot, 31, kBytes);
  const Status read = tier->Read(MakeKey(31), *slot, kBytes, {static_cast<uint8_t*>(dst), kBytes});
  ASSERT_TRUE(read.ok()) << read.ToString();
  std::vector<uint8_t> back(kBytes);
  ASSERT_EQ(cudaMemcpy(back.data(), dst, kBytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, data);
  cudaFree(src);
  cudaFree(dst);
}

TEST_F(GpuTierTest, FullPoolRejectsWithResourceExhaustedAndStoresNothing) {
  std::unique_ptr<GpuTier> tier = Make(64 * kKiB + 100);  // rounded down to 64 KiB
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->capacity_bytes(), 64 * kKiB);

  const std::vector<uint8_t> too_big = Payload(1, 64 * kKiB + 1);
  EXPECT_EQ(tier->Put(MakeKey(1000), too_big).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(tier->Usage().blocks, 0u);
  EXPECT_EQ(tier->Usage().reserved_bytes, 0u);

  std::vector<TierSlot> slots;
  for (uint64_t i = 0; i < 16; ++i) slots.push_back(PutOk(*tier, MakeKey(i), i, 4000));
  const TierUsage full = tier->Usage();
  EXPECT_EQ(full.reserved_bytes, 64 * kKiB);

  const std::vector<uint8_t> one_more = Payload(77, 1);
  Result<TierSlot> rejected = tier->Put(MakeKey(16), one_more);
  EXPECT_EQ(rejected.status().code(), StatusCode::kResourceExhausted)
      << rejected.status().ToString();
  const TierUsage after = tier->Usage();
  EXPECT_EQ(after.blocks, full.blocks);
  EXPECT_EQ(after.used_bytes, full.used_bytes);
  EXPECT_EQ(after.reserved_bytes, full.reserved_bytes);
  std::vector<uint8_t> out(1);
  for (TierSlot s : slots) EXPECT_FALSE(tier->Read(MakeKey(16), s, 1, out).ok());
  for (uint64_t i = 0; i < 16; ++i) ExpectBlock(*tier, MakeKey(i), slots[i], i, 4000);
  EXPECT_EQ(Counters(*tier)["allocation_failures_total"], 2);
}

TEST_F(GpuTierTest, EraseFreesSpaceAndFreeNeighboursCoalesce) {
  std::unique_ptr<GpuTier> tier = Make(64 * kKiB);
  ASSERT_NE(tier, nullptr);
  std::vector<TierSlot> slots(16);
  for (uint64_t i = 0; i < 16; ++i) slots[i] = PutOk(*tier, MakeKey(i), i, 4 * kKiB);
  for (uint64_t i = 0; i < 16; ++i) tier->Erase(MakeKey(i), slots[i], 4 * kKiB);
  EXPECT_EQ(tier->Usage().reserved_bytes, 0u);
  EXPECT_EQ(Counters(*tier)["fragmentation_ratio"], 0.0) << "all free space is one range again";

  // Refill with other content; every block reads back as the new content.
  for (uint64_t i = 0; i < 16; ++i) slots[i] = PutOk(*tier, MakeKey(i + 100), i + 100, 4 * kKiB);
  for (uint64_t i = 0; i < 16; ++i)
    ExpectBlock(*tier, MakeKey(i + 100), slots[i], i + 100, 4 * kKiB);

  // Punch eight separate 4 KiB holes: 32 KiB free, but no 8 KiB range.
  std::map<TierSlot, uint64_t> by_offset;  // slot -> i, in pool order
  for (uint64_t i = 0; i < 16; ++i) by_offset[slots[i]] = i;
  std::vector<uint64_t> order;
  for (const auto& [slot, i] : by_offset) order.push_back(i);
  for (size_t pos = 0; pos < 16; pos += 2) {
    tier->Erase(MakeKey(order[pos] + 100), slots[order[pos]], 4 * kKiB);
  }
  std::map<std::string, double> c = Counters(*tier);
  EXPECT_EQ(c["free_ranges"], 8);
  EXPECT_DOUBLE_EQ(c["fragmentation_ratio"], 1.0 - 4.0 / 32.0);
  const std::vector<uint8_t> eight = Payload(555, 8 * kKiB);
  EXPECT_EQ(tier->Put(MakeKey(555), eight).status().code(), StatusCode::kResourceExhausted);

  // Erasing the block between two holes merges three ranges into 12 KiB.
  tier->Erase(MakeKey(order[1] + 100), slots[order[1]], 4 * kKiB);
  const TierSlot merged = PutOk(*tier, MakeKey(555), 555, 8 * kKiB);
  EXPECT_EQ(merged, by_offset.begin()->first) << "best fit lands in the merged range";
  ExpectBlock(*tier, MakeKey(555), merged, 555, 8 * kKiB);
  for (size_t pos = 3; pos < 16; pos += 2) {
    ExpectBlock(*tier, MakeKey(order[pos] + 100), slots[order[pos]], order[pos] + 100, 4 * kKiB);
  }
}

TEST_F(GpuTierTest, ReadAndEraseCheckKeyTenantAndSize) {
  std::unique_ptr<GpuTier> tier = Make(kMiB);
  ASSERT_NE(tier, nullptr);
  const ScopedKey key = MakeKey(7, /*tenant=*/1);
  const TierSlot slot = PutOk(*tier, key, 7, 5000);
  std::vector<uint8_t> out(5000);

  ScopedKey other_tenant = key;
  other_tenant.tenant = 2;
  EXPECT_EQ(tier->Read(other_tenant, slot, 5000, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->Read(MakeKey(8, 1), slot, 5000, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->Read(key, slot + 4096, 5000, out).code(), StatusCode::kNotFound);
  std::vector<uint8_t> short_out(4999);
  EXPECT_EQ(tier->Read(key, slot, 4999, short_out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tier->Read(key, slot, 5000, short_out).code(), StatusCode::kInvalidArgument);

  tier->Erase(other_tenant, slot, 5000);  // not that tenant's block: nothing happens
  ExpectBlock(*tier, key, slot, 7, 5000);
  tier->Erase(key, slot, 5000);
  tier->Erase(key, slot, 5000);  // erasing what is gone is not an error
  EXPECT_EQ(tier->Read(key, slot, 5000, out).code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->Usage().blocks, 0u);
  EXPECT_EQ(Counters(*tier)["erases_total"], 1);
}

TEST_F(GpuTierTest, ConcurrentTrafficWithSelfCheckingPayloads) {
  std::unique_ptr<GpuTier> tier = Make(32 * kMiB);
  ASSERT_NE(tier, nullptr);
  constexpr int kThreads = 4;
  constexpr int kOps = 400;
  struct Live {
    ScopedKey key;
    TierSlot slot;
    uint64_t seed;
    uint32_t bytes;
  };
  std::vector<std::vector<Live>> live(kThreads);
  std::vector<uint64_t> mismatches(kThreads, 0), errors(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<Live>& mine = live[t];
      for (int op = 0; op < kOps; ++op) {
        const uint64_t choice = rng() % 10;
        if (choice < 5 || mine.empty()) {
          const uint64_t id = uint64_t(t) << 32 | op;
          const auto bytes = static_cast<uint32_t>(1 + rng() % (512 * kKiB));
          const std::vector<uint8_t> data = Payload(id ^ 0xABCD, bytes);
          Result<TierSlot> slot = tier->Put(MakeKey(id), data);
          if (slot.ok()) {
            mine.push_back({MakeKey(id), *slot, id ^ 0xABCD, bytes});
          } else if (slot.status().code() == StatusCode::kResourceExhausted) {
            if (mine.empty()) continue;      // the other threads hold the space
            const Live& old = mine.front();  // make room the way an evictor would
            tier->Erase(old.key, old.slot, old.bytes);
            mine.erase(mine.begin());
          } else {
            ++errors[t];
          }
        } else if (choice < 8) {
          const Live& b = mine[rng() % mine.size()];
          std::vector<uint8_t> out(b.bytes);
          if (!tier->Read(b.key, b.slot, b.bytes, out).ok()) {
            ++errors[t];
          } else if (FirstMismatch(b.seed, out).has_value()) {
            ++mismatches[t];
          }
        } else {
          const size_t at = rng() % mine.size();
          tier->Erase(mine[at].key, mine[at].slot, mine[at].bytes);
          mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(at));
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  uint64_t blocks = 0, used = 0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(mismatches[t], 0u) << "thread " << t;
    EXPECT_EQ(errors[t], 0u) << "thread " << t;
    for (const Live& b : live[t]) {
      ExpectBlock(*tier, b.key, b.slot, b.seed, b.bytes);
      ++blocks;
      used += b.bytes;
    }
  }
  const TierUsage u = tier->Usage();
  EXPECT_EQ(u.blocks, blocks);
  EXPECT_EQ(u.used_bytes, used);
  EXPECT_LE(u.reserved_bytes, u.capacity_bytes);
}

TEST_F(GpuTierTest, CountersTrackUsageAndCopies) {
  std::unique_ptr<GpuTier> tier = Make(kMiB);
  ASSERT_NE(tier, nullptr);
  const TierSlot a = PutOk(*tier, MakeKey(1), 1, 10000);
  const TierSlot b = PutOk(*tier, MakeKey(2), 2, 3000);
  ExpectBlock(*tier, MakeKey(1), a, 1, 10000);
  ExpectBlock(*tier, MakeKey(1), a, 1, 10000);
  tier->Erase(MakeKey(2), b, 3000);
  std::map<std::string, double> c = Counters(*tier);
  EXPECT_EQ(c["capacity_bytes"], double(kMiB));
  EXPECT_EQ(c["used_bytes"], 10000);
  EXPECT_EQ(c["reserved_bytes"], 12 * kKiB);
  EXPECT_EQ(c["blocks"], 1);
  EXPECT_EQ(c["puts_total"], 2);
  EXPECT_EQ(c["reads_total"], 2);
  EXPECT_EQ(c["erases_total"], 1);
  EXPECT_EQ(c["copied_in_bytes_total"], 13000);
  EXPECT_EQ(c["copied_out_bytes_total"], 20000);
  EXPECT_EQ(c["allocation_failures_total"], 0);
  EXPECT_EQ(c["ipc_exports_total"], 0);
  EXPECT_EQ(c["largest_free_bytes"], double(kMiB - 12 * kKiB));
  EXPECT_GE(c["fragmentation_ratio"], 0.0);
  EXPECT_LT(c["fragmentation_ratio"], 0.01);
  EXPECT_EQ(c.count("free_ranges"), 1u);
}

// ---- CUDA IPC with a second process ----------------------------------------------------------

// Runs gpu_ipc_reader (beside this test binary) for `blocks` of `pool` and returns its exit code;
// -1 when it could not run or was killed. Gives it 60 seconds.
struct ReaderBlock {
  uint64_t offset;
  uint64_t length;
  uint64_t seed;
};
int RunReader(const GpuIpcExport& pool, const std::vector<ReaderBlock>& blocks) {
  const std::filesystem::path reader =
      std::filesystem::read_symlink("/proc/self/exe").parent_path() / "gpu_ipc_reader";
  if (!std::filesystem::exists(reader)) {
    ADD_FAILURE() << reader << " is missing (build the gpu_ipc_reader target)";
    return -1;
  }
  std::vector<std::string> args = {reader.string(), gpu_test::ToHex(pool.pool_handle),
                                   gpu_test::ToHex(pool.device_uuid),
                                   std::to_string(pool.pool_bytes)};
  for (const ReaderBlock& b : blocks) {
    args.push_back(std::to_string(b.offset));
    args.push_back(std::to_string(b.length));
    args.push_back(std::to_string(b.seed));
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork failed";
    return -1;
  }
  if (pid == 0) {  // only async-signal-safe calls until exec
    execv(argv[0], argv.data());
    _exit(127);
  }
  int wstatus = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (waitpid(pid, &wstatus, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      ADD_FAILURE() << "gpu_ipc_reader timed out";
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

TEST_F(GpuTierTest, AnotherProcessReadsExportedBlocksThroughIpc) {
  std::unique_ptr<GpuTier> tier = Make(16 * kMiB);
  ASSERT_NE(tier, nullptr);
  const std::vector<uint32_t> sizes = {5000, 3 * static_cast<uint32_t>(kMiB) + 17, 64};
  std::vector<TierSlot> slots;
  std::vector<GpuIpcExport> exports;
  for (uint32_t i = 0; i < sizes.size(); ++i) {
    slots.push_back(PutOk(*tier, MakeKey(i), 1000 + i, sizes[i]));
    Result<GpuIpcExport> e = tier->ExportIpc(MakeKey(i), slots[i], sizes[i]);
    if (e.status().code() == StatusCode::kUnsupported) {
      GTEST_SKIP() << "CUDA IPC is not available here: " << e.status().ToString();
    }
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->offset, slots[i]);
    EXPECT_EQ(e->length, sizes[i]);
    EXPECT_EQ(e->pool_bytes, 16 * kMiB);
    if (i > 0) {
      EXPECT_EQ(e->pool_handle, exports[0].pool_handle) << "one handle per pool";
    }
    exports.push_back(*e);
  }
  EXPECT_EQ(Counters(*tier)["ipc_exports_total"], 3);

  // Positive control: every block, read through one opened pool, equals its payload.
  std::vector<ReaderBlock> all;
  for (uint32_t i = 0; i < sizes.size(); ++i) {
    all.push_back({exports[i].offset, exports[i].length, 1000 + i});
  }
  EXPECT_EQ(RunReader(exports[0], all), gpu_test::kReaderMatch);

  // Negative controls: block 0's bytes are not block 1's payload, and a range past the end of
  // the pool is refused before any copy.
  EXPECT_EQ(RunReader(exports[0], {{exports[0].offset, exports[0].length, 1001}}),
            gpu_test::kReaderMismatch);
  EXPECT_EQ(RunReader(exports[0], {{16 * kMiB - 100, 4096, 1000}}), gpu_test::kReaderRejected);

  // An erased block cannot be exported; neither can a wrong key or size.
  EXPECT_EQ(tier->ExportIpc(MakeKey(9), slots[0], sizes[0]).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(tier->ExportIpc(MakeKey(0), slots[0], sizes[0] + 1).status().code(),
            StatusCode::kInvalidArgument);
  tier->Erase(MakeKey(2), slots[2], sizes[2]);
  EXPECT_EQ(tier->ExportIpc(MakeKey(2), slots[2], sizes[2]).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvault::storage
