#pragma once
// MemoryHandles: the memory that clients on this host handed over for the process-memory data
// plane (transport/local/memory_handover.h), each kept under a fresh random handle until the
// client's Auth redeems it (Service::OnAuth). A handle is single-use and expires: memory nobody
// redeems is closed after `lifetime`. Caps per sending user and in all bound what unredeemed
// hand-overs hold, so one local user cannot keep others from handing over.
//
// Thread-safety: all members may be called from many threads at once.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/common/result.h"
#include "kvault/transport/local/memory_handover_wire.h"
#include "kvault/transport/local/process_memory.h"
#include "kvault/transport/local/region_file.h"
#include "kvault/transport/session_messages.h"
#include "kvault/transport/ucx/control_connection.h"

namespace kvault::server {

// One region of a client's memory, handed over once its memory was attached: the file whose
// bytes [0, file.length()) the client maps at `base`. Its sender is HandedOverMemory::sender_pid.
struct HandedOverRegion {
  transport::RegionFile file;
  uint64_t base = 0;
};

// Memory a client handed over, with what it vouched for: its memory file, with the probe bytes
// it says lie at probe_address in that memory, or one region of that memory (exactly one of
// `memory` and `region`), and the control connection it handed them over for (as the client
// sees its ends). Whoever redeems the handle checks them (Service::OnAttachMemory) before using
// the memory.
struct HandedOverMemory {
  std::optional<transport::ProcessMemory> memory;
  uint64_t probe_address = 0;
  transport::HandOverProbe probe{};
  std::optional<HandedOverRegion> region;
  transport::ControlConnection connection;
  uint32_t sender_pid = 0;  // of the memory's hand-over (SO_PEERCRED; 0: unknown)
  uint32_t sender_uid = 0;  // its user (SO_PEERCRED)
};

enum class HandedOverKind { kProcess, kRegion };

struct MemoryHandleLimits {
  size_t per_user = 16;  // unredeemed handles of one sending user
  size_t total = 256;    // unredeemed handles in all
  std::chrono::milliseconds lifetime{10'000};
};

class MemoryHandles {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `clock` tells the time expiry is measured by (tests drive it); empty = steady_clock.
  explicit MemoryHandles(MemoryHandleLimits limits = {}, Clock clock = {});

  // Keeps `handed`, handed over by user `uid`, under a new handle (never all zeros).
  // Unavailable when `uid` already holds limits.per_user unredeemed handles or all hold
  // limits.total (expired ones are dropped first), or when no random bytes can be had.
  Result<transport::Bytes32> Issue(HandedOverMemory handed, uint32_t uid);

  // What was kept under `handle`, which is forgotten; nullopt for a handle that is unknown,
  // expired, redeemed already, or of the other kind (which stays).
  std::optional<HandedOverMemory> Redeem(const transport::Bytes32& handle,
                                         HandedOverKind kind = HandedOverKind::kProcess);

  // Forgets the handles that have expired, closing their memory (Issue and Redeem do too).
  void DropExpired();

  // Unredeemed handles, expired ones included until the next DropExpired, Issue or Redeem.
  size_t pending() const;

 private:
  struct Entry {
    HandedOverMemory handed;
    uint32_t uid;
    std::chrono::steady_clock::time_point expires;
  };
  std::chrono::steady_clock::time_point Now() const;
  // Both hand what they take out to the caller, who releases it after unlocking mu_: the last
  // close of a large memfd frees its pages there and then.
  void DropExpiredLocked(std::chrono::steady_clock::time_point now,
                         std::vector<HandedOverMemory>* gone);
  HandedOverMemory EraseLocked(std::map<AuthDigest, Entry>::iterator it);

  const MemoryHandleLimits limits_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::map<AuthDigest, Entry> entries_;  // by the handle's SHA-256
  std::unordered_map<uint32_t, size_t> per_user_;
};

}  // namespace kvault::server
