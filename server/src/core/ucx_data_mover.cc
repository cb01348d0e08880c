// UcxDataMover (ucx_data_mover.h).

#include "core/ucx_data_mover.h"

#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <utility>

namespace kvault::server {

UcxDataMover::UcxDataMover(std::vector<transport::TransferEngine*> engines)
    : engines_(std::move(engines)) {}

transport::TransferEngine& UcxDataMover::EngineOf(transport::PeerId peer) const {
  return *engines_[peer % engines_.size()];
}

Result<transport::TransferEngine*> UcxDataMover::Route(transport::TransferBatch& batch) const {
  const size_t n = engines_.size();
  if (batch.transfers.empty()) return engines_[0];
  const size_t index = batch.transfers[0].peer % n;
  for (transport::Transfer& t : batch.transfers) {
    if (t.peer % n != index) {
      return Status::InvalidArgument("a transfer batch names peers of different UCX workers");
    }
    t.peer /= n;
  }
  return engines_[index];
}

Result<transport::PeerId> UcxDataMover::Connect(std::span<const uint8_t> worker_address) {
  const size_t n = engines_.size();
  const size_t index = next_engine_.fetch_add(1) % n;
  KVAULT_ASSIGN_OR_RETURN(transport::PeerId local, engines_[index]->Connect(worker_address));
  return local * n + index;
}

void UcxDataMover::Disconnect(transport::PeerId peer) {
  (void)EngineOf(peer).Disconnect(peer / engines_.size());
}

std::vector<Status> UcxDataMover::Run(transport::TransferBatch batch) {
  Result<transport::TransferEngine*> engine = Route(batch);
  if (!engine.ok()) return std::vector<Status>(batch.transfers.size(), engine.status());
  return (*engine)->Submit(std::move(batch)).get();
}

namespace {

// What the progress thread tells the waiting caller: which GETs landed, and the final statuses.
struct Arrivals {
  explicit Arrivals(size_t n) : landed(n, 0) {}
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint8_t> landed;
  bool finished = false;
  std::vector<Status> statuses;
};

}  // namespace

std::vector<Status> UcxDataMover::RunInOrder(transport::TransferBatch batch,
                                             const std::function<void(size_t)>& arrived) {
  const size_t n = batch.transfers.size();
  Result<transport::TransferEngine*> engine = Route(batch);
  if (!engine.ok()) return std::vector<Status>(n, engine.status());
  auto state = std::make_shared<Arrivals>(n);
  batch.on_arrival = [state](size_t i) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->landed[i] = 1;
    }
    state->cv.notify_one();
  };
  (*engine)->Submit(std::move(batch), [state](std::vector<Status> statuses) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->statuses = std::move(statuses);
      state->finished = true;
    }
    state->cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(state->mu);
  for (size_t next = 0; next < n; ++next) {
    state->cv.wait(lock, [&] { return state->landed[next] != 0 || state->finished; });
    if (state->landed[next] == 0) continue;  // the batch ended without it: it failed
    lock.unlock();
    arrived(next);
    lock.lock();
  }
  state->cv.wait(lock, [&] { return state->finished; });
  return std::move(state->statuses);
}

void UcxDataMover::ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) {
  EngineOf(peer).ForgetRemoteKey(peer / engines_.size(), remote_key);
}

}  // namespace kvault::server
