// PagedPipeline (paged_pipeline.h).

#include "paged_pipeline.h"

#include <algorithm>
#include <string>
#include <utility>

#include "paged_job.h"

namespace kvault::client_internal {

Result<std::unique_ptr<PagedPipeline>> PagedPipeline::Create(Client& client,
                                                             const PagedKvOptions& options) {
  const PagedKvCache& cache = options.cache;
  if (cache.dtype != DType::kF16 && cache.dtype != DType::kBF16) {
    return Status::InvalidArgument("paged cache: dtype must be f16 or bf16");
  }
  if (cache.num_layers == 0 || cache.kv_heads == 0 || cache.head_dim == 0 ||
      cache.engine_block_tokens == 0 || cache.engine_num_blocks == 0) {
    return Status::InvalidArgument("paged cache: every dimension must be nonzero");
  }
  // A contiguous cache is one sequence's tensor: one engine block of engine_block_tokens tokens
  // (kv_view.h), which every store and load would otherwise refuse.
  if (cache.layout == kernels::KvLayout::kContiguous && cache.engine_num_blocks != 1) {
    return Status::InvalidArgument(
        "paged cache: a contiguous cache is one engine block (ids {0}) "
        "of engine_block_tokens tokens, so engine_num_blocks must be "
        "1, got " +
        std::to_string(cache.engine_num_blocks));
  }
  if (cache.layout != kernels::KvLayout::kContiguous &&
      options.block_tokens % cache.engine_block_tokens != 0) {
    return Status::InvalidArgument("block_tokens " + std::to_string(options.block_tokens) +
                                   " is not a multiple of the engine's " +
                                   std::to_string(cache.engine_block_tokens) + "-token blocks");
  }
  if (options.pipeline_depth == 0) {
    return Status::InvalidArgument("pipeline_depth must be at least 1");
  }
  KVAULT_RETURN_IF_ERROR(CacheLayerPointers(cache).status());
  KvBlockFormat format;
  format.num_layers = cache.num_layers;
  format.kv_heads = cache.kv_heads;
  format.head_dim = cache.head_dim;
  format.dtype = cache.dtype;
  format.block_tokens = options.block_tokens;
  format.codec = options.codec;
  format.ns_digest = options.ns_digest;
  KVAULT_ASSIGN_OR_RETURN(KvBlockCodec codec, KvBlockCodec::Create(format));
  std::unique_ptr<PagedPipeline> p(new PagedPipeline(client, options, std::move(codec)));
  // A slice holds one block object, or one load slot of any layer range (two alignments more).
  const uint64_t largest = std::max(p->codec_.ObjectBytes(0), p->codec_.ObjectBytes(1));
  if (p->slice_bytes_ < AlignStaging(largest) + 2 * kStagingAlignment) {
    return Status::InvalidArgument("staging_bytes " + std::to_string(options.staging_bytes) +
                                   " split into " + std::to_string(options.pipeline_depth) +
                                   " buffers cannot hold one block object of " +
                                   std::to_string(largest) + " bytes");
  }
  if (cache.memory == MemoryKind::kCuda) {
    KVAULT_ASSIGN_OR_RETURN(
        p->wave_codec_,
        MakeCudaWaveCodec(cache, p->codec_, options.staging_bytes, options.pipeline_depth));
  } else {
    KVAULT_ASSIGN_OR_RETURN(p->wave_codec_, MakeHostWaveCodec(cache, p->codec_));
  }
  KVAULT_RETURN_IF_ERROR(p->StagingSlice(0).status());
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

PagedPipeline::PagedPipeline(Client& client, PagedKvOptions options, KvBlockCodec codec)
    : client_(client),
      options_(std::move(options)),
      codec_(std::move(codec)),
      slice_bytes_(options_.staging_bytes / options_.pipeline_depth / kStagingAlignment *
                   kStagingAlignment) {}

PagedPipeline::~PagedPipeline() { Close(); }

void PagedPipeline::Close() {
  std::lock_guard<std::mutex> closing(close_mu_);
  std::deque<std::unique_ptr<Job>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (auto& job : dropped) job->state->Finish(Status::Unavailable("paged store closed"));
  if (thread_.joinable()) thread_.join();
  if (wave_codec_) (void)wave_codec_->Drain();
}

Status PagedPipeline::CheckSequence(const PagedSequence& s) const {
  const PagedKvCache& cache = options_.cache;
  if (s.keys.empty()) return Status::InvalidArgument("paged transfer: no keys");
  if (uint64_t{s.block_ids.size()} * cache.engine_block_tokens < s.num_tokens) {
    return Status::InvalidArgument(std::to_string(s.block_ids.size()) + " engine blocks of " +
                                   std::to_string(cache.engine_block_tokens) +
                                   " tokens cannot hold " + std::to_string(s.num_tokens) +
                                   " tokens");
  }
  for (int32_t id : s.block_ids) {
    if (id < 0 || static_cast<uint32_t>(id) >= cache.engine_num_blocks) {
      return Status::InvalidArgument("engine block id " + std::to_string(id) +
                                     " outside the cache of " +
                                     std::to_string(cache.engine_num_blocks) + " blocks");
    }
  }
  return Status::Ok();
}

std::shared_ptr<PagedOpState> PagedPipeline::Enqueue(std::unique_ptr<Job> job) {
  std::shared_ptr<PagedOpState> state = job->state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      state->Finish(Status::Unavailable("paged store closed"));
      return state;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return state;
}

std::shared_ptr<PagedOpState> PagedPipeline::Store(const PagedSequence& sequence,
                                                   const PagedStoreOptions& options) {
  const size_t full = sequence.num_tokens / options_.block_tokens;
  const size_t blocks = std::min(full, sequence.keys.size());
  Status input = CheckSequence(sequence);
  if (!input.ok()) return PagedOpState::Refused(blocks, 0, input);
  auto job = std::make_unique<Job>();
  job->store = true;
  job->block_ids.assign(sequence.block_ids.begin(), sequence.block_ids.end());
  job->tokens = sequence.num_tokens;
  job->keys.assign(sequence.keys.begin(), sequence.keys.begin() + blocks);
  job->deadline = options.deadline;
  job->stream = options.stream;
  job->skip_stored = options.skip_stored;
  job->state = std::make_shared<PagedOpState>(blocks, 0);
  return Enqueue(std::move(job));
}

std::shared_ptr<PagedOpState> PagedPipeline::Load(const Lease& lease, const PagedSequence& sequence,
                                                  size_t blocks, const PagedLoadOptions& options) {
  const uint32_t layers = options_.cache.num_layers;
  Status input = CheckSequence(sequence);
  const size_t full = sequence.num_tokens / options_.block_tokens;
  if (input.ok() && blocks > std::min(full, sequence.keys.size())) {
    input = Status::InvalidArgument(std::to_string(blocks) + " blocks asked, the sequence has " +
                                    std::to_string(std::min(full, sequence.keys.size())) +
                                    " full blocks with keys");
  }
  if (!input.ok()) {
    // Sized by what the caller gave, never by `blocks` alone: any count may come refused here.
    return PagedOpState::Refused(std::min(blocks, sequence.keys.size()), layers, input);
  }
  auto job = std::make_unique<Job>();
  job->store = false;
  job->block_ids.assign(sequence.block_ids.begin(), sequence.block_ids.end());
  job->tokens = sequence.num_tokens;
  job->keys.assign(sequence.keys.begin(), sequence.keys.begin() + blocks);
  job->deadline = options.deadline;
  job->stream = options.stream;
  job->lease = lease;
  job->layers_per_wave = options.layers_per_wave;
  job->state = std::make_shared<PagedOpState>(blocks, layers);
  return Enqueue(std::move(job));
}

void PagedPipeline::Run() {
  for (;;) {
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    if (job->state->cancelled()) {
      job->state->Finish(Status::Unavailable("cancelled"));
    } else if (job->store) {
      RunStore(*job);
    } else {
      RunLoad(*job);
    }
  }
}

Result<uint8_t*> PagedPipeline::StagingSlice(uint32_t buffer) {
  if (!staging_.valid()) {
    KVAULT_ASSIGN_OR_RETURN(staging_, client_.AllocateMemory(options_.staging_bytes));
    if (options_.cache.memory == MemoryKind::kCuda) {
      // Page-locked staging makes the copies asynchronous. A mapping CUDA cannot lock (some
      // shared-memory segments) still works: copies from and to pageable memory complete before
      // cudaMemcpyAsync returns, so every reuse rule below holds; they are only slower.
      Result<kernels::HostPinning> pinned =
          kernels::HostPinning::Pin(staging_.data(), staging_.size());
      if (pinned.ok()) pinning_ = std::move(*pinned);
    }
  }
  return staging_.data() + uint64_t{buffer} * slice_bytes_;
}

void PagedPipeline::DropStaging() {
  // Copies the device still has queued from or into the staging (behind the engine's work on its
  // stream) must be done before the staging is unregistered and freed.
  if (wave_codec_) (void)wave_codec_->Drain();
  pinning_ = kernels::HostPinning();  // unlocked first; the memory stays mapped
  client_.RetireMemory(std::move(staging_));
  staging_ = MemoryRegion();
}

Deadline PagedPipeline::WaveDeadline(const Job& job) const {
  return job.deadline ? *job.deadline : Clock::now() + client_.config().request_timeout;
}

}  // namespace kvault::client_internal
