// PagedKvStore and its handles (paged_kv.h); the work happens in PagedPipeline.

#include "kvault/paged_kv.h"

#include <utility>

#include "paged_op_state.h"
#include "paged_pipeline.h"

namespace kvault {

using client_internal::PagedOpState;
using client_internal::PagedPipeline;

std::string_view MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kHost:
      return "host";
    case MemoryKind::kCuda:
      return "cuda";
  }
  return "unknown";
}

uint64_t PagedKvCache::LayerElements() const {
  return uint64_t{2} * engine_num_blocks * engine_block_tokens * kv_heads * head_dim;
}

// --- handles ---

namespace {
Status EmptyHandle() { return Status::InvalidArgument("empty handle"); }
}  // namespace

Status PagedHandle::Wait(Deadline deadline) const {
  return state_ ? state_->Wait(deadline) : EmptyHandle();
}
bool PagedHandle::Poll() const { return !state_ || state_->done(); }
bool PagedHandle::refused() const { return !state_ || state_->refused(); }
void PagedHandle::Cancel() {
  if (state_) state_->Cancel();
}
size_t PagedHandle::size() const { return state_ ? state_->size() : 0; }
Status PagedHandle::key_status(size_t i) const {
  return state_ ? state_->key_status(i) : EmptyHandle();
}
size_t PagedHandle::leading_ok() const { return state_ ? state_->leading_ok() : 0; }

size_t PagedStoreHandle::skipped() const { return state_ ? state_->skipped() : 0; }
size_t PagedLoadHandle::gpu_tier_blocks() const { return state_ ? state_->from_gpu_tier() : 0; }
bool PagedStoreHandle::WaitSourceReleased(Deadline deadline) const {
  return !state_ || state_->WaitSourceReleased(deadline);
}

Status PagedLoadHandle::WaitLayer(uint32_t layer, Deadline deadline) const {
  return state_ ? state_->WaitLayer(layer, deadline) : EmptyHandle();
}
void* PagedLoadHandle::layer_event(uint32_t layer) const {
  return state_ ? state_->layer_event(layer) : nullptr;
}

// --- PagedKvStore ---

Result<std::unique_ptr<PagedKvStore>> PagedKvStore::Create(Client& client,
                                                           const PagedKvOptions& options) {
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedPipeline> pipeline,
                          PagedPipeline::Create(client, options));
  return std::unique_ptr<PagedKvStore>(new PagedKvStore(std::move(pipeline)));
}

PagedKvStore::PagedKvStore(std::unique_ptr<PagedPipeline> pipeline)
    : pipeline_(std::move(pipeline)) {}

PagedKvStore::~PagedKvStore() = default;

void PagedKvStore::Close() { pipeline_->Close(); }

PagedStoreHandle PagedKvStore::StorePaged(const PagedSequence& sequence,
                                          const PagedStoreOptions& options) {
  return PagedStoreHandle(pipeline_->Store(sequence, options));
}

PagedLoadHandle PagedKvStore::LoadPaged(const Lease& lease, const PagedSequence& sequence,
                                        size_t blocks, const PagedLoadOptions& options) {
  return PagedLoadHandle(pipeline_->Load(lease, sequence, blocks, options));
}

const PagedKvOptions& PagedKvStore::options() const { return pipeline_->options(); }

uint64_t PagedKvStore::ObjectBytes(uint64_t index) const {
  return pipeline_->codec().ObjectBytes(index);
}

}  // namespace kvault
