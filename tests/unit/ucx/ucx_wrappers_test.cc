// The RAII wrappers on their own: context, worker, endpoint, memory, remote key. One thread,
// workers progressed by hand.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "kvault/common/checksum.h"
#include "kvault/common/little_endian.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/ucx_endpoint.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "kvault/transport/ucx/ucx_remote_key.h"
#include "kvault/transport/ucx/ucx_worker.h"
#include "ucx/envelope.h"
#include "ucx/memory_headroom.h"
#include "ucx_test_util.h"

namespace kvault::transport {
namespace {

using testing::AlignedBuffer;

UcxContextOptions Options(const std::string& transports) {
  UcxContextOptions o;
  o.transports = transports;
  return o;
}

std::string ParamName(const ::testing::TestParamInfo<const char*>& info) {
  return std::string(info.param) == "tcp" ? "Tcp" : "PosixCma";
}

// Single-context tests, once per transport list.
class UcxWrappersTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    Result<UcxContext> context = UcxContext::Create(Options(GetParam()));
    if (!context.ok() && context.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << "transports \"" << GetParam()
                   << "\" unavailable: " << context.status().ToString();
    }
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    context_.emplace(std::move(context).value());
  }

  std::optional<UcxContext> context_;
};

// Re-seals `payload` as a remote key: what a buggy or hostile client could send.
std::vector<uint8_t> ForgeRemoteKey(const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out(20 + payload.size());
  StoreLe32(out.data(), 0x4b52564b);
  StoreLe16(out.data() + 4, 1);
  StoreLe16(out.data() + 6, 0);
  StoreLe32(out.data() + 8, static_cast<uint32_t>(payload.size()));
  StoreLe64(out.data() + 12, Checksum64(payload));
  std::memcpy(out.data() + 20, payload.data(), payload.size());
  return out;
}

TEST_P(UcxWrappersTest, MisspelledTransportsAreAnError) {
  // Every transport of the list with a typo: nothing usable is left.
  std::string misspelled = std::string("x") + GetParam();
  for (size_t i = 0; (i = misspelled.find(',', i)) != std::string::npos; i += 2) {
    misspelled.insert(i + 1, "x");
  }
  Result<UcxContext> context = UcxContext::Create(Options(misspelled));
  ASSERT_FALSE(context.ok());
  EXPECT_NE(context.status().message().find(misspelled), std::string::npos)
      << context.status().ToString();
}

TEST_P(UcxWrappersTest, MoveLeavesSourceEmpty) {
  UcxContext b = std::move(*context_);
  EXPECT_EQ(context_->get(), nullptr);  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_NE(b.get(), nullptr);
  EXPECT_EQ(b.transports(), GetParam());
}

TEST_P(UcxWrappersTest, WorkerAddressIsSealedAndArmWorks) {
  UcxContext& context = *context_;
  Result<UcxWorker> worker = UcxWorker::Create(context);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  const std::vector<uint8_t>& address = worker->address();
  ASSERT_GT(address.size(), 20u);
  EXPECT_EQ(LoadLe32(address.data()), 0x4157564bu);  // "KVWA"
  EXPECT_GE(worker->event_fd(), 0);
  while (worker->Progress() != 0) {
  }
  Result<bool> armed = worker->Arm();
  ASSERT_TRUE(armed.ok()) << armed.status().ToString();
  EXPECT_TRUE(worker->Signal().ok());
}

TEST_P(UcxWrappersTest, MemoryMapsSubRangeOfLargerBuffer) {
  UcxContext& context = *context_;
  AlignedBuffer buffer(1 << 20);
  uint8_t* sub = buffer.data + 64 * 1024;
  Result<UcxMemory> memory = UcxMemory::Map(context, sub, 256 * 1024);
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  EXPECT_EQ(memory->address(), sub);
  EXPECT_TRUE(memory->Contains(sub, 256 * 1024));
  EXPECT_TRUE(memory->Contains(sub + 1000, 4096));
  EXPECT_FALSE(memory->Contains(sub - 1, 2));
  EXPECT_FALSE(memory->Contains(sub + 256 * 1024 - 1, 2));
  Result<std::vector<uint8_t>> key = memory->PackRemoteKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(LoadLe32(key->data()), 0x4b52564bu);  // "KVRK"
}

TEST_P(UcxWrappersTest, MemoryRejectsEmptyRangesAndAllocates) {
  UcxContext& context = *context_;
  EXPECT_EQ(UcxMemory::Map(context, nullptr, 4096).status().code(), StatusCode::kInvalidArgument);
  uint8_t byte = 0;
  EXPECT_EQ(UcxMemory::Map(context, &byte, 0).status().code(), StatusCode::kInvalidArgument);
  Result<UcxMemory> allocated = UcxMemory::Allocate(context, 1 << 20);
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  std::memset(allocated->address(), 0x5a, 1 << 20);  // writable
  EXPECT_TRUE(allocated->PackRemoteKey().ok());
}

// UCX fills a shared segment as it allocates it, so a length beyond what this process may still
// take ended with the OOM killer (and a segment file left in /dev/shm): refused at once instead,
// without /dev/shm growing. Positive control: 1 MiB allocates.
TEST_P(UcxWrappersTest, AnAllocationLargerThanTheMemoryLeftIsRefusedAtOnce) {
  UcxContext& context = *context_;
  const std::optional<uint64_t> headroom = MemoryHeadroomBytes();
  ASSERT_TRUE(headroom.has_value()) << "neither /proc/meminfo nor a cgroup limit could be read";
  struct statvfs before {};
  ASSERT_EQ(statvfs("/dev/shm", &before), 0);
  const auto start = std::chrono::steady_clock::now();
  for (const size_t length :
       {SIZE_MAX, size_t{1} << 45, static_cast<size_t>(*headroom) + (1 << 30)}) {
    Result<UcxMemory> refused = UcxMemory::Allocate(context, length);
    ASSERT_FALSE(refused.ok()) << length;
    EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted)
        << refused.status().ToString();
    EXPECT_NE(refused.status().message().find("bytes of memory are available to this process"),
              std::string::npos)
        << refused.status().ToString();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  struct statvfs after {};
  ASSERT_EQ(statvfs("/dev/shm", &after), 0);
  EXPECT_LT((before.f_bfree - std::min(before.f_bfree, after.f_bfree)) * before.f_frsize,
            uint64_t{64} << 20)
      << "/dev/shm filled up";
  EXPECT_TRUE(UcxMemory::Allocate(context, 1 << 20).ok());
}

TEST(MemoryHeadroomTest, ReadsMemAvailableAndCgroupLimits) {
  EXPECT_EQ(MemAvailableBytes("MemTotal:       24000000 kB\nMemAvailable:   18561504 kB\n"),
            uint64_t{18561504} * 1024);
  EXPECT_EQ(MemAvailableBytes("MemTotal:       24000000 kB\n"), std::nullopt);
  EXPECT_EQ(CgroupHeadroomBytes("4294967296\n", "1073741824\n"), uint64_t{3} << 30);
  EXPECT_EQ(CgroupHeadroomBytes("1073741824\n", "2147483648\n"), 0u);     // over the limit
  EXPECT_EQ(CgroupHeadroomBytes("max\n", "1073741824\n"), std::nullopt);  // v2: no limit
  EXPECT_EQ(CgroupHeadroomBytes("", "1\n"), std::nullopt);
  const std::optional<uint64_t> here = MemoryHeadroomBytes();
  ASSERT_TRUE(here.has_value());
  EXPECT_GT(*here, 0u);
}

INSTANTIATE_TEST_SUITE_P(ucx, UcxWrappersTest, ::testing::Values("tcp", "posix,cma"), ParamName);

// Two workers of one process, an endpoint between them, keys unpacked on it.
class UcxPairTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    Result<UcxContext> context = UcxContext::Create(Options(GetParam()));
    if (!context.ok() && context.status().code() == StatusCode::kUnavailable) {
      GTEST_SKIP() << "transports \"" << GetParam()
                   << "\" unavailable: " << context.status().ToString();
    }
    ASSERT_TRUE(context.ok()) << context.status().ToString();
    context_.emplace(std::move(context).value());
    Result<UcxWorker> a = UcxWorker::Create(*context_);
    Result<UcxWorker> b = UcxWorker::Create(*context_);
    ASSERT_TRUE(a.ok() && b.ok());
    a_.emplace(std::move(a).value());
    b_.emplace(std::move(b).value());
  }
  void TearDown() override {
    a_.reset();
    b_.reset();
  }

  std::optional<UcxContext> context_;
  std::optional<UcxWorker> a_;
  std::optional<UcxWorker> b_;
};

TEST_P(UcxPairTest, RemoteKeyUnpacksAndCarriesBounds) {
  AlignedBuffer buffer(64 * 1024);
  Result<UcxMemory> memory = UcxMemory::Map(*context_, buffer.data + 4096, 8192);
  ASSERT_TRUE(memory.ok());
  Result<std::vector<uint8_t>> packed = memory->PackRemoteKey();
  ASSERT_TRUE(packed.ok());
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*a_, b_->address());
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  {
    Result<UcxRemoteKey> key = UcxRemoteKey::Unpack(*ep, *packed);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    const auto base = reinterpret_cast<uint64_t>(buffer.data + 4096);
    EXPECT_EQ(key->base(), base);
    EXPECT_EQ(key->length(), 8192u);
    EXPECT_TRUE(key->Covers(base + 100, 8000));
    EXPECT_FALSE(key->Covers(base + 100, 8100));
    EXPECT_FALSE(key->Covers(base - 1, 1));
  }
  EXPECT_TRUE(ep->Close(UcxCloseMode::kForce).ok());
  EXPECT_TRUE(ep->empty());
}

TEST_P(UcxPairTest, BadRemoteKeyBytesGiveClearErrors) {
  AlignedBuffer buffer(8192);
  Result<UcxMemory> memory = UcxMemory::Map(*context_, buffer.data, buffer.size);
  ASSERT_TRUE(memory.ok());
  std::vector<uint8_t> good = memory->PackRemoteKey().value();
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*a_, b_->address());
  ASSERT_TRUE(ep.ok());

  std::vector<uint8_t> garbage(good.size());
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(i * 37 + 11);
  Result<UcxRemoteKey> r = UcxRemoteKey::Unpack(*ep, garbage);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("magic"), std::string::npos) << r.status().ToString();

  std::vector<uint8_t> truncated(good.begin(), good.end() - 3);
  r = UcxRemoteKey::Unpack(*ep, truncated);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();

  std::vector<uint8_t> flipped = good;
  flipped.back() ^= 0x40;
  r = UcxRemoteKey::Unpack(*ep, flipped);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();

  r = UcxRemoteKey::Unpack(*ep, std::vector<uint8_t>{});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);

  // A well-sealed key whose UCX part claims memory-domain entries it does not carry.
  std::vector<uint8_t> forged(32 + 9, 0);
  StoreLe64(forged.data(), reinterpret_cast<uint64_t>(buffer.data));
  StoreLe64(forged.data() + 8, buffer.size);
  StoreLe64(forged.data() + 32, 0xffull);  // md_map: eight domains, none present
  r = UcxRemoteKey::Unpack(*ep, ForgeRemoteKey(forged));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("past the end"), std::string::npos);

  // A worker address is not a remote key.
  r = UcxRemoteKey::Unpack(*ep, b_->address());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

// The owner fields of a key: a key from this host whose owner is gone is refused before UCX
// sees it; the same key from another host (another boot id, even in the same initial pid
// namespace, whose inode is the same on every Linux host) names no local process and is unpacked.
TEST_P(UcxPairTest, OnlyAKeyFromThisHostIsCheckedAgainstLocalProcesses) {
  AlignedBuffer buffer(8192);
  Result<UcxMemory> memory = UcxMemory::Map(*context_, buffer.data, buffer.size);
  ASSERT_TRUE(memory.ok());
  const std::vector<uint8_t> good = memory->PackRemoteKey().value();
  Result<std::span<const uint8_t>> opened = Open(EnvelopeKind::kRemoteKey, good);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::vector<uint8_t> payload(opened->begin(), opened->end());
  ASSERT_EQ(LoadLe32(payload.data() + 16), static_cast<uint32_t>(getpid()));
  ASSERT_EQ(LoadLe64(payload.data() + 24), PidNamespaceId());
  ASSERT_NE(PidNamespaceId(), 0u);
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*a_, b_->address());
  ASSERT_TRUE(ep.ok());

  StoreLe32(payload.data() + 16, 0x3FFFFFFF);  // above any pid_max: no such process here
  Result<UcxRemoteKey> local = UcxRemoteKey::Unpack(*ep, ForgeRemoteKey(payload));
  EXPECT_EQ(local.status().code(), StatusCode::kUnavailable) << local.status().ToString();
  EXPECT_NE(local.status().message().find("gone"), std::string::npos) << local.status().ToString();

  struct stat ns {};
  ASSERT_EQ(stat("/proc/self/ns/pid", &ns), 0);
  StoreLe64(payload.data() + 24, HostPidNamespace("another host's boot id", ns.st_ino));
  Result<UcxRemoteKey> remote = UcxRemoteKey::Unpack(*ep, ForgeRemoteKey(payload));
  EXPECT_TRUE(remote.ok()) << remote.status().ToString();
}

TEST(PidNamespaceIdTest, MixesTheBootIdWithTheNamespaceInode) {
  constexpr uint64_t kInitialNamespace = 4026531836;  // the same on every Linux host
  const uint64_t here = HostPidNamespace("0f5c1b2e-a", kInitialNamespace);
  EXPECT_NE(here, 0u);
  EXPECT_EQ(here, HostPidNamespace("0f5c1b2e-a", kInitialNamespace));
  EXPECT_NE(here, HostPidNamespace("0f5c1b2e-b", kInitialNamespace));      // another host
  EXPECT_NE(here, HostPidNamespace("0f5c1b2e-a", kInitialNamespace + 1));  // another namespace
  EXPECT_EQ(HostPidNamespace("", kInitialNamespace), 0u);                  // unknown
  EXPECT_EQ(HostPidNamespace("0f5c1b2e-a", 0), 0u);
  // This process: the kernel's boot id and its own namespace.
  struct stat ns {};
  ASSERT_EQ(stat("/proc/self/ns/pid", &ns), 0);
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  ASSERT_TRUE(std::getline(in, boot_id));
  EXPECT_EQ(PidNamespaceId(), HostPidNamespace(boot_id, ns.st_ino));
  EXPECT_NE(PidNamespaceId(), static_cast<uint64_t>(ns.st_ino));
}

TEST_P(UcxPairTest, BadPeerAddressIsRejected) {
  std::vector<uint8_t> garbage(64, 0xab);
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*a_, garbage);
  EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument) << ep.status().ToString();
  std::vector<uint8_t> flipped = b_->address();
  flipped[flipped.size() / 2] ^= 1;
  ep = UcxEndpoint::Connect(*a_, flipped);
  EXPECT_EQ(ep.status().code(), StatusCode::kCorruption) << ep.status().ToString();
}

TEST_P(UcxPairTest, FlushCloseWithBothWorkersProgressed) {
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(*a_, b_->address());
  ASSERT_TRUE(ep.ok());
  UcxPendingClose close = ep->StartClose(UcxCloseMode::kFlush);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!close.Done() && std::chrono::steady_clock::now() < until) {
    a_->Progress();
    b_->Progress();
  }
  ASSERT_TRUE(close.Done());
  EXPECT_TRUE(close.status().ok()) << close.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(ucx, UcxPairTest, ::testing::Values("tcp", "posix,cma"), ParamName);

}  // namespace
}  // namespace kvault::transport
