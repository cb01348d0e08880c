// DeferredCloser (deferred_closer.h).

#include "control/deferred_closer.h"

#include <chrono>
#include <utility>

namespace kvault::server {

DeferredCloser::DeferredCloser() : thread_([state = state_] { Run(state); }) {}

DeferredCloser::~DeferredCloser() {
  std::unique_lock lock(state_->mu);
  state_->stop = true;
  state_->cv.notify_all();
  if (state_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return state_->done; })) {
    lock.unlock();
    thread_.join();
  } else {
    lock.unlock();
    thread_.detach();  // stuck in a close; it holds the state it needs
  }
}

void DeferredCloser::Close(UniqueFd fd, uint32_t owner) {
  if (fd.get() < 0) return;
  std::lock_guard lock(state_->mu);
  state_->queue.emplace_back(std::move(fd), owner);
  ++state_->of_owner[owner];
  state_->cv.notify_all();
}

size_t DeferredCloser::pending_of(uint32_t owner) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->of_owner.find(owner);
  return it == state_->of_owner.end() ? 0 : it->second;
}

size_t DeferredCloser::pending() const {
  std::lock_guard lock(state_->mu);
  return state_->queue.size() + state_->closing;
}

void DeferredCloser::Run(const std::shared_ptr<State>& state) {
  std::unique_lock lock(state->mu);
  for (;;) {
    state->cv.wait(lock, [&] { return state->stop || !state->queue.empty(); });
    if (state->queue.empty()) break;  // stopping, nothing left
    auto [fd, owner] = std::move(state->queue.front());
    state->queue.pop_front();
    state->closing = 1;
    lock.unlock();
    fd = UniqueFd();  // the close, which may wait on the descriptor's file system
    lock.lock();
    state->closing = 0;
    if (--state->of_owner[owner] == 0) state->of_owner.erase(owner);
  }
  state->done = true;
  state->cv.notify_all();
}

}  // namespace kvault::server
