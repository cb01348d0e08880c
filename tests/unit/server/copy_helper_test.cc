// CopyHelper: copies (or runs a task) for one caller at a time, refuses a second caller while
// busy, publishes a growing prefix of landed bytes, and many threads sharing one helper each get
// exactly their own bytes; it reads a file piece by piece the same way and reports a short one.
#include "core/copy_helper.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "kvault/common/file_io.h"

namespace kvault::server {
namespace {

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST(CopyHelper, CopiesForItsCallerAndRefusesAnotherWhileBusy) {
  CopyHelper helper;
  const std::vector<uint8_t> from = Pattern(1 << 20, 3);
  std::vector<uint8_t> to(from.size(), 0);
  ASSERT_TRUE(helper.TryStart(from, to));
  std::vector<uint8_t> other(16, 0);
  // Busy until Wait: a second caller copies alone.
  EXPECT_FALSE(helper.TryStart(std::span(from).first(16), other));
  helper.Wait();
  EXPECT_EQ(to, from);
  EXPECT_EQ(other, std::vector<uint8_t>(16, 0));  // the refused copy did not happen
  // Free again.
  ASSERT_TRUE(helper.TryStart(std::span(from).first(16), other));
  helper.Wait();
  EXPECT_TRUE(std::equal(other.begin(), other.end(), from.begin()));
}

// A task runs on the helper's thread, not the caller's; while it runs neither a copy nor another
// task is taken (and the refused task never runs); after Wait the helper takes the next one.
TEST(CopyHelper, RunsATaskOnItsOwnThreadAndRefusesOthersUntilWait) {
  CopyHelper helper;
  std::atomic<bool> release{false};
  std::thread::id ran_on;
  ASSERT_TRUE(helper.TryStartTask([&] {
    ran_on = std::this_thread::get_id();
    while (!release.load()) std::this_thread::yield();
  }));
  bool refused_ran = false;
  EXPECT_FALSE(helper.TryStartTask([&] { refused_ran = true; }));
  const std::vector<uint8_t> from = Pattern(64, 1);
  std::vector<uint8_t> to(64, 0);
  EXPECT_FALSE(helper.TryStart(from, to));
  release.store(true);
  helper.Wait();
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_NE(ran_on, std::thread::id());
  EXPECT_FALSE(refused_ran);
  EXPECT_EQ(to, std::vector<uint8_t>(64, 0));
  // Free again, for a task and for a copy.
  bool second_ran = false;
  ASSERT_TRUE(helper.TryStartTask([&] { second_ran = true; }));
  helper.Wait();
  EXPECT_TRUE(second_ran);
  ASSERT_TRUE(helper.TryStart(from, to));
  helper.Wait();
  EXPECT_EQ(to, from);
}

TEST(CopyHelper, ThreadsSharingOneHelperEachGetTheirOwnBytes) {
  CopyHelper helper;
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  std::atomic<int> helped{0};
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const std::vector<uint8_t> from = Pattern(4096 + 64 * t + r, static_cast<uint8_t>(t + r));
        std::vector<uint8_t> to(from.size(), 0);
        if (helper.TryStart(from, to)) {
          helper.Wait();
          ++helped;
        } else {
          std::copy(from.begin(), from.end(), to.begin());
        }
        if (to != from) ++mismatches;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(helped.load(), 0);  // positive control: the helper did copy
}

TEST(CopyHelper, LandedBytesGrowPieceByPieceAndAreTheSourceBytes) {
  CopyHelper helper;
  const std::vector<uint8_t> from = Pattern((8 << 20) + 1000, 5);  // a partial last piece
  for (int round = 0; round < 5; ++round) {
    std::vector<uint8_t> to(from.size(), 0);
    ASSERT_TRUE(helper.TryStart(from, to));
    size_t landed = 0;
    int calls = 0;
    while (landed < from.size()) {
      const size_t now = helper.AwaitLanded(landed);
      ASSERT_GT(now, landed);
      ASSERT_LE(now, from.size());
      // Whole pieces, or all of it.
      EXPECT_TRUE(now == from.size() || now % CopyHelper::kPieceBytes == 0) << now;
      // What it reports as landed is already the source's bytes, here and now.
      EXPECT_TRUE(std::equal(to.begin() + landed, to.begin() + now, from.begin() + landed));
      landed = now;
      ++calls;
    }
    helper.Wait();
    EXPECT_EQ(to, from);
    EXPECT_GE(calls, 1);
  }
}

// A read lands piece by piece like a copy; one that meets the end of the file (or a descriptor
// that cannot be read) stops there, AwaitLanded then returns what it was given, and Wait says
// why; the helper then takes the next job.
TEST(CopyHelper, ReadsAFilePieceByPieceAndReportsAShortOne) {
  constexpr uint64_t kOffset = 4096 + 3;
  const std::vector<uint8_t> bytes = Pattern((1 << 20) + 1000, 9);
  UniqueFd file(memfd_create("copy-helper-test", MFD_CLOEXEC));
  ASSERT_GE(file.get(), 0);
  ASSERT_EQ(pwrite(file.get(), bytes.data(), bytes.size(), kOffset),
            static_cast<ssize_t>(bytes.size()));
  CopyHelper helper;
  std::vector<uint8_t> to(bytes.size(), 0);
  ASSERT_TRUE(helper.TryStartRead(file.get(), kOffset, to));
  EXPECT_FALSE(helper.TryStart(std::span(bytes).first(16), std::span(to).first(16)));  // busy
  size_t landed = 0;
  while (landed < to.size()) {
    const size_t now = helper.AwaitLanded(landed);
    ASSERT_GT(now, landed);
    EXPECT_TRUE(now == to.size() || now % CopyHelper::kPieceBytes == 0) << now;
    EXPECT_TRUE(std::equal(to.begin() + landed, to.begin() + now, bytes.begin() + landed));
    landed = now;
  }
  EXPECT_EQ(helper.Wait(), 0);
  EXPECT_EQ(to, bytes);

  // The file ends inside the third piece: two pieces land, then nothing more.
  const size_t cut = 2 * CopyHelper::kPieceBytes + 100;
  ASSERT_EQ(ftruncate(file.get(), static_cast<off_t>(kOffset + cut)), 0);
  std::vector<uint8_t> short_to(bytes.size(), 0);
  ASSERT_TRUE(helper.TryStartRead(file.get(), kOffset, short_to));
  landed = 0;
  for (;;) {
    const size_t now = helper.AwaitLanded(landed);
    if (now == landed) break;
    landed = now;
  }
  EXPECT_EQ(helper.Wait(), -1);
  EXPECT_EQ(landed, 2 * CopyHelper::kPieceBytes);
  EXPECT_TRUE(std::equal(short_to.begin(), short_to.begin() + landed, bytes.begin()));

  ASSERT_TRUE(helper.TryStartRead(-1, 0, std::span(short_to).first(10)));
  EXPECT_EQ(helper.AwaitLanded(0), 0u);
  EXPECT_EQ(helper.Wait(), EBADF);
  // Free again, and a later job reports its own outcome.
  ASSERT_TRUE(helper.TryStartRead(file.get(), kOffset, std::span(short_to).first(100)));
  EXPECT_EQ(helper.Wait(), 0);
  EXPECT_EQ(helper.reads_started(), 4u);
  ASSERT_TRUE(helper.TryStart(std::span(bytes).first(16), std::span(to).first(16)));
  EXPECT_EQ(helper.Wait(), 0);
  EXPECT_EQ(helper.reads_started(), 4u);  // a copy is not a read
}

// Two threads sharing the helper, one reading a file that ends early and one a whole file: each
// Wait reports its own read's outcome, never the other's.
TEST(CopyHelper, EachCallerOfASharedHelperGetsItsOwnReadsOutcome) {
  constexpr size_t kBytes = 3 * CopyHelper::kPieceBytes;
  const std::vector<uint8_t> bytes = Pattern(kBytes, 4);
  UniqueFd whole(memfd_create("copy-helper-whole", MFD_CLOEXEC));
  UniqueFd cut(memfd_create("copy-helper-cut", MFD_CLOEXEC));
  ASSERT_EQ(pwrite(whole.get(), bytes.data(), kBytes, 0), static_cast<ssize_t>(kBytes));
  ASSERT_EQ(pwrite(cut.get(), bytes.data(), kBytes - 1, 0), static_cast<ssize_t>(kBytes - 1));
  CopyHelper helper;
  std::atomic<int> wrong{0};
  auto reader = [&](int fd, int expected, int* reads) {
    std::vector<uint8_t> to(kBytes);
    // 300 rounds, and more (for up to 10 s) until this thread got the helper at least once.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (int round = 0; round < 300 || (*reads == 0 && std::chrono::steady_clock::now() < until);
         ++round) {
      if (!helper.TryStartRead(fd, 0, to)) continue;  // the other thread holds it
      ++*reads;
      if (helper.Wait() != expected) ++wrong;
    }
  };
  int reads_a = 0, reads_b = 0;
  std::thread a(reader, whole.get(), 0, &reads_a);
  std::thread b(reader, cut.get(), -1, &reads_b);
  a.join();
  b.join();
  EXPECT_EQ(wrong.load(), 0);
  // Positive control: each caller had the helper read for it.
  EXPECT_GT(reads_a, 0);
  EXPECT_GT(reads_b, 0);
}

TEST(CopyHelper, AHelperNeverUsedStartsNoThreadAndDestroysCleanly) {
  { CopyHelper unused; }
  CopyHelper used;
  std::vector<uint8_t> from = Pattern(100, 1), to(100);
  ASSERT_TRUE(used.TryStart(from, to));
  used.Wait();
  EXPECT_EQ(to, from);
}

}  // namespace
}  // namespace kvault::server
