// ArrivingObjects: chunks copied from mapped memory or read from a file (with and without the
// helper) or landed by UCX are hashed in order, so a whole object's digest equals its stored
// checksum and Commit can skip the second pass; a chunk out of order leaves the stream short
// instead of wrong.
#include "core/arriving_objects.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/block_key.h"
#include "kvault/common/file_io.h"
#include "kvault/common/synthetic_block.h"

namespace kvault::server {
namespace {

BlockKey Key(uint8_t i) {
  BlockKey k{};
  k.fill(i);
  return k;
}

uint64_t StoredChecksum(const std::vector<uint8_t>& object) {
  Result<BlockView> view = ParseBlockObject(object, ParseOptions{});
  EXPECT_TRUE(view.ok()) << view.status().ToString();
  return view.ok() ? view->checksum : 0;
}

// Splits `object` into chunks of `chunk` bytes of object `owner`, written into `to`.
void AddChunks(ArrivingObjects& a, size_t owner, std::vector<uint8_t>& to, size_t chunk) {
  for (size_t at = 0; at < to.size(); at += chunk) {
    a.Add(owner, at, std::span(to).subspan(at, std::min(chunk, to.size() - at)));
  }
}

// Copies chunk `c` from `remote`, as mapped here (MappedRemote without a file): always OK.
void CopyMapped(ArrivingObjects& a, size_t c, std::span<const uint8_t> remote, CopyHelper& helper) {
  EXPECT_TRUE(a.CopyMapped(c, transport::MappedRemote{remote}, helper).ok());
}

// Object `owner` arrived whole into `to`, and its stream covers it: the digest is its checksum.
void ExpectArrivedAndHashed(const ArrivingObjects& a, size_t owner, const std::vector<uint8_t>& to,
                            const std::vector<uint8_t>& object) {
  EXPECT_EQ(to, object);
  ASSERT_TRUE(a.complete(owner, object.size()));
  EXPECT_EQ(a.digest(owner), StoredChecksum(object));
}

TEST(ArrivingObjects, MappedChunksAreCopiedAndHashedWithAndWithoutTheHelper) {
  // Chunks over kHelpedBytes, the last one under it; the helper takes half of the others and
  // hands it over in several pieces, the last one partial (its half is not a multiple of them).
  constexpr size_t kChunk = (300 << 10) + 40;
  static_assert(kChunk >= ArrivingObjects::kHelpedBytes);
  static_assert((kChunk - (kChunk / 2 & ~size_t{63})) % CopyHelper::kPieceBytes != 0);
  const std::vector<uint8_t> big = *MakeSyntheticBlock(Key(1), (2 << 20) + (100 << 10));
  const std::vector<uint8_t> small = *MakeSyntheticBlock(Key(2), 1000);
  CopyHelper helper;
  std::vector<uint8_t> big_to(big.size()), small_to(small.size());
  ArrivingObjects a(2);
  AddChunks(a, 0, big_to, kChunk);
  AddChunks(a, 1, small_to, kChunk);
  const size_t big_chunks = (big.size() + kChunk - 1) / kChunk;
  for (size_t c = 0; c < big_chunks; ++c) {
    const size_t at = c * kChunk;
    CopyMapped(a, c, std::span(big).subspan(at, std::min(kChunk, big.size() - at)), helper);
  }
  CopyMapped(a, big_chunks, small, helper);
  ExpectArrivedAndHashed(a, 0, big_to, big);
  ExpectArrivedAndHashed(a, 1, small_to, small);
  EXPECT_EQ(a.owner(big_chunks), 1u);
}

TEST(ArrivingObjects, ABusyHelperLeavesTheWholeCopyToTheCaller) {
  const std::vector<uint8_t> big = *MakeSyntheticBlock(Key(3), 300 << 10);
  CopyHelper helper;
  std::vector<uint8_t> scratch_from(64, 1), scratch_to(64);
  ASSERT_TRUE(helper.TryStart(scratch_from, scratch_to));  // another caller holds it
  std::vector<uint8_t> to(big.size());
  ArrivingObjects a(1);
  a.Add(0, 0, to);
  CopyMapped(a, 0, big, helper);
  helper.Wait();
  ExpectArrivedAndHashed(a, 0, to, big);
}

// One object of three 256 KiB chunks (the last shorter) arriving into `to`.
struct ThreeChunks {
  static constexpr size_t kChunk = 256 << 10;
  explicit ThreeChunks(uint8_t key)
      : object(*MakeSyntheticBlock(Key(key), 600 << 10)), to(object.size()), arriving(1) {
    AddChunks(arriving, 0, to, kChunk);
  }
  std::span<const uint8_t> Source(size_t c) const {
    return std::span(object).subspan(c * kChunk, std::min(kChunk, object.size() - c * kChunk));
  }
  // As UCX would: the bytes land, then ArrivingObjects is told.
  void Land(size_t c) {
    std::memcpy(to.data() + c * kChunk, Source(c).data(), Source(c).size());
    arriving.Landed(c);
  }

  std::vector<uint8_t> object, to;
  ArrivingObjects arriving;
  CopyHelper helper;
};

// Chunks read from a file holding the client's bytes (at an offset), split with the helper or
// not, are hashed in order like copied ones; a file cut short fails that chunk with Unavailable.
TEST(ArrivingObjects, ChunksReadFromAFileAreHashedAndAShortFileFails) {
  ThreeChunks t(6);
  constexpr uint64_t kOffset = 8192 + 5;
  UniqueFd file(memfd_create("arriving-objects-test", MFD_CLOEXEC));
  ASSERT_EQ(pwrite(file.get(), t.object.data(), t.object.size(), kOffset),
            static_cast<ssize_t>(t.object.size()));
  for (size_t c = 0; c < 3; ++c) {
    const transport::MappedRemote from{t.Source(c), file.get(), kOffset + c * ThreeChunks::kChunk};
    EXPECT_TRUE(t.arriving.CopyMapped(c, from, t.helper).ok()) << c;
  }
  ExpectArrivedAndHashed(t.arriving, 0, t.to, t.object);

  ThreeChunks cut(6);
  ASSERT_EQ(ftruncate(file.get(), static_cast<off_t>(kOffset + t.object.size() - 1)), 0);
  const uint64_t cut_reads = ArrivingObjects::cut_reads_total();
  CopyMapped(cut.arriving, 0, cut.Source(0), cut.helper);  // from the mapping: fine
  const Status read = cut.arriving.CopyMapped(
      2, transport::MappedRemote{cut.Source(2), file.get(), kOffset + 2 * ThreeChunks::kChunk},
      cut.helper);
  EXPECT_EQ(read.code(), StatusCode::kUnavailable) << read.ToString();
  EXPECT_EQ(ArrivingObjects::cut_reads_total(), cut_reads + 1);  // kvault_client_memory_faults
  const Status whole = cut.arriving.CopyMapped(
      1, transport::MappedRemote{cut.Source(1), file.get(), kOffset + ThreeChunks::kChunk},
      cut.helper);
  EXPECT_TRUE(whole.ok()) << whole.ToString();  // positive control: a chunk the file still holds
  EXPECT_EQ(ArrivingObjects::cut_reads_total(), cut_reads + 1);
}

// A chunk large enough for the helper, read from a file: the helper reads the tail while this
// thread reads and hashes the head, then hashes the tail as it lands. The file cut short inside
// the helper's tail fails the chunk (and leaves the stream short); the whole file is read and
// hashed in order.
TEST(ArrivingObjects, AChunkReadWithTheHelperIsHashedInOrderAndFailsWhenItsTailIsCut) {
  const std::vector<uint8_t> object = *MakeSyntheticBlock(Key(7), (1 << 20) + 333);
  ASSERT_GE(object.size(), ArrivingObjects::kHelpedBytes);
  constexpr uint64_t kOffset = 3 * 4096 + 17;
  UniqueFd file(memfd_create("arriving-objects-test", MFD_CLOEXEC));
  ASSERT_EQ(pwrite(file.get(), object.data(), object.size(), kOffset),
            static_cast<ssize_t>(object.size()));
  CopyHelper helper;
  for (int round = 0; round < 3; ++round) {
    std::vector<uint8_t> to(object.size());
    ArrivingObjects a(1);
    a.Add(0, 0, to);
    const Status read =
        a.CopyMapped(0, transport::MappedRemote{object, file.get(), kOffset}, helper);
    ASSERT_TRUE(read.ok()) << read.ToString();
    ExpectArrivedAndHashed(a, 0, to, object);
    EXPECT_EQ(helper.reads_started(), static_cast<uint64_t>(round + 1));  // it took the tail
  }
  // Cut 100 bytes before the end: inside the tail (the helper's share is the larger one).
  ASSERT_EQ(ftruncate(file.get(), static_cast<off_t>(kOffset + object.size() - 100)), 0);
  const uint64_t cut_reads = ArrivingObjects::cut_reads_total();
  std::vector<uint8_t> to(object.size());
  ArrivingObjects a(1);
  a.Add(0, 0, to);
  const Status cut = a.CopyMapped(0, transport::MappedRemote{object, file.get(), kOffset}, helper);
  EXPECT_EQ(cut.code(), StatusCode::kUnavailable) << cut.ToString();
  EXPECT_NE(cut.message().find("cut short"), std::string::npos) << cut.ToString();
  EXPECT_FALSE(a.complete(0, object.size()));
  EXPECT_EQ(helper.reads_started(), 4u);
  EXPECT_EQ(ArrivingObjects::cut_reads_total(), cut_reads + 1);
  // The helper is free again for the next chunk.
  std::vector<uint8_t> scratch(16);
  EXPECT_TRUE(helper.TryStart(std::span(object).first(16), scratch));
  helper.Wait();
}

TEST(ArrivingObjects, LandedAndMappedChunksMixInOrder) {
  ThreeChunks t(4);
  t.Land(0);
  CopyMapped(t.arriving, 1, t.Source(1), t.helper);
  t.Land(2);
  ExpectArrivedAndHashed(t.arriving, 0, t.to, t.object);
}

TEST(ArrivingObjects, AChunkOutOfOrderLeavesTheStreamShort) {
  ThreeChunks t(5);
  // Chunk 1 before chunk 0: copied, not hashed.
  CopyMapped(t.arriving, 1, t.Source(1), t.helper);
  CopyMapped(t.arriving, 0, t.Source(0), t.helper);
  t.Land(2);
  EXPECT_EQ(t.to, t.object);  // every byte still arrives
  EXPECT_FALSE(t.arriving.complete(0, t.object.size()));
  // Positive control: the same chunks in order complete the stream.
  ThreeChunks in_order(5);
  for (size_t c = 0; c < 3; ++c)
    CopyMapped(in_order.arriving, c, in_order.Source(c), in_order.helper);
  ExpectArrivedAndHashed(in_order.arriving, 0, in_order.to, in_order.object);
}

}  // namespace
}  // namespace kvault::server
