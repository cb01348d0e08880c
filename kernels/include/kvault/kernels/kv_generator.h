#pragma once
// Synthetic KV caches for judging codecs without a model (DESIGN.md §6, research/quant.md §2.4).
//
// A KV tensor is laid out `[layers][2][tokens][kv_heads][head_dim]` of 16-bit elements (fp16 or
// bf16 bit patterns), K before V within each layer; this is the contiguous form used by files and
// tests. The realistic generator models RoPE-rotated keys with a few fixed outlier channels in the
// low-frequency RoPE pairs, per-token gains, attention-sink tokens and Gaussian/heavy-tailed
// values; the Gaussian control is iid N(0, 1). docs/kv_generator.md describes the model, every
// parameter and its source.
//
// Output is a pure function of the options: the random streams, the normal sampler and every
// transcendental function are implemented here with IEEE basic operations only, so the same
// options give the same bytes on every platform and compiler (x86-64, AArch64; no excess
// precision, no FMA contraction, which the build disables).
//
// All functions are thread-safe (they share only immutable tables).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/kernels/numeric.h"

namespace kvault::kernels {

// Dimensions of a KV tensor `[layers][2][tokens][kv_heads][head_dim]`.
struct KvShape {
  uint32_t layers = 32;     // transformer layers
  uint32_t kv_heads = 8;    // KV heads (GQA groups)
  uint32_t head_dim = 128;  // channels per head; even when RoPE is applied
  uint32_t tokens = 4096;   // cached tokens (positions 0 .. tokens - 1)
  DType dtype = DType::kF16;

  // layers * 2 * tokens * kv_heads * head_dim. Precondition: fits in size_t.
  size_t elements() const;
  // elements() * 2.
  size_t bytes() const;

  friend bool operator==(const KvShape&, const KvShape&) = default;
};

// Llama-3-8B / Mistral-7B shape: 32 layers, 8 KV heads, head dim 128, fp16.
inline constexpr KvShape kLlama3_8BShape{32, 8, 128, 4096, DType::kF16};

// A KV tensor in the contiguous layout. `data.size()` is `shape.elements()` for every tensor the
// generator returns; code that builds one by hand must keep that invariant.
struct KvTensor {
  KvShape shape;
  std::vector<uint16_t> data;  // dtype bit patterns

  // Index of element (layer, kv, token, head, dim) in `data`; kv is 0 for K and 1 for V.
  // Precondition: every index is in range (not checked).
  size_t Offset(uint32_t layer, uint32_t kv, uint32_t token, uint32_t head, uint32_t dim) const {
    return (((static_cast<size_t>(layer) * 2 + kv) * shape.tokens + token) * shape.kv_heads +
            head) *
               shape.head_dim +
           dim;
  }
  // The head_dim contiguous elements of one (layer, kv, token, head) vector.
  const uint16_t* Vector(uint32_t layer, uint32_t kv, uint32_t token, uint32_t head) const {
    return data.data() + Offset(layer, kv, token, head, 0);
  }
  uint16_t* Vector(uint32_t layer, uint32_t kv, uint32_t token, uint32_t head) {
    return data.data() + Offset(layer, kv, token, head, 0);
  }
  // Element as fp32 (exact).
  float At(uint32_t layer, uint32_t kv, uint32_t token, uint32_t head, uint32_t dim) const {
    return ToFloat(data[Offset(layer, kv, token, head, dim)], shape.dtype);
  }
};

// Everything the generator draws. Defaults reproduce research/quant.md §2.4 for Llama-3-8B at 4k
// tokens; the "source" of each default is in docs/kv_generator.md. Distribution parameters
// written LogNormal(0, s) mean exp(s * z) with z ~ N(0, 1).
struct KvGeneratorOptions {
  enum class Kind : uint8_t {
    // Outlier-channel RoPE keys, per-token gains, sinks, heavy-tailed values (quant.md §2.4).
    kRealistic,
    // Control: K, V and queries iid N(0, 1); no RoPE, outliers, sinks or bias layers.
    kGaussian,
  };

  // Shape and element type of the tensor. Default: Llama-3-8B at 4096 tokens, fp16.
  KvShape shape = kLlama3_8BShape;
  // Default kRealistic.
  Kind kind = Kind::kRealistic;
  // Seed of every random stream. Same options, same bytes; any other seed gives other data.
  uint64_t seed = 1;

  // --- RoPE (rotate-half pairs (i, i + D/2), frequency theta^(-2i/D)) ---
  // Base frequency; 5e5 is Llama-3, 1e6 is Qwen2.5. Must be > 1.
  float rope_theta = 5e5f;
  // true: keys are stored post-RoPE at positions 0 .. tokens-1 (what a paged KV cache holds).
  // false: the same keys pre-RoPE (for codecs that quantize before RoPE, KVQuant-style); apply
  // ApplyRope() after decoding to compare attention. Queries are always post-RoPE.
  bool apply_rope = true;

  // --- Pre-RoPE keys: K[t,c] = mu_c + g_t * sigma_c * z ---
  // sigma_c ~ LogNormal(0, key_sigma_log_std). Default 0.35.
  float key_sigma_log_std = 0.35f;
  // mu_c ~ N(0, (key_mean_scale * sigma_c)^2). Default 0.5.
  float key_mean_scale = 0.5f;
  // Per-token gain g_t ~ LogNormal(0, key_gain_log_std), drawn per (layer, head). Default 0.15.
  float key_gain_log_std = 0.15f;
  // Outlier channels per head, uniform in [outliers_min, outliers_max], placed in the
  // lowest-frequency RoPE pairs (channels just below D/2 and D). Defaults 2 and 6; 0 disables.
  uint32_t outliers_min = 2;
  uint32_t outliers_max = 6;
  // Outlier |mu| ~ U[outlier_mean_min, outlier_mean_max] with a random sign, fixed over tokens.
  // Defaults 8 and 20 (about 10-20x the median channel's mean |K|).
  float outlier_mean_min = 8.0f;
  float outlier_mean_max = 20.0f;
  // Outlier channel sigma (the gain g_t still applies). Default 2.5.
  float outlier_sigma = 2.5f;

  // --- Hazard mode: Qwen2-style bias layers ---
  // When true (default) 1 or 2 boundary layers (see BiasLayers()) get outlier |mu| of
  // U[bias_ratio_min, bias_ratio_max] times the median over the other channels of mean_t |K|.
  // The trade-off: realistic for Qwen2/2.5, harsh for Llama; turn off for a Llama-only study.
  bool bias_layers = true;
  float bias_ratio_min = 30.0f;
  float bias_ratio_max = 40.0f;

  // --- Values: V[t,c] = g'_t * s_c * z ---
  // g'_t ~ LogNormal(0, value_gain_log_std). Default 0.3.
  float value_gain_log_std = 0.3f;
  // s_c ~ LogNormal(0, value_channel_log_std). Default 0.2.
  float value_channel_log_std = 0.2f;
  // Fraction of tokens whose value z is Student-t with value_heavy_dof degrees of freedom
  // instead of N(0, 1). Defaults 0.01 and 5; fraction 0 disables.
  float value_heavy_fraction = 0.01f;
  uint32_t value_heavy_dof = 5;

  // --- Attention sinks ---
  // Tokens 0 .. sink_tokens-1 are sinks. Default 1 (StreamingLLM, IntactKV).
  uint32_t sink_tokens = 1;
  // Extra sinks at random positions >= sink_tokens, shared by all layers and heads ("delimiter"
  // tokens). Default 0.
  uint32_t delimiter_sinks = 0;
  // Each sink's key gets a component along the head's mean query direction that raises its
  // expected logit (q.k / sqrt(D), over the decode queries) by U[sink_logit_min, sink_logit_max]
  // above what it would otherwise be. Defaults 6 and 10.
  float sink_logit_min = 6.0f;
  float sink_logit_max = 10.0f;
  // Sink values are scaled by this ("value garbage bin"). Default 0.05.
  float sink_value_scale = 0.05f;

  // --- Queries (GenerateQueries): q = m + N(0, query_noise_std^2) per channel, then RoPE ---
  // Decode queries per KV head, at positions tokens .. tokens + queries_per_head - 1 (they stand
  // for the GQA query heads and decode steps of that group). Default 16.
  uint32_t queries_per_head = 16;
  // |m| = query_mean_norm * sqrt(D), m's direction uniform per (layer, head). Default 0.7.
  float query_mean_norm = 0.7f;
  // Default 0.7.
  float query_noise_std = 0.7f;
};

// Returns OK when `options` can be generated, else InvalidArgument naming the field: every shape
// dimension and queries_per_head > 0, head_dim even, elements() within 2^40, tokens +
// queries_per_head < 2^31, sink_tokens + delimiter_sinks <= tokens, min <= max for every range,
// fractions in [0, 1], standard deviations >= 0, rope_theta > 1, value_heavy_dof > 0.
Status ValidateKvGeneratorOptions(const KvGeneratorOptions& options);

// Generates a KV tensor of `options.shape`. Deterministic: same options, same bytes.
// InvalidArgument as ValidateKvGeneratorOptions(); ResourceExhausted when the tensor cannot be
// allocated. Single-threaded; Llama-3-8B at 4096 tokens (268M elements) takes a few seconds.
Result<KvTensor> GenerateKv(const KvGeneratorOptions& options);

// Decode queries matching GenerateKv(options) (same seed: same mean directions the sinks were
// aimed at). fp32, post-RoPE.
struct QuerySet {
  uint32_t layers = 0;
  uint32_t kv_heads = 0;
  uint32_t queries = 0;  // per (layer, head)
  uint32_t head_dim = 0;
  std::vector<uint32_t> positions;  // RoPE position of query j (size `queries`)
  std::vector<float> data;          // [layers][kv_heads][queries][head_dim]

  // First of the head_dim floats of query j of (layer, head). Precondition: indices in range.
  const float* Query(uint32_t layer, uint32_t head, uint32_t j) const {
    return data.data() + ((static_cast<size_t>(layer) * kv_heads + head) * queries + j) * head_dim;
  }
};

// Generates the decode queries for `options` (shape.layers x kv_heads x queries_per_head).
// Deterministic. InvalidArgument as ValidateKvGeneratorOptions().
Result<QuerySet> GenerateQueries(const KvGeneratorOptions& options);

// Layers that get the hazard-mode bias outliers, ascending: empty when bias_layers is false, the
// kind is kGaussian or the options are invalid; otherwise {0}, {layers-1} or {0, layers-1}
// (1 or 2 boundary layers, drawn from the seed; one layer when layers == 1).
std::vector<uint32_t> BiasLayers(const KvGeneratorOptions& options);

// Token positions of the attention sinks, ascending: 0 .. sink_tokens-1 followed by the
// delimiter sinks. Empty for kGaussian or invalid options.
std::vector<uint32_t> SinkPositions(const KvGeneratorOptions& options);

// Rotates the keys of `tensor` in place by RoPE (rotate-half, base `theta`) at positions
// first_position .. first_position + tokens - 1, rounding to the tensor's dtype. Values are
// untouched. Applying it to a tensor generated with apply_rope = false matches the
// apply_rope = true tensor up to one extra rounding. InvalidArgument when head_dim is odd, theta
// <= 1 or data.size() != shape.elements().
Status ApplyRope(KvTensor& tensor, float theta, uint32_t first_position = 0);

}  // namespace kvault::kernels
