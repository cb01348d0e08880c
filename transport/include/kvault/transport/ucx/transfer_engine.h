#pragma once
// TransferEngine: the server side of the data plane (DESIGN.md §8). It owns a UCX context and
// one worker driven by a dedicated progress thread (or by callers of Run), connects to client workers by address, and
// initiates one-sided GETs (store) and PUTs (load) against memory the clients registered. The
// server never exposes its own memory: its buffers are registered locally and no remote key for
// them ever leaves the process.
//
// Completion: each batch completes through its callback with one status per transfer. A GET is
// OK once the bytes are in local memory; a PUT is OK once the bytes are in the client's memory
// (the engine flushes the endpoint before reporting), so the server may tell the client "done".
//
// Deadlines: a transfer still running at its batch's deadline fails with a deadline-exceeded
// status (IsDeadlineExceeded). RMA requests cannot be cancelled reliably, so the engine then
// force-closes the endpoint of every peer the late transfers used: UCX completes everything still
// outstanding on it as canceled, which guarantees neither side's memory is touched afterwards,
// and only then does the callback run. Other batches in flight to that peer fail with Unavailable
// ("canceled"). The peer id stays valid: the next Submit to it re-creates the endpoint from the
// stored address. A dead peer (endpoint error) is handled the same way. A failed transfer fails
// its keys, never the engine.
//
// One exception to that isolation, forced by UCX 1.13: a GET that UCX emulates with messages
// (TCP; shared memory into client memory that was registered rather than UCX-allocated) and that
// is still waiting for the client's reply is not cancelled by the force-close, and a late reply
// would still land in the server's buffer. If such requests remain `cancel_grace` after the
// deadline, the engine destroys its worker (UCX then forgets them) and starts a fresh one: every
// endpoint is reset, every batch in flight fails with Unavailable, and peers reconnect on their
// next Submit. Stats().worker_restarts counts these events.
//
// Thread-safety: every public method is safe from any thread. Submit and ForgetRemoteKey only
// queue work and wake the progress thread; Connect and Disconnect wait for it. Run drives the
// worker on the calling thread when it can (see Run). Callbacks run on whichever thread drives
// the worker: the progress thread or a thread inside Run. Lock order: worker lock (held while
// driving), then queue mutex; the registration mutex is never held with either.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/ucx/transfer.h"
#include "kvault/transport/ucx/ucx_context.h"
#include "kvault/transport/ucx/worker_proof.h"

namespace kvault::transport {

class MappedResidency;

struct TransferEngineOptions {
  // Transports, name and keepalive of the engine's UCX context (thread_safe is always on).
  // Default: UCX's choice of transports.
  UcxContextOptions context;
  // How long the progress thread keeps polling after the last event before it sleeps on the
  // worker's event fd. Longer: lower latency for back-to-back transfers, more CPU burnt while
  // idle. Default 50 us.
  std::chrono::microseconds spin_before_sleep{50};
  // After a deadline forces an endpoint closed, how long the engine waits for UCX to hand back
  // the canceled requests. UCX 1.13 never hands back an emulated GET still waiting for the peer's
  // reply (TCP, or shared memory with registered client memory); when the grace ends with such
  // requests the engine restarts its worker (see the class comment). Default 250 ms.
  std::chrono::milliseconds cancel_grace{250};
  // Where the pages of client memory mapped here (a posix or sysv segment UCX attached for a
  // remote key: GETs handed to copy_mapped, PUTs UCX writes into the mapping) are counted and
  // dropped beyond its budget (local/mapped_residency.h). Null: they stay mapped while the key is
  // cached. Must outlive the engine. Default null.
  MappedResidency* mapped_residency = nullptr;
};

struct TransferEngineStats {
  size_t open_endpoints = 0;      // peers with a live endpoint now
  uint64_t worker_restarts = 0;   // times the worker was restarted to reclaim stuck requests
  size_t cached_remote_keys = 0;  // unpacked remote keys held (see ForgetRemoteKey)
};

class TransferEngine {
 public:
  // Starts the context, the worker and the progress thread. Errors as UcxContext::Create and
  // UcxWorker::Create; Internal when the thread or its wakeup fd cannot be created.
  static Result<std::unique_ptr<TransferEngine>> Create(const TransferEngineOptions& options);
  // Fails every batch still in flight with Unavailable ("engine shutting down"), force-closes all
  // endpoints, joins the progress thread. Registered regions are released.
  ~TransferEngine();
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // Registers [address, address + length) once, so transfers whose local bytes fall anywhere
  // inside it skip on-the-fly registration (the host arena is registered this way). The memory
  // stays owned by the caller. InvalidArgument for an empty range or one overlapping a region
  // already registered; UCX's errors otherwise.
  Result<RegionId> RegisterMemory(void* address, size_t length);
  // Releases a region. Precondition: no transfer in flight uses it. NotFound for an unknown id.
  Status UnregisterMemory(RegionId region);

  // Records a client worker's sealed address and creates an endpoint to it (no round trip).
  // `connection`: the client's control connection, when known; the remote keys it sends are then
  // checked against it (UcxRemoteKey::Unpack). `proof`: sent to the worker through the new
  // endpoint (worker_proof.h), for the client to return on its control connection.
  // InvalidArgument / Corruption for malformed bytes, Unavailable when unreachable or when the
  // proof cannot be sent.
  Result<PeerId> Connect(std::span<const uint8_t> peer_address,
                         std::optional<ControlConnection> connection = std::nullopt,
                         std::optional<WorkerProof> proof = std::nullopt);
  // Force-closes the peer's endpoint and forgets it; its in-flight transfers fail with
  // Unavailable. NotFound for an unknown id. Waits for the close to finish.
  Status Disconnect(PeerId peer);

  // Queues `batch`; `done` is called exactly once (see TransferCallback), also when the batch is
  // rejected: every transfer fails with InvalidArgument when the batch has no deadline, with a
  // deadline-exceeded status when it is already past; per transfer, InvalidArgument for a null
  // local pointer, a zero length or a bad remote-key index, NotFound for an unknown peer, the
  // UcxRemoteKey::Unpack error for bad remote-key bytes, OutOfRange for a remote range outside
  // the region its key covers.
  void Submit(TransferBatch batch, TransferCallback done);
  // As above, completing a future instead of calling back.
  std::future<std::vector<Status>> Submit(TransferBatch batch);
  // As Submit, and waits for the statuses; the calling thread drives the worker itself: it takes
  // the worker from the progress thread (waiting while another thread drives it), runs what was
  // queued before, posts the batch and progresses until the batch is done. If the batch stalls
  // (no UCX event for spin_before_sleep, e.g. a slow network peer) the progress thread takes it
  // over and the caller sleeps. With shared memory a whole load or store then completes without
  // a thread hand-off. `arrived`, if set, is called on the calling thread for each GET whose
  // bytes are in place, in index order, skipping failed transfers, without the worker held
  // (batch.on_arrival is replaced); for a batch of several transfers the progress thread then
  // moves them, so that the caller's work on the first overlaps the later ones, except when the
  // batch has a copier (batch.copy_mapped) and its first GET is mapped here: the calling thread
  // then drives it, copying the mapped GETs itself (otherwise the copier is dropped). Never call
  // Run from a callback.
  std::vector<Status> Run(TransferBatch batch,
                          const std::function<void(size_t)>& arrived = nullptr);

  // Remote keys are unpacked once per peer and kept, by their sealed bytes, for later batches
  // (up to 64 per peer). With shared-memory transports an unpacked key maps the client's memory,
  // and a client that frees a region and registers another may get the same bytes for it. So a
  // client tells the server before it deregisters (ReleaseMemory, docs/data_plane.md §7), and the
  // server calls this: the key `remote_key` unpacked to on `peer` is forgotten on the progress
  // thread, in order with what was submitted before. Batches submitted earlier keep using it
  // until they finish (it is destroyed, and the memory unmapped, after the last); every batch
  // submitted after this call unpacks the bytes afresh. Unknown peers and keys are ignored.
  // Returns at once.
  void ForgetRemoteKey(PeerId peer, std::span<const uint8_t> remote_key);

  // Counters for metrics and tests, refreshed by the progress thread after each pass.
  TransferEngineStats Stats() const;

  class Impl;

 private:
  explicit TransferEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::transport
