// MemoryHandles (memory_handles.h).

#include "core/memory_handles.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/auth.h"

namespace kvault::server {
namespace {

// Entries are found by the handle's SHA-256, so the time a lookup takes says nothing about how
// much of a guessed handle is right.
AuthDigest KeyOf(const transport::Bytes32& handle) {
  return TokenHash(std::string_view(reinterpret_cast<const char*>(handle.data()), handle.size()));
}

}  // namespace

MemoryHandles::MemoryHandles(MemoryHandleLimits limits, Clock clock)
    : limits_(limits), clock_(std::move(clock)) {}

std::chrono::steady_clock::time_point MemoryHandles::Now() const {
  return clock_ ? clock_() : std::chrono::steady_clock::now();
}

HandedOverMemory MemoryHandles::EraseLocked(std::map<AuthDigest, Entry>::iterator it) {
  auto user = per_user_.find(it->second.uid);
  if (user != per_user_.end() && --user->second == 0) per_user_.erase(user);
  HandedOverMemory handed = std::move(it->second.handed);
  entries_.erase(it);
  return handed;
}

void MemoryHandles::DropExpiredLocked(std::chrono::steady_clock::time_point now,
                                      std::vector<HandedOverMemory>* gone) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (it->second.expires <= now) gone->push_back(EraseLocked(it));
    it = next;
  }
}

Result<transport::Bytes32> MemoryHandles::Issue(HandedOverMemory handed, uint32_t uid) {
  Result<AuthNonce> random = NewAuthChallenge();
  if (!random.ok()) return Status::Unavailable(random.status().message());
  transport::Bytes32 handle;
  std::copy(random->begin(), random->end(), handle.begin());
  if (handle == transport::Bytes32{}) handle[0] = 1;  // all zeros means "none" in an Auth
  const auto now = Now();
  std::vector<HandedOverMemory> gone;  // closed after the lock is released
  std::lock_guard lock(mu_);
  DropExpiredLocked(now, &gone);
  auto user = per_user_.find(uid);
  if (user != per_user_.end() && user->second >= limits_.per_user) {
    return Status::Unavailable("this user has " + std::to_string(user->second) +
                               " memory hand-overs no Auth has redeemed yet");
  }
  if (entries_.size() >= limits_.total) {
    return Status::Unavailable(std::to_string(entries_.size()) +
                               " memory hand-overs wait for an Auth; try again later");
  }
  entries_.emplace(KeyOf(handle), Entry{std::move(handed), uid, now + limits_.lifetime});
  ++per_user_[uid];
  return handle;
}

std::optional<HandedOverMemory> MemoryHandles::Redeem(const transport::Bytes32& handle,
                                                      HandedOverKind kind) {
  const auto now = Now();
  std::vector<HandedOverMemory> gone;  // closed after the lock is released
  std::lock_guard lock(mu_);
  DropExpiredLocked(now, &gone);
  auto it = entries_.find(KeyOf(handle));
  if (it == entries_.end() ||
      it->second.handed.region.has_value() != (kind == HandedOverKind::kRegion)) {
    return std::nullopt;
  }
  return EraseLocked(it);
}

void MemoryHandles::DropExpired() {
  const auto now = Now();
  std::vector<HandedOverMemory> gone;  // closed after the lock is released
  std::lock_guard lock(mu_);
  DropExpiredLocked(now, &gone);
}

size_t MemoryHandles::pending() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace kvault::server
