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

void PagedPipeline::RunLoad(Job& job) {
  PagedOpState& state = *job.state;
  const size_t n = job.keys.size();
  const uint32_t layers = options_.cache.num_layers;
  const uint32_t header = codec_.HeaderBytes();
  if (n == 0) {
    state.Finish(Status::Ok());
    return;
  }
  Status stop = wave_codec_->Bind(job.block_ids, job.tokens);
  if (!stop.ok()) {
    state.Finish(stop);
    return;
  }
  std::vector<Status> result(n, Status::Ok());
  const size_t start = ImportFromGpuTier(job, result);

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
        fits = slot_bytes(l, std::min(per_wave, layers - l)) * n <= slice_bytes_;
      }
      if (fits) break;
    }
  }
  struct Wave {
    uint32_t first_layer = 0;
    uint32_t layer_count = 0;
    size_t first = 0;
    size_t count = 0;
    bool last_of_layers = false;
  };
  std::vector<Wave> waves;
  for (uint32_t l = 0; l < layers && start < n; l += per_wave) {
    const uint32_t count = std::min(per_wave, layers - l);
    const uint64_t slot = slot_bytes(l, count);
    const size_t blocks_per_wave = std::max<size_t>(1, slice_bytes_ / slot);
    for (size_t b = start; b < n; b += blocks_per_wave) {
      waves.push_back({l, count, b, std::min(blocks_per_wave, n - b), b + blocks_per_wave >= n});
    }
  }
  if (waves.empty()) {
    // Every block came from the gpu tier: its decodes are queued; mark every layer.
    Result<PagedOpState::LayerEvents> events = wave_codec_->MarkLayers(0, layers, job.stream);
    if (events.ok()) state.LayersReady(0, layers, std::move(*events));
    if (!events.ok()) stop = events.status();
  }

  struct Issued {
    LoadHandle handle;
    std::vector<StagedBlock> staged;
    bool two_parts = false;
    bool sent = false;
  };
  std::vector<Issued> issued(waves.size());
  size_t active = 0;  // blocks [0, active) are still worth loading
  while (active < n && result[active].ok()) ++active;
  bool abandoned = false;
  auto fail_block = [&](size_t i, const Status& s) {
    result[i] = s;
    active = std::min(active, i);
  };
  auto issue = [&](size_t k) -> Status {
    const Wave& w = waves[k];
    if (w.first >= active) return Status::Ok();  // a failed block before it: not needed
    const uint32_t buffer = k % options_.pipeline_depth;
    KVAULT_RETURN_IF_ERROR(wave_codec_->ReleaseStaging(buffer));
    KVAULT_ASSIGN_OR_RETURN(uint8_t * base, StagingSlice(buffer));
    Issued& out = issued[k];
    std::vector<BlockKey> keys;
    std::vector<LoadDestination> dests;
    const bool whole = w.first_layer == 0 && w.layer_count == layers;
    uint64_t used = 0;
    for (size_t j = 0; j < w.count; ++j) {
      const size_t i = w.first + j;
      KVAULT_ASSIGN_OR_RETURN(ByteRange r, codec_.LayerRange(i, w.first_layer, w.layer_count));
      StagedBlock staged;
      if (r.offset == header) {
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
  };

  size_t next_issue = 0;
  for (size_t k = 0; k < waves.size() && stop.ok(); ++k) {
    while (stop.ok() && next_issue < waves.size() && next_issue < k + options_.pipeline_depth) {
      stop = issue(next_issue++);
    }
    if (!stop.ok()) break;
    if (state.cancelled()) {
      stop = Status::Unavailable("cancelled");
      break;
    }
    const Wave& w = waves[k];
    Issued& in = issued[k];
    if (in.sent) {
      const Status waited = in.handle.Wait();
      if (!in.handle.Settled()) abandoned = true;
      if (!waited.ok()) {
        stop = waited;
        break;
      }
      const size_t per_key = in.two_parts ? 2 : 1;
      size_t fetched = 0;  // leading blocks of the wave that arrived
      while (fetched < w.count && w.first + fetched < active) {
        Status s = in.handle.key_status(fetched * per_key);
        if (s.ok() && per_key == 2) s = in.handle.key_status(fetched * per_key + 1);
        if (!s.ok()) {
          fail_block(w.first + fetched, s);
          break;
        }
        ++fetched;
      }
      const auto keys = std::span<const BlockKey>(job.keys).subspan(w.first, fetched);
      std::vector<Status> decoded =
          wave_codec_->Decode(w.first, keys, w.first_layer, w.layer_count,
                              std::span<const StagedBlock>(in.staged).first(fetched),
                              static_cast<uint32_t>(k % options_.pipeline_depth), job.stream);
      for (size_t j = 0; j < decoded.size(); ++j) {
        if (!decoded[j].ok()) fail_block(w.first + j, decoded[j]);
      }
    }
    if (w.last_of_layers) {
      Result<PagedOpState::LayerEvents> events =
          wave_codec_->MarkLayers(w.first_layer, w.layer_count, job.stream);
      if (!events.ok()) {
        stop = events.status();
        break;
      }
      state.LayersReady(w.first_layer, w.layer_count, std::move(*events));
    }
  }
  // Waves still in flight after a stop: wait for their replies before the staging is reused.
  for (Issued& in : issued) {
    if (!in.sent) continue;
    (void)in.handle.Wait();
    if (!in.handle.Settled()) abandoned = true;
  }
  if (abandoned) DropStaging();
  if (stop.ok()) {
    for (size_t i = 0; i < n; ++i) {
      if (i >= active && result[i].ok()) {
        result[i] = Status::Unavailable("not loaded: block " + std::to_string(active) +
                                        " before it failed");
      }
      state.SetBlockStatus(i, result[i]);
    }
  } else {
    // Blocks before the first failure whose every layer wave finished are still not whole:
    // a stopped load leaves later layers unwritten, so no block counts as loaded.
    for (size_t i = 0; i < n; ++i) {
      if (!result[i].ok()) state.SetBlockStatus(i, result[i]);
    }
  }
  state.Finish(stop);
}

}  // namespace kvault::client_internal
