// One codec of `kvault-bench paged` (paged_bench.h): the stages alone and the pipeline end to
// end, on the same blocks, against the daemon the client is connected to. The engine cache and
// the stages that touch it are the PagedMemory's (paged_bench_memory.h).
#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "kvault/common/block_key.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"
#include "paged_bench.h"
#include "paged_bench_memory.h"
#include "report.h"

namespace kvault::bench::paged {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A chain of `n` keys no other codec, rep or stage shares.
std::vector<BlockKey> Chain(uint32_t n, uint32_t codec_tag, uint32_t rep, uint32_t stage) {
  std::vector<BlockKey> keys;
  BlockKey parent{};
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t words[5] = {0x50474544u /* "PGED" */, codec_tag, rep, stage, i};
    parent = NextBlockKey(parent, words);
    keys.push_back(parent);
  }
  return keys;
}

uint32_t CodecTag(const std::string& codec) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (char ch : codec) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  return h;
}

Status AllOk(const std::vector<Status>& statuses, const char* what, uint32_t first) {
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (!statuses[i].ok()) {
      return statuses[i].WithContext(std::string(what) + " of block " + std::to_string(first + i));
    }
  }
  return Status::Ok();
}

// Runs `step(first, count)` for consecutive waves of `wave` blocks out of `n`.
Status InWaves(uint32_t n, uint32_t wave, const std::function<Status(uint32_t, uint32_t)>& step) {
  for (uint32_t first = 0; first < n; first += wave) {
    KVAULT_RETURN_IF_ERROR(step(first, std::min(wave, n - first)));
  }
  return Status::Ok();
}

// Times `work`, appending its seconds to `into`.
Status Timed(std::vector<double>& into, const std::function<Status()>& work) {
  const double start = Now();
  KVAULT_RETURN_IF_ERROR(work());
  into.push_back(Now() - start);
  return Status::Ok();
}

// The median rate of `seconds` for `tokens` tokens carried in `bytes` object bytes; zero when
// the stage does not exist (no samples).
Rate Summarize(const std::vector<double>& seconds, uint64_t tokens, uint64_t bytes) {
  if (seconds.empty()) return Rate{};
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(tokens / std::max(s, 1e-9));
  Rate r;
  r.tokens_per_s = Median(rates);
  r.gbps = r.tokens_per_s * (static_cast<double>(bytes) / tokens) / 1e9;
  return r;
}

// Bytes of one token's KV in fp16 (K and V of every layer): the unit of "fp16-equivalent" rates.
double Fp16BytesPerToken(const Config& c) { return 2.0 * c.layers * c.kv_heads * c.head_dim * 2; }

// The slowest of the stages that exist (rate > 0).
double Slowest(std::initializer_list<Rate> stages) {
  double slowest = 0;
  for (const Rate& r : stages) {
    if (r.tokens_per_s > 0 && (slowest == 0 || r.tokens_per_s < slowest)) slowest = r.tokens_per_s;
  }
  return slowest;
}

}  // namespace

namespace {

// Two stages that run one after the other as one (the GPU path's kernel and copy share a thread
// and a stream): their times add up. One of them absent (rate 0, host memory): the other.
Rate Serial(const Rate& a, const Rate& b) {
  if (a.tokens_per_s <= 0) return b;
  if (b.tokens_per_s <= 0) return a;
  Rate r;
  r.tokens_per_s = 1 / (1 / a.tokens_per_s + 1 / b.tokens_per_s);
  r.gbps = r.tokens_per_s * (a.gbps / a.tokens_per_s);
  return r;
}

}  // namespace

double CodecFigures::store_ratio() const {
  const double slowest = Slowest({Serial(encode, to_host), store_transfer});
  return slowest > 0 ? store_e2e.tokens_per_s / slowest : 0;
}

double CodecFigures::load_ratio() const {
  const double slowest = Slowest({load_transfer, Serial(to_device, decode)});
  return slowest > 0 ? load_e2e.tokens_per_s / slowest : 0;
}

double CodecFigures::load_vs_h2d() const {
  return pinned_h2d_gbps > 0 ? load_fp16_gbps / pinned_h2d_gbps : 0;
}

double CodecFigures::ipc_vs_h2d() const {
  return pinned_h2d_gbps > 0 ? ipc_fp16_gbps / pinned_h2d_gbps : 0;
}

namespace {

// Until LookupPrefix finds every key in the gpu tier (where blocks land, possibly after a mover
// took them there), at most 30 s.
Status WaitUntilInGpuTier(Client& client, std::span<const BlockKey> keys) {
  const double until = Now() + 30;
  LookupResult r;
  while (Now() < until) {
    r = client.LookupPrefix(keys);
    KVAULT_RETURN_IF_ERROR(r.status);
    bool all = r.leading_hits == keys.size();
    for (Tier t : r.tiers) all = all && t == Tier::kGpu;
    if (all) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::Unavailable("after 30 s only some of the " + std::to_string(keys.size()) +
                             " blocks are in the daemon's gpu tier (" +
                             std::to_string(r.leading_hits) + " leading hits)");
}

// A rep's lease and chain on the daemon: released and deleted by Finish, or, when the rep stops
// early, when this goes out of scope (best effort: the rep's own error is the one reported).
class RepOnDaemon {
 public:
  RepOnDaemon(Client& client, std::span<const BlockKey> keys) : client_(client), keys_(keys) {}
  ~RepOnDaemon() {
    if (!finished_) (void)Finish();
  }
  RepOnDaemon(const RepOnDaemon&) = delete;
  RepOnDaemon& operator=(const RepOnDaemon&) = delete;

  Status Finish() {
    finished_ = true;
    Status released = lease.valid() ? client_.ReleaseLease(lease) : Status::Ok();
    const Status deleted = client_.Delete(keys_).status();
    return released.ok() ? deleted : released;
  }

  Lease lease;

 private:
  Client& client_;
  std::span<const BlockKey> keys_;
  bool finished_ = false;
};

// LoadPaged from the gpu tier of `client`'s daemon through CUDA IPC: per rep, StorePaged the
// sequence there, wait until it sits in the gpu tier, then time a leased LoadPaged (lookup with
// lease, the export request and the device-to-device decodes) and check its bytes.
Status MeasureGpuTierLoad(const Config& c, Client& client, PagedKvOptions options,
                          PagedMemory& memory, std::span<const int32_t> ids, uint32_t tag,
                          uint64_t object_bytes, CodecFigures& f) {
  options.gpu_ipc = true;
  options.cache = memory.source();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> storer,
                          PagedKvStore::Create(client, options));
  options.cache = memory.loaded();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> loader,
                          PagedKvStore::Create(client, options));
  std::vector<double> seconds;
  f.ipc_verified = true;
  f.ipc_blocks = c.blocks;
  for (uint32_t rep = 0; rep <= c.reps; ++rep) {  // rep 0: warm-up (opens the IPC pool)
    const std::vector<BlockKey> keys = Chain(c.blocks, tag, rep, 3);
    const PagedSequence whole{ids, uint64_t{c.blocks} * c.block_tokens, keys};
    RepOnDaemon on_daemon(client, keys);
    PagedStoreHandle stored = storer->StorePaged(
        whole, {.deadline = std::nullopt, .skip_stored = false, .stream = memory.stream()});
    KVAULT_RETURN_IF_ERROR(stored.Wait());
    if (stored.leading_ok() != c.blocks) {
      return Status::Internal("StorePaged to the gpu-tier daemon stored " +
                              std::to_string(stored.leading_ok()) + " of " +
                              std::to_string(c.blocks) + " blocks");
    }
    KVAULT_RETURN_IF_ERROR(WaitUntilInGpuTier(client, keys));
    KVAULT_RETURN_IF_ERROR(memory.ClearLoaded());
    size_t from_gpu = 0;
    std::vector<double> one;
    KVAULT_RETURN_IF_ERROR(Timed(one, [&] {
      LookupResult hit = client.LookupPrefix(
          keys, {.want_lease = true, .lease_ttl = {}, .deadline = std::nullopt});
      KVAULT_RETURN_IF_ERROR(hit.status);
      on_daemon.lease = hit.lease;
      PagedLoadHandle h = loader->LoadPaged(hit.lease, whole, hit.leading_hits,
                                            {.deadline = std::nullopt, .stream = memory.stream()});
      KVAULT_RETURN_IF_ERROR(h.Wait());
      KVAULT_RETURN_IF_ERROR(memory.Synchronize());
      from_gpu = h.gpu_tier_blocks();
      if (h.leading_ok() != c.blocks) {
        return Status::Internal("LoadPaged from the gpu tier loaded " +
                                std::to_string(h.leading_ok()) + " of " + std::to_string(c.blocks) +
                                " blocks");
      }
      return Status::Ok();
    }));
    if (rep > 0) seconds.push_back(one.front());
    f.ipc_blocks = std::min(f.ipc_blocks, from_gpu);
    KVAULT_ASSIGN_OR_RETURN(std::string differs, memory.LoadedVsReference());
    if (!differs.empty() && f.ipc_verified) {
      f.ipc_verified = false;
      f.ipc_mismatch = "rep " + std::to_string(rep) + ": LoadPaged from the gpu tier wrote " +
                       "other bytes than the reference decode at " + differs;
    }
    if (from_gpu != c.blocks && f.ipc_verified) {
      // The rest took the staged path: the figure would not be the CUDA IPC path's.
      f.ipc_verified = false;
      f.ipc_mismatch = "rep " + std::to_string(rep) + ": only " + std::to_string(from_gpu) +
                       " of " + std::to_string(c.blocks) +
                       " blocks came through CUDA IPC (the others took the staged path)";
    }
    KVAULT_RETURN_IF_ERROR(on_daemon.Finish());
  }
  const uint64_t tokens = uint64_t{c.blocks} * c.block_tokens;
  f.ipc_measured = true;
  f.ipc_load = Summarize(seconds, tokens, object_bytes);
  f.ipc_fp16_gbps = f.ipc_load.tokens_per_s * Fp16BytesPerToken(c) / 1e9;
  return Status::Ok();
}

}  // namespace

Result<CodecFigures> MeasureCodec(const Config& c, Client& client, Client* gpu_tier_client,
                                  const std::string& codec) {
  CodecFigures f;
  f.codec = codec;
  const BlockKey ns = NextBlockKey(BlockKey{}, std::vector<uint32_t>{0x4E53u, CodecTag(codec)});
  KvBlockFormat format{c.layers, c.kv_heads, c.head_dim, DType::kF16, c.block_tokens, codec, ns};
  KVAULT_ASSIGN_OR_RETURN(KvBlockCodec block_codec, KvBlockCodec::Create(format));
  std::vector<uint64_t> offsets;  // of each block's object in the registered regions
  uint64_t total = 0, largest = 0;
  for (uint32_t i = 0; i < c.blocks; ++i) {
    offsets.push_back(total);
    total += block_codec.ObjectBytes(i);
    largest = std::max(largest, block_codec.ObjectBytes(i));
  }
  f.object_bytes = block_codec.ObjectBytes(c.blocks > 1 ? 1 : 0);
  const uint64_t per_buffer = c.staging_bytes / c.pipeline_depth;
  if (per_buffer < largest) {
    return Status::InvalidArgument("--staging-bytes / --depth (" + std::to_string(per_buffer) +
                                   " bytes) cannot hold one " + codec + " object of " +
                                   std::to_string(largest) + " bytes");
  }
  f.wave_blocks = static_cast<uint32_t>(std::min<uint64_t>(per_buffer / largest, c.blocks));

  // Declared before the memory, so freed after it: the memory may page-lock them.
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion sealed, client.AllocateMemory(total));
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion fetched, client.AllocateMemory(total));
  std::vector<std::span<uint8_t>> sealed_objects;
  std::vector<std::span<const uint8_t>> fetched_objects;
  for (uint32_t i = 0; i < c.blocks; ++i) {
    sealed_objects.emplace_back(sealed.data() + offsets[i], block_codec.ObjectBytes(i));
    fetched_objects.emplace_back(fetched.data() + offsets[i], block_codec.ObjectBytes(i));
  }
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedMemory> memory,
                          c.memory == MemoryKind::kCuda ? MakeCudaMemory(c, block_codec)
                                                        : MakeHostMemory(c, block_codec));
  PagedKvOptions options;
  options.block_tokens = c.block_tokens;
  options.codec = codec;
  options.ns_digest = ns;
  options.staging_bytes = c.staging_bytes;
  options.pipeline_depth = c.pipeline_depth;
  options.gpu_ipc = false;  // the staged path: the stages measured alone are its stages
  options.cache = memory->source();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> storer,
                          PagedKvStore::Create(client, options));
  options.cache = memory->loaded();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> loader,
                          PagedKvStore::Create(client, options));

  // The sequence sits on engine blocks 0, 1, 2, ... of both caches.
  std::vector<int32_t> ids(memory->source().engine_num_blocks);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  StageSeconds stages;
  std::vector<double> store_transfer, store_e2e, load_transfer, load_e2e;
  const uint32_t tag = CodecTag(codec);
  f.verified = true;
  // Repetition 0 is an untimed warm-up: first touches of staging and registered memory, the
  // daemon's first arena pages, the UCX keys, the CUDA context.
  for (uint32_t rep = 0; rep <= c.reps; ++rep) {
    if (rep == 1) {
      stages = StageSeconds{};
      for (auto* s : {&store_transfer, &store_e2e, &load_transfer, &load_e2e}) s->clear();
    }
    const std::vector<BlockKey> stage_keys = Chain(c.blocks, tag, rep, 1);
    const std::vector<BlockKey> e2e_keys = Chain(c.blocks, tag, rep, 2);
    // Stages alone, each to completion before the next.
    KVAULT_RETURN_IF_ERROR(memory->EncodeStages(stage_keys, sealed_objects, f.wave_blocks, stages));
    KVAULT_RETURN_IF_ERROR(Timed(store_transfer, [&] {
      return InWaves(c.blocks, f.wave_blocks, [&](uint32_t first, uint32_t n) {
        const std::vector<std::span<const uint8_t>> sources(sealed_objects.begin() + first,
                                                            sealed_objects.begin() + first + n);
        StoreHandle h = client.Store(std::span(stage_keys).subspan(first, n), sources);
        KVAULT_RETURN_IF_ERROR(h.Wait());
        return AllOk(h.key_statuses(), "store", first);
      });
    }));
    KVAULT_RETURN_IF_ERROR(Timed(load_transfer, [&] {
      return InWaves(c.blocks, f.wave_blocks, [&](uint32_t first, uint32_t n) {
        std::vector<LoadDestination> dests;
        for (uint32_t i = first; i < first + n; ++i) {
          dests.push_back(
              {std::span(fetched.data() + offsets[i], fetched_objects[i].size()), 0, 0});
        }
        LoadHandle h = client.Load(Lease{}, std::span(stage_keys).subspan(first, n), dests);
        KVAULT_RETURN_IF_ERROR(h.Wait());
        return AllOk(h.key_statuses(), "load", first);
      });
    }));
    KVAULT_RETURN_IF_ERROR(
        memory->DecodeStages(stage_keys, fetched_objects, f.wave_blocks, stages));
    KVAULT_RETURN_IF_ERROR(client.Delete(stage_keys).status());

    // The pipeline end to end, on other keys.
    const PagedSequence whole{ids, uint64_t{c.blocks} * c.block_tokens, e2e_keys};
    KVAULT_RETURN_IF_ERROR(Timed(store_e2e, [&] {
      PagedStoreHandle h = storer->StorePaged(
          whole, {.deadline = std::nullopt, .skip_stored = false, .stream = memory->stream()});
      KVAULT_RETURN_IF_ERROR(h.Wait());
      if (h.leading_ok() != c.blocks) {
        return Status::Internal("StorePaged stored " + std::to_string(h.leading_ok()) + " of " +
                                std::to_string(c.blocks) + " blocks");
      }
      return Status::Ok();
    }));
    KVAULT_RETURN_IF_ERROR(memory->ClearLoaded());
    KVAULT_RETURN_IF_ERROR(Timed(load_e2e, [&] {
      PagedLoadHandle h = loader->LoadPaged(Lease{}, whole, c.blocks,
                                            {.deadline = std::nullopt, .stream = memory->stream()});
      KVAULT_RETURN_IF_ERROR(h.Wait());
      KVAULT_RETURN_IF_ERROR(memory->Synchronize());  // GPU: the decodes queued on the stream
      if (h.leading_ok() != c.blocks) {
        return Status::Internal("LoadPaged loaded " + std::to_string(h.leading_ok()) + " of " +
                                std::to_string(c.blocks) + " blocks");
      }
      return Status::Ok();
    }));
    KVAULT_ASSIGN_OR_RETURN(std::string differs, memory->LoadedVsReference());
    if (!differs.empty() && f.verified) {
      f.verified = false;
      f.mismatch = "rep " + std::to_string(rep) + ": LoadPaged wrote other bytes than the " +
                   "reference decode at " + differs;
    }
    KVAULT_RETURN_IF_ERROR(client.Delete(e2e_keys).status());
  }
  const uint64_t tokens = uint64_t{c.blocks} * c.block_tokens;
  f.encode = Summarize(stages.encode, tokens, total);
  f.to_host = Summarize(stages.to_host, tokens, total);
  f.store_transfer = Summarize(store_transfer, tokens, total);
  f.store_e2e = Summarize(store_e2e, tokens, total);
  f.load_transfer = Summarize(load_transfer, tokens, total);
  f.to_device = Summarize(stages.to_device, tokens, total);
  f.decode = Summarize(stages.decode, tokens, total);
  f.load_e2e = Summarize(load_e2e, tokens, total);
  KVAULT_ASSIGN_OR_RETURN(const double h2d, memory->PinnedHostToDeviceBytesPerSecond());
  f.pinned_h2d_gbps = h2d / 1e9;
  f.load_fp16_gbps = f.load_e2e.tokens_per_s * Fp16BytesPerToken(c) / 1e9;
  if (gpu_tier_client != nullptr && c.memory == MemoryKind::kCuda) {
    KVAULT_RETURN_IF_ERROR(
        MeasureGpuTierLoad(c, *gpu_tier_client, options, *memory, ids, tag, total, f));
  }
  return f;
}

}  // namespace kvault::bench::paged
