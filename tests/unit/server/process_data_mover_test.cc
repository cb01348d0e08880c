// ProcessDataMover: GETs and PUTs through a child's handed-over memory file, large ones split
// between the calling thread and the helper thread. Every byte of both halves lands, a range
// unmapped in either half fails the transfer (beside a mapped positive control), and batches
// running at once on several threads (the helper busy with one of them) still move every byte.
// Regions the child handed over as files: copies inside one go through the file (both ways,
// split too), others through the memory file; overlaps, a full table and unknown peers are
// refused (the bounds on regions: process_data_mover_slots_test.cc); ForgetRemoteKey drops the
// region its key names. With a residency, reused bytes of a
// region go through its mapping, and a hole drops a mapped region before a GET through it; a
// Store's GETs from a mapped region go to its batch's copier.
#include "core/process_data_mover.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../ucx/memory_child.h"
#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/local/shared_memory_file.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/ucx_memory.h"
#include "process_data_mover_test_files.h"

namespace kvault::server {
namespace {

using transport::test::BecomeClient;
using transport::test::MemoryChild;
using transport::test::Pattern;

constexpr size_t kPage = 4096;

transport::Transfer TransferOf(transport::PeerId peer, transport::TransferOp op, void* local,
                               const void* remote, size_t length) {
  transport::Transfer t;
  t.op = op;
  t.peer = peer;
  t.local = local;
  t.remote_address = reinterpret_cast<uintptr_t>(remote);
  t.length = length;
  return t;
}

transport::TransferBatch BatchOf(std::vector<transport::Transfer> transfers) {
  transport::TransferBatch batch;
  batch.transfers = std::move(transfers);
  batch.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  return batch;
}

// A mover with the child's memory attached (regions mapped with `residency`, when given).
struct Attached {
  explicit Attached(transport::MappedResidency* residency = nullptr) : mover(residency) {}
  ProcessDataMover mover;
  transport::PeerId peer = 0;
};

void Attach(MemoryChild& child, Attached* out) {
  ASSERT_TRUE(child.ready());
  Result<transport::ProcessMemory> memory = child.Adopt();
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  Result<transport::PeerId> peer = out->mover.AttachProcess(std::move(*memory), kUser);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  out->peer = *peer;
}

TEST(ProcessDataMoverTest, LargeAndSmallTransfersMoveEveryByteBothWays) {
  // Odd lengths, so that neither half is a whole number of pages; one under the split size.
  std::vector<uint8_t> big = Pattern((1 << 20) + 4099, 3);
  std::vector<uint8_t> small = Pattern(100'001, 5);
  const std::vector<uint8_t> big_original = big;
  const std::vector<uint8_t> small_original = small;
  MemoryChild child([] { return BecomeClient(); });
  std::fill(big.begin(), big.end(), uint8_t{0});  // only the child's copy keeps the pattern
  std::fill(small.begin(), small.end(), uint8_t{0});
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));

  std::vector<uint8_t> got_big(big.size());
  std::vector<uint8_t> got_small(small.size());
  std::vector<size_t> arrived;
  std::vector<Status> statuses = a.mover.RunInOrder(
      BatchOf(
          {TransferOf(a.peer, transport::TransferOp::kGet, got_big.data(), big.data(), big.size()),
           TransferOf(a.peer, transport::TransferOp::kGet, got_small.data(), small.data(),
                      small.size())}),
      [&](size_t i) { arrived.push_back(i); });
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  EXPECT_TRUE(statuses[1].ok()) << statuses[1].ToString();
  EXPECT_EQ(got_big, big_original);
  EXPECT_EQ(got_small, small_original);
  EXPECT_EQ(arrived, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(a.mover.split_copies(), 1u);  // the large GET only: the helper took its second half

  // PUTs, then GETs back: the child's bytes are the new ones, both halves.
  std::vector<uint8_t> fresh_big = Pattern(big.size(), 77);
  std::vector<uint8_t> fresh_small = Pattern(small.size(), 78);
  statuses = a.mover.Run(BatchOf(
      {TransferOf(a.peer, transport::TransferOp::kPut, fresh_big.data(), big.data(), big.size()),
       TransferOf(a.peer, transport::TransferOp::kPut, fresh_small.data(), small.data(),
                  small.size())}));
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_TRUE(statuses[0].ok() && statuses[1].ok());
  statuses = a.mover.Run(BatchOf(
      {TransferOf(a.peer, transport::TransferOp::kGet, got_big.data(), big.data(), big.size()),
       TransferOf(a.peer, transport::TransferOp::kGet, got_small.data(), small.data(),
                  small.size())}));
  EXPECT_TRUE(statuses[0].ok() && statuses[1].ok());
  EXPECT_EQ(got_big, fresh_big);
  EXPECT_EQ(got_small, fresh_small);
  EXPECT_EQ(a.mover.split_copies(), 3u);
}

// A page the child unmapped, in the first or in the second half of a split transfer, fails the
// whole transfer with InvalidArgument and is never reported as arrived; the mapped range around
// it is moved.
TEST(ProcessDataMoverTest, AnUnmappedPageInEitherHalfFailsTheTransfer) {
  constexpr size_t kBytes = 2 << 20;
  void* mapped = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  uint8_t* base = static_cast<uint8_t*>(mapped);
  std::memset(base, 0x5a, kBytes);
  // The child unmaps the page at 512 KiB and the one at 1.5 MiB.
  uint8_t* hole_first = base + kBytes / 4;
  uint8_t* hole_second = base + 3 * kBytes / 4;
  MemoryChild child([&] {
    return BecomeClient() && munmap(hole_first, kPage) == 0 && munmap(hole_second, kPage) == 0;
  });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));

  std::vector<uint8_t> local(kBytes);
  std::vector<size_t> arrived;
  auto run = [&](const uint8_t* remote, size_t length) {
    arrived.clear();
    std::vector<Status> s = a.mover.RunInOrder(
        BatchOf({TransferOf(a.peer, transport::TransferOp::kGet, local.data(), remote, length)}),
        [&](size_t i) { arrived.push_back(i); });
    return s.at(0);
  };
  // 768 KiB transfers are split at 384 KiB: from `base` the hole (at 512 KiB) lies in the
  // helper's half, from `base` + 384 KiB in the calling thread's.
  constexpr size_t kSplit = 768 << 10;
  const Status in_second = run(base, kSplit);
  EXPECT_EQ(in_second.code(), StatusCode::kInvalidArgument) << in_second.ToString();
  EXPECT_TRUE(arrived.empty());
  const Status in_first = run(base + kSplit / 2, kSplit);
  EXPECT_EQ(in_first.code(), StatusCode::kInvalidArgument) << in_first.ToString();
  EXPECT_TRUE(arrived.empty());
  EXPECT_EQ(a.mover.split_copies(), 2u);  // both were split, so each half's failure counted
  // Positive control: the 1 MiB less a page between the holes is mapped and moves whole.
  const Status between = run(hole_first + kPage, hole_second - hole_first - kPage);
  EXPECT_TRUE(between.ok()) << between.ToString();
  EXPECT_EQ(arrived, (std::vector<size_t>{0}));
  EXPECT_TRUE(std::all_of(local.begin(), local.begin() + (hole_second - hole_first - kPage),
                          [](uint8_t b) { return b == 0x5a; }));
  munmap(mapped, kBytes);
}

// Batches run at once from several threads: one of them may have the helper, the others copy
// alone; every byte arrives either way.
TEST(ProcessDataMoverTest, BatchesOnSeveralThreadsAtOnceAllMoveEveryByte) {
  constexpr int kThreads = 4;
  constexpr size_t kBytes = (1 << 20) + 12'345;
  std::vector<std::vector<uint8_t>> sources;
  for (int i = 0; i < kThreads; ++i) sources.push_back(Pattern(kBytes, static_cast<uint8_t>(i)));
  MemoryChild child([] { return BecomeClient(); });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));

  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::vector<uint8_t> local(kBytes);
      for (int round = 0; round < 20; ++round) {
        std::fill(local.begin(), local.end(), uint8_t{0});
        const std::vector<Status> s = a.mover.Run(BatchOf({TransferOf(
            a.peer, transport::TransferOp::kGet, local.data(), sources[i].data(), kBytes)}));
        if (!s.at(0).ok() || local != sources[i]) ++failures[i];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<int>(kThreads, 0));
}

TEST(ProcessDataMoverTest, ARegionIsCopiedThroughItsFileBothWays) {
  constexpr size_t kBytes = 2 << 20;
  Result<transport::SharedMemoryFile> file = FileWith(kBytes, 9);  // mapped shared: the child too
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<uint8_t> outside = Pattern(300'001, 4);  // the child's own copy after the fork
  const std::vector<uint8_t> outside_original = outside;
  MemoryChild child([] { return BecomeClient(); });
  std::fill(outside.begin(), outside.end(), uint8_t{0});
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  const auto base = reinterpret_cast<uintptr_t>(file->address());
  ASSERT_TRUE(a.mover.AttachRegion(a.peer, base, RegionOf(*file)).ok());

  // A large GET inside the region (split), and one outside it (the memory file).
  constexpr size_t kAt = 8191;
  constexpr size_t kLength = (1 << 20) + 4099;
  std::vector<uint8_t> got(kLength);
  std::vector<uint8_t> got_outside(outside.size());
  const auto* in_region = static_cast<uint8_t*>(file->address()) + kAt;
  std::vector<Status> statuses = a.mover.Run(
      BatchOf({TransferOf(a.peer, transport::TransferOp::kGet, got.data(), in_region, kLength),
               TransferOf(a.peer, transport::TransferOp::kGet, got_outside.data(), outside.data(),
                          outside.size())}));
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_TRUE(statuses[0].ok() && statuses[1].ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), Pattern(kBytes, 9).begin() + kAt));
  EXPECT_EQ(got_outside, outside_original);
  EXPECT_EQ(a.mover.region_copies(), 1u);  // the GET outside went through the memory file
  EXPECT_EQ(a.mover.split_copies(), 2u);

  // A PUT into the region lands in the memory the child maps (shared with this process).
  const std::vector<uint8_t> fresh = Pattern(kLength, 33);
  statuses =
      a.mover.Run(BatchOf({TransferOf(a.peer, transport::TransferOp::kPut,
                                      const_cast<uint8_t*>(fresh.data()), in_region, kLength)}));
  ASSERT_EQ(statuses.size(), 1u);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
  EXPECT_EQ(std::memcmp(in_region, fresh.data(), kLength), 0);
  EXPECT_EQ(a.mover.region_copies(), 2u);
}

// The copies see the file the client handed over, whatever it maps at the region's addresses:
// a client that hands over another file than the one it maps fools only itself.
TEST(ProcessDataMoverTest, ARegionsCopiesSeeItsFileNotWhatTheClientMapsThere) {
  Result<transport::SharedMemoryFile> mapped = FileWith(1 << 16, 1);
  Result<transport::SharedMemoryFile> other = FileWith(1 << 16, 2);
  ASSERT_TRUE(mapped.ok() && other.ok());
  MemoryChild child([] { return BecomeClient(); });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  std::vector<uint8_t> got(4096);
  auto get = [&] {
    return a.mover.Run(BatchOf({TransferOf(a.peer, transport::TransferOp::kGet, got.data(),
                                           mapped->address(), got.size())}))[0];
  };
  ASSERT_TRUE(get().ok());  // positive control: without a region, the child's mapped bytes
  EXPECT_TRUE(std::equal(got.begin(), got.end(), Pattern(1 << 16, 1).begin()));
  ASSERT_TRUE(
      a.mover.AttachRegion(a.peer, reinterpret_cast<uintptr_t>(mapped->address()), RegionOf(*other))
          .ok());
  ASSERT_TRUE(get().ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), Pattern(1 << 16, 2).begin()));
}

TEST(ProcessDataMoverTest, OverlapsAFullTableAndUnknownPeersAreRefused) {
  Result<transport::SharedMemoryFile> file = FileWith(4 * 4096, 1);
  ASSERT_TRUE(file.ok());
  MemoryChild child([] { return BecomeClient(); });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  EXPECT_EQ(a.mover.AttachRegion(a.peer + 1, 4096, RegionOf(*file)).code(), StatusCode::kNotFound);
  constexpr uint64_t kBase = uint64_t{1} << 40;  // the regions need not be mapped to be attached
  ASSERT_TRUE(a.mover.AttachRegion(a.peer, kBase, RegionOf(*file)).ok());
  EXPECT_EQ(a.mover.AttachRegion(a.peer, kBase + 3 * 4096, RegionOf(*file)).code(),
            StatusCode::kInvalidArgument);  // overlaps its last page
  EXPECT_EQ(a.mover.AttachRegion(a.peer, kBase - 4096, RegionOf(*file)).code(),
            StatusCode::kInvalidArgument);  // overlaps its first pages
  // Adjacent ones fit, up to kMaxRegions.
  for (size_t i = 1; i < ProcessDataMover::kMaxRegions; ++i) {
    ASSERT_TRUE(a.mover.AttachRegion(a.peer, kBase + i * file->length(), RegionOf(*file)).ok())
        << i;
  }
  const uint64_t next = kBase + ProcessDataMover::kMaxRegions * file->length();
  EXPECT_EQ(a.mover.AttachRegion(a.peer, next, RegionOf(*file)).code(),
            StatusCode::kResourceExhausted);
}

// A client that punches a hole into its region's file would have writes there allocate pages
// charged to the server: the region is dropped, and the write goes through the memory file (a
// page fault of the client's). Positive control: a write before the hole goes through the file.
TEST(ProcessDataMoverTest, ARegionWithAHoleIsWrittenThroughTheMemoryFile) {
  Result<transport::SharedMemoryFile> file = FileWith(1 << 16, 3);
  ASSERT_TRUE(file.ok());
  MemoryChild child([] { return BecomeClient(); });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  auto* mapped = static_cast<uint8_t*>(file->address());
  ASSERT_TRUE(
      a.mover.AttachRegion(a.peer, reinterpret_cast<uintptr_t>(mapped), RegionOf(*file)).ok());
  std::vector<uint8_t> fresh = Pattern(4096, 44);
  auto put = [&](uint8_t* at) {
    return a.mover.Run(BatchOf(
        {TransferOf(a.peer, transport::TransferOp::kPut, fresh.data(), at, fresh.size())}))[0];
  };
  ASSERT_TRUE(put(mapped).ok());
  EXPECT_EQ(a.mover.region_copies(), 1u);
  ASSERT_EQ(fallocate(file->descriptor(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 4096),
            0);
  fresh = Pattern(4096, 45);
  ASSERT_TRUE(put(mapped + 8192).ok());
  EXPECT_EQ(std::memcmp(mapped + 8192, fresh.data(), fresh.size()), 0);
  EXPECT_EQ(a.mover.region_copies(), 1u);  // through the memory file, and from now on
  ASSERT_TRUE(put(mapped).ok());
  EXPECT_EQ(a.mover.region_copies(), 1u);
}

// With a residency, a region's file is also mapped: a range used again is copied through the
// mapping (the residency counts it), its first use through the file (it does not); every byte
// lands either way. A hole punched later drops the region before a GET through its mapping,
// which would allocate the hole's pages here; a GET through the file (nothing allocated) keeps it.
TEST(ProcessDataMoverTest, AMappedRegionCopiesReusedBytesThroughTheMapping) {
  transport::MappedResidency residency(8 << 20);
  constexpr size_t kBytes = 4 << 20;
  Result<transport::SharedMemoryFile> file = FileWith(kBytes, 6);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  MemoryChild child([] { return BecomeClient(); });
  Attached a(&residency);
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  auto* mapped = static_cast<uint8_t*>(file->address());
  ASSERT_TRUE(
      a.mover.AttachRegion(a.peer, reinterpret_cast<uintptr_t>(mapped), RegionOf(*file)).ok());
  std::vector<uint8_t> got(1 << 20);
  auto get = [&](size_t at) {
    return a.mover.Run(BatchOf(
        {TransferOf(a.peer, transport::TransferOp::kGet, got.data(), mapped + at, got.size())}))[0];
  };
  const std::vector<uint8_t> pattern = Pattern(kBytes, 6);
  ASSERT_TRUE(get(0).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern.begin()));
  EXPECT_EQ(residency.resident_bytes(), 0u) << "bytes used once were mapped";
  std::fill(got.begin(), got.end(), uint8_t{0});
  ASSERT_TRUE(get(0).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern.begin()));
  EXPECT_GT(residency.resident_bytes(), 0u) << "bytes used again were not mapped";
  EXPECT_EQ(a.mover.region_copies(), 2u);

  // A PUT into the reused range lands in the client's memory.
  const std::vector<uint8_t> fresh = Pattern(got.size(), 77);
  ASSERT_TRUE(
      a.mover
          .Run(BatchOf({TransferOf(a.peer, transport::TransferOp::kPut,
                                   const_cast<uint8_t*>(fresh.data()), mapped, fresh.size())}))[0]
          .ok());
  EXPECT_EQ(std::memcmp(mapped, fresh.data(), fresh.size()), 0);
  EXPECT_EQ(a.mover.region_copies(), 3u);

  ASSERT_EQ(fallocate(file->descriptor(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (3 << 20) + 8192, 4096),
            0);
  // A range seen once is read through the file, which allocates nothing at a hole: kept.
  ASSERT_TRUE(get(2 << 20).ok());
  EXPECT_EQ(a.mover.region_copies(), 4u);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 8192, pattern.begin() + (2 << 20)));
  // The reused range would go through the mapping: the region is dropped first.
  ASSERT_TRUE(get(0).ok());
  EXPECT_EQ(a.mover.region_copies(), 4u) << "a GET of a holed mapped region went through it";
  EXPECT_TRUE(std::equal(got.begin(), got.end(), fresh.begin()));
}

// A batch with copy_mapped (a Store's): its GETs from a mapped region go to that copier instead
// of being copied and reported as arrived: bytes used once with the region's file and offset,
// bytes used again as mapped (the residency counts them once copied); the copier's failure is the
// transfer's. Positive controls in the same batches: a GET outside the region is copied and
// arrives, a PUT into the region is never handed over.
TEST(ProcessDataMoverTest, GetsFromAMappedRegionGoToTheBatchsCopier) {
  transport::MappedResidency residency(8 << 20);
  constexpr size_t kBytes = 2 << 20;
  Result<transport::SharedMemoryFile> file = FileWith(kBytes, 8);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<uint8_t> outside = Pattern(70'001, 2);
  const std::vector<uint8_t> outside_original = outside;
  MemoryChild child([] { return BecomeClient(); });
  std::fill(outside.begin(), outside.end(), uint8_t{0});
  Attached a(&residency);
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  auto* mapped = static_cast<uint8_t*>(file->address());
  ASSERT_TRUE(
      a.mover.AttachRegion(a.peer, reinterpret_cast<uintptr_t>(mapped), RegionOf(*file)).ok());
  const std::vector<uint8_t> pattern = Pattern(kBytes, 8);

  constexpr size_t kAt = 4096 + 100;
  constexpr size_t kLength = (1 << 20) + 7;
  std::vector<uint8_t> got(kLength), got_outside(outside.size());
  struct Handed {
    size_t index;
    bool through_file;
    uint64_t file_offset;
  };
  std::vector<Handed> handed;
  std::vector<size_t> arrived;
  Status copier_says = Status::Ok();
  auto run = [&](std::vector<transport::Transfer> transfers) {
    transport::TransferBatch batch = BatchOf(transfers);
    batch.copy_mapped = [&, transfers](size_t i, const transport::MappedRemote& remote) {
      handed.push_back({i, remote.file >= 0, remote.file_offset});
      // The server's own mapping of the region's bytes.
      EXPECT_EQ(remote.bytes.size(), kLength);
      EXPECT_EQ(std::memcmp(remote.bytes.data(), mapped + kAt, kLength), 0);
      auto* local = static_cast<uint8_t*>(transfers[i].local);
      if (remote.file >= 0) {
        EXPECT_EQ(pread(remote.file, local, remote.bytes.size(), remote.file_offset),
                  static_cast<ssize_t>(remote.bytes.size()));
      } else {
        std::memcpy(local, remote.bytes.data(), remote.bytes.size());
      }
      return copier_says;
    };
    return a.mover.RunInOrder(std::move(batch), [&](size_t i) { arrived.push_back(i); });
  };
  auto get_both = [&] {
    return run(
        {TransferOf(a.peer, transport::TransferOp::kGet, got_outside.data(), outside.data(),
                    outside.size()),
         TransferOf(a.peer, transport::TransferOp::kGet, got.data(), mapped + kAt, kLength)});
  };
  std::vector<Status> s = get_both();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_TRUE(s[0].ok() && s[1].ok());
  ASSERT_EQ(handed.size(), 1u);
  EXPECT_EQ(handed[0].index, 1u);
  EXPECT_TRUE(handed[0].through_file) << "bytes used once were handed over as mapped";
  EXPECT_EQ(handed[0].file_offset, kAt);
  EXPECT_EQ(arrived, std::vector<size_t>{0});
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern.begin() + kAt));
  EXPECT_EQ(got_outside, outside_original);
  EXPECT_EQ(residency.resident_bytes(), 0u);

  // The same range again: handed over as mapped, and counted.
  std::fill(got.begin(), got.end(), uint8_t{0});
  s = get_both();
  EXPECT_TRUE(s[0].ok() && s[1].ok());
  ASSERT_EQ(handed.size(), 2u);
  EXPECT_FALSE(handed[1].through_file) << "bytes used again were handed over with the file";
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern.begin() + kAt));
  EXPECT_GT(residency.resident_bytes(), 0u);
  EXPECT_EQ(arrived, (std::vector<size_t>{0, 0}));

  // A PUT into the region is the mover's own (it lands in the client's memory).
  const std::vector<uint8_t> fresh = Pattern(kLength, 90);
  s = run({TransferOf(a.peer, transport::TransferOp::kPut, const_cast<uint8_t*>(fresh.data()),
                      mapped + kAt, kLength)});
  EXPECT_TRUE(s.at(0).ok()) << s[0].ToString();
  EXPECT_EQ(handed.size(), 2u);
  EXPECT_EQ(std::memcmp(mapped + kAt, fresh.data(), kLength), 0);

  // The copier's failure fails that transfer alone.
  copier_says = Status::Unavailable("the copier refused");
  s = get_both();
  EXPECT_TRUE(s[0].ok());
  EXPECT_EQ(s[1].code(), StatusCode::kUnavailable);
  EXPECT_EQ(handed.size(), 3u);
  EXPECT_EQ(arrived, (std::vector<size_t>{0, 0, 0}));
}

TEST(ProcessDataMoverTest, ForgetRemoteKeyDropsTheRegionItsKeyNames) {
  Result<transport::SharedMemoryFile> file = FileWith(1 << 16, 5);
  ASSERT_TRUE(file.ok());
  transport::UcxContextOptions options;
  options.transports = "tcp";
  Result<transport::UcxContext> context = transport::UcxContext::Create(options);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  Result<transport::UcxMemory> registered =
      transport::UcxMemory::Map(*context, file->address(), file->length());
  ASSERT_TRUE(registered.ok()) << registered.status().ToString();
  Result<std::vector<uint8_t>> key = registered->PackRemoteKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  MemoryChild child([] { return BecomeClient(); });
  Attached a;
  ASSERT_NO_FATAL_FAILURE(Attach(child, &a));
  ASSERT_TRUE(
      a.mover.AttachRegion(a.peer, reinterpret_cast<uintptr_t>(file->address()), RegionOf(*file))
          .ok());
  std::vector<uint8_t> got(4096);
  auto get = [&] {
    return a.mover.Run(BatchOf({TransferOf(a.peer, transport::TransferOp::kGet, got.data(),
                                           file->address(), got.size())}))[0];
  };
  // Malformed bytes and another peer's key leave the region in place.
  std::vector<uint8_t> flipped = *key;
  flipped.back() ^= 1;
  a.mover.ForgetRemoteKey(a.peer, flipped);
  a.mover.ForgetRemoteKey(a.peer + 1, *key);
  ASSERT_TRUE(get().ok());
  EXPECT_EQ(a.mover.region_copies(), 1u);
  a.mover.ForgetRemoteKey(a.peer, *key);
  ASSERT_TRUE(get().ok());  // now through the memory file: the same bytes
  EXPECT_EQ(a.mover.region_copies(), 1u);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), Pattern(1 << 16, 5).begin()));
}

}  // namespace
}  // namespace kvault::server
