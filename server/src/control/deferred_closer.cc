// DeferredCloser (deferred_closer.h).

#include "control/deferred_closer.h"

#include <chrono>
#include <utility>

namespace kvault::server {

DeferredCloser::~DeferredCloser() {
  std::unique_lock lock(state_->mu);
  state_->stop = true;
  state_->cv.notify_all();
  const bool finished =
      state_->cv.wait_for(lock, std::chrono::seconds(1), [&] { return state_->running == 0; });
  lock.unlock();
  for (std::thread& thread : threads_) {
    if (finished) {
      thread.join();
    } else {
      thread.detach();  // one may be stuck in a close; each holds the state it needs
    }
  }
}

void DeferredCloser::Close(UniqueFd fd, uint32_t owner) {
  if (fd.get() < 0) return;
  std::lock_guard lock(state_->mu);
  state_->queued[owner].push_back(std::move(fd));
  ++state_->queued_count;
  // An idle thread not yet woken for other work takes it; else a new thread (those closing may
  // never return).
  if (state_->idle > state_->woken) {
    ++state_->woken;
    state_->cv.notify_one();
    return;
  }
  if (threads_.size() < kMaxThreads) {
    try {
      threads_.emplace_back([state = state_] { Run(state); });
      ++state_->running;
      return;
    } catch (const std::system_error&) {
      // No thread now: the ones there take it when they are free.
    }
  }
  state_->cv.notify_one();
}

size_t DeferredCloser::pending_of(uint32_t owner) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->queued.find(owner);
  return (it == state_->queued.end() ? 0 : it->second.size()) + state_->closing.count(owner);
}

size_t DeferredCloser::pending() const {
  std::lock_guard lock(state_->mu);
  return state_->queued_count + state_->closing.size();
}

void DeferredCloser::Run(const std::shared_ptr<State>& state) {
  std::unique_lock lock(state->mu);
  for (;;) {
    // The oldest queued descriptor of the first user (by uid) none of whose closes is running.
    auto next = state->queued.end();
    for (auto it = state->queued.begin(); it != state->queued.end(); ++it) {
      if (state->closing.count(it->first) == 0) {
        next = it;
        break;
      }
    }
    if (next == state->queued.end()) {
      if (state->stop) break;  // stopping, nothing left this thread may take
      ++state->idle;
      state->cv.wait(lock);
      --state->idle;
      if (state->woken > 0) --state->woken;
      continue;
    }
    const uint32_t owner = next->first;
    UniqueFd fd = std::move(next->second.front());
    next->second.pop_front();
    if (next->second.empty()) state->queued.erase(next);
    --state->queued_count;
    state->closing.insert(owner);
    lock.unlock();
    fd = UniqueFd();  // the close, which may wait on the descriptor's file system
    lock.lock();
    state->closing.erase(owner);
    state->cv.notify_all();  // that user's next one may go now
  }
  --state->running;
  state->cv.notify_all();
}

}  // namespace kvault::server
