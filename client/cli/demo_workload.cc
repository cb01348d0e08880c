// The `kvault demo` workload (demo_workload.h).

#include "demo_workload.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "kvault/common/block_key.h"
#include "kvault/kernels/accuracy.h"
#include "kvault/kernels/kv_generator.h"
#include "kvault/kv_store.h"

namespace kvault::cli {
namespace {

using Seconds = std::chrono::duration<double>;

// The Llama-3-8B shard shape the demo scales down (only the layer count changes).
constexpr uint32_t kKvHeads = 8;
constexpr uint32_t kHeadDim = 128;
constexpr uint32_t kVocabulary = 128256;  // Llama-3's
// Decode queries per head used for the attention metrics: enough to average over, cheap.
constexpr uint32_t kAccuracyQueries = 8;

// SplitMix64: a tiny, fully specified random stream, so a seed means the same workload on every
// platform (std::uniform_int_distribution is implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (the modulo bias is irrelevant here).
  uint32_t Between(uint32_t lo, uint32_t hi) {
    return lo + static_cast<uint32_t>(Next() % (uint64_t{hi} - lo + 1));
  }

 private:
  uint64_t state_;
};

struct Turn {
  uint32_t user_tokens = 0;
  uint32_t reply_tokens = 0;
};

struct Conversation {
  uint64_t seed = 0;  // of its token ids and its KV
  std::vector<Turn> turns;
  std::vector<uint32_t> tokens;  // the whole conversation
};

Conversation PlanConversation(const DemoOptions& o, uint32_t index) {
  Conversation c;
  Rng mix(o.seed ^ (0xC0FFEEull + index));
  c.seed = mix.Next();
  Rng rng(c.seed);
  uint64_t total = 0;
  for (uint32_t t = 0; t < o.turns; ++t) {
    Turn turn{rng.Between(o.user_min, o.user_max), rng.Between(o.reply_min, o.reply_max)};
    total += turn.user_tokens + turn.reply_tokens;
    c.turns.push_back(turn);
  }
  c.tokens.resize(total);
  for (uint32_t& token : c.tokens) token = static_cast<uint32_t>(rng.Next() % kVocabulary);
  return c;
}

// A contiguous [layers][2][tokens][heads][dim] view over `tensor`.
struct ContiguousView {
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
  uint16_t* base = nullptr;
  int32_t page = 0;
};

Status MakeView(kernels::KvTensor& tensor, ContiguousView& out) {
  out.base = tensor.data.data();
  const kernels::KvShape& s = tensor.shape;
  return kernels::MakePagedKvView(kernels::KvLayout::kContiguous, s.dtype, s.layers, s.kv_heads,
                                  s.head_dim, s.tokens, 1, {&out.base, 1}, {&out.page, 1}, out.view,
                                  out.storage);
}

// Tokens [0, tokens) of `from` as a tensor of their own.
kernels::KvTensor Prefix(const kernels::KvTensor& from, uint32_t tokens) {
  kernels::KvTensor out;
  out.shape = from.shape;
  out.shape.tokens = tokens;
  out.data.resize(out.shape.elements());
  const size_t run = size_t{tokens} * from.shape.kv_heads * from.shape.head_dim;
  for (uint32_t l = 0; l < from.shape.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      std::memcpy(out.Vector(l, kv, 0, 0), from.Vector(l, kv, 0, 0), run * sizeof(uint16_t));
    }
  }
  return out;
}

void NoteFailure(DemoFigures& f, const std::string& what) {
  if (f.first_failure.empty()) f.first_failure = what;
}

// Checks loaded blocks [0, count) of `loaded` against a local encode + decode of the same blocks
// of `reference`, byte for byte, and counts them.
Status VerifyLoaded(const KvBlockCodec& codec, const kernels::PagedKvView& reference,
                    std::span<const BlockKey> keys, const kernels::KvTensor& loaded, size_t count,
                    DemoFigures& f) {
  kernels::KvTensor expected;
  expected.shape = loaded.shape;
  expected.data.assign(loaded.data.size(), 0);
  ContiguousView expected_view;
  KVAULT_RETURN_IF_ERROR(MakeView(expected, expected_view));
  std::vector<uint8_t> object;
  const uint32_t b = codec.format().block_tokens;
  const size_t run = size_t{b} * loaded.shape.kv_heads * loaded.shape.head_dim;
  for (size_t i = 0; i < count; ++i) {
    object.resize(codec.ObjectBytes(i));
    KVAULT_RETURN_IF_ERROR(codec.Encode(reference, i, keys[i], object));
    KVAULT_RETURN_IF_ERROR(codec.Decode(object, i, keys[i], expected_view.view));
    bool same = true;
    for (uint32_t l = 0; l < loaded.shape.layers && same; ++l) {
      for (uint32_t kv = 0; kv < 2 && same; ++kv) {
        const uint32_t token = static_cast<uint32_t>(i * b);
        same = std::memcmp(loaded.Vector(l, kv, token, 0), expected.Vector(l, kv, token, 0),
                           run * sizeof(uint16_t)) == 0;
      }
    }
    if (same) {
      ++f.verified_blocks;
    } else {
      ++f.mismatched_blocks;
      NoteFailure(f, "block " + std::to_string(i) + " loaded differs from a local encode+decode");
    }
  }
  return Status::Ok();
}

// Accuracy of a conversation's loaded prefix against the generator's KV.
Status MeasurePrefix(const kernels::KvGeneratorOptions& gen, const kernels::KvTensor& reference,
                     const kernels::KvTensor& loaded, DemoFigures& f) {
  const uint32_t tokens = loaded.shape.tokens;
  kernels::KvGeneratorOptions at = gen;
  at.shape.tokens = tokens;  // decode queries right after the prefix
  at.queries_per_head = kAccuracyQueries;
  KVAULT_ASSIGN_OR_RETURN(kernels::QuerySet queries, kernels::GenerateQueries(at));
  kernels::AccuracyOptions options;
  options.sink_positions.clear();
  for (uint32_t p : kernels::SinkPositions(gen)) {
    if (p < tokens) options.sink_positions.push_back(p);
  }
  KVAULT_ASSIGN_OR_RETURN(
      kernels::AccuracyReport r,
      kernels::MeasureAccuracy(Prefix(reference, tokens), loaded, queries, options));
  ++f.accuracy_samples;
  f.k_sqnr_db += r.k_sqnr_db;
  f.v_sqnr_db += r.v_sqnr_db;
  f.max_abs_err = std::max({f.max_abs_err, r.k_max_abs_err, r.v_max_abs_err});
  f.attn_kl_mean += r.attn_kl_mean;
  f.out_rel_err_mean += r.out_rel_err_mean;
  f.top1_agreement += r.top1_agreement;
  return Status::Ok();
}

template <typename F>
double Timed(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return Seconds(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(samples.size()));
  const size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return samples[std::min(i, samples.size() - 1)];
}

Result<DemoFigures> RunDemo(Client& client, const DemoOptions& o,
                            const std::function<void(const std::string&)>& progress) {
  if (o.conversations == 0 || o.turns == 0 || o.layers == 0 || o.block_tokens == 0 ||
      o.user_min == 0 || o.user_min > o.user_max || o.reply_min > o.reply_max) {
    return Status::InvalidArgument(
        "demo: conversations, turns, layers and block tokens must be "
        "positive and token ranges ordered");
  }
  // Everything that makes a block reusable (DESIGN.md §4). The codec is not part of a namespace
  // in general; it is here so that a run with another --codec never loads this run's blocks
  // (the byte-exact check compares against this run's codec).
  Namespace ns;
  ns.model_id = "kvault-demo/llama-3-8b-like";
  ns.num_layers = o.layers;
  ns.kv_heads = kKvHeads;
  ns.head_dim = kHeadDim;
  ns.dtype = std::string(DTypeName(DType::kF16));
  ns.block_tokens = o.block_tokens;
  ns.extra_keys = {{"codec", o.codec}};
  KVAULT_ASSIGN_OR_RETURN(BlockKey ns_digest, NamespaceDigest(ns));

  KvStoreOptions store_options;
  store_options.format = {.num_layers = o.layers,
                          .kv_heads = kKvHeads,
                          .head_dim = kHeadDim,
                          .dtype = DType::kF16,
                          .block_tokens = o.block_tokens,
                          .codec = o.codec,
                          .ns_digest = ns_digest};
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<KvStore> kv, KvStore::Create(client, store_options));
  const KvBlockCodec& codec = kv->codec();

  DemoFigures f;
  f.raw_block_bytes = uint64_t{o.layers} * 2 * o.block_tokens * kKvHeads * kHeadDim * 2;
  auto object_bytes = [&](size_t first, size_t end) {
    uint64_t sum = 0;
    for (size_t i = first; i < end; ++i) sum += codec.ObjectBytes(i);
    return sum;
  };

  for (uint32_t c = 0; c < o.conversations; ++c) {
    const Conversation conv = PlanConversation(o, c);
    kernels::KvGeneratorOptions gen;
    gen.shape = {o.layers, kKvHeads, kHeadDim, static_cast<uint32_t>(conv.tokens.size()),
                 DType::kF16};
    gen.seed = conv.seed;
    Result<kernels::KvTensor> generated = Status::Unavailable("not generated");
    f.generate_seconds += Timed([&] { generated = kernels::GenerateKv(gen); });
    KVAULT_RETURN_IF_ERROR(generated.status());
    kernels::KvTensor& reference = *generated;
    ContiguousView ref_view;
    KVAULT_RETURN_IF_ERROR(MakeView(reference, ref_view));
    f.tokens += conv.tokens.size();

    uint64_t history = 0;  // tokens before this turn's user message
    size_t held = 0;       // leading blocks of this conversation the daemon holds
    uint64_t conv_hits = 0, conv_looked_up = 0;
    std::optional<kernels::KvTensor> last_loaded;
    for (uint32_t t = 0; t < o.turns; ++t) {
      ++f.turns;
      const uint64_t prompt = history + conv.turns[t].user_tokens;
      const std::span<const uint32_t> all(conv.tokens);
      KVAULT_ASSIGN_OR_RETURN(std::vector<BlockKey> keys,
                              ChainBlockKeys(ns_digest, all.first(prompt), o.block_tokens));
      f.looked_up_blocks += keys.size();
      conv_looked_up += keys.size();
      f.prompt_tokens += prompt;

      LookupResult hit;
      const LookupOptions leased{.want_lease = true, .deadline = std::nullopt};
      f.lookup_seconds.push_back(Timed([&] { hit = client.LookupPrefix(keys, leased); }));
      if (!hit.status.ok()) return hit.status.WithContext("lookup");
      const size_t hits = hit.leading_hits;
      f.hit_blocks += hits;
      conv_hits += hits;
      f.hit_tokens += uint64_t{hits} * o.block_tokens;
      if (t == 0) f.first_turn_hits += hits;
      held = std::max(held, hits);

      if (hits > 0) {
        kernels::KvTensor loaded;
        loaded.shape = gen.shape;
        loaded.shape.tokens = static_cast<uint32_t>(hits * o.block_tokens);
        loaded.data.assign(loaded.shape.elements(), 0);
        ContiguousView loaded_view;
        KVAULT_RETURN_IF_ERROR(MakeView(loaded, loaded_view));
        const std::span<const BlockKey> hit_keys = std::span(keys).first(hits);
        KvTransferResult r;
        const double s = Timed([&] { r = kv->LoadBlocks(hit.lease, hit_keys, loaded_view.view); });
        if (!r.status.ok()) return r.status.WithContext("load");
        f.load_seconds.push_back(s);
        f.load_total_seconds += s;
        f.loaded_blocks += r.leading_ok;
        f.loaded_bytes += object_bytes(0, r.leading_ok);
        if (r.leading_ok < hits) {
          f.failed_load_blocks += hits - r.leading_ok;
          NoteFailure(f, "load of block " + std::to_string(r.leading_ok) + ": " +
                             r.key_status[r.leading_ok].ToString());
        }
        KVAULT_RETURN_IF_ERROR(
            VerifyLoaded(codec, ref_view.view, hit_keys, loaded, r.leading_ok, f));
        if (r.leading_ok == hits) last_loaded = std::move(loaded);
      }

      // "Prefill": the rest of the prompt and the reply; their KV is the generator's. Blocks the
      // lookup found (its leading hits) are neither encoded nor sent again.
      const uint64_t end = prompt + conv.turns[t].reply_tokens;
      KVAULT_ASSIGN_OR_RETURN(std::vector<BlockKey> chain,
                              ChainBlockKeys(ns_digest, all.first(end), o.block_tokens));
      if (!chain.empty()) {
        KvTransferResult w;
        const size_t skip = std::min(hits, chain.size());
        const double s =
            Timed([&] { w = kv->StoreBlocks(ref_view.view, chain, std::nullopt, skip); });
        if (!w.status.ok()) return w.status.WithContext("store");
        f.store_seconds.push_back(s);
        f.store_total_seconds += s;
        f.offered_blocks += chain.size() - skip;
        f.offered_bytes += object_bytes(skip, chain.size());
        if (w.leading_ok > held) {
          f.new_blocks += w.leading_ok - held;
          f.new_bytes += object_bytes(held, w.leading_ok);
          held = w.leading_ok;
        }
        if (w.leading_ok < chain.size()) {
          f.failed_store_blocks += chain.size() - w.leading_ok;
          NoteFailure(f, "store of block " + std::to_string(w.leading_ok) + ": " +
                             w.key_status[w.leading_ok].ToString());
        }
      }
      if (hit.lease.valid()) {
        // A lease the daemon already dropped (expired) is fine: the load is over.
        (void)client.ReleaseLease(hit.lease);
      }
      history = end;
    }
    if (last_loaded) KVAULT_RETURN_IF_ERROR(MeasurePrefix(gen, reference, *last_loaded, f));
    if (progress) {
      char line[160];
      std::snprintf(line, sizeof line,
                    "conversation %u/%u: %u turns, %zu tokens, %llu of %llu looked-up blocks hit",
                    c + 1, o.conversations, o.turns, conv.tokens.size(),
                    static_cast<unsigned long long>(conv_hits),
                    static_cast<unsigned long long>(conv_looked_up));
      progress(line);
    }
  }
  if (f.accuracy_samples > 0) {
    const double n = f.accuracy_samples;
    f.k_sqnr_db /= n;
    f.v_sqnr_db /= n;
    f.attn_kl_mean /= n;
    f.out_rel_err_mean /= n;
    f.top1_agreement /= n;
  }
  return f;
}

}  // namespace kvault::cli
