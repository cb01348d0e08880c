// MemoryHandles: a handle redeems the memory handed over under it exactly once, expires by the
// clock, and unredeemed hand-overs are capped per user and in all; each refusal beside a
// positive control.
#include "core/memory_handles.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "sleeping_child.h"

namespace kvault::server {
namespace {

using transport::Bytes32;
using transport::ProcessMemory;

const uint64_t kValue = 0x1122334455667788;

// A sleeping child whose memory is handed over.
class Sleeper : public SleepingChild {
 public:
  // A fresh descriptor of its memory file, adopted as a hand-over would be, with the probe of
  // kValue.
  HandedOverMemory Memory() const {
    UniqueFd fd(open(MemoryFile().c_str(), O_RDWR | O_CLOEXEC));
    Result<ProcessMemory> memory = ProcessMemory::Adopt(&fd);
    EXPECT_TRUE(memory.ok()) << memory.status().ToString();
    transport::HandOverProbe probe{};
    std::memcpy(probe.data(), &kValue, sizeof kValue);
    return HandedOverMemory{.memory = std::move(*memory),
                            .probe_address = reinterpret_cast<uintptr_t>(&kValue),
                            .probe = probe,
                            .region = std::nullopt,
                            .connection = {},
                            .sender_pid = 0};
  }
};

bool ReadsTheChild(const ProcessMemory& memory) {
  uint64_t seen = 0;
  const Status read = memory.Read(reinterpret_cast<uintptr_t>(&kValue),
                                  std::span<uint8_t>(reinterpret_cast<uint8_t*>(&seen), 8));
  return read.ok() && seen == kValue;
}

TEST(MemoryHandlesTest, AHandleRedeemsItsMemoryOnce) {
  Sleeper child;
  MemoryHandles handles;
  Result<Bytes32> handle = handles.Issue(child.Memory(), 1000);
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_NE(*handle, Bytes32{});
  EXPECT_EQ(handles.pending(), 1u);
  Bytes32 other = *handle;
  other[31] ^= 1;
  EXPECT_FALSE(handles.Redeem(other).has_value());
  EXPECT_FALSE(handles.Redeem(Bytes32{}).has_value());
  std::optional<HandedOverMemory> handed = handles.Redeem(*handle);  // positive control
  ASSERT_TRUE(handed.has_value());
  EXPECT_TRUE(ReadsTheChild(*handed->memory));
  EXPECT_TRUE(handed->memory->Probe(handed->probe_address, handed->probe).ok());
  EXPECT_FALSE(handles.Redeem(*handle).has_value());  // used
  EXPECT_EQ(handles.pending(), 0u);
  // Two hand-overs get two different handles.
  Result<Bytes32> a = handles.Issue(child.Memory(), 1000);
  Result<Bytes32> b = handles.Issue(child.Memory(), 1000);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(MemoryHandlesTest, AHandleNoAuthRedeemsInTimeExpires) {
  Sleeper child;
  auto now = std::chrono::steady_clock::now();
  MemoryHandleLimits limits;
  limits.lifetime = std::chrono::seconds(10);
  MemoryHandles handles(limits, [&] { return now; });
  Result<Bytes32> late = handles.Issue(child.Memory(), 1000);
  Result<Bytes32> early = handles.Issue(child.Memory(), 1000);
  ASSERT_TRUE(late.ok() && early.ok());
  now += std::chrono::seconds(9);
  EXPECT_TRUE(handles.Redeem(*early).has_value());  // positive control: within its lifetime
  now += std::chrono::seconds(1);
  EXPECT_FALSE(handles.Redeem(*late).has_value());
  EXPECT_EQ(handles.pending(), 0u);
}

TEST(MemoryHandlesTest, UnredeemedHandOversAreCappedPerUserAndInAll) {
  Sleeper child;
  MemoryHandleLimits limits;
  limits.per_user = 2;
  limits.total = 3;
  MemoryHandles handles(limits);
  Result<Bytes32> first = handles.Issue(child.Memory(), 1);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(handles.Issue(child.Memory(), 1).ok());
  const Status per_user = handles.Issue(child.Memory(), 1).status();
  EXPECT_EQ(per_user.code(), StatusCode::kUnavailable) << per_user.ToString();
  ASSERT_TRUE(handles.Issue(child.Memory(), 2).ok());  // another user still may
  const Status total = handles.Issue(child.Memory(), 3).status();
  EXPECT_EQ(total.code(), StatusCode::kUnavailable) << total.ToString();
  // A redeemed handle frees its user's slot and one of all.
  ASSERT_TRUE(handles.Redeem(*first).has_value());
  EXPECT_TRUE(handles.Issue(child.Memory(), 1).ok());
  EXPECT_EQ(handles.pending(), 3u);
}

}  // namespace
}  // namespace kvault::server
