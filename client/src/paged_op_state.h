#pragma once
// PagedOpState: the shared state behind a PagedStoreHandle or PagedLoadHandle (paged_kv.h). The
// pipeline thread fills it wave by wave; handles read and wait on it.
//
// Thread-safety: every method is safe from any thread (one mutex, never held while calling out).

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kvault/common/status.h"
#include "kvault/handles.h"
#include "kvault/kernels/cuda_runtime.h"

namespace kvault::client_internal {

class PagedOpState {
 public:
  // `blocks` block statuses, `layers` per-layer readiness flags (0 for a store).
  PagedOpState(size_t blocks, uint32_t layers);
  // A transfer refused before it started: done and refused(), every block with `status`.
  static std::shared_ptr<PagedOpState> Refused(size_t blocks, uint32_t layers,
                                               const Status& status);

  // --- the pipeline's side ---
  void SetBlockStatus(size_t i, const Status& status);
  void SetSkipped(size_t skipped);
  // Load: the leading `blocks` were decoded straight from the daemon's gpu tier (CUDA IPC).
  void SetFromGpuTier(size_t blocks);
  void SourceReleased();
  // Layers [first, first + count) are ready; `events` (GPU) holds one recorded event per layer of
  // the range, kept alive with this state; null on the host path.
  using LayerEvents = std::shared_ptr<const std::vector<kernels::CudaEvent>>;
  void LayersReady(uint32_t first, uint32_t count, LayerEvents events);
  // Ends the transfer: blocks without a status get `status` (when not OK) or keep theirs.
  void Finish(const Status& status);

  // --- the handles' side ---
  void Cancel();
  bool cancelled() const;
  Status Wait(Deadline deadline);
  bool done() const;
  // True for a state made by Refused(): fixed before the state is shared.
  bool refused() const { return refused_; }
  bool WaitSourceReleased(Deadline deadline);
  Status WaitLayer(uint32_t layer, Deadline deadline);
  void* layer_event(uint32_t layer) const;
  size_t size() const { return blocks_; }
  uint32_t layers() const { return layers_; }
  Status key_status(size_t i) const;
  size_t leading_ok() const;
  size_t skipped() const;
  // Before done: the blocks imported so far; once done, at most leading_ok().
  size_t from_gpu_tier() const;

 private:
  size_t LeadingOkLocked() const;  // leading_ok() with mu_ held

  const size_t blocks_;
  const uint32_t layers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool cancelled_ = false;
  bool refused_ = false;  // set by Refused() only, before the state is shared
  bool source_released_ = false;
  size_t skipped_ = 0;
  size_t from_gpu_tier_ = 0;
  Status status_;
  std::vector<Status> block_status_;
  std::vector<uint8_t> block_set_;
  std::vector<uint8_t> layer_ready_;
  std::vector<void*> layer_events_;
  std::vector<LayerEvents> event_owners_;
};

}  // namespace kvault::client_internal
