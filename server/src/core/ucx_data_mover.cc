// UcxDataMover (ucx_data_mover.h).

#include "core/ucx_data_mover.h"

#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <utility>

namespace kvault::server {

Result<transport::PeerId> UcxDataMover::Connect(std::span<const uint8_t> worker_address) {
  return engine_.Connect(worker_address);
}

void UcxDataMover::Disconnect(transport::PeerId peer) { (void)engine_.Disconnect(peer); }

std::vector<Status> UcxDataMover::Run(transport::TransferBatch batch) {
  return engine_.Submit(std::move(batch)).get();
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
  auto state = std::make_shared<Arrivals>(n);
  batch.on_arrival = [state](size_t i) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->landed[i] = 1;
    }
    state->cv.notify_one();
  };
  engine_.Submit(std::move(batch), [state](std::vector<Status> statuses) {
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
  engine_.ForgetRemoteKey(peer, remote_key);
}

}  // namespace kvault::server
