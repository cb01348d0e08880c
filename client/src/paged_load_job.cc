// PagedPipeline::RunLoad (paged_pipeline.h): the load side of LoadPaged, with the gpu tier's
// CUDA IPC shortcut.

#include <algorithm>
#include <string>
#include <utility>

#include "paged_job.h"
#include "paged_pipeline.h"

namespace kvault::client_internal {
namespace {

// Load slots: a whole object, or the header followed by a layer range. A range that starts
// right after the header (first layer 0) is fetched with it in one piece.
uint64_t LoadSlotBytes(uint32_t header, const ByteRange& range) {
  return range.offset == header ? AlignStaging(header + range.length)
                                : AlignStaging(header) + AlignStaging(range.length);
}

}  // namespace

size_t PagedPipeline::ImportFromGpuTier(const Job& job, std::vector<Status>& result) {
  if (options_.cache.memory != MemoryKind::kCuda || !options_.gpu_ipc || !job.lease.valid()) {
    return 0;
  }
  Result<std::vector<GpuBlockExport>> exports =
      client_.ExportGpuBlocks(job.lease, job.keys, job.deadline);
  if (!exports.ok()) return 0;  // not exported: everything goes through host staging
  std::vector<kernels::GpuIpcExport> blocks;
  while (blocks.size() < exports->size() && (*exports)[blocks.size()].status.ok()) {
    blocks.push_back((*exports)[blocks.size()].block);
  }
  if (blocks.empty()) return 0;
  const std::vector<Status> decoded = wave_codec_->DecodeImported(
      0, std::span<const BlockKey>(job.keys).first(blocks.size()), blocks, job.stream);
  size_t imported = 0;
  while (imported < decoded.size() && decoded[imported].ok()) ++imported;
  // The lease kept the exported bytes in place only until it expired.
  if (imported > 0 && Clock::now() >= job.lease.expiry) {
    for (size_t i = 0; i < imported; ++i) {
      result[i] = Status::Unavailable("lease expired while reading the gpu tier");
    }
    return imported;
  }
  // A block that could not be imported (another device, a failed map) is loaded the usual way.
  return imported;
}

std::vector<LoadWave> PagedPipeline::PlanLoadWaves(const Job& job, size_t start) const {
  const size_t n = job.keys.size();
  const uint32_t layers = options_.cache.num_layers;
  const uint32_t header = codec_.HeaderBytes();
  // The slot of a block for layers [first, first + count): blocks 1.. share one size.
  auto slot_bytes = [&](uint32_t first_layer, uint32_t count) -> uint64_t {
    uint64_t most = 0;
    for (uint64_t index : {uint64_t{0}, uint64_t{1}}) {
      Result<ByteRange> r = codec_.LayerRange(index, first_layer, count);
      if (r.ok()) most = std::max(most, LoadSlotBytes(header, *r));
    }
    return most;
  };
  uint32_t per_wave = job.layers_per_wave == 0 ? layers : std::min(job.layers_per_wave, layers);
  if (job.layers_per_wave == 0) {
    // As many layers as fit one slice with every block; at least one.
    for (; per_wave > 1; --per_wave) {
      bool fits = true;
      for (uint32_t l = 0; l < layers && fits; l += per_wave) {
        fits = slot_bytes(l, std::min(per_wave, layers - l)) * (n - start) <= slice_bytes_;
      }
      if (fits) break;
    }
  }
  std::vector<LoadWave> waves;
  for (uint32_t l = 0; l < layers && start < n; l += per_wave) {
    const uint32_t count = std::min(per_wave, layers - l);
    const size_t blocks_per_wave = std::max<size_t>(1, slice_bytes_ / slot_bytes(l, count));
    for (size_t b = start; b < n; b += blocks_per_wave) {
      waves.push_back({l, count, b, std::min(blocks_per_wave, n - b), b + blocks_per_wave >= n});
    }
  }
  return waves;
}

Status PagedPipeline::IssueLoadWave(const Job& job, const LoadWave& w, uint32_t buffer,
                                    IssuedLoadWave& out) {
  const uint32_t header = codec_.HeaderBytes();
  KVAULT_RETURN_IF_ERROR(wave_codec_->ReleaseStaging(buffer));
  KVAULT_ASSIGN_OR_RETURN(uint8_t * base, StagingSlice(buffer));
  std::vector<BlockKey> keys;
  std::vector<LoadDestination> dests;
  const bool whole = w.first_layer == 0 && w.layer_count == options_.cache.num_layers;
  uint64_t used = 0;
  for (size_t j = 0; j < w.count; ++j) {
    const size_t i = w.first + j;
    KVAULT_ASSIGN_OR_RETURN(ByteRange r, codec_.LayerRange(i, w.first_layer, w.layer_count));
    StagedBlock staged;
    if (r.offset == header) {
      // The range follows the header: one piece, the whole object when every layer is asked.
      const std::span<uint8_t> piece(base + used, header + r.length);
      dests.push_back({piece, 0, piece.size()});
      keys.push_back(job.keys[i]);
      if (whole) {
        staged.object = piece;
      } else {
        staged.header = piece.first(header);
        staged.layers = piece.subspan(header);
      }
      used += AlignStaging(piece.size());
    } else {
      const std::span<uint8_t> head(base + used, header);
      const std::span<uint8_t> range(base + used + AlignStaging(header), r.length);
      dests.push_back({head, 0, header});
      dests.push_back({range, r.offset, r.length});
      keys.push_back(job.keys[i]);
      keys.push_back(job.keys[i]);
      staged.header = head;
      staged.layers = range;
      out.two_parts = true;
      used += AlignStaging(header) + AlignStaging(r.length);
    }
    out.staged.push_back(staged);
  }
  LoadOptions load;
  load.deadline = WaveDeadline(job);
  out.handle = client_.Load(job.lease, keys, dests, load);
  out.sent = true;
  return Status::Ok();
}

Status PagedPipeline::FinishLoadWave(const Job& job, const LoadWave& w, uint32_t buffer,
                                     IssuedLoadWave& in, LoadProgress& progress) {
  if (!in.sent) return Status::Ok();
  const Status waited = in.handle.Wait();
  // Unsettled, or settled by a lost connection (a failed wait may be either): the daemon may
  // still write the staging (handles.h).
  if (!waited.ok() || !in.handle.Settled()) progress.abandoned = true;
  KVAULT_RETURN_IF_ERROR(waited);
  const size_t per_key = in.two_parts ? 2 : 1;
  size_t fetched = 0;  // leading blocks of the wave that arrived
  while (fetched < w.count && w.first + fetched < progress.active) {
    Status s = in.handle.key_status(fetched * per_key);
    if (s.ok() && per_key == 2) s = in.handle.key_status(fetched * per_key + 1);
    if (!s.ok()) {
      progress.Fail(w.first + fetched, s);
      break;
    }
    ++fetched;
  }
  const std::vector<Status> decoded = wave_codec_->Decode(
      w.first, std::span<const BlockKey>(job.keys).subspan(w.first, fetched), w.first_layer,
      w.layer_count, std::span<const StagedBlock>(in.staged).first(fetched), buffer, job.stream);
  for (size_t j = 0; j < decoded.size(); ++j) {
    if (!decoded[j].ok()) progress.Fail(w.first + j, decoded[j]);
  }
  return Status::Ok();
}

void PagedPipeline::RunLoad(Job& job) {
  PagedOpState& state = *job.state;
  const size_t n = job.keys.size();
  const uint32_t layers = options_.cache.num_layers;
  if (n == 0) {
    state.Finish(Status::Ok());
    return;
  }
  // A job whose deadline passed while it waited in the queue sends nothing.
  Status stop = job.StopBeforeNextWave();
  if (stop.ok()) stop = wave_codec_->Bind(job.block_ids, job.tokens);
  if (!stop.ok()) {
    state.Finish(stop);
    return;
  }
  LoadProgress progress;
  progress.result.assign(n, Status::Ok());
  const size_t start = ImportFromGpuTier(job, progress.result);
  size_t imported_ok = 0;
  while (imported_ok < start && progress.result[imported_ok].ok()) ++imported_ok;
  state.SetFromGpuTier(imported_ok);
  while (progress.active < n && progress.result[progress.active].ok()) ++progress.active;

  const std::vector<LoadWave> waves = PlanLoadWaves(job, start);
  if (waves.empty()) {
    // Every block came from the gpu tier: its decodes are queued; mark every layer.
    Result<PagedOpState::LayerEvents> events = wave_codec_->MarkLayers(0, layers, job.stream);
    if (events.ok()) state.LayersReady(0, layers, std::move(*events));
    if (!events.ok()) stop = events.status();
  }
  // Up to pipeline_depth waves at the daemon; wave k uses staging buffer k % depth, refilled
  // only once wave k - depth is decoded.
  const uint32_t depth = options_.pipeline_depth;
  std::vector<IssuedLoadWave> issued(waves.size());
  size_t next_issue = 0;
  for (size_t k = 0; k < waves.size() && stop.ok(); ++k) {
    for (; stop.ok() && next_issue < waves.size() && next_issue < k + depth; ++next_issue) {
      // A wave after a failed block is not needed; none starts once cancelled or past the
      // deadline.
      if (waves[next_issue].first >= progress.active) continue;
      stop = job.StopBeforeNextWave();
      if (stop.ok()) {
        stop = IssueLoadWave(job, waves[next_issue], next_issue % depth, issued[next_issue]);
      }
    }
    if (stop.ok() && state.cancelled()) stop = Status::Unavailable("cancelled");
    if (stop.ok()) stop = FinishLoadWave(job, waves[k], k % depth, issued[k], progress);
    if (stop.ok() && waves[k].last_of_layers) {
      Result<PagedOpState::LayerEvents> events =
          wave_codec_->MarkLayers(waves[k].first_layer, waves[k].layer_count, job.stream);
      if (events.ok())
        state.LayersReady(waves[k].first_layer, waves[k].layer_count, std::move(*events));
      if (!events.ok()) stop = events.status();
    }
  }
  // Waves still in flight after a stop: wait for their replies before the staging is reused.
  for (IssuedLoadWave& in : issued) {
    if (!in.sent) continue;
    const Status waited = in.handle.Wait();
    if (!waited.ok() || !in.handle.Settled()) progress.abandoned = true;
  }
  if (progress.abandoned) DropStaging();
  for (size_t i = 0; i < n; ++i) {
    Status& s = progress.result[i];
    if (stop.ok() && i >= progress.active && s.ok()) {
      s = Status::Unavailable("not loaded: block " + std::to_string(progress.active) +
                              " before it failed");
    }
    // After a stop, later layers stayed unwritten: no block counts as loaded, so only the
    // failures are set and Finish gives the rest the stop's status.
    if (stop.ok() || !s.ok()) state.SetBlockStatus(i, s);
  }
  state.Finish(stop);
}

}  // namespace kvault::client_internal
