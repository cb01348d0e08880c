// PagedPipeline::RunStore (paged_pipeline.h): the store side of StorePaged.

#include <algorithm>
#include <deque>
#include <string>
#include <utility>

#include "paged_job.h"
#include "paged_pipeline.h"

namespace kvault::client_internal {

namespace {

// Keys per lookup of LeadingStored at first: under the daemon's default batch limit (4,096).
constexpr size_t kStoredLookupKeys = 1024;

}  // namespace

// How many leading blocks of the job the daemon already holds. Looks the chain up a batch at a
// time, so that a sequence longer than one request carries is skipped as far as it is stored; a
// batch the daemon refuses as too large (a lower max_keys_per_request) is halved. A failed lookup
// ends the count where it is: those blocks are stored again, which is only slower.
size_t PagedPipeline::LeadingStored(const Job& job) {
  const size_t n = job.keys.size();
  size_t batch = kStoredLookupKeys;
  size_t found = 0;
  LookupOptions lookup;
  lookup.deadline = job.deadline;
  while (found < n) {
    const size_t count = std::min(batch, n - found);
    const LookupResult hit =
        client_.LookupPrefix(std::span<const BlockKey>(job.keys).subspan(found, count), lookup);
    if (hit.status.code() == StatusCode::kInvalidArgument && batch > 1) {
      batch /= 2;
      continue;
    }
    if (!hit.status.ok()) break;
    found += std::min<size_t>(hit.leading_hits, count);
    if (hit.leading_hits < count) break;
  }
  return found;
}

void PagedPipeline::RunStore(Job& job) {
  PagedOpState& state = *job.state;
  const size_t n = job.keys.size();
  const size_t first = job.skip_stored ? LeadingStored(job) : 0;
  for (size_t i = 0; i < first; ++i) state.SetBlockStatus(i, Status::Ok());
  state.SetSkipped(first);
  if (first == n) {
    state.Finish(Status::Ok());
    return;
  }
  Status stop = wave_codec_->Bind(job.block_ids, job.tokens);
  if (stop.ok()) stop = wave_codec_->BeginStore(job.stream);

  struct Wave {
    size_t first = 0;
    size_t count = 0;
    StoreHandle handle;
  };
  std::deque<Wave> in_flight;
  size_t failed_at = n;  // the first block the daemon did not store
  bool abandoned = false;
  auto settle_oldest = [&] {
    Wave w = std::move(in_flight.front());
    in_flight.pop_front();
    const Status waited = w.handle.Wait();
    for (size_t j = 0; j < w.count; ++j) {
      const Status s = w.handle.key_status(j);
      state.SetBlockStatus(w.first + j, s);
      if (!s.ok()) failed_at = std::min(failed_at, w.first + j);
    }
    if (!w.handle.Settled()) abandoned = true;
    if (!waited.ok() && stop.ok()) stop = waited;
  };

  size_t next = first;
  uint32_t wave_number = 0;
  while (stop.ok() && next < n && failed_at == n) {
    stop = job.StopBeforeNextWave();
    if (!stop.ok()) break;
    if (in_flight.size() == options_.pipeline_depth) {
      settle_oldest();
      continue;
    }
    const uint32_t buffer = wave_number % options_.pipeline_depth;
    Result<uint8_t*> base = StagingSlice(buffer);
    if (!base.ok()) {
      stop = base.status();
      break;
    }
    std::vector<std::span<uint8_t>> objects;
    uint64_t used = 0;
    for (size_t i = next; i < n; ++i) {
      const uint64_t bytes = codec_.ObjectBytes(i);
      if (used + bytes > slice_bytes_) break;
      objects.emplace_back(*base + used, bytes);
      used = AlignStaging(used + bytes);
    }
    const auto keys = std::span<const BlockKey>(job.keys).subspan(next, objects.size());
    stop = wave_codec_->Encode(next, keys, objects, buffer);
    if (!stop.ok()) break;
    std::vector<std::span<const uint8_t>> sources(objects.begin(), objects.end());
    // job.keys are the sequence's chain from block 0: each block's parent is the one before it.
    const std::vector<BlockKey> parents =
        ChainParents(std::span<const BlockKey>(job.keys).first(next + objects.size()), next);
    StoreOptions store;
    store.deadline = WaveDeadline(job);
    store.parents = parents;
    in_flight.push_back({next, objects.size(), client_.Store(keys, sources, store)});
    next += objects.size();
    ++wave_number;
  }
  // Nothing more is read from the engine's cache.
  state.SourceReleased();
  while (!in_flight.empty()) settle_oldest();
  if (abandoned) DropStaging();
  if (stop.ok() && failed_at < n) {
    for (size_t i = next; i < n; ++i) {
      state.SetBlockStatus(i, Status::Unavailable("not stored: block " + std::to_string(failed_at) +
                                                  " before it failed"));
    }
  }
  state.Finish(stop);
}

}  // namespace kvault::client_internal
