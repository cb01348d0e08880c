#pragma once
// EngineCore: the state of a TransferEngine that its worker drives: peers and their
// endpoints, batches in flight, deadlines. Nothing here is locked: every method runs on the
// thread holding the worker (ProgressLoop::TakeOver's lock): the progress thread, or a caller of
// TransferEngine::Run (TransferEngine queues other work to the progress thread).
//
// A batch moves through: posted (one UCX request per transfer) -> flushing (when it holds PUTs
// that completed locally: one endpoint flush per peer, so that "OK" means the bytes reached the
// client) -> delivered (callback run). At its deadline, unfinished transfers (and PUTs not yet
// flushed) are marked deadline-exceeded and the endpoints they use are force-closed; the batch is
// delivered once UCX has handed back every request; if UCX still holds some after the cancel
// grace, the worker is restarted (RestartWorker), which releases them.

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/ucx/transfer.h"
#include "kvault/transport/ucx/ucx_endpoint.h"
#include "kvault/transport/ucx/ucx_worker.h"
#include "kvault/transport/ucx/worker_proof.h"

struct ucp_mem;

namespace kvault::transport {

struct BatchState;
struct CachedKey;
class MappedResidency;

// A batch as queued by Submit: the request, the registration found for each transfer's local
// bytes (null: UCX registers on the fly) and the callback.
struct QueuedBatch {
  TransferBatch batch;
  std::vector<ucp_mem*> local_memh;
  TransferCallback done;
};

class EngineCore {
 public:
  using Clock = std::chrono::steady_clock;

  // `worker` is the engine's worker object; `make_worker` makes a fresh one for it when the old
  // one must go (see RestartWorker). `residency` (may be null; outlives this) counts the pages of
  // mapped client memory that transfers touch (TransferEngineOptions::mapped_residency).
  EngineCore(UcxWorker& worker, std::function<Result<UcxWorker>()> make_worker,
             std::chrono::milliseconds cancel_grace, MappedResidency* residency);
  // Precondition: Shutdown() ran.
  ~EngineCore();
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  // Creates an endpoint to the sealed `address` and returns the new peer's id. Its remote keys
  // are checked against `connection` when given (UcxRemoteKey::Unpack). With `proof`, sends it
  // through the new endpoint (SendWorkerProof); the peer is not added when that fails.
  Result<PeerId> AddPeer(std::vector<uint8_t> address,
                         std::optional<ControlConnection> connection = std::nullopt,
                         std::optional<WorkerProof> proof = std::nullopt);
  // Force-closes the peer's endpoint and forgets it; `done` runs once the close finished.
  void RemovePeer(PeerId peer, std::function<void(Status)> done);
  // Validates and posts every transfer of `queued`.
  void StartBatch(QueuedBatch queued);
  // Whether the first GET of `batch` reads client memory that is mapped into this process (its
  // key unpacks, and ucp_rkey_ptr finds the address): PostTransfers would then hand it to
  // batch.copy_mapped. False when there is no GET or anything about it is wrong (StartBatch then
  // reports what). The key stays cached for the batch.
  bool MapsFirstGet(const TransferBatch& batch);
  // Forgets the key unpacked from `bytes` on `peer`: dropped at once when no batch uses it, else
  // retired (no later batch finds it; destroyed when its last user is erased). Later batches
  // unpack the bytes afresh. Returns false when the peer or the key is unknown.
  bool ForgetKey(PeerId peer, const std::vector<uint8_t>& bytes);
  // One pass of bookkeeping: reap failed endpoints, expire deadlines, advance batches whose
  // requests all completed, finish closes. Returns true when it changed anything.
  bool Poll();
  // The earliest deadline or grace end still pending, or Clock::time_point::max().
  Clock::time_point NextWakeup() const { return next_check_; }
  // Fails what is in flight with Unavailable, force-closes every endpoint, waits (bounded) for
  // UCX to hand everything back, delivers every callback.
  void Shutdown();

  // Nothing in flight: no batch, no close pending, nothing to advance.
  bool Idle() const { return batches_.empty() && ready_.empty() && closes_.empty(); }
  size_t open_endpoints() const;
  // Unpacked remote keys held: cached per peer, plus retired ones a batch still uses.
  size_t cached_keys() const;
  uint64_t worker_restarts() const { return worker_restarts_; }

  // For the UCX request callbacks of engine_core.cc.
  void MarkReady(BatchState* batch);

  // Unpacked remote keys kept per peer (clients send the same key with every request), found by
  // their sealed bytes. Only keys no batch in flight uses are evicted. The same bytes may name
  // other memory once the client deregistered the first: ForgetKey runs before that.
  static constexpr size_t kMaxCachedKeysPerPeer = 64;

 private:
  struct Peer;
  struct PendingClose {
    UcxPendingClose close;
    std::function<void(Status)> done;  // may be empty
  };

  Status EnsureEndpoint(PeerId id, Peer& peer);
  void ResetEndpoint(Peer& peer, std::function<void(Status)> done);
  // The cached key for `bytes` on `peer`, unpacking it on a miss (null with `error` set when the
  // bytes are bad; failures are not cached). The caller holds a use until ReleaseKeys.
  CachedKey* AcquireKey(Peer& peer, const std::vector<uint8_t>& bytes, Status& error);
  void ReleaseKey(CachedKey* key);
  void ReleaseKeys(BatchState& b);
  void EraseBatch(BatchState& b);
  void PostTransfers(BatchState& b);
  void PostFlushes(BatchState& b);
  void Advance(BatchState& b);
  void Expire(BatchState& b, Clock::time_point now);
  void Deliver(BatchState& b);
  bool CheckDeadlines();
  // UCX 1.13 does not hand back emulated GETs (waiting for the peer's reply) when an endpoint is
  // force-closed, and a late reply would still write into the caller's buffer. Destroying the
  // worker is the only way to make UCX let go: every endpoint is reset, every batch in flight
  // fails with Unavailable (expired ones keep their deadline status), peers reconnect lazily.
  // When no fresh worker can be made, nothing is torn down: the batches UCX still holds stay
  // undelivered (their callers must not reuse the buffers yet), and the restart is tried again
  // after kWorkerRetry. worker_restarts counts the restarts made.
  void RestartWorker();
  // Shared by RestartWorker and Shutdown: resets every endpoint (optionally waiting, bounded, for
  // UCX to hand back the canceled requests), fails what is not confirmed with `reason` (expired
  // batches keep their deadline status) and drops every remote key. Returns true when UCX still
  // holds requests, i.e. only destroying the worker will release them.
  bool TearDownInFlight(const Status& reason, bool wait_for_cancels);
  // Delivers every batch not yet delivered and frees them all. Only once UCX holds no request of
  // theirs (the worker is fresh or nothing was outstanding).
  void DeliverAndDropAll();

  UcxWorker& worker_;
  std::function<Result<UcxWorker>()> make_worker_;
  const std::chrono::milliseconds cancel_grace_;
  // How long after a failed worker restart (no fresh worker: resources exhausted) it is tried
  // again; meanwhile the batches whose requests UCX still holds stay undelivered.
  static constexpr std::chrono::seconds kWorkerRetry{1};
  MappedResidency* const residency_;  // may be null
  uint64_t worker_restarts_ = 0;
  PeerId next_peer_ = 1;
  std::unordered_map<PeerId, std::unique_ptr<Peer>> peers_;
  std::vector<PeerId> failed_peers_;                // error handler ran; endpoint not reaped yet
  std::list<std::unique_ptr<BatchState>> batches_;  // in flight or zombie
  std::vector<BatchState*> ready_;                  // outstanding requests may have reached zero
  std::list<PendingClose> closes_;
  std::list<std::unique_ptr<CachedKey>> retired_keys_;  // endpoint gone, still used by a batch
  Clock::time_point next_check_ = Clock::time_point::max();
  Clock::time_point restart_retry_at_{};  // a failed RestartWorker is not tried again before
};

}  // namespace kvault::transport
