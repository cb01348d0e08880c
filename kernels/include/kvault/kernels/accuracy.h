#pragma once
// Attention-level accuracy of a lossy KV codec (research/quant.md §3.1): compares a reference KV
// tensor with its encode/decode round trip under a set of decode queries, and reports
// reconstruction (SQNR, cosine), attention logits, attention distribution (KL, top-1, top-k,
// sink mass) and attention output error. docs/kv_generator.md defines every metric exactly.
//
// Thread-safe (no shared state). Deterministic for given inputs on a given platform (it uses the
// C library's exp and log, so the last bits may differ between platforms).

#include <cstdint>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/kernels/kv_generator.h"

namespace kvault::kernels {

// SQNR reported when the decoded tensor equals the reference (zero error) or the ratio exceeds
// it; -kSqnrCapDb when the reference is all zero and the decoded tensor is not. A finite sentinel
// (not +inf) so that JSON writers and averages keep working.
inline constexpr double kSqnrCapDb = 999.0;

struct AccuracyOptions {
  // Attention metrics are computed on this many layers, spread evenly from the first to the last
  // (layer round(i * (layers - 1) / (max_layers - 1))); 0 (default) = every layer. The
  // reconstruction metrics always cover the whole tensor. Trade-off: time vs coverage.
  uint32_t max_layers = 0;
  // Only the first max_queries queries of each head are used; 0 (default) = all.
  uint32_t max_queries = 0;
  // k of the top-k overlap metric (clamped to tokens); 0 disables it. Default 8.
  uint32_t top_k = 8;
  // Token positions whose summed attention mass is compared (sink-mass error). Default {0};
  // SinkPositions() gives the generator's. Every position must be < tokens.
  std::vector<uint32_t> sink_positions = {0};
};

// Metrics of one (layer, head) whose attention was measured.
struct HeadAccuracy {
  uint32_t layer = 0;
  uint32_t head = 0;
  double k_sqnr_db = 0.0;
  double v_sqnr_db = 0.0;
  double attn_kl_mean = 0.0;
  double attn_kl_max = 0.0;
  double out_rel_err_mean = 0.0;
  double out_rel_err_max = 0.0;
  double top1_agreement = 0.0;
  double logit_mae = 0.0;
  double logit_corr = 0.0;  // Pearson correlation of logits over all (query, token) of the head
};

struct AccuracyReport {
  // --- Reconstruction, over the whole tensor ---
  // 10 log10(sum x^2 / sum (x - xhat)^2) over all K (resp. V) elements, clamped to
  // [-kSqnrCapDb, kSqnrCapDb]; kSqnrCapDb when exact.
  double k_sqnr_db = 0.0;
  double v_sqnr_db = 0.0;
  // Cosine similarity of each (layer, token, head) vector with its reconstruction: mean and min.
  double k_cos_mean = 0.0;
  double k_cos_min = 0.0;
  double v_cos_mean = 0.0;
  double v_cos_min = 0.0;
  // max |x - xhat|.
  double k_max_abs_err = 0.0;
  double v_max_abs_err = 0.0;
  // NaN or Inf elements in the decoded tensor. They are counted here and read as 0 by every other
  // metric, so the rest of the report stays finite; a codec is only acceptable with 0 here.
  uint64_t nonfinite = 0;

  // --- Attention, over rows = (measured layer, head, query) ---
  uint64_t rows = 0;
  // KL(p || phat) in nats, p = softmax(q.K^T / sqrt(D)) over all tokens; mean over rows, worst.
  double attn_kl_mean = 0.0;
  double attn_kl_max = 0.0;
  // ||o - ohat|| / ||o||, o = p V and ohat = phat Vhat; mean over rows, worst.
  double out_rel_err_mean = 0.0;
  double out_rel_err_max = 0.0;
  // Fraction of rows where argmax p == argmax phat (first index on ties).
  double top1_agreement = 0.0;
  // Mean over rows of |top_k(p) intersect top_k(phat)| / k (0 when top_k is 0).
  double topk_overlap = 0.0;
  // |q.k - q.khat| / sqrt(D): mean and max over every (row, token).
  double logit_mae = 0.0;
  double logit_max_err = 0.0;
  // Smallest per-head logit correlation (HeadAccuracy::logit_corr).
  double logit_corr_min = 0.0;
  // Reference attention mass on sink_positions (mean over rows), and |mass - mass_hat|: mean, max.
  double sink_mass_mean = 0.0;
  double sink_mass_err_mean = 0.0;
  double sink_mass_err_max = 0.0;

  // One entry per measured (layer, head), layer-major.
  std::vector<HeadAccuracy> heads;
};

// Compares `decoded` against `reference` under the queries `q` (post-RoPE, as keys are).
// `reference` and `decoded` must have equal layers, kv_heads, head_dim and tokens (their dtypes
// may differ) and data.size() == shape.elements(); `q` must have the same layers, kv_heads and
// head_dim and at least one query. Returns InvalidArgument otherwise, when a sink position is
// out of range, or when `reference` holds a NaN or Inf. Single-threaded; the full Llama-3-8B
// shape at 4096 tokens with 16 queries per head takes a few seconds.
Result<AccuracyReport> MeasureAccuracy(const KvTensor& reference, const KvTensor& decoded,
                                       const QuerySet& q, const AccuracyOptions& options = {});

}  // namespace kvault::kernels
