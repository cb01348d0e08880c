// OpState (op_state.h) and the handles of handles.h over it.

#include "kvault/handles.h"

#include <algorithm>
#include <memory>

#include "op_state.h"

namespace kvault {
namespace client_internal {
namespace {

Status InFlight() { return Status::Unavailable("in flight"); }

}  // namespace

OpState::OpState(size_t keys)
    : keys_(keys), key_status_(keys, InFlight()), key_done_(keys, 0), object_size_(keys, 0) {}

std::shared_ptr<OpState> OpState::Failed(size_t keys, const Status& status, bool refused) {
  auto state = std::make_shared<OpState>(keys);
  state->refused_ = refused;
  std::lock_guard<std::mutex> lock(state->mu_);
  state->FinishLocked(status);
  return state;
}

void OpState::ExpectParts(size_t parts) {
  std::lock_guard<std::mutex> lock(mu_);
  parts_left_ = parts;
  unsettled_ = parts;
  if (parts == 0 && !done_) FinishLocked(Status::Ok());
}

void OpState::FinishLocked(const Status& status) {
  if (done_) return;
  done_ = true;
  status_ = status;
  for (size_t i = 0; i < keys_; ++i) {
    if (!key_done_[i]) {
      key_status_[i] = status;
      key_done_[i] = 1;
    }
  }
  cv_.notify_all();
}

void OpState::PartDone(std::span<const size_t> indices, const Status& request,
                       std::span<const Status> key_statuses,
                       std::span<const uint64_t> object_sizes) {
  std::lock_guard<std::mutex> lock(mu_);
  PartDoneLocked(indices, request, key_statuses, object_sizes);
}

void OpState::PartCopiedOut(std::span<const size_t> indices, std::span<const Status> key_statuses,
                            std::span<const uint64_t> object_sizes,
                            const std::function<void()>& copy_out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;  // cancelled or past its deadline: the buffers are the caller's again
    ++copying_;
  }
  copy_out();
  std::lock_guard<std::mutex> lock(mu_);
  --copying_;
  PartDoneLocked(indices, Status::Ok(), key_statuses, object_sizes);
  cv_.notify_all();  // a Cancel() during the copy waits in WaitSettled for its end
}

void OpState::PartDoneLocked(std::span<const size_t> indices, const Status& request,
                             std::span<const Status> key_statuses,
                             std::span<const uint64_t> object_sizes) {
  if (done_) return;  // cancelled: results that arrive late are not reported
  for (size_t j = 0; j < indices.size(); ++j) {
    const size_t i = indices[j];
    key_status_[i] = request.ok() && j < key_statuses.size() ? key_statuses[j] : request;
    if (request.ok() && j < object_sizes.size()) object_size_[i] = object_sizes[j];
    key_done_[i] = 1;
  }
  if (!request.ok() && status_.ok()) status_ = request;  // the first failure names the request
  if (parts_left_ > 0 && --parts_left_ == 0) {
    const Status overall = status_;
    status_ = Status::Ok();
    FinishLocked(overall);
  }
}

void OpState::PartSettled() {
  std::lock_guard<std::mutex> lock(mu_);
  if (unsettled_ > 0) --unsettled_;
  cv_.notify_all();
}

void OpState::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) return;
  cancelled_ = true;
  FinishLocked(Status::Unavailable("cancelled"));
}

Status OpState::Wait(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (deadline == Deadline::max()) {
    cv_.wait(lock, [&] { return done_; });
  } else {
    cv_.wait_until(lock, deadline, [&] { return done_; });
  }
  if (!done_) return Status::Unavailable("still in flight at the wait's deadline");
  return status_;
}

bool OpState::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

bool OpState::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool OpState::settled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return SettledLocked();
}

bool OpState::WaitSettled(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  auto pred = [&] { return SettledLocked(); };
  if (deadline == Deadline::max()) {
    cv_.wait(lock, pred);
    return true;
  }
  return cv_.wait_until(lock, deadline, pred);
}

Status OpState::key_status(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (i >= keys_) return Status::OutOfRange("key index " + std::to_string(i) + " out of range");
  return done_ ? key_status_[i] : InFlight();
}

std::vector<Status> OpState::key_statuses() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) return std::vector<Status>(keys_, InFlight());
  return key_status_;
}

uint64_t OpState::object_size(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_ && i < keys_ ? object_size_[i] : 0;
}

size_t OpState::ok_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) return 0;
  return static_cast<size_t>(std::count_if(key_status_.begin(), key_status_.end(),
                                           [](const Status& s) { return s.ok(); }));
}

size_t OpState::leading_ok() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) return 0;
  size_t n = 0;
  while (n < keys_ && key_status_[n].ok()) ++n;
  return n;
}

}  // namespace client_internal

namespace {
const Status& EmptyHandle() {
  static const Status* s = new Status(Status::InvalidArgument("empty handle"));
  return *s;
}
}  // namespace

Status TransferHandle::Wait(Deadline deadline) const {
  return state_ ? state_->Wait(deadline) : EmptyHandle();
}
bool TransferHandle::Poll() const { return !state_ || state_->done(); }
void TransferHandle::Cancel() {
  if (state_) state_->Cancel();
}
bool TransferHandle::cancelled() const { return state_ && state_->cancelled(); }
bool TransferHandle::Settled() const { return !state_ || state_->settled(); }
bool TransferHandle::refused() const { return !state_ || state_->refused(); }
bool TransferHandle::WaitSettled(Deadline deadline) const {
  return !state_ || state_->WaitSettled(deadline);
}
size_t TransferHandle::size() const { return state_ ? state_->size() : 0; }
Status TransferHandle::key_status(size_t i) const {
  return state_ ? state_->key_status(i) : EmptyHandle();
}
std::vector<Status> TransferHandle::key_statuses() const {
  return state_ ? state_->key_statuses() : std::vector<Status>{};
}
size_t TransferHandle::ok_count() const { return state_ ? state_->ok_count() : 0; }
size_t TransferHandle::leading_ok() const { return state_ ? state_->leading_ok() : 0; }
uint64_t LoadHandle::object_size(size_t i) const { return state_ ? state_->object_size(i) : 0; }

}  // namespace kvault
