#include "kvault/kernels/accuracy.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace kvault::kernels {
namespace {

// Four fp32 lanes and two fp64 lanes (GCC/Clang vector extension: one SSE or NEON register
// each). Lanes are independent, so results do not depend on the instruction set the compiler
// picks.
using F4 = float __attribute__((vector_size(16)));
using D2 = double __attribute__((vector_size(16)));
using I2 = int64_t __attribute__((vector_size(16)));
using D4 = double __attribute__((vector_size(32)));  // only to convert an F4 (see Low)
constexpr size_t kLanes = 4;

F4 Load4(const float* p) {
  F4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void Store4(float* p, F4 v) { std::memcpy(p, &v, sizeof(v)); }
// Lanes 0-1 and 2-3 of v in fp64 (exact). Converting the whole F4 lets GCC use cvtps2pd; a
// two-float vector is converted one element at a time.
D2 Low(F4 v) {
  const D4 d = __builtin_convertvector(v, D4);
  return __builtin_shufflevector(d, d, 0, 1);
}
D2 High(F4 v) {
  const D4 d = __builtin_convertvector(v, D4);
  return __builtin_shufflevector(d, d, 2, 3);
}
D2 Abs(D2 v) { return std::bit_cast<D2>(std::bit_cast<I2>(v) & 0x7FFFFFFFFFFFFFFF); }
F4 Splat4(float x) { return F4{x, x, x, x}; }

// Queries are processed in blocks of 16 (four F4) and tokens in pairs, so the eight logit
// accumulators stay in registers.
constexpr uint32_t kQueryBlock = 16;
// Tokens whose weighted values are summed in fp32 before being added to the fp64 output.
constexpr uint32_t kOutputBlock = 64;

uint32_t RoundUp(uint32_t x, uint32_t m) { return (x + m - 1) / m * m; }

// fp16 bit pattern -> fp32 for all 65536 patterns.
const float* HalfTable() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = HalfToFloat(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

// Sums for the reconstruction metrics of a set of vectors.
struct ReconSums {
  double signal = 0.0;  // sum x^2
  double error = 0.0;   // sum (x - xhat)^2
  double cos_sum = 0.0;
  double cos_min = 1.0;
  uint64_t vectors = 0;
  double max_abs = 0.0;

  void Add(const ReconSums& o) {
    signal += o.signal;
    error += o.error;
    cos_sum += o.cos_sum;
    cos_min = std::min(cos_min, o.cos_min);
    vectors += o.vectors;
    max_abs = std::max(max_abs, o.max_abs);
  }
};

double SqnrDb(double signal, double error) {
  if (error == 0.0) return kSqnrCapDb;
  if (signal == 0.0) return -kSqnrCapDb;
  return std::clamp(10.0 * std::log10(signal / error), -kSqnrCapDb, kSqnrCapDb);
}

// Loads the (layer, kv, head) slice of `t` as fp32 [tokens][stride] (padding columns are left
// as they are, zero). Non-finite elements become 0 and are counted in *nonfinite.
void LoadSlice(const KvTensor& t, uint32_t layer, uint32_t kv, uint32_t head, uint32_t stride,
               float* out, uint64_t* nonfinite) {
  const uint32_t d = t.shape.head_dim;
  const bool f16 = t.shape.dtype == DType::kF16;
  const float* table = HalfTable();
  // Rows are kv_heads * D elements apart: prefetch ahead, the hardware does not follow them well.
  constexpr uint32_t kAhead = 8;
  const size_t row_bytes = static_cast<size_t>(d) * sizeof(uint16_t);
  for (uint32_t tok = 0; tok < t.shape.tokens; ++tok) {
    const uint16_t* src = t.Vector(layer, kv, tok, head);
    if (tok + kAhead < t.shape.tokens) {
      const char* ahead = reinterpret_cast<const char*>(t.Vector(layer, kv, tok + kAhead, head));
      for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(ahead + b);
    }
    float* dst = out + static_cast<size_t>(tok) * stride;
    for (uint32_t c = 0; c < d; ++c) {
      const uint16_t bits = src[c];
      if (IsNonFinite16(bits, t.shape.dtype)) {
        dst[c] = 0.0f;
        ++*nonfinite;
      } else {
        dst[c] = f16 ? table[bits] : Bf16ToFloat(bits);
      }
    }
  }
}

// Per-vector reconstruction sums of two lanes, in fp64: fp32 squares overflow from |x| = 2^64 up
// and underflow below 2^-63, and bf16 holds both; fp64 products of fp32 values are exact and no
// sum comes near fp64's limits.
struct ReconLanes {
  D2 dot = {}, na = {}, nb = {}, err = {}, max_err = {};

  void Add(D2 xa, D2 xb) {
    const D2 e = xa - xb;
    dot += xa * xb;
    na += xa * xa;
    nb += xb * xb;
    err += e * e;
    const D2 abs_e = Abs(e);
    max_err = abs_e > max_err ? abs_e : max_err;
  }
};

// Vectors are fp32 [vectors][stride], padding columns zero in both. Per-vector sums in four fp64
// lanes, totals in fp64.
ReconSums Reconstruction(const float* x, const float* y, uint32_t vectors, uint32_t stride) {
  ReconSums s;
  s.vectors = vectors;
  for (uint32_t v = 0; v < vectors; ++v) {
    const float* a = x + static_cast<size_t>(v) * stride;
    const float* b = y + static_cast<size_t>(v) * stride;
    ReconLanes lo, hi;  // lanes 0-1 and 2-3
    for (uint32_t c = 0; c < stride; c += kLanes) {
      const F4 xa = Load4(a + c);
      const F4 xb = Load4(b + c);
      lo.Add(Low(xa), Low(xb));
      hi.Add(High(xa), High(xb));
    }
    const double lanes[5][kLanes] = {
        {lo.dot[0], lo.dot[1], hi.dot[0], hi.dot[1]},
        {lo.na[0], lo.na[1], hi.na[0], hi.na[1]},
        {lo.nb[0], lo.nb[1], hi.nb[0], hi.nb[1]},
        {lo.err[0], lo.err[1], hi.err[0], hi.err[1]},
        {lo.max_err[0], lo.max_err[1], hi.max_err[0], hi.max_err[1]},
    };
    for (uint32_t i = 0; i < kLanes; ++i) s.max_abs = std::max(s.max_abs, lanes[4][i]);
    double sum[4] = {};
    for (int k = 0; k < 4; ++k) {
      for (uint32_t i = 0; i < kLanes; ++i) sum[k] += lanes[k][i];
    }
    s.signal += sum[1];
    s.error += sum[3];
    double cos;
    if (sum[1] == 0.0 && sum[2] == 0.0) {
      cos = 1.0;
    } else if (sum[1] == 0.0 || sum[2] == 0.0) {
      cos = 0.0;
    } else {  // sqrt(na * na) == na exactly, so identical vectors give exactly 1
      cos = std::clamp(sum[0] / std::sqrt(sum[1] * sum[2]), -1.0, 1.0);
    }
    s.cos_sum += cos;
    s.cos_min = std::min(s.cos_min, cos);
  }
  return s;
}

// logits[j][t] = q_j . k_t / sqrt(D) for the nq queries in qt ([D][nq_padded] fp32, zero
// padded to a multiple of kQueryBlock), k = [tokens][stride]. Dot products in fp32, as attention
// kernels compute them.
void Logits(const float* qt, uint32_t nq, uint32_t nq_padded, const float* k, uint32_t tokens,
            uint32_t d, uint32_t stride, double* logits) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  float lanes[2][kQueryBlock];
  for (uint32_t j0 = 0; j0 < nq_padded; j0 += kQueryBlock) {
    const uint32_t j_end = std::min(nq, j0 + kQueryBlock);
    for (uint32_t t = 0; t < tokens; t += 2) {
      const uint32_t pair = std::min<uint32_t>(2, tokens - t);
      const float* k0 = k + static_cast<size_t>(t) * stride;
      const float* k1 = pair == 2 ? k0 + stride : k0;
      F4 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
      for (uint32_t c = 0; c < d; ++c) {
        const float* qc = qt + static_cast<size_t>(c) * nq_padded + j0;
        const F4 q0 = Load4(qc);
        const F4 q1 = Load4(qc + kLanes);
        const F4 q2 = Load4(qc + 2 * kLanes);
        const F4 q3 = Load4(qc + 3 * kLanes);
        const F4 x0 = Splat4(k0[c]);
        const F4 x1 = Splat4(k1[c]);
        a0 += q0 * x0;
        a1 += q1 * x0;
        a2 += q2 * x0;
        a3 += q3 * x0;
        b0 += q0 * x1;
        b1 += q1 * x1;
        b2 += q2 * x1;
        b3 += q3 * x1;
      }
      Store4(lanes[0], a0);
      Store4(lanes[0] + kLanes, a1);
      Store4(lanes[0] + 2 * kLanes, a2);
      Store4(lanes[0] + 3 * kLanes, a3);
      Store4(lanes[1], b0);
      Store4(lanes[1] + kLanes, b1);
      Store4(lanes[1] + 2 * kLanes, b2);
      Store4(lanes[1] + 3 * kLanes, b3);
      for (uint32_t tt = 0; tt < pair; ++tt) {
        for (uint32_t j = j0; j < j_end; ++j) {
          logits[static_cast<size_t>(j) * tokens + t + tt] = lanes[tt][j - j0] * scale;
        }
      }
    }
  }
}

// p = softmax(logits) over one row. Returns log Z where Z = sum exp(l - max), and writes the
// max and the first argmax.
double Softmax(const double* logits, uint32_t tokens, double* p, double* max_out,
               uint32_t* argmax_out) {
  double m = logits[0];
  uint32_t arg = 0;
  for (uint32_t t = 1; t < tokens; ++t) {
    if (logits[t] > m) {
      m = logits[t];
      arg = t;
    }
  }
  double z = 0.0;
  for (uint32_t t = 0; t < tokens; ++t) {
    p[t] = std::exp(logits[t] - m);
    z += p[t];
  }
  const double inv = 1.0 / z;
  for (uint32_t t = 0; t < tokens; ++t) p[t] *= inv;
  *max_out = m;
  *argmax_out = arg;
  return std::log(z);
}

// Indices of the k largest logits (ties: lower index first), sorted ascending. 0 < k <= tokens.
// Keeps the best k in a small sorted buffer; most tokens fail the first comparison.
void TopK(const double* logits, uint32_t tokens, uint32_t k, std::vector<uint32_t>& idx) {
  idx.clear();
  for (uint32_t t = 0; t < tokens; ++t) {
    const double l = logits[t];
    // Scanning in index order, an equal logit never beats an earlier one.
    if (idx.size() == k && !(l > logits[idx.back()])) continue;
    if (idx.size() == k) idx.pop_back();
    size_t pos = idx.size();
    idx.push_back(t);
    while (pos > 0 && l > logits[idx[pos - 1]]) {
      idx[pos] = idx[pos - 1];
      --pos;
    }
    idx[pos] = t;
  }
  std::sort(idx.begin(), idx.end());
}

// o[j][c] = sum_t p[j][t] v[t][c] for nq rows; p is fp32 [nq][tokens], v is [tokens][stride]
// (stride a multiple of kLanes, padding zero), o is fp64 [nq][stride]. Products and sums over
// kOutputBlock tokens in fp32, the block sums in fp64.
void Outputs(const float* p, uint32_t nq, const float* v, uint32_t tokens, uint32_t stride,
             double* o) {
  std::fill(o, o + static_cast<size_t>(nq) * stride, 0.0);
  constexpr size_t kWide = 8 * kLanes;  // channels per register-resident chunk
  float lanes[kWide];
  for (uint32_t t0 = 0; t0 < tokens; t0 += kOutputBlock) {
    const uint32_t t1 = std::min(tokens, t0 + kOutputBlock);
    for (uint32_t j = 0; j < nq; ++j) {
      const float* pj = p + static_cast<size_t>(j) * tokens;
      double* oj = o + static_cast<size_t>(j) * stride;
      uint32_t c0 = 0;
      for (; c0 + kWide <= stride; c0 += kWide) {
        F4 a0 = {}, a1 = {}, a2 = {}, a3 = {}, a4 = {}, a5 = {}, a6 = {}, a7 = {};
        for (uint32_t t = t0; t < t1; ++t) {
          const float* vt = v + static_cast<size_t>(t) * stride + c0;
          const F4 w = Splat4(pj[t]);
          a0 += w * Load4(vt);
          a1 += w * Load4(vt + kLanes);
          a2 += w * Load4(vt + 2 * kLanes);
          a3 += w * Load4(vt + 3 * kLanes);
          a4 += w * Load4(vt + 4 * kLanes);
          a5 += w * Load4(vt + 5 * kLanes);
          a6 += w * Load4(vt + 6 * kLanes);
          a7 += w * Load4(vt + 7 * kLanes);
        }
        Store4(lanes, a0);
        Store4(lanes + kLanes, a1);
        Store4(lanes + 2 * kLanes, a2);
        Store4(lanes + 3 * kLanes, a3);
        Store4(lanes + 4 * kLanes, a4);
        Store4(lanes + 5 * kLanes, a5);
        Store4(lanes + 6 * kLanes, a6);
        Store4(lanes + 7 * kLanes, a7);
        for (uint32_t c = 0; c < kWide; ++c) oj[c0 + c] += lanes[c];
      }
      for (; c0 < stride; c0 += kLanes) {
        F4 a0 = {};
        for (uint32_t t = t0; t < t1; ++t) {
          a0 += Splat4(pj[t]) * Load4(v + static_cast<size_t>(t) * stride + c0);
        }
        Store4(lanes, a0);
        for (uint32_t c = 0; c < kLanes; ++c) oj[c0 + c] += lanes[c];
      }
    }
  }
}

// Attention sums over all measured rows.
struct AttentionSums {
  uint64_t rows = 0;
  double kl_sum = 0.0, kl_max = 0.0;
  double rel_sum = 0.0, rel_max = 0.0;
  uint64_t top1 = 0;
  double topk_sum = 0.0;
  double logit_abs_sum = 0.0, logit_abs_max = 0.0;
  uint64_t logits = 0;
  double corr_min = 1.0;
  double sink_sum = 0.0, sink_err_sum = 0.0, sink_err_max = 0.0;
};

// Scratch buffers reused across heads.
struct Scratch {
  std::vector<float> qt;               // [D][nq_padded]
  std::vector<double> lr, ld, pr, pd;  // [nq][tokens]
  std::vector<float> pf;               // [nq][tokens], fp32 copy of pr or pd
  std::vector<double> orr, od;         // [nq][stride]
  std::vector<uint32_t> top_r, top_d;
};

// Slices are fp32 [tokens][stride].
void MeasureHead(const float* kr, const float* kd, const float* vr, const float* vd,
                 uint32_t stride, const QuerySet& q, uint32_t layer, uint32_t head, uint32_t nq,
                 uint32_t tokens, const AccuracyOptions& opt, Scratch& s, HeadAccuracy& ha,
                 AttentionSums& sums) {
  const uint32_t d = q.head_dim;
  const uint32_t nq_padded = RoundUp(nq, kQueryBlock);
  s.qt.assign(static_cast<size_t>(d) * nq_padded, 0.0f);
  for (uint32_t j = 0; j < nq; ++j) {
    const float* qj = q.Query(layer, head, j);
    for (uint32_t c = 0; c < d; ++c) s.qt[static_cast<size_t>(c) * nq_padded + j] = qj[c];
  }
  const size_t n = static_cast<size_t>(nq) * tokens;
  s.lr.resize(n), s.ld.resize(n), s.pr.resize(n), s.pd.resize(n);
  s.pf.resize(n);
  s.orr.resize(static_cast<size_t>(nq) * stride), s.od.resize(s.orr.size());
  Logits(s.qt.data(), nq, nq_padded, kr, tokens, d, stride, s.lr.data());
  Logits(s.qt.data(), nq, nq_padded, kd, tokens, d, stride, s.ld.data());

  const uint32_t k = std::min(opt.top_k, tokens);
  double kl_sum = 0.0, rel_sum = 0.0, logit_abs_sum = 0.0;
  uint64_t top1 = 0;
  // Correlation sums of logits shifted by a common constant, against cancellation when the
  // logits carry a large offset (outlier channels aligned with the mean query).
  const double shift = s.lr[0];
  double sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0, sdd = 0.0;
  for (uint32_t j = 0; j < nq; ++j) {
    const double* lr = s.lr.data() + static_cast<size_t>(j) * tokens;
    const double* ld = s.ld.data() + static_cast<size_t>(j) * tokens;
    double* pr = s.pr.data() + static_cast<size_t>(j) * tokens;
    double* pd = s.pd.data() + static_cast<size_t>(j) * tokens;
    double mr, md;
    uint32_t ar, ad;
    const double log_zr = Softmax(lr, tokens, pr, &mr, &ar);
    const double log_zd = Softmax(ld, tokens, pd, &md, &ad);
    double kl = 0.0;
    for (uint32_t t = 0; t < tokens; ++t) {
      // log p - log phat, with log p = l - max - log Z.
      const double diff = (lr[t] - mr - log_zr) - (ld[t] - md - log_zd);
      kl += pr[t] * diff;
      const double e = std::fabs(lr[t] - ld[t]);
      logit_abs_sum += e;
      sums.logit_abs_max = std::max(sums.logit_abs_max, e);
      const double x = lr[t] - shift;
      const double y = ld[t] - shift;
      sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
      sdd += e * e;
    }
    kl = std::max(kl, 0.0);
    kl_sum += kl;
    sums.kl_max = std::max(sums.kl_max, kl);
    ha.attn_kl_max = std::max(ha.attn_kl_max, kl);
    if (ar == ad) ++top1;
    if (k > 0) {
      TopK(lr, tokens, k, s.top_r);
      TopK(ld, tokens, k, s.top_d);
      uint32_t common = 0;
      for (uint32_t a = 0, b = 0; a < k && b < k;) {
        if (s.top_r[a] == s.top_d[b]) {
          ++common, ++a, ++b;
        } else if (s.top_r[a] < s.top_d[b]) {
          ++a;
        } else {
          ++b;
        }
      }
      sums.topk_sum += static_cast<double>(common) / k;
    }
    double mass_r = 0.0, mass_d = 0.0;
    for (uint32_t pos : opt.sink_positions) mass_r += pr[pos], mass_d += pd[pos];
    const double sink_err = std::fabs(mass_r - mass_d);
    sums.sink_sum += mass_r;
    sums.sink_err_sum += sink_err;
    sums.sink_err_max = std::max(sums.sink_err_max, sink_err);
  }

  for (size_t i = 0; i < n; ++i) s.pf[i] = static_cast<float>(s.pr[i]);
  Outputs(s.pf.data(), nq, vr, tokens, stride, s.orr.data());
  for (size_t i = 0; i < n; ++i) s.pf[i] = static_cast<float>(s.pd[i]);
  Outputs(s.pf.data(), nq, vd, tokens, stride, s.od.data());
  for (uint32_t j = 0; j < nq; ++j) {
    const double* o = s.orr.data() + static_cast<size_t>(j) * stride;
    const double* oh = s.od.data() + static_cast<size_t>(j) * stride;
    double num = 0.0, den = 0.0;
    for (uint32_t c = 0; c < d; ++c) {
      num += (o[c] - oh[c]) * (o[c] - oh[c]);
      den += o[c] * o[c];
    }
    const double rel = den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
    rel_sum += rel;
    sums.rel_max = std::max(sums.rel_max, rel);
    ha.out_rel_err_max = std::max(ha.out_rel_err_max, rel);
  }

  const double cnt = static_cast<double>(n);
  const double cov = sxy - sx * sy / cnt;
  const double var_x = sxx - sx * sx / cnt;
  const double var_y = syy - sy * sy / cnt;
  double corr;
  if (sdd == 0.0) {
    corr = 1.0;
  } else if (var_x > 0.0 && var_y > 0.0) {
    corr = std::clamp(cov / (std::sqrt(var_x) * std::sqrt(var_y)), -1.0, 1.0);
  } else {
    corr = 0.0;
  }
  ha.attn_kl_mean = kl_sum / nq;
  ha.out_rel_err_mean = rel_sum / nq;
  ha.top1_agreement = static_cast<double>(top1) / nq;
  ha.logit_mae = logit_abs_sum / cnt;
  ha.logit_corr = corr;

  sums.rows += nq;
  sums.kl_sum += kl_sum;
  sums.rel_sum += rel_sum;
  sums.top1 += top1;
  sums.logit_abs_sum += logit_abs_sum;
  sums.logits += n;
  sums.corr_min = std::min(sums.corr_min, corr);
}

Status CheckInputs(const KvTensor& r, const KvTensor& d, const QuerySet& q,
                   const AccuracyOptions& opt) {
  const KvShape& a = r.shape;
  const KvShape& b = d.shape;
  if (a.layers != b.layers || a.kv_heads != b.kv_heads || a.head_dim != b.head_dim ||
      a.tokens != b.tokens) {
    return Status::InvalidArgument("MeasureAccuracy: reference and decoded shapes differ");
  }
  if (a.layers == 0 || a.kv_heads == 0 || a.head_dim == 0 || a.tokens == 0) {
    return Status::InvalidArgument("MeasureAccuracy: empty shape");
  }
  for (const KvTensor* t : {&r, &d}) {
    if (t->shape.dtype != DType::kF16 && t->shape.dtype != DType::kBF16) {
      return Status::InvalidArgument("MeasureAccuracy: unknown dtype");
    }
    if (t->data.size() != t->shape.elements()) {
      return Status::InvalidArgument("MeasureAccuracy: data.size() != shape.elements()");
    }
  }
  if (q.layers != a.layers || q.kv_heads != a.kv_heads || q.head_dim != a.head_dim) {
    return Status::InvalidArgument("MeasureAccuracy: query set does not match the tensor shape");
  }
  if (q.queries == 0 ||
      q.data.size() != static_cast<size_t>(q.layers) * q.kv_heads * q.queries * q.head_dim) {
    return Status::InvalidArgument("MeasureAccuracy: query set is empty or inconsistent");
  }
  for (uint32_t pos : opt.sink_positions) {
    if (pos >= a.tokens) {
      return Status::InvalidArgument("MeasureAccuracy: sink position " + std::to_string(pos) +
                                     " >= tokens");
    }
  }
  return Status::Ok();
}

std::vector<bool> MeasuredLayers(uint32_t layers, uint32_t max_layers) {
  if (max_layers == 0 || max_layers >= layers) return std::vector<bool>(layers, true);
  std::vector<bool> measured(layers, false);
  if (max_layers == 1) {
    measured[0] = true;
    return measured;
  }
  const uint64_t span = layers - 1;
  const uint64_t steps = max_layers - 1;
  for (uint64_t i = 0; i < max_layers; ++i) measured[(2 * i * span + steps) / (2 * steps)] = true;
  return measured;
}

}  // namespace

Result<AccuracyReport> MeasureAccuracy(const KvTensor& reference, const KvTensor& decoded,
                                       const QuerySet& q, const AccuracyOptions& options) {
  KVAULT_RETURN_IF_ERROR(CheckInputs(reference, decoded, q, options));
  const KvShape& shape = reference.shape;
  const uint32_t d = shape.head_dim;
  const uint32_t tokens = shape.tokens;
  const uint32_t nq =
      options.max_queries == 0 ? q.queries : std::min(options.max_queries, q.queries);
  const std::vector<bool> measured = MeasuredLayers(shape.layers, options.max_layers);

  const uint32_t stride = RoundUp(d, kLanes);
  const size_t slice = static_cast<size_t>(tokens) * stride;
  std::vector<float> kr(slice, 0.0f), kd(slice, 0.0f), vr(slice, 0.0f), vd(slice, 0.0f);
  AccuracyReport report;
  ReconSums k_sums, v_sums;
  AttentionSums att;
  Scratch scratch;
  uint64_t ref_nonfinite = 0;
  for (uint32_t l = 0; l < shape.layers; ++l) {
    for (uint32_t h = 0; h < shape.kv_heads; ++h) {
      LoadSlice(reference, l, 0, h, stride, kr.data(), &ref_nonfinite);
      LoadSlice(reference, l, 1, h, stride, vr.data(), &ref_nonfinite);
      if (ref_nonfinite != 0) {
        return Status::InvalidArgument("MeasureAccuracy: reference holds NaN or Inf");
      }
      LoadSlice(decoded, l, 0, h, stride, kd.data(), &report.nonfinite);
      LoadSlice(decoded, l, 1, h, stride, vd.data(), &report.nonfinite);
      const ReconSums ks = Reconstruction(kr.data(), kd.data(), tokens, stride);
      const ReconSums vs = Reconstruction(vr.data(), vd.data(), tokens, stride);
      k_sums.Add(ks);
      v_sums.Add(vs);
      if (!measured[l]) continue;
      HeadAccuracy ha;
      ha.layer = l;
      ha.head = h;
      ha.k_sqnr_db = SqnrDb(ks.signal, ks.error);
      ha.v_sqnr_db = SqnrDb(vs.signal, vs.error);
      MeasureHead(kr.data(), kd.data(), vr.data(), vd.data(), stride, q, l, h, nq, tokens, options,
                  scratch, ha, att);
      report.heads.push_back(ha);
    }
  }

  report.k_sqnr_db = SqnrDb(k_sums.signal, k_sums.error);
  report.v_sqnr_db = SqnrDb(v_sums.signal, v_sums.error);
  report.k_cos_mean = k_sums.cos_sum / k_sums.vectors;
  report.k_cos_min = k_sums.cos_min;
  report.v_cos_mean = v_sums.cos_sum / v_sums.vectors;
  report.v_cos_min = v_sums.cos_min;
  report.k_max_abs_err = k_sums.max_abs;
  report.v_max_abs_err = v_sums.max_abs;

  const double rows = static_cast<double>(att.rows);
  report.rows = att.rows;
  report.attn_kl_mean = att.kl_sum / rows;
  report.attn_kl_max = att.kl_max;
  report.out_rel_err_mean = att.rel_sum / rows;
  report.out_rel_err_max = att.rel_max;
  report.top1_agreement = static_cast<double>(att.top1) / rows;
  report.topk_overlap = options.top_k > 0 ? att.topk_sum / rows : 0.0;
  report.logit_mae = att.logit_abs_sum / static_cast<double>(att.logits);
  report.logit_max_err = att.logit_abs_max;
  report.logit_corr_min = att.corr_min;
  report.sink_mass_mean = att.sink_sum / rows;
  report.sink_mass_err_mean = att.sink_err_sum / rows;
  report.sink_mass_err_max = att.sink_err_max;
  return report;
}

}  // namespace kvault::kernels
