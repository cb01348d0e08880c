#pragma once
// Worker proofs: how a server learns that the UCX worker a client announced in its Hello belongs
// to that client. The address is the client's word, and whatever worker it names serves the
// GETs and PUTs UCX emulates with messages (TCP, registered memory on one host): a client that
// announced another process's worker (its address built from that process's pid, shared-memory
// descriptors and ports) would have the server read and write that process's memory. So once a
// client has authenticated, the server sends a fresh random token to the announced worker as a
// UCX active message (TransferEngine::Connect with a proof), the worker at that address keeps it
// (WorkerProofMailbox), and the server moves no block data for the session until the token comes
// back on the control connection (the ProveWorker message, docs/authentication.md §6). Only the
// owner of the worker can read it there.
//
// The active message: id kWorkerProofAmId, no header, 40 bytes of data: the session id (u64
// little-endian), then the 32-byte token.
//
// Thread-safety: WorkerProofMailbox is safe from any thread; the encode and decode functions are
// pure.

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_endpoint.h"
#include "kvault/transport/ucx/ucx_worker.h"

namespace kvault::transport {

inline constexpr unsigned kWorkerProofAmId = 1;
inline constexpr size_t kWorkerProofBytes = 40;

struct WorkerProof {
  uint64_t session_id = 0;
  std::array<uint8_t, 32> token{};
  bool operator==(const WorkerProof&) const = default;
};

std::array<uint8_t, kWorkerProofBytes> EncodeWorkerProof(const WorkerProof& proof);
// nullopt unless `bytes` is exactly kWorkerProofBytes long.
std::optional<WorkerProof> DecodeWorkerProof(std::span<const uint8_t> bytes);

// Sends `proof` to the peer of `endpoint` as the active message above. The bytes are copied; the
// send completes in the background as the worker progresses. UCX's errors (Unavailable when the
// endpoint cannot send).
Status SendWorkerProof(const UcxEndpoint& endpoint, const WorkerProof& proof);

// Receives the proofs sent to one worker. Keeps the latest kKeptProofs (older ones are dropped:
// a client waits for its proof right after its Auth).
class WorkerProofMailbox {
 public:
  static constexpr size_t kKeptProofs = 16;
  using Clock = std::chrono::steady_clock;

  // Registers the active-message handler on `worker`, which must outlive the mailbox. Call
  // before any thread progresses the worker. UCX's errors.
  static Result<std::unique_ptr<WorkerProofMailbox>> Attach(UcxWorker& worker);
  // Removes the handler. Precondition: no thread progresses the worker.
  ~WorkerProofMailbox();
  WorkerProofMailbox(const WorkerProofMailbox&) = delete;
  WorkerProofMailbox& operator=(const WorkerProofMailbox&) = delete;

  // The token sent for `session_id`, if it arrived (and removes it).
  std::optional<std::array<uint8_t, 32>> Take(uint64_t session_id);
  // As Take, waiting until `deadline` for a worker that another thread progresses.
  // Unavailable with a deadline-exceeded message (IsDeadlineExceeded) when the token has not
  // arrived by then.
  Result<std::array<uint8_t, 32>> Wait(uint64_t session_id, Clock::time_point deadline);

  // Drops every proof kept: a client calls it before a new handshake, so that a proof that came
  // too late for an earlier one (a daemon that restarted numbers its sessions anew) is never
  // returned for the new session.
  void Clear();

  // What the handler does with a message's data: keeps it when it decodes. Exposed for tests.
  void Deliver(std::span<const uint8_t> data);

 private:
  explicit WorkerProofMailbox(UcxWorker& worker) : worker_(worker) {}
  // Take's work. Precondition: mu_ held.
  std::optional<std::array<uint8_t, 32>> TakeLocked(uint64_t session_id);

  UcxWorker& worker_;
  std::mutex mu_;
  std::condition_variable arrived_;
  std::deque<WorkerProof> proofs_;  // guarded by mu_
};

}  // namespace kvault::transport
