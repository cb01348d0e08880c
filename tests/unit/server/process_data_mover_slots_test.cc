// ProcessDataMover's bounds on regions: each holds a descriptor, so kMaxRegionsInAll bounds them
// over every peer and one user's peers hold at most kMaxRegionsPerUser; a peer that goes gives
// its slots back at once and has its files closed, not leaked.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../ucx/memory_child.h"
#include "core/process_data_mover.h"
#include "process_data_mover_test_files.h"

namespace kvault::server {
namespace {

using transport::test::BecomeClient;
using transport::test::MemoryChild;

// Each region holds a descriptor: kMaxRegionsInAll bounds them over every peer, and one user's
// peers hold at most kMaxRegionsPerUser of them; a peer that goes takes its regions off both
// counts. `user_of(p)`: the user of the p-th peer.
class RegionSlots {
 public:
  RegionSlots(size_t count, const std::function<uint32_t(size_t)>& user_of) {
    file_ = transport::SharedMemoryFile::Create(4096);
    for (size_t p = 0; p < count; ++p) {
      children_.push_back(std::make_unique<MemoryChild>([] { return BecomeClient(); }));
      Result<transport::ProcessMemory> memory = children_.back()->Adopt();
      EXPECT_TRUE(memory.ok()) << memory.status().ToString();
      if (!memory.ok()) return;
      Result<transport::PeerId> peer = mover.AttachProcess(std::move(*memory), user_of(p));
      EXPECT_TRUE(peer.ok());
      if (peer.ok()) peers.push_back(*peer);
    }
  }
  bool ready() const { return file_.ok() && peers.size() == children_.size(); }
  // Attaches region `i` of peer `p` (a page of its own address range).
  Status Attach(size_t p, size_t i) {
    constexpr uint64_t kBase = uint64_t{1} << 40;
    return mover.AttachRegion(peers[p], kBase + i * 4096, RegionOf(*file_));
  }

  ProcessDataMover mover;
  std::vector<transport::PeerId> peers;

 private:
  Result<transport::SharedMemoryFile> file_ = Status::Unavailable("not created");
  std::vector<std::unique_ptr<MemoryChild>> children_;
};

TEST(ProcessDataMoverTest, RegionsOfAllPeersTogetherAreBounded) {
  constexpr size_t kPeers = ProcessDataMover::kMaxRegionsInAll / ProcessDataMover::kMaxRegions;
  RegionSlots slots(kPeers + 1, [](size_t p) { return static_cast<uint32_t>(2000 + p); });
  ASSERT_TRUE(slots.ready());
  for (size_t p = 0; p < kPeers; ++p) {
    for (size_t i = 0; i < ProcessDataMover::kMaxRegions; ++i) {
      ASSERT_TRUE(slots.Attach(p, i).ok()) << p;
    }
  }
  // The last peer (another user) has none, yet the daemon holds as many as it may.
  EXPECT_EQ(slots.Attach(kPeers, 0).code(), StatusCode::kResourceExhausted);
  slots.mover.Disconnect(slots.peers[0]);
  EXPECT_TRUE(slots.Attach(kPeers, 0).ok());
}

// One user's sessions fill their share and no more: the next region of that user is refused
// while another user's region still attaches (positive control), and the share comes back as
// the user's sessions let go of regions.
TEST(ProcessDataMoverTest, OneUsersPeersHoldAtMostItsShareOfTheRegions) {
  constexpr size_t kPerUser = ProcessDataMover::kMaxRegionsPerUser;
  constexpr size_t kPeersOfA = kPerUser / ProcessDataMover::kMaxRegions + 1;
  static_assert(kPerUser % ProcessDataMover::kMaxRegions == 0);
  // Peers 0..kPeersOfA-1 are user 3001's, the last one user 3002's.
  RegionSlots slots(kPeersOfA + 1,
                    [](size_t p) { return p < kPeersOfA ? uint32_t{3001} : uint32_t{3002}; });
  ASSERT_TRUE(slots.ready());
  for (size_t n = 0; n < kPerUser; ++n) {
    ASSERT_TRUE(
        slots.Attach(n / ProcessDataMover::kMaxRegions, n % ProcessDataMover::kMaxRegions).ok())
        << n;
  }
  // The last peer of user 3001 has room of its own, but its user's share is taken.
  const Status refused = slots.Attach(kPeersOfA - 1, 0);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("this user's"), std::string::npos) << refused.ToString();
  EXPECT_TRUE(slots.Attach(kPeersOfA, 0).ok());  // another user's
  slots.mover.Disconnect(slots.peers[0]);
  EXPECT_TRUE(slots.Attach(kPeersOfA - 1, 0).ok());
}

// Open descriptors of this process.
size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n;
}

// The regions and the memory file of a peer that disconnects are closed, not leaked: the
// process's descriptors drop by them once the mover's release thread has nothing pending (which
// thread closes them is release_thread_test's).
TEST(ProcessDataMoverTest, APeerThatGoesHasItsFilesClosed) {
  Result<transport::SharedMemoryFile> file = FileWith(1 << 16, 2);
  ASSERT_TRUE(file.ok());
  MemoryChild child([] { return BecomeClient(); });
  ASSERT_TRUE(child.ready());
  ProcessDataMover mover;
  Result<transport::ProcessMemory> memory = child.Adopt();
  ASSERT_TRUE(memory.ok()) << memory.status().ToString();
  const size_t with_memory = OpenDescriptors();  // the child's memory file among them
  Result<transport::PeerId> peer = mover.AttachProcess(std::move(*memory), kUser);
  ASSERT_TRUE(peer.ok());
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        mover.AttachRegion(*peer, (uint64_t{1} << 40) + i * (1 << 16), RegionOf(*file)).ok());
  }
  EXPECT_EQ(OpenDescriptors(), with_memory + 3);  // positive control: three regions
  mover.Disconnect(*peer);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (mover.releases_pending() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(mover.releases_pending(), 0u);
  EXPECT_EQ(OpenDescriptors(), with_memory - 1);  // the regions and the memory file
}

}  // namespace
}  // namespace kvault::server
