#include "ucx/engine_core.h"

#include <ucp/api/ucp.h>

#include <algorithm>
#include <string>
#include <utility>

#include "ucx/engine_state.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {

namespace {

const char* OpName(TransferOp op) { return op == TransferOp::kGet ? "ucp_get_nbx" : "ucp_put_nbx"; }

void SetIfOk(BatchState& b, size_t i, const Status& status) {
  if (b.statuses[i].ok()) b.statuses[i] = status;
}

// A transfer through a key whose mapped memory the peer cut short (UcxRemoteKey::cut_short).
Status CutShortStatus() {
  return Status::Unavailable(
      "the peer's shared memory was cut short while in use (its segment shrank): the transfer "
      "read zeros, wrote nowhere or was not made; the memory must be registered again");
}

void FailPuts(BatchState& b, PeerId peer, const Status& status) {
  for (size_t i = 0; i < b.request.transfers.size(); ++i) {
    const Transfer& t = b.request.transfers[i];
    if (t.op == TransferOp::kPut && t.peer == peer) SetIfOk(b, i, status);
  }
}

// Before a batch is delivered: its transfers through a key cut short meanwhile (UCX's own copies
// included) fail.
void FailCutShortTransfers(BatchState& b) {
  for (const KeyUse& use : b.keys) {
    if (use.key == nullptr || !use.key->key.cut_short()) continue;
    for (size_t i = 0; i < b.request.transfers.size(); ++i) {
      const Transfer& t = b.request.transfers[i];
      if (t.peer == use.peer && t.remote_key == use.index) SetIfOk(b, i, CutShortStatus());
    }
  }
}

// A GET whose bytes are in place, while its batch still stands: tell the caller at once.
void NoteArrival(BatchState& b, size_t index) {
  if (b.request.on_arrival && b.phase == Phase::kTransfers && !b.expired &&
      b.request.transfers[index].op == TransferOp::kGet && b.statuses[index].ok()) {
    b.request.on_arrival(index);
  }
}

void OnTransferDone(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<OpContext*>(user_data);
  BatchState& b = *op->batch;
  b.in_flight[op->index] = 0;
  if (status != UCS_OK && b.phase != Phase::kDelivered) {
    SetIfOk(b, op->index, UcsToStatus(status, OpName(b.request.transfers[op->index].op)));
  }
  if (status == UCS_OK) NoteArrival(b, op->index);
  ucp_request_free(request);
  --b.outstanding;
  b.core->MarkReady(&b);
}

void OnFlushDone(void* request, ucs_status_t status, void* user_data) {
  auto* flush = static_cast<FlushContext*>(user_data);
  BatchState& b = *flush->batch;
  flush->in_flight = false;
  flush->confirmed = status == UCS_OK;
  if (status != UCS_OK && b.phase != Phase::kDelivered) {
    FailPuts(b, flush->peer, UcsToStatus(status, "ucp_ep_flush_nbx"));
  }
  ucp_request_free(request);
  --b.outstanding;
  b.core->MarkReady(&b);
}

// Marks every transfer of `b` that is not known to be complete with `status` and returns the
// peers whose endpoints may still touch memory for it. Complete: a GET whose request finished,
// a PUT whose peer's flush finished.
std::vector<PeerId> MarkUnconfirmed(BatchState& b, const Status& status) {
  std::vector<PeerId> peers;
  for (size_t i = 0; i < b.request.transfers.size(); ++i) {
    const Transfer& t = b.request.transfers[i];
    bool unconfirmed = b.in_flight[i] != 0;
    if (!unconfirmed && t.op == TransferOp::kPut && b.statuses[i].ok()) {
      unconfirmed = std::none_of(b.flushes.begin(), b.flushes.end(), [&](const FlushContext& f) {
        return f.peer == t.peer && f.confirmed;
      });
    }
    if (!unconfirmed) continue;
    if (b.in_flight[i] != 0) {
      b.statuses[i] = status;
    } else {
      SetIfOk(b, i, status);
    }
    peers.push_back(t.peer);
  }
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  return peers;
}

}  // namespace

EngineCore::EngineCore(UcxWorker& worker, std::function<Result<UcxWorker>()> make_worker,
                       std::chrono::milliseconds cancel_grace, MappedResidency* residency)
    : worker_(worker),
      make_worker_(std::move(make_worker)),
      cancel_grace_(cancel_grace),
      residency_(residency) {}

EngineCore::~EngineCore() {
  // Shutdown() left nothing in flight; should a batch remain (a worker that could not be
  // replaced), leak it rather than let a late UCX callback write into freed memory.
  for (auto& b : batches_) {
    if (b->outstanding > 0) (void)b.release();
  }
}

size_t EngineCore::open_endpoints() const {
  return static_cast<size_t>(std::count_if(
      peers_.begin(), peers_.end(), [](const auto& kv) { return kv.second->ep.has_value(); }));
}

size_t EngineCore::cached_keys() const {
  size_t n = retired_keys_.size();
  for (const auto& [id, peer] : peers_) n += peer->keys.size();
  return n;
}

void EngineCore::MarkReady(BatchState* batch) {
  if (batch->ready) return;
  batch->ready = true;
  ready_.push_back(batch);
}

Result<PeerId> EngineCore::AddPeer(std::vector<uint8_t> address,
                                   std::optional<ControlConnection> connection,
                                   std::optional<WorkerProof> proof) {
  auto peer = std::make_unique<Peer>();
  peer->address = std::move(address);
  peer->connection = connection;
  const PeerId id = next_peer_++;
  KVAULT_RETURN_IF_ERROR(EnsureEndpoint(id, *peer));
  if (proof) {
    const Status sent = SendWorkerProof(*peer->ep, *proof);
    if (!sent.ok()) {
      ResetEndpoint(*peer, {});
      return sent;
    }
  }
  peers_.emplace(id, std::move(peer));
  return id;
}

void EngineCore::RemovePeer(PeerId id, std::function<void(Status)> done) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    done(Status::NotFound("Disconnect: unknown peer " + std::to_string(id)));
    return;
  }
  ResetEndpoint(*it->second, std::move(done));
  peers_.erase(it);
}

Status EngineCore::EnsureEndpoint(PeerId id, Peer& peer) {
  if (peer.failed) ResetEndpoint(peer, {});
  if (peer.ep.has_value()) return Status::Ok();
  Result<UcxEndpoint> ep = UcxEndpoint::Connect(worker_, peer.address, [this, id](const Status&) {
    auto it = peers_.find(id);
    if (it != peers_.end()) it->second->failed = true;
    failed_peers_.push_back(id);
  });
  if (!ep.ok()) return ep.status();
  peer.ep.emplace(std::move(ep).value());
  ++peer.ep_generation;
  return Status::Ok();
}

void EngineCore::ResetEndpoint(Peer& peer, std::function<void(Status)> done) {
  peer.failed = false;
  // Keys were unpacked for this endpoint: drop them, or retire those a batch still holds.
  for (auto& key : peer.keys) {
    if (key->users > 0) retired_keys_.push_back(std::move(key));
  }
  peer.keys.clear();
  if (!peer.ep.has_value()) {
    if (done) done(Status::Ok());
    return;
  }
  UcxPendingClose close = peer.ep->StartClose(UcxCloseMode::kForce);
  peer.ep.reset();
  closes_.push_back(PendingClose{std::move(close), std::move(done)});
}

void EngineCore::EraseBatch(BatchState& b) {
  ReleaseKeys(b);
  batches_.erase(b.self);
}

void EngineCore::StartBatch(QueuedBatch queued) {
  batches_.push_back(std::make_unique<BatchState>());
  BatchState& b = *batches_.back();
  b.self = std::prev(batches_.end());
  b.core = this;
  b.request = std::move(queued.batch);
  b.local_memh = std::move(queued.local_memh);
  b.done = std::move(queued.done);
  const size_t n = b.request.transfers.size();
  b.statuses.resize(n);
  b.in_flight.assign(n, 0);
  b.put_generation.assign(n, 0);
  b.ops.resize(n);
  b.local_memh.resize(n, nullptr);
  const Clock::time_point now = Clock::now();
  if (b.request.deadline == Clock::time_point{}) {
    std::fill(b.statuses.begin(), b.statuses.end(),
              Status::InvalidArgument("transfer batch has no deadline"));
  } else if (now >= b.request.deadline) {
    // Too late to start: failing here spares the peer's endpoint a reset.
    std::fill(b.statuses.begin(), b.statuses.end(),
              DeadlineExceededStatus("batch submitted after its deadline"));
  } else {
    PostTransfers(b);
  }
  if (b.outstanding > 0) next_check_ = std::min(next_check_, b.request.deadline);
  MarkReady(&b);
}

void EngineCore::PostTransfers(BatchState& b) {
  for (size_t i = 0; i < b.request.transfers.size(); ++i) {
    const Transfer& t = b.request.transfers[i];
    if (t.local == nullptr || t.length == 0) {
      b.statuses[i] = Status::InvalidArgument("transfer: null local pointer or zero length");
      continue;
    }
    if (t.remote_key >= b.request.remote_keys.size()) {
      b.statuses[i] = Status::InvalidArgument("transfer: remote key index " +
                                              std::to_string(t.remote_key) + " out of range");
      continue;
    }
    if (t.remote_address + t.length < t.remote_address) {
      b.statuses[i] = Status::InvalidArgument("transfer: remote range wraps around");
      continue;
    }
    auto pit = peers_.find(t.peer);
    if (pit == peers_.end()) {
      b.statuses[i] = Status::NotFound("transfer: unknown peer " + std::to_string(t.peer));
      continue;
    }
    Peer& peer = *pit->second;
    if (Status s = EnsureEndpoint(t.peer, peer); !s.ok()) {
      b.statuses[i] = s.WithContext("connect to peer " + std::to_string(t.peer));
      continue;
    }
    auto kit = std::find_if(b.keys.begin(), b.keys.end(), [&](const KeyUse& k) {
      return k.peer == t.peer && k.index == t.remote_key;
    });
    if (kit == b.keys.end()) {
      KeyUse use{t.peer, t.remote_key, nullptr, Status::Ok()};
      use.key = AcquireKey(peer, b.request.remote_keys[t.remote_key], use.status);
      b.keys.push_back(std::move(use));
      kit = std::prev(b.keys.end());
    }
    if (kit->key == nullptr) {
      b.statuses[i] = kit->status;
      continue;
    }
    if (!kit->key->key.Covers(t.remote_address, t.length)) {
      b.statuses[i] =
          Status::OutOfRange("transfer: remote range lies outside the region of its key");
      continue;
    }
    if (kit->key->key.cut_short()) {
      b.statuses[i] = CutShortStatus();
      continue;
    }

    if (t.op == TransferOp::kGet && b.request.copy_mapped) {
      if (const uint8_t* mapped = MappedHere(*kit->key, t.remote_address)) {
        // Copies run here, one after another: a large batch must not run past its deadline.
        if (Clock::now() >= b.request.deadline) {
          b.statuses[i] = DeadlineExceededStatus("mapped GET not started before the deadline");
          continue;
        }
        // A cut met during the copy fails this transfer in Deliver (FailCutShortTransfers), and
        // so does one that a read of the segment's file meets.
        CachedKey& key = *kit->key;
        MappedRemote remote{std::span(mapped, t.length)};
        if (key.key.segment_file() >= 0 && !key.resident.Admit(mapped, t.length)) {
          remote.file = key.key.segment_file();
          remote.file_offset = key.key.SegmentFileOffset(t.remote_address);
        }
        b.statuses[i] = b.request.copy_mapped(i, remote);
        if (remote.file < 0) key.resident.Touched(mapped, t.length);  // counted once copied
        // A read of a file the peer shrank fails the key's later transfers without reading.
        if (!b.statuses[i].ok() && remote.file >= 0) {
          (void)key.key.NoteFailedFileRead(t.remote_address, t.length);
        }
        continue;  // complete: no request, no arrival (the copier saw the bytes)
      }
    }
    b.ops[i] = OpContext{&b, static_cast<uint32_t>(i)};
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnTransferDone;
    param.user_data = &b.ops[i];
    if (b.local_memh[i] != nullptr) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = b.local_memh[i];
    }
    b.in_flight[i] = 1;
    ++b.outstanding;
    b.put_generation[i] = peer.ep_generation;
    ucp_ep_h ep = peer.ep->get();
    ucp_rkey_h rkey = kit->key->key.get();
    const ucs_status_ptr_t r =
        t.op == TransferOp::kGet
            ? ucp_get_nbx(ep, t.local, t.length, t.remote_address, rkey, &param)
            : ucp_put_nbx(ep, t.local, t.length, t.remote_address, rkey, &param);
    // UCX copies into a mapped key's memory here (now or while progressing): its pages count.
    if (t.op == TransferOp::kPut && kit->key->resident.counts()) {
      kit->key->resident.Touched(MappedHere(*kit->key, t.remote_address), t.length);
    }
    if (!UCS_PTR_IS_PTR(r)) {  // finished at once: no callback will come
      b.in_flight[i] = 0;
      --b.outstanding;
      if (UCS_PTR_IS_ERR(r)) {
        b.statuses[i] = UcsToStatus(UCS_PTR_STATUS(r), OpName(t.op));
      } else {
        NoteArrival(b, i);
      }
    }
  }
}

void EngineCore::PostFlushes(BatchState& b) {
  std::vector<PeerId> peers;
  for (size_t i = 0; i < b.request.transfers.size(); ++i) {
    const Transfer& t = b.request.transfers[i];
    if (t.op != TransferOp::kPut || !b.statuses[i].ok()) continue;
    // Went on an endpoint that was reset since (force-closed: what it had queued may be lost):
    // a flush of the peer's new endpoint would confirm nothing of it.
    auto pit = peers_.find(t.peer);
    if (pit == peers_.end() || pit->second->ep_generation != b.put_generation[i]) {
      b.statuses[i] = Status::Unavailable("endpoint to peer " + std::to_string(t.peer) +
                                          " reset before the PUT was confirmed");
      continue;
    }
    peers.push_back(t.peer);
  }
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  // Sized before any flush is posted: UCX holds pointers into the vector.
  b.flushes.reserve(peers.size());
  for (PeerId id : peers) b.flushes.push_back(FlushContext{&b, id, false, false});
  for (FlushContext& flush : b.flushes) {
    auto pit = peers_.find(flush.peer);
    if (pit == peers_.end() || !pit->second->ep.has_value() || pit->second->failed) {
      FailPuts(b, flush.peer,
               Status::Unavailable("endpoint to peer " + std::to_string(flush.peer) +
                                   " closed before its PUTs were confirmed"));
      continue;
    }
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnFlushDone;
    param.user_data = &flush;
    flush.in_flight = true;
    ++b.outstanding;
    const ucs_status_ptr_t r = ucp_ep_flush_nbx(pit->second->ep->get(), &param);
    if (!UCS_PTR_IS_PTR(r)) {
      flush.in_flight = false;
      --b.outstanding;
      flush.confirmed = !UCS_PTR_IS_ERR(r);
      if (UCS_PTR_IS_ERR(r)) {
        FailPuts(b, flush.peer, UcsToStatus(UCS_PTR_STATUS(r), "ucp_ep_flush_nbx"));
      }
    }
  }
}

void EngineCore::Advance(BatchState& b) {
  b.ready = false;
  if (b.outstanding > 0) return;
  if (b.phase == Phase::kTransfers && !b.expired) {
    b.phase = Phase::kFlushing;
    PostFlushes(b);
    if (b.outstanding > 0) {
      next_check_ = std::min(next_check_, b.request.deadline);
      return;
    }
  }
  if (b.phase != Phase::kDelivered) Deliver(b);
  // Delivered and nothing outstanding: UCX holds no pointer into the batch any more.
  EraseBatch(b);
}

void EngineCore::Deliver(BatchState& b) {
  b.phase = Phase::kDelivered;
  // A key cut short leaves the cache: the peer's next key for that memory is unpacked and
  // checked afresh.
  FailCutShortTransfers(b);
  for (const KeyUse& use : b.keys) {
    if (use.key != nullptr && use.key->key.cut_short()) ForgetKey(use.peer, use.key->bytes);
  }
  TransferCallback done = std::move(b.done);
  std::vector<Status> statuses = std::move(b.statuses);
  b.statuses.clear();
  if (done) done(std::move(statuses));
}

void EngineCore::Expire(BatchState& b, Clock::time_point now) {
  b.expired = true;
  b.grace_until = now + cancel_grace_;
  const std::vector<PeerId> peers = MarkUnconfirmed(
      b, DeadlineExceededStatus("transfer did not finish before its deadline; endpoint reset"));
  // RMA cannot be cancelled: closing the endpoints guarantees UCX stops touching the memory.
  for (PeerId id : peers) {
    auto it = peers_.find(id);
    if (it != peers_.end()) ResetEndpoint(*it->second, {});
  }
}

bool EngineCore::CheckDeadlines() {
  const Clock::time_point now = Clock::now();
  if (now < next_check_) return false;
  Clock::time_point next = Clock::time_point::max();
  bool restart = false;
  for (auto& owned : batches_) {
    BatchState& b = *owned;
    if (b.phase == Phase::kDelivered || b.outstanding == 0) continue;
    if (!b.expired && now >= b.request.deadline) Expire(b, now);
    if (!b.expired) {
      next = std::min(next, b.request.deadline);
    } else if (b.outstanding > 0 && now >= b.grace_until) {
      // UCX kept requests of a force-closed endpoint: restart, unless a failed restart is still
      // waiting for its retry.
      if (now >= restart_retry_at_) {
        restart = true;
      } else {
        next = std::min(next, restart_retry_at_);
      }
    } else {
      next = std::min(next, b.grace_until);
    }
  }
  next_check_ = next;
  if (restart) RestartWorker();
  return true;
}

bool EngineCore::TearDownInFlight(const Status& reason, bool wait_for_cancels) {
  for (auto& [id, peer] : peers_) ResetEndpoint(*peer, {});
  if (wait_for_cancels) {
    (void)worker_.ProgressUntil(
        [this] {
          return std::all_of(batches_.begin(), batches_.end(),
                             [](const auto& b) { return b->outstanding == 0; });
        },
        cancel_grace_);
  }
  for (PendingClose& close : closes_) {
    (void)close.close.Wait(std::chrono::milliseconds(100));
    if (close.done) close.done(close.close.status());
  }
  closes_.clear();
  // Every key in use is retired now (the endpoints are gone). Keys that requests UCX still holds
  // are leaked rather than destroyed: UCX may touch them until the worker goes, and they cannot be
  // destroyed after it (they live in its memory pool).
  bool stuck = false;
  std::vector<CachedKey*> held;
  for (auto& b : batches_) {
    if (b->outstanding > 0) {
      stuck = true;
      for (KeyUse& use : b->keys) {
        if (use.key != nullptr) held.push_back(use.key);
      }
    }
    if (b->phase != Phase::kDelivered) FailCutShortTransfers(*b);  // while it knows its keys
    for (KeyUse& use : b->keys) use.key = nullptr;
    if (b->phase != Phase::kDelivered && !b->expired) (void)MarkUnconfirmed(*b, reason);
  }
  for (auto& key : retired_keys_) {
    if (std::find(held.begin(), held.end(), key.get()) != held.end()) {
      key->resident = ResidentMapping();  // counts nothing more, though UCX keeps it mapped
      (void)key.release();
    }
  }
  retired_keys_.clear();
  return stuck;
}

void EngineCore::DeliverAndDropAll() {
  for (auto& b : batches_) {
    if (b->phase != Phase::kDelivered) Deliver(*b);
  }
  batches_.clear();
  ready_.clear();  // after the worker went: its last callbacks may have queued batches
  next_check_ = Clock::time_point::max();
}

void EngineCore::RestartWorker() {
  // The fresh worker first: without one (resources exhausted) nothing is torn down. The batches
  // UCX still holds stay unanswered (their callers would reuse buffers UCX may still write
  // into: a GET's destination, by then another block's room), the others go on, and the restart
  // is tried again after kWorkerRetry (unless the stuck requests complete meanwhile).
  Result<UcxWorker> fresh = make_worker_();
  if (!fresh.ok()) {
    restart_retry_at_ = Clock::now() + kWorkerRetry;
    next_check_ = std::min(next_check_, restart_retry_at_);
    return;
  }
  ++worker_restarts_;
  (void)TearDownInFlight(Status::Unavailable("transfer engine restarted its UCX worker: requests "
                                             "of an expired transfer could not be cancelled"),
                         /*wait_for_cancels=*/false);
  // Destroys the old worker while the batches are still alive: UCX forgets every request (its
  // last callbacks may run now), so nothing can write into the batches' buffers any more.
  worker_ = std::move(fresh).value();
  DeliverAndDropAll();
}

bool EngineCore::Poll() {
  bool did = false;
  if (!failed_peers_.empty()) {
    std::vector<PeerId> failed = std::move(failed_peers_);
    failed_peers_.clear();
    for (PeerId id : failed) {
      auto it = peers_.find(id);
      if (it != peers_.end() && it->second->failed) ResetEndpoint(*it->second, {});
    }
    did = true;
  }
  did |= CheckDeadlines();
  while (!ready_.empty()) {
    std::vector<BatchState*> ready = std::move(ready_);
    ready_.clear();
    for (BatchState* b : ready) Advance(*b);
    did = true;
  }
  for (auto it = closes_.begin(); it != closes_.end();) {
    if (!it->close.Done()) {
      ++it;
      continue;
    }
    if (it->done) it->done(it->close.status());
    it = closes_.erase(it);
    did = true;
  }
  return did;
}

void EngineCore::Shutdown() {
  const bool stuck = TearDownInFlight(Status::Unavailable("transfer engine shutting down"),
                                      /*wait_for_cancels=*/true);
  if (stuck) {
    UcxWorker doomed = std::move(worker_);  // destroyed here, while the batches are alive
  }
  DeliverAndDropAll();
  peers_.clear();
}

}  // namespace kvault::transport
