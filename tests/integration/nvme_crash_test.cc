// SIGKILL at random moments never leaves a wrong or corrupt block readable in the nvme tier.
//
// Each round starts nvme_crash_writer on the same directory, kills it with SIGKILL at a random
// moment (most rounds while it writes, some while it opens and recovers), then reopens the tier
// here and checks that every block it recovers reads back, verifies and equals the object derived
// from its key; that blocks which survived an earlier round are still there (a clean close loses
// nothing); and, as the positive control, that blocks do survive kills.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme_crash_options.h"
#include "nvme_test_util.h"

extern char** environ;

namespace kvault::storage {
namespace {

using testing::CrashTestOptions;
using testing::ObjectFor;
using testing::TempDir;

constexpr int kRounds = 25;

using KeyId = std::pair<uint32_t, std::vector<uint8_t>>;
KeyId IdOf(const ScopedKey& key) { return {key.tenant, {key.key.begin(), key.key.end()}}; }

// Starts the writer; returns its pid and the read end of its ready pipe, or pid -1.
std::pair<pid_t, int> StartWriter(const std::string& dir, int round) {
  int ready[2];
  if (::pipe(ready) != 0) return {-1, -1};
  ::fcntl(ready[0], F_SETFD, FD_CLOEXEC);
  const std::string round_arg = std::to_string(round);
  const std::string fd_arg = std::to_string(ready[1]);
  std::vector<char*> argv = {const_cast<char*>(KVAULT_NVME_CRASH_WRITER),
                             const_cast<char*>(dir.c_str()), const_cast<char*>(round_arg.c_str()),
                             const_cast<char*>(fd_arg.c_str()), nullptr};
  pid_t pid = -1;
  if (::posix_spawn(&pid, KVAULT_NVME_CRASH_WRITER, nullptr, nullptr, argv.data(), environ) != 0) {
    pid = -1;
  }
  ::close(ready[1]);
  return {pid, ready[0]};
}

TEST(NvmeCrashTest, SigkillNeverLeavesAWrongOrCorruptBlockReadable) {
  {
    Result<std::unique_ptr<NvmeTier>> probe = NvmeTier::Open(CrashTestOptions(""));
    if (probe.status().code() == StatusCode::kUnsupported) GTEST_SKIP() << "no RocksDB";
  }
  TempDir dir;
  const uint32_t seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);

  std::set<KeyId> survived_before;  // blocks of finished rounds seen after the last round
  uint64_t total_recovered = 0, recovered_from_killed_round = 0, killed_while_writing = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto [pid, ready_fd] = StartWriter(dir.path(), round);
    ASSERT_GT(pid, 0) << "cannot start " << KVAULT_NVME_CRASH_WRITER;
    // One round in five is killed while it opens and recovers; the others while they write.
    const bool during_open = round % 5 == 4;
    if (!during_open) {
      pollfd wait_ready{ready_fd, POLLIN, 0};
      char byte;
      const bool ready = ::poll(&wait_ready, 1, 10000) == 1 && ::read(ready_fd, &byte, 1) == 1;
      EXPECT_TRUE(ready) << "the writer did not open the tier";
      ++killed_while_writing;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(
        std::uniform_int_distribution<int>(0, during_open ? 60000 : 250000)(rng)));
    ::kill(pid, SIGKILL);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ::close(ready_fd);  // only now: a writer that finds it closed would die of SIGPIPE
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the writer ended by itself (exit status "
        << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1) << ", signal "
        << (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0) << "): see its stderr";

    Result<std::unique_ptr<NvmeTier>> opened = NvmeTier::Open(CrashTestOptions(dir.path()));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    NvmeTier& tier = **opened;
    std::vector<std::pair<ScopedKey, uint32_t>> found;
    ASSERT_TRUE(tier.Recover([&](const ScopedKey& key, TierSlot, uint32_t bytes) {
                      found.emplace_back(key, bytes);
                    })
                    .ok());
    std::set<KeyId> now;
    std::vector<uint8_t> out;
    for (const auto& [key, bytes] : found) {
      const std::vector<uint8_t> expected = ObjectFor(key);
      ASSERT_EQ(bytes, expected.size());
      out.assign(bytes, 0);
      Status read = tier.Read(key, 0, bytes, out);
      ASSERT_TRUE(read.ok()) << read.ToString();
      ASSERT_EQ(out, expected);
      now.insert(IdOf(key));
    }
    for (const KeyId& id : survived_before) {
      ASSERT_EQ(now.count(id), 1u) << "a block recovered after an earlier round is gone";
    }
    for (uint64_t i = 0; i < testing::kCrashBlocksPerRound; ++i) {
      recovered_from_killed_round += now.count(IdOf(testing::TestKey(round % 4, round, i)));
    }
    EXPECT_EQ(testing::CounterOf(tier, "checksum_failures_total"), 0);
    total_recovered = now.size();
    survived_before = std::move(now);
  }
  // Positive controls: kills hit writers at work, and flushed blocks outlive the kill.
  EXPECT_GT(killed_while_writing, 0u);
  EXPECT_GT(recovered_from_killed_round, 0u);
  EXPECT_GT(total_recovered, 0u);
  std::printf(
      "nvme crash test: %d rounds, %llu blocks held at the end, %llu recovered from "
      "the round just killed (summed)\n",
      kRounds, static_cast<unsigned long long>(total_recovered),
      static_cast<unsigned long long>(recovered_from_killed_round));
}

}  // namespace
}  // namespace kvault::storage
