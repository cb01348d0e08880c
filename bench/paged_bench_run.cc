// One codec of `kvault-bench paged` (paged_bench.h): the stages alone and the pipeline end to
// end, on the same blocks, against the daemon the client is connected to.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>

#include "kvault/common/block_key.h"
#include "kvault/kernels/kv_generator.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"
#include "paged_bench.h"
#include "report.h"

namespace kvault::bench::paged {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// An engine's paged KV cache in host memory: vLLM flash NHD, fp16, one tensor per layer, the
// sequence on engine blocks 0, 1, 2, ... (so each layer's K and V halves hold it in token order).
class HostCache {
 public:
  HostCache(const Config& c)  // NOLINT(google-explicit-constructor)
      : layers_(c.layers) {
    cache_.memory = MemoryKind::kHost;
    cache_.layout = kernels::KvLayout::kVllmNhd;
    cache_.dtype = DType::kF16;
    cache_.num_layers = c.layers;
    cache_.kv_heads = c.kv_heads;
    cache_.head_dim = c.head_dim;
    cache_.engine_block_tokens = c.engine_block_tokens;
    cache_.engine_num_blocks = c.blocks * (c.block_tokens / c.engine_block_tokens);
    for (auto& layer : layers_) {
      layer.assign(cache_.LayerElements(), 0);
      cache_.tensors.push_back(layer.data());
    }
    ids_.resize(cache_.engine_num_blocks);
    for (size_t i = 0; i < ids_.size(); ++i) ids_[i] = static_cast<int32_t>(i);
  }

  const PagedKvCache& cache() const { return cache_; }
  std::span<const int32_t> ids() const { return ids_; }
  uint64_t tokens() const { return uint64_t{ids_.size()} * cache_.engine_block_tokens; }

  Result<kernels::PagedKvView> View() {
    kernels::PagedKvView view;
    std::vector<uint16_t*> bases;
    for (auto& layer : layers_) bases.push_back(layer.data());
    KVAULT_RETURN_IF_ERROR(kernels::MakePagedKvView(
        cache_.layout, cache_.dtype, cache_.num_layers, cache_.kv_heads, cache_.head_dim,
        cache_.engine_block_tokens, cache_.engine_num_blocks, bases, ids_, view, storage_));
    return view;
  }

  // Token t's K (kv 0) or V (kv 1) vectors of `layer`: kv_heads * head_dim elements.
  uint16_t* Token(uint32_t layer, uint32_t kv, uint64_t t) {
    const uint64_t per_token = uint64_t{cache_.kv_heads} * cache_.head_dim;
    return layers_[layer].data() + (kv * tokens() + t) * per_token;
  }

  void Clear() {
    for (auto& layer : layers_) std::fill(layer.begin(), layer.end(), 0);
  }

  // The first byte offset (in layer, element) where the two caches differ, or empty.
  std::string FirstDifference(const HostCache& other) const {
    for (size_t l = 0; l < layers_.size(); ++l) {
      const auto& a = layers_[l];
      const auto& b = other.layers_[l];
      const auto at = std::mismatch(a.begin(), a.end(), b.begin());
      if (at.first != a.end()) {
        return "layer " + std::to_string(l) + ", element " + std::to_string(at.first - a.begin());
      }
    }
    return "";
  }

 private:
  std::vector<std::vector<uint16_t>> layers_;
  PagedKvCache cache_;
  std::vector<int32_t> ids_;
  kernels::PagedKvViewStorage storage_;
};

// Fills every block of `cache` with one block of realistic Llama-shaped KV (the generator's),
// so encoding works on the data the codecs were tuned for.
Status FillRealistic(const Config& c, HostCache& cache) {
  kernels::KvGeneratorOptions g;
  g.shape = {c.layers, c.kv_heads, c.head_dim, c.block_tokens, DType::kF16};
  KVAULT_ASSIGN_OR_RETURN(kernels::KvTensor kv, kernels::GenerateKv(g));
  const size_t run = size_t{c.block_tokens} * c.kv_heads * c.head_dim;
  for (uint32_t b = 0; b < c.blocks; ++b) {
    for (uint32_t l = 0; l < c.layers; ++l) {
      for (uint32_t k = 0; k < 2; ++k) {
        std::memcpy(cache.Token(l, k, uint64_t{b} * c.block_tokens), kv.Vector(l, k, 0, 0),
                    run * sizeof(uint16_t));
      }
    }
  }
  return Status::Ok();
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

Status AllOk(const std::vector<Status>& statuses, const char* what) {
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (!statuses[i].ok()) {
      return statuses[i].WithContext(std::string(what) + " of block " + std::to_string(i));
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

// Samples of one figure, in tokens per second, and the object bytes behind each token.
struct Samples {
  std::vector<double> seconds;
  Rate Summarize(uint64_t tokens, uint64_t bytes) const {
    std::vector<double> rates;
    for (double s : seconds) rates.push_back(tokens / std::max(s, 1e-9));
    Rate r;
    r.tokens_per_s = Median(rates);
    r.gbps = r.tokens_per_s * (static_cast<double>(bytes) / tokens) / 1e9;
    return r;
  }
};

// Times `work`, appending the seconds to `into`.
Status Timed(Samples& into, const std::function<Status()>& work) {
  const double start = Now();
  KVAULT_RETURN_IF_ERROR(work());
  into.seconds.push_back(Now() - start);
  return Status::Ok();
}

}  // namespace

double CodecFigures::store_ratio() const {
  const double slowest = std::min(encode.tokens_per_s, store_transfer.tokens_per_s);
  return slowest > 0 ? store_e2e.tokens_per_s / slowest : 0;
}

double CodecFigures::load_ratio() const {
  const double slowest = std::min(load_transfer.tokens_per_s, decode.tokens_per_s);
  return slowest > 0 ? load_e2e.tokens_per_s / slowest : 0;
}

Result<CodecFigures> MeasureCodec(const Config& c, Client& client, const std::string& codec) {
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
  auto object = [&](MemoryRegion& r, uint32_t i) {
    return std::span<uint8_t>(r.data() + offsets[i], block_codec.ObjectBytes(i));
  };

  HostCache source(c), loaded(c), reference(c);
  KVAULT_RETURN_IF_ERROR(FillRealistic(c, source));
  KVAULT_ASSIGN_OR_RETURN(kernels::PagedKvView source_view, source.View());
  KVAULT_ASSIGN_OR_RETURN(kernels::PagedKvView reference_view, reference.View());
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion sealed, client.AllocateMemory(total));
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion fetched, client.AllocateMemory(total));
  PagedKvOptions options;
  options.block_tokens = c.block_tokens;
  options.codec = codec;
  options.ns_digest = ns;
  options.staging_bytes = c.staging_bytes;
  options.pipeline_depth = c.pipeline_depth;
  options.cache = source.cache();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> storer,
                          PagedKvStore::Create(client, options));
  options.cache = loaded.cache();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> loader,
                          PagedKvStore::Create(client, options));

  Samples encode, store_transfer, store_e2e, load_transfer, decode, load_e2e;
  const uint32_t tag = CodecTag(codec);
  f.verified = true;
  // Repetition 0 is an untimed warm-up: first touches of staging and registered memory, the
  // daemon's first arena pages, the UCX keys.
  for (uint32_t rep = 0; rep <= c.reps; ++rep) {
    if (rep == 1) {
      for (Samples* s :
           {&encode, &store_transfer, &store_e2e, &load_transfer, &decode, &load_e2e}) {
        s->seconds.clear();
      }
    }
    const std::vector<BlockKey> stage_keys = Chain(c.blocks, tag, rep, 1);
    const std::vector<BlockKey> e2e_keys = Chain(c.blocks, tag, rep, 2);
    // Stages alone, each to completion before the next.
    KVAULT_RETURN_IF_ERROR(Timed(encode, [&] {
      for (uint32_t i = 0; i < c.blocks; ++i) {
        KVAULT_RETURN_IF_ERROR(
            block_codec.Encode(source_view, i, stage_keys[i], object(sealed, i)));
      }
      return Status::Ok();
    }));
    KVAULT_RETURN_IF_ERROR(Timed(store_transfer, [&] {
      return InWaves(c.blocks, f.wave_blocks, [&](uint32_t first, uint32_t n) {
        std::vector<std::span<const uint8_t>> sources;
        for (uint32_t i = first; i < first + n; ++i) sources.push_back(object(sealed, i));
        StoreHandle h = client.Store(std::span(stage_keys).subspan(first, n), sources);
        KVAULT_RETURN_IF_ERROR(h.Wait());
        return AllOk(h.key_statuses(), "store");
      });
    }));
    KVAULT_RETURN_IF_ERROR(Timed(load_transfer, [&] {
      return InWaves(c.blocks, f.wave_blocks, [&](uint32_t first, uint32_t n) {
        std::vector<LoadDestination> dests;
        for (uint32_t i = first; i < first + n; ++i) dests.push_back({object(fetched, i), 0, 0});
        LoadHandle h = client.Load(Lease{}, std::span(stage_keys).subspan(first, n), dests);
        KVAULT_RETURN_IF_ERROR(h.Wait());
        return AllOk(h.key_statuses(), "load");
      });
    }));
    KVAULT_RETURN_IF_ERROR(Timed(decode, [&] {
      for (uint32_t i = 0; i < c.blocks; ++i) {
        KVAULT_RETURN_IF_ERROR(
            block_codec.Decode(object(fetched, i), i, stage_keys[i], reference_view));
      }
      return Status::Ok();
    }));
    KVAULT_RETURN_IF_ERROR(client.Delete(stage_keys).status());

    // The pipeline end to end, on other keys.
    const PagedSequence sequence{source.ids(), source.tokens(), e2e_keys};
    KVAULT_RETURN_IF_ERROR(Timed(store_e2e, [&] {
      PagedStoreHandle h =
          storer->StorePaged(sequence, {.deadline = std::nullopt, .skip_stored = false});
      KVAULT_RETURN_IF_ERROR(h.Wait());
      if (h.leading_ok() != c.blocks) {
        return Status::Internal("StorePaged stored " + std::to_string(h.leading_ok()) + " of " +
                                std::to_string(c.blocks) + " blocks");
      }
      return Status::Ok();
    }));
    loaded.Clear();
    KVAULT_RETURN_IF_ERROR(Timed(load_e2e, [&] {
      PagedLoadHandle h = loader->LoadPaged(Lease{}, sequence, c.blocks);
      KVAULT_RETURN_IF_ERROR(h.Wait());
      if (h.leading_ok() != c.blocks) {
        return Status::Internal("LoadPaged loaded " + std::to_string(h.leading_ok()) + " of " +
                                std::to_string(c.blocks) + " blocks");
      }
      return Status::Ok();
    }));
    const std::string differs = loaded.FirstDifference(reference);
    if (!differs.empty() && f.verified) {
      f.verified = false;
      f.mismatch = "rep " + std::to_string(rep) + ": LoadPaged wrote other bytes than the " +
                   "reference decode at " + differs;
    }
    KVAULT_RETURN_IF_ERROR(client.Delete(e2e_keys).status());
  }
  const uint64_t tokens = uint64_t{c.blocks} * c.block_tokens;
  f.encode = encode.Summarize(tokens, total);
  f.store_transfer = store_transfer.Summarize(tokens, total);
  f.store_e2e = store_e2e.Summarize(tokens, total);
  f.load_transfer = load_transfer.Summarize(tokens, total);
  f.decode = decode.Summarize(tokens, total);
  f.load_e2e = load_e2e.Summarize(tokens, total);
  return f;
}

}  // namespace kvault::bench::paged
