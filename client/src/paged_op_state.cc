// PagedOpState (paged_op_state.h).

#include "paged_op_state.h"

#include <algorithm>

namespace kvault::client_internal {
namespace {
const Status& InFlight() {
  static const Status* const kInFlight = new Status(Status::Unavailable("in flight"));
  return *kInFlight;
}
}  // namespace

PagedOpState::PagedOpState(size_t blocks, uint32_t layers)
    : blocks_(blocks),
      layers_(layers),
      block_status_(blocks, InFlight()),
      block_set_(blocks, 0),
      layer_ready_(layers, 0),
      layer_events_(layers, nullptr) {}

std::shared_ptr<PagedOpState> PagedOpState::Refused(size_t blocks, uint32_t layers,
                                                    const Status& status) {
  auto state = std::make_shared<PagedOpState>(blocks, layers);
  state->refused_ = true;
  state->Finish(status);
  return state;
}

void PagedOpState::SetBlockStatus(size_t i, const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (i >= blocks_ || done_) return;
  block_status_[i] = status;
  block_set_[i] = 1;
}

void PagedOpState::SetSkipped(size_t skipped) {
  std::lock_guard<std::mutex> lock(mu_);
  skipped_ = skipped;
}

void PagedOpState::SetFromGpuTier(size_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  from_gpu_tier_ = blocks;
}

void PagedOpState::SourceReleased() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    source_released_ = true;
  }
  cv_.notify_all();
}

void PagedOpState::LayersReady(uint32_t first, uint32_t count, LayerEvents events) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint32_t j = 0; j < count && first + j < layers_; ++j) {
      layer_ready_[first + j] = 1;
      if (events && j < events->size()) layer_events_[first + j] = (*events)[j].handle();
    }
    if (events) event_owners_.push_back(std::move(events));
  }
  cv_.notify_all();
}

void PagedOpState::Finish(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    // The pipeline passes "cancelled" when a cancel stopped it; a cancel that came after its
    // last wave changes nothing.
    for (size_t i = 0; i < blocks_; ++i) {
      if (!block_set_[i]) {
        block_status_[i] = status.ok() ? Status::Unavailable("not attempted") : status;
      }
    }
    status_ = status;
    done_ = true;
    // Nothing more will be written: every layer is as ready as it will be.
    if (status.ok()) layer_ready_.assign(layers_, 1);
    source_released_ = true;
  }
  cv_.notify_all();
}

void PagedOpState::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!done_) cancelled_ = true;
}

bool PagedOpState::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

Status PagedOpState::Wait(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return done_; })) {
    return Status::Unavailable("still in flight");
  }
  return status_;
}

bool PagedOpState::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

bool PagedOpState::WaitSourceReleased(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return source_released_; });
}

Status PagedOpState::WaitLayer(uint32_t layer, Deadline deadline) {
  if (layer >= layers_) {
    return Status::InvalidArgument("layer " + std::to_string(layer) + " outside " +
                                   std::to_string(layers_) + " layers");
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return layer_ready_[layer] || done_; })) {
    return Status::Unavailable("still in flight");
  }
  if (layer_ready_[layer]) return Status::Ok();
  return status_.ok() ? Status::NotFound("layer " + std::to_string(layer) + " was not loaded")
                      : status_;
}

void* PagedOpState::layer_event(uint32_t layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  return layer < layers_ && layer_ready_[layer] ? layer_events_[layer] : nullptr;
}

Status PagedOpState::key_status(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (i >= blocks_) return Status::InvalidArgument("block index out of range");
  return done_ || block_set_[i] ? block_status_[i] : InFlight();
}

size_t PagedOpState::leading_ok() const {
  std::lock_guard<std::mutex> lock(mu_);
  return LeadingOkLocked();
}

size_t PagedOpState::LeadingOkLocked() const {
  if (!done_) return 0;
  size_t n = 0;
  while (n < blocks_ && block_status_[n].ok()) ++n;
  return n;
}

size_t PagedOpState::skipped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return skipped_;
}

size_t PagedOpState::from_gpu_tier() const {
  std::lock_guard<std::mutex> lock(mu_);
  // A transfer that stopped later loaded nothing: no more than its usable prefix counts.
  return done_ ? std::min(from_gpu_tier_, LeadingOkLocked()) : from_gpu_tier_;
}

}  // namespace kvault::client_internal
