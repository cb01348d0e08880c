#include "kvault/kernels/kv_generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>

#include "kv_random.h"

namespace kvault::kernels {
namespace {

using namespace generator;  // NOLINT(google-build-using-namespace): private helpers

// ---------------------------------------------------------------------------------------------
// RoPE helpers.

// Per pair i of D/2: omega_i / (2 pi), so that the angle at position p is 2 pi * p * turns[i].
std::vector<double> RopeTurnsPerPosition(uint32_t head_dim, double theta) {
  const uint32_t half = head_dim / 2;
  const double log_theta = DetLog(theta);
  std::vector<double> turns(half);
  for (uint32_t i = 0; i < half; ++i) {
    const double omega = DetExp(-(2.0 * i / head_dim) * log_theta);
    turns[i] = omega / kTwoPi;
  }
  return turns;
}

// cos/sin tables [positions][D/2] for positions first .. first + count - 1.
struct RopeTable {
  uint32_t half = 0;
  std::vector<double> cos, sin;
};

RopeTable MakeRopeTable(uint32_t head_dim, double theta, uint32_t first, uint32_t count) {
  RopeTable table;
  table.half = head_dim / 2;
  const std::vector<double> turns = RopeTurnsPerPosition(head_dim, theta);
  table.cos.resize(static_cast<size_t>(count) * table.half);
  table.sin.resize(table.cos.size());
  for (uint32_t p = 0; p < count; ++p) {
    for (uint32_t i = 0; i < table.half; ++i) {
      const size_t k = static_cast<size_t>(p) * table.half + i;
      DetSinCosTurns(static_cast<double>(first + p) * turns[i], &table.sin[k], &table.cos[k]);
    }
  }
  return table;
}

// Rotate-half RoPE of one vector x[D] (pairs (i, i + D/2)) with the given row of cos/sin.
void Rotate(const double* x, const double* cos, const double* sin, uint32_t half, double* out) {
  for (uint32_t i = 0; i < half; ++i) {
    const double x0 = x[i];
    const double x1 = x[i + half];
    out[i] = x0 * cos[i] - x1 * sin[i];
    out[i + half] = x1 * cos[i] + x0 * sin[i];
  }
}

void Store(const double* x, uint32_t n, DType dtype, uint16_t* out) {
  if (dtype == DType::kF16) {
    for (uint32_t c = 0; c < n; ++c) {
      const float f = static_cast<float>(x[c]);
      const uint32_t bits = FloatBits(f);
      const uint32_t a = bits & 0x7FFFFFFFu;
      // Normal half range [2^-14, 65520): the rounding of FloatToHalf without its branches
      // (round to nearest even by adding 0xFFF + lsb; the carry may bump the exponent).
      // Checked equal to FloatToHalf for every float.
      if (a - 0x38800000u < 0x477FF000u - 0x38800000u) {
        out[c] = static_cast<uint16_t>(((bits >> 16) & 0x8000u) |
                                       ((a - 0x38000000u + 0x0FFFu + ((a >> 13) & 1u)) >> 13));
      } else {
        out[c] = FloatToHalf(f);
      }
    }
  } else {
    for (uint32_t c = 0; c < n; ++c) out[c] = FloatToBf16(static_cast<float>(x[c]));
  }
}

// ---------------------------------------------------------------------------------------------
// Model pieces shared by GenerateKv and GenerateQueries.

using Kind = KvGeneratorOptions::Kind;

// The head's mean query m: direction uniform on the sphere, |m| = query_mean_norm * sqrt(D).
std::vector<double> QueryMean(const KvGeneratorOptions& o, uint32_t layer, uint32_t head) {
  const uint32_t d = o.shape.head_dim;
  Rng rng = Stream(o.seed, kQueryMean, layer, head);
  std::vector<double> m(d);
  double norm2 = 0.0;
  for (double& v : m) {
    v = rng.Normal();
    norm2 += v * v;
  }
  const double scale =
      norm2 > 0.0 ? o.query_mean_norm * std::sqrt(static_cast<double>(d) / norm2) : 0.0;
  for (double& v : m) v *= scale;
  return m;
}

Status Invalid(const std::string& what) {
  return Status::InvalidArgument("KvGeneratorOptions: " + what);
}

bool Finite(float v) { return std::isfinite(v); }

}  // namespace

size_t KvShape::elements() const {
  return static_cast<size_t>(layers) * 2 * tokens * kv_heads * head_dim;
}

size_t KvShape::bytes() const { return elements() * sizeof(uint16_t); }

Status ValidateKvGeneratorOptions(const KvGeneratorOptions& o) {
  const KvShape& s = o.shape;
  if (s.layers == 0 || s.kv_heads == 0 || s.head_dim == 0 || s.tokens == 0) {
    return Invalid("every shape dimension must be > 0");
  }
  if (s.head_dim % 2 != 0) return Invalid("head_dim must be even (RoPE pairs)");
  if (s.dtype != DType::kF16 && s.dtype != DType::kBF16) return Invalid("unknown dtype");
  const double elements = 2.0 * s.layers * s.tokens * s.kv_heads * s.head_dim;
  if (elements > 0x1.0p40) return Invalid("shape exceeds 2^40 elements");
  if (o.queries_per_head == 0) return Invalid("queries_per_head must be > 0");
  if (static_cast<uint64_t>(s.tokens) + o.queries_per_head >= (uint64_t{1} << 31)) {
    return Invalid("tokens + queries_per_head must be < 2^31");
  }
  if (!(o.rope_theta > 1.0f) || !Finite(o.rope_theta)) return Invalid("rope_theta must be > 1");
  const float stds[] = {o.key_sigma_log_std, o.key_mean_scale,     o.key_gain_log_std,
                        o.outlier_sigma,     o.value_gain_log_std, o.value_channel_log_std,
                        o.query_mean_norm,   o.query_noise_std,    o.sink_value_scale,
                        o.outlier_mean_min,  o.bias_ratio_min,     o.sink_logit_min};
  for (float v : stds) {
    if (!(v >= 0.0f) || !Finite(v)) return Invalid("scales and standard deviations must be >= 0");
  }
  if (o.outliers_min > o.outliers_max) return Invalid("outliers_min > outliers_max");
  if (o.outliers_max > s.head_dim) return Invalid("outliers_max > head_dim");
  if (!(o.outlier_mean_min <= o.outlier_mean_max) || !Finite(o.outlier_mean_max)) {
    return Invalid("outlier_mean_min > outlier_mean_max");
  }
  if (!(o.bias_ratio_min <= o.bias_ratio_max) || !Finite(o.bias_ratio_max)) {
    return Invalid("bias_ratio_min > bias_ratio_max");
  }
  if (!(o.sink_logit_min <= o.sink_logit_max) || !Finite(o.sink_logit_max)) {
    return Invalid("sink_logit_min > sink_logit_max");
  }
  if (!(o.value_heavy_fraction >= 0.0f && o.value_heavy_fraction <= 1.0f)) {
    return Invalid("value_heavy_fraction must be in [0, 1]");
  }
  if (o.value_heavy_dof == 0) return Invalid("value_heavy_dof must be > 0");
  if (static_cast<uint64_t>(o.sink_tokens) + o.delimiter_sinks > s.tokens) {
    return Invalid("sink_tokens + delimiter_sinks must be <= tokens");
  }
  if (o.kind == Kind::kRealistic && o.sink_tokens + o.delimiter_sinks > 0 &&
      !(o.query_mean_norm > 0.0f)) {
    return Invalid("sinks need query_mean_norm > 0 (they are aimed at the mean query)");
  }
  if (o.kind != Kind::kRealistic && o.kind != Kind::kGaussian) return Invalid("unknown kind");
  return Status::Ok();
}

std::vector<uint32_t> BiasLayers(const KvGeneratorOptions& o) {
  if (!o.bias_layers || o.kind != Kind::kRealistic || !ValidateKvGeneratorOptions(o).ok()) {
    return {};
  }
  const uint32_t last = o.shape.layers - 1;
  if (last == 0) return {0};
  Rng rng = Stream(o.seed, kBiasLayerDraw);
  const uint32_t count = 1 + rng.Below(2);
  if (count == 2) return {0, last};
  return {rng.Below(2) == 0 ? 0 : last};
}

std::vector<uint32_t> SinkPositions(const KvGeneratorOptions& o) {
  if (o.kind != Kind::kRealistic || !ValidateKvGeneratorOptions(o).ok()) return {};
  std::vector<uint32_t> sinks;
  for (uint32_t t = 0; t < o.sink_tokens; ++t) sinks.push_back(t);
  // Floyd's sampling of delimiter_sinks distinct positions in [sink_tokens, tokens).
  const uint32_t range = o.shape.tokens - o.sink_tokens;
  std::vector<uint32_t> picked;
  Rng rng = Stream(o.seed, kDelimiterDraw);
  for (uint32_t j = range - o.delimiter_sinks; j < range; ++j) {
    const uint32_t r = rng.Below(j + 1);
    const bool seen = std::find(picked.begin(), picked.end(), r) != picked.end();
    picked.push_back(seen ? j : r);
  }
  std::sort(picked.begin(), picked.end());
  for (uint32_t p : picked) sinks.push_back(o.sink_tokens + p);
  return sinks;
}

namespace {

// Generates the pre-RoPE keys of one realistic (layer, head) into kpre[tokens][D].
void RealisticKeys(const KvGeneratorOptions& o, uint32_t layer, uint32_t head, bool bias_layer,
                   const std::vector<uint32_t>& sinks, const std::vector<double>& rope_turns,
                   std::vector<double>& kpre) {
  const uint32_t d = o.shape.head_dim;
  const uint32_t half = d / 2;
  const uint32_t t_count = o.shape.tokens;
  Rng prm = Stream(o.seed, kKeyParams, layer, head);

  std::vector<double> sigma(d), mu(d);
  for (uint32_t c = 0; c < d; ++c) {
    sigma[c] = prm.LogNormal(o.key_sigma_log_std);
    mu[c] = o.key_mean_scale * sigma[c] * prm.Normal();
  }
  std::vector<double> gain(t_count);
  for (double& g : gain) g = prm.LogNormal(o.key_gain_log_std);

  // Outlier channels: drawn from the lowest-frequency pairs, i in [half - width, half), either
  // member of the pair (channel i or i + D/2).
  const uint32_t width = std::min(half, std::max<uint32_t>(3, d / 16));
  std::vector<uint32_t> candidates;
  for (uint32_t i = half - width; i < half; ++i) {
    candidates.push_back(i);
    candidates.push_back(i + half);
  }
  uint32_t n_out = o.outliers_min + prm.Below(o.outliers_max - o.outliers_min + 1);
  n_out = std::min<uint32_t>(n_out, static_cast<uint32_t>(candidates.size()));
  std::vector<uint32_t> out_ch(n_out);
  std::vector<double> out_mag(n_out), out_sign(n_out), out_ratio(n_out);
  std::vector<bool> is_outlier(d, false);
  for (uint32_t k = 0; k < n_out; ++k) {  // partial Fisher-Yates
    const uint32_t pick = k + prm.Below(static_cast<uint32_t>(candidates.size()) - k);
    std::swap(candidates[k], candidates[pick]);
    out_ch[k] = candidates[k];
    out_mag[k] = prm.Uniform(o.outlier_mean_min, o.outlier_mean_max);
    out_ratio[k] = prm.Uniform(o.bias_ratio_min, o.bias_ratio_max);
    out_sign[k] = prm.Uniform() < 0.5 ? -1.0 : 1.0;
    is_outlier[out_ch[k]] = true;
    mu[out_ch[k]] = 0.0;  // added after the fill (bias layers need the other channels first)
    sigma[out_ch[k]] = o.outlier_sigma;
  }

  Rng rng = Stream(o.seed, kKeys, layer, head);
  for (uint32_t t = 0; t < t_count; ++t) {
    double* row = kpre.data() + static_cast<size_t>(t) * d;
    const double g = gain[t];
    for (uint32_t c = 0; c < d; ++c) row[c] = mu[c] + g * sigma[c] * rng.Normal();
  }

  if (bias_layer && n_out > 0) {
    // Scale is the median over the ordinary channels of mean_t |K|: the statistic the ratio is
    // quoted in (community measurement on Qwen2 k_proj biases, quant.md §2.2).
    std::vector<double> level;
    for (uint32_t c = 0; c < d; ++c) {
      if (is_outlier[c]) continue;
      double sum = 0.0;
      for (uint32_t t = 0; t < t_count; ++t) sum += std::fabs(kpre[static_cast<size_t>(t) * d + c]);
      level.push_back(sum / t_count);
    }
    double median = 1.0;
    if (!level.empty()) {
      std::sort(level.begin(), level.end());
      const size_t n = level.size();
      median = n % 2 ? level[n / 2] : 0.5 * (level[n / 2 - 1] + level[n / 2]);
    }
    for (uint32_t k = 0; k < n_out; ++k) out_mag[k] = out_ratio[k] * median;
  }
  for (uint32_t k = 0; k < n_out; ++k) {
    const double m = out_sign[k] * out_mag[k];
    for (uint32_t t = 0; t < t_count; ++t) kpre[static_cast<size_t>(t) * d + out_ch[k]] += m;
  }

  if (sinks.empty()) return;
  // Sink direction w: the mean query restricted to the pairs that rotate by at most pi/4 between
  // any key and any decode query (at least 1/8 of the pairs), so the boost is stable over
  // positions, as the massive-value dimensions of real sinks are (low-frequency pairs).
  const std::vector<double> m = QueryMean(o, layer, head);
  const double span = static_cast<double>(t_count) + o.queries_per_head;
  uint32_t slow = 0;
  while (slow < half && rope_turns[half - 1 - slow] * span <= 0.125) ++slow;
  slow = std::max(slow, std::max<uint32_t>(1, half / 8));
  std::vector<double> w(d, 0.0);
  double wn2 = 0.0;
  for (uint32_t i = half - slow; i < half; ++i) {
    w[i] = m[i];
    w[i + half] = m[i + half];
    wn2 += m[i] * m[i] + m[i + half] * m[i + half];
  }
  if (!(wn2 > 0.0)) return;
  const double wn = std::sqrt(wn2);
  for (double& v : w) v /= wn;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));

  Rng sink_rng = Stream(o.seed, kSinkLogits, layer, head);
  for (uint32_t pos : sinks) {
    const double delta = sink_rng.Uniform(o.sink_logit_min, o.sink_logit_max);
    // Expected logit gain per unit of w over the decode queries: mean_j m . R((pos - p_j)) w.
    double gain_sum = 0.0;
    for (uint32_t j = 0; j < o.queries_per_head; ++j) {
      const double rel = static_cast<double>(pos) - (static_cast<double>(t_count) + j);
      for (uint32_t i = half - slow; i < half; ++i) {
        double s, c;
        DetSinCosTurns(rel * rope_turns[i], &s, &c);
        const double r0 = w[i] * c - w[i + half] * s;
        const double r1 = w[i + half] * c + w[i] * s;
        gain_sum += m[i] * r0 + m[i + half] * r1;
      }
    }
    const double unit_gain =
        std::max(gain_sum / o.queries_per_head, 0.25 * wn) * inv_sqrt_d;  // > 0 by the guard
    const double a = delta / unit_gain;
    double* row = kpre.data() + static_cast<size_t>(pos) * d;
    for (uint32_t c = 0; c < d; ++c) row[c] += a * w[c];
  }
}

void RealisticValues(const KvGeneratorOptions& o, uint32_t layer, uint32_t head,
                     const std::vector<uint32_t>& sinks, KvTensor& out) {
  const uint32_t d = o.shape.head_dim;
  const uint32_t t_count = o.shape.tokens;
  Rng prm = Stream(o.seed, kValueParams, layer, head);
  std::vector<double> s(d);
  for (double& v : s) v = prm.LogNormal(o.value_channel_log_std);
  std::vector<double> gain(t_count);
  std::vector<bool> heavy(t_count);
  for (uint32_t t = 0; t < t_count; ++t) {
    gain[t] = prm.LogNormal(o.value_gain_log_std);
    heavy[t] = prm.Uniform() < o.value_heavy_fraction;
  }
  for (uint32_t pos : sinks) gain[pos] *= o.sink_value_scale;

  Rng rng = Stream(o.seed, kValues, layer, head);
  std::vector<double> row(d);
  for (uint32_t t = 0; t < t_count; ++t) {
    const double g = gain[t];
    if (!heavy[t]) {
      for (uint32_t c = 0; c < d; ++c) row[c] = g * s[c] * rng.Normal();
    } else {
      for (uint32_t c = 0; c < d; ++c) {  // Student-t: z / sqrt(chi2_nu / nu)
        const double z = rng.Normal();
        double chi2 = 0.0;
        for (uint32_t k = 0; k < o.value_heavy_dof; ++k) {
          const double n = rng.Normal();
          chi2 += n * n;
        }
        const double t_var = chi2 > 0.0 ? z / std::sqrt(chi2 / o.value_heavy_dof) : z;
        row[c] = g * s[c] * t_var;
      }
    }
    Store(row.data(), d, o.shape.dtype, out.Vector(layer, 1, t, head));
  }
}

void GaussianHead(const KvGeneratorOptions& o, uint32_t layer, uint32_t head, KvTensor& out) {
  const uint32_t d = o.shape.head_dim;
  std::vector<double> row(d);
  for (uint32_t kv = 0; kv < 2; ++kv) {
    Rng rng = Stream(o.seed, kv == 0 ? kKeys : kValues, layer, head);
    for (uint32_t t = 0; t < o.shape.tokens; ++t) {
      for (double& v : row) v = rng.Normal();
      Store(row.data(), d, o.shape.dtype, out.Vector(layer, kv, t, head));
    }
  }
}

}  // namespace

Result<KvTensor> GenerateKv(const KvGeneratorOptions& o) {
  KVAULT_RETURN_IF_ERROR(ValidateKvGeneratorOptions(o));
  KvTensor out;
  out.shape = o.shape;
  try {
    out.data.resize(o.shape.elements());
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("GenerateKv: cannot allocate " +
                                     std::to_string(o.shape.bytes()) + " bytes");
  }
  const uint32_t d = o.shape.head_dim;
  const uint32_t half = d / 2;
  const uint32_t t_count = o.shape.tokens;

  if (o.kind == Kind::kGaussian) {
    for (uint32_t l = 0; l < o.shape.layers; ++l) {
      for (uint32_t h = 0; h < o.shape.kv_heads; ++h) GaussianHead(o, l, h, out);
    }
    return out;
  }

  const std::vector<uint32_t> bias = BiasLayers(o);
  const std::vector<uint32_t> sinks = SinkPositions(o);
  const std::vector<double> turns = RopeTurnsPerPosition(d, o.rope_theta);
  RopeTable rope;
  std::vector<double> kpre;
  try {
    if (o.apply_rope) rope = MakeRopeTable(d, o.rope_theta, 0, t_count);
    kpre.resize(static_cast<size_t>(t_count) * d);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("GenerateKv: cannot allocate scratch");
  }
  std::vector<double> rotated(d);
  for (uint32_t l = 0; l < o.shape.layers; ++l) {
    const bool bias_layer = std::find(bias.begin(), bias.end(), l) != bias.end();
    for (uint32_t h = 0; h < o.shape.kv_heads; ++h) {
      RealisticKeys(o, l, h, bias_layer, sinks, turns, kpre);
      for (uint32_t t = 0; t < t_count; ++t) {
        const double* row = kpre.data() + static_cast<size_t>(t) * d;
        if (o.apply_rope) {
          const size_t k = static_cast<size_t>(t) * half;
          Rotate(row, &rope.cos[k], &rope.sin[k], half, rotated.data());
          row = rotated.data();
        }
        Store(row, d, o.shape.dtype, out.Vector(l, 0, t, h));
      }
      RealisticValues(o, l, h, sinks, out);
    }
  }
  return out;
}

Result<QuerySet> GenerateQueries(const KvGeneratorOptions& o) {
  KVAULT_RETURN_IF_ERROR(ValidateKvGeneratorOptions(o));
  QuerySet qs;
  qs.layers = o.shape.layers;
  qs.kv_heads = o.shape.kv_heads;
  qs.queries = o.queries_per_head;
  qs.head_dim = o.shape.head_dim;
  const uint32_t d = qs.head_dim;
  const uint32_t half = d / 2;
  for (uint32_t j = 0; j < qs.queries; ++j) qs.positions.push_back(o.shape.tokens + j);
  try {
    qs.data.resize(static_cast<size_t>(qs.layers) * qs.kv_heads * qs.queries * d);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("GenerateQueries: cannot allocate");
  }
  const bool realistic = o.kind == Kind::kRealistic;
  const RopeTable rope =
      realistic ? MakeRopeTable(d, o.rope_theta, o.shape.tokens, qs.queries) : RopeTable{};
  std::vector<double> q(d), rotated(d);
  for (uint32_t l = 0; l < qs.layers; ++l) {
    for (uint32_t h = 0; h < qs.kv_heads; ++h) {
      const std::vector<double> m = realistic ? QueryMean(o, l, h) : std::vector<double>(d, 0.0);
      const double noise = realistic ? o.query_noise_std : 1.0;
      Rng rng = Stream(o.seed, kQueries, l, h);
      for (uint32_t j = 0; j < qs.queries; ++j) {
        for (uint32_t c = 0; c < d; ++c) q[c] = m[c] + noise * rng.Normal();
        const double* src = q.data();
        if (realistic) {
          const size_t k = static_cast<size_t>(j) * half;
          Rotate(q.data(), &rope.cos[k], &rope.sin[k], half, rotated.data());
          src = rotated.data();
        }
        float* dst =
            qs.data.data() + ((static_cast<size_t>(l) * qs.kv_heads + h) * qs.queries + j) * d;
        for (uint32_t c = 0; c < d; ++c) dst[c] = static_cast<float>(src[c]);
      }
    }
  }
  return qs;
}

Status ApplyRope(KvTensor& tensor, float theta, uint32_t first_position) {
  const KvShape& s = tensor.shape;
  if (s.head_dim == 0 || s.head_dim % 2 != 0) {
    return Status::InvalidArgument("ApplyRope: head_dim must be even and > 0");
  }
  if (!(theta > 1.0f) || !std::isfinite(theta)) {
    return Status::InvalidArgument("ApplyRope: theta must be > 1");
  }
  if (tensor.data.size() != s.elements()) {
    return Status::InvalidArgument("ApplyRope: data.size() != shape.elements()");
  }
  const uint32_t d = s.head_dim;
  const uint32_t half = d / 2;
  const std::vector<double> turns = RopeTurnsPerPosition(d, theta);
  std::vector<double> cos(half), sin(half), x(d), y(d);
  for (uint32_t t = 0; t < s.tokens; ++t) {
    const double pos = static_cast<double>(first_position) + t;
    for (uint32_t i = 0; i < half; ++i) DetSinCosTurns(pos * turns[i], &sin[i], &cos[i]);
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t h = 0; h < s.kv_heads; ++h) {
        uint16_t* v = tensor.Vector(l, 0, t, h);
        for (uint32_t c = 0; c < d; ++c) x[c] = ToFloat(v[c], s.dtype);
        Rotate(x.data(), cos.data(), sin.data(), half, y.data());
        Store(y.data(), d, s.dtype, v);
      }
    }
  }
  return Status::Ok();
}

}  // namespace kvault::kernels
