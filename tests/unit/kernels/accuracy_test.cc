#include "kvault/kernels/accuracy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kvault/kernels/kv_generator.h"

namespace kvault::kernels {
namespace {

struct Fixture {
  KvGeneratorOptions options;
  KvTensor kv;
  QuerySet q;
};

Fixture Make(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens,
             DType dtype = DType::kF16) {
  Fixture f;
  f.options.shape = {layers, heads, dim, tokens, dtype};
  f.options.queries_per_head = 5;  // not a multiple of the kernel's query block
  auto kv = GenerateKv(f.options);
  auto q = GenerateQueries(f.options);
  EXPECT_TRUE(kv.ok());
  EXPECT_TRUE(q.ok());
  f.kv = std::move(*kv);
  f.q = std::move(*q);
  return f;
}

// Standard normal by Box-Muller on a fixed engine (std::normal_distribution varies by library).
double Gauss(std::mt19937_64& rng) {
  const double u1 = (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
  const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Straightforward fp64 implementation of the documented metrics, to check the fast one.
struct Naive {
  double kl_mean = 0, kl_max = 0, rel_mean = 0, rel_max = 0, top1 = 0, logit_mae = 0;
  double sink_mass = 0;
};

Naive NaiveAttention(const KvTensor& r, const KvTensor& d, const QuerySet& q) {
  const KvShape& s = r.shape;
  const uint32_t dim = s.head_dim;
  Naive n;
  uint64_t rows = 0, logits = 0;
  for (uint32_t l = 0; l < s.layers; ++l) {
    for (uint32_t h = 0; h < s.kv_heads; ++h) {
      for (uint32_t j = 0; j < q.queries; ++j) {
        const float* qj = q.Query(l, h, j);
        std::vector<double> lr(s.tokens), ld(s.tokens);
        for (uint32_t t = 0; t < s.tokens; ++t) {
          double a = 0, b = 0;
          for (uint32_t c = 0; c < dim; ++c) {
            a += static_cast<double>(qj[c]) * r.At(l, 0, t, h, c);
            b += static_cast<double>(qj[c]) * d.At(l, 0, t, h, c);
          }
          lr[t] = a / std::sqrt(static_cast<double>(dim));
          ld[t] = b / std::sqrt(static_cast<double>(dim));
          n.logit_mae += std::fabs(lr[t] - ld[t]);
          ++logits;
        }
        const auto softmax = [](const std::vector<double>& x) {
          const double m = *std::max_element(x.begin(), x.end());
          std::vector<double> p(x.size());
          double z = 0;
          for (size_t i = 0; i < x.size(); ++i) z += p[i] = std::exp(x[i] - m);
          for (double& v : p) v /= z;
          return p;
        };
        const std::vector<double> p = softmax(lr), ph = softmax(ld);
        double kl = 0;
        for (uint32_t t = 0; t < s.tokens; ++t) kl += p[t] * std::log(p[t] / ph[t]);
        n.kl_mean += kl;
        n.kl_max = std::max(n.kl_max, kl);
        n.top1 += std::max_element(p.begin(), p.end()) - p.begin() ==
                  std::max_element(ph.begin(), ph.end()) - ph.begin();
        double num = 0, den = 0;
        for (uint32_t c = 0; c < dim; ++c) {
          double o = 0, oh = 0;
          for (uint32_t t = 0; t < s.tokens; ++t) {
            o += p[t] * r.At(l, 1, t, h, c);
            oh += ph[t] * d.At(l, 1, t, h, c);
          }
          num += (o - oh) * (o - oh);
          den += o * o;
        }
        const double rel = std::sqrt(num / den);
        n.rel_mean += rel;
        n.rel_max = std::max(n.rel_max, rel);
        n.sink_mass += p[0];
        ++rows;
      }
    }
  }
  n.kl_mean /= rows;
  n.rel_mean /= rows;
  n.top1 /= rows;
  n.logit_mae /= logits;
  n.sink_mass /= rows;
  return n;
}

// decoded = reference + Gaussian noise of `noise_std` (relative to each tensor's RMS) on K or V.
KvTensor AddNoise(const KvTensor& ref, double k_rel_std, double v_rel_std, uint64_t seed) {
  KvTensor out = ref;
  std::mt19937_64 rng(seed);
  const KvShape& s = ref.shape;
  for (uint32_t kv = 0; kv < 2; ++kv) {
    double sum2 = 0;
    size_t n = 0;
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t t = 0; t < s.tokens; ++t) {
        for (uint32_t h = 0; h < s.kv_heads; ++h) {
          for (uint32_t c = 0; c < s.head_dim; ++c) {
            const double x = ref.At(l, kv, t, h, c);
            sum2 += x * x;
            ++n;
          }
        }
      }
    }
    const double std = std::sqrt(sum2 / n) * (kv == 0 ? k_rel_std : v_rel_std);
    if (std == 0) continue;
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t t = 0; t < s.tokens; ++t) {
        for (uint32_t h = 0; h < s.kv_heads; ++h) {
          for (uint32_t c = 0; c < s.head_dim; ++c) {
            const size_t i = out.Offset(l, kv, t, h, c);
            const float x = ref.At(l, kv, t, h, c);
            out.data[i] = FromFloat(static_cast<float>(x + std * Gauss(rng)), s.dtype);
          }
        }
      }
    }
  }
  return out;
}

TEST(AccuracyTest, IdenticalTensorsAreExact) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    Fixture f = Make(2, 2, 64, 300, dtype);
    AccuracyOptions opt;
    opt.sink_positions = SinkPositions(f.options);
    auto r = MeasureAccuracy(f.kv, f.kv, f.q, opt);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->k_sqnr_db, kSqnrCapDb);
    EXPECT_EQ(r->v_sqnr_db, kSqnrCapDb);
    EXPECT_EQ(r->k_cos_min, 1.0);
    EXPECT_EQ(r->v_cos_min, 1.0);
    EXPECT_EQ(r->k_cos_mean, 1.0);
    EXPECT_EQ(r->k_max_abs_err, 0.0);
    EXPECT_EQ(r->nonfinite, 0u);
    EXPECT_EQ(r->rows, 2u * 2 * 5);
    EXPECT_EQ(r->attn_kl_mean, 0.0);
    EXPECT_EQ(r->attn_kl_max, 0.0);
    EXPECT_EQ(r->out_rel_err_mean, 0.0);
    EXPECT_EQ(r->out_rel_err_max, 0.0);
    EXPECT_EQ(r->top1_agreement, 1.0);
    EXPECT_EQ(r->topk_overlap, 1.0);
    EXPECT_EQ(r->logit_mae, 0.0);
    EXPECT_EQ(r->logit_max_err, 0.0);
    EXPECT_EQ(r->logit_corr_min, 1.0);
    EXPECT_EQ(r->sink_mass_err_max, 0.0);
    EXPECT_GT(r->sink_mass_mean, 0.2);
    ASSERT_EQ(r->heads.size(), 4u);
    EXPECT_EQ(r->heads[3].layer, 1u);
    EXPECT_EQ(r->heads[3].head, 1u);
    EXPECT_EQ(r->heads[3].k_sqnr_db, kSqnrCapDb);
  }
}

TEST(AccuracyTest, KnownNoisePowerGivesKnownSqnr) {
  Fixture f = Make(2, 2, 64, 256);
  // Noise at 1/10 of the RMS is -20 dB; 1/30 is -29.54 dB.
  const KvTensor noisy = AddNoise(f.kv, 0.1, 1.0 / 30, 5);
  auto r = MeasureAccuracy(f.kv, noisy, f.q);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->k_sqnr_db, 20.0, 0.5);
  EXPECT_NEAR(r->v_sqnr_db, 20.0 * std::log10(30.0), 0.5);
  EXPECT_LT(r->k_cos_min, 1.0);
  EXPECT_GT(r->attn_kl_mean, 0.0);
  EXPECT_GT(r->out_rel_err_mean, 0.0);
  EXPECT_LT(r->logit_corr_min, 1.0);
  EXPECT_GT(r->logit_corr_min, 0.5);
  EXPECT_EQ(r->nonfinite, 0u);
}

TEST(AccuracyTest, MatchesNaiveFp64Definitions) {
  Fixture f = Make(2, 3, 32, 200);
  const KvTensor noisy = AddNoise(f.kv, 0.05, 0.05, 9);
  auto r = MeasureAccuracy(f.kv, noisy, f.q);
  ASSERT_TRUE(r.ok());
  const Naive n = NaiveAttention(f.kv, noisy, f.q);
  EXPECT_NEAR(r->attn_kl_mean, n.kl_mean, 1e-4 * n.kl_mean + 1e-9);
  EXPECT_NEAR(r->attn_kl_max, n.kl_max, 1e-4 * n.kl_max + 1e-9);
  EXPECT_NEAR(r->out_rel_err_mean, n.rel_mean, 1e-4 * n.rel_mean);
  EXPECT_NEAR(r->out_rel_err_max, n.rel_max, 1e-4 * n.rel_max);
  EXPECT_NEAR(r->logit_mae, n.logit_mae, 1e-4 * n.logit_mae);
  EXPECT_DOUBLE_EQ(r->top1_agreement, n.top1);
  EXPECT_NEAR(r->sink_mass_mean, n.sink_mass, 1e-6);
}

TEST(AccuracyTest, OnlyValueErrorLeavesAttentionExact) {
  Fixture f = Make(1, 2, 64, 128);
  const KvTensor noisy = AddNoise(f.kv, 0.0, 0.1, 3);
  auto r = MeasureAccuracy(f.kv, noisy, f.q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->k_sqnr_db, kSqnrCapDb);
  EXPECT_NEAR(r->v_sqnr_db, 20.0, 0.5);
  EXPECT_EQ(r->attn_kl_max, 0.0);
  EXPECT_EQ(r->top1_agreement, 1.0);
  EXPECT_GT(r->out_rel_err_mean, 0.01);
}

TEST(AccuracyTest, FlippingTheArgmaxLowersTopOne) {
  Fixture f = Make(1, 1, 32, 64);
  f.options.sink_tokens = 0;
  auto kv = GenerateKv(f.options);
  ASSERT_TRUE(kv.ok());
  f.kv = std::move(*kv);
  // Make token 10 the clear winner of query 0 in the decoded keys only: k = a q0 with
  // a |q0|^2 / sqrt(D) = 50.
  KvTensor decoded = f.kv;
  const float* q0 = f.q.Query(0, 0, 0);
  double q2 = 0;
  for (uint32_t c = 0; c < 32; ++c) q2 += q0[c] * q0[c];
  const double a = 50.0 * std::sqrt(32.0) / q2;
  for (uint32_t c = 0; c < 32; ++c) {
    decoded.data[decoded.Offset(0, 0, 10, 0, c)] =
        FromFloat(static_cast<float>(a * q0[c]), DType::kF16);
  }
  auto base = MeasureAccuracy(f.kv, f.kv, f.q);
  auto r = MeasureAccuracy(f.kv, decoded, f.q);
  ASSERT_TRUE(base.ok());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(base->top1_agreement, 1.0);
  EXPECT_LE(r->top1_agreement, 1.0 - 1.0 / 5);
  EXPECT_GT(r->attn_kl_max, 1.0);
  EXPECT_LT(r->topk_overlap, 1.0);
  EXPECT_GT(r->logit_max_err, 10.0);
}

TEST(AccuracyTest, NonFiniteDecodedValuesAreCountedNotPropagated) {
  Fixture f = Make(1, 2, 16, 32);
  KvTensor decoded = f.kv;
  decoded.data[decoded.Offset(0, 0, 3, 1, 2)] = 0x7E00;  // NaN in K
  decoded.data[decoded.Offset(0, 1, 5, 0, 0)] = 0x7C00;  // +Inf in V
  auto r = MeasureAccuracy(f.kv, decoded, f.q);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->nonfinite, 2u);
  EXPECT_TRUE(std::isfinite(r->k_sqnr_db));
  EXPECT_TRUE(std::isfinite(r->v_sqnr_db));
  EXPECT_TRUE(std::isfinite(r->attn_kl_mean));
  EXPECT_TRUE(std::isfinite(r->out_rel_err_max));
  EXPECT_LT(r->k_sqnr_db, kSqnrCapDb);

  // A non-finite reference is an error.
  auto bad = MeasureAccuracy(decoded, f.kv, f.q);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

// `t` with every element multiplied by `scale`, a power of two; the products must be exact.
KvTensor Scaled(const KvTensor& t, float scale) {
  KvTensor out = t;
  for (uint16_t& b : out.data) {
    const float x = ToFloat(b, t.shape.dtype);
    b = FromFloat(x * scale, t.shape.dtype);
    EXPECT_EQ(double{ToFloat(b, t.shape.dtype)}, double{x} * scale);
  }
  return out;
}

// The reconstruction metrics of `r` against `d` and of both scaled by a power of two are equal:
// the scale cancels in SQNR and cosine.
void ExpectScaleInvariantReconstruction(const AccuracyReport& want, const AccuracyReport& r,
                                        double scale) {
  EXPECT_EQ(r.nonfinite, 0u);
  for (double v : {r.k_sqnr_db, r.v_sqnr_db, r.k_cos_mean, r.k_cos_min, r.v_cos_mean, r.v_cos_min,
                   r.k_max_abs_err, r.v_max_abs_err}) {
    EXPECT_TRUE(std::isfinite(v)) << v;
  }
  EXPECT_DOUBLE_EQ(r.k_sqnr_db, want.k_sqnr_db);
  EXPECT_DOUBLE_EQ(r.v_sqnr_db, want.v_sqnr_db);
  EXPECT_DOUBLE_EQ(r.k_cos_mean, want.k_cos_mean);
  EXPECT_DOUBLE_EQ(r.k_cos_min, want.k_cos_min);
  EXPECT_DOUBLE_EQ(r.v_cos_mean, want.v_cos_mean);
  EXPECT_DOUBLE_EQ(r.v_cos_min, want.v_cos_min);
  EXPECT_DOUBLE_EQ(r.k_max_abs_err, want.k_max_abs_err * scale);
  EXPECT_DOUBLE_EQ(r.v_max_abs_err, want.v_max_abs_err * scale);
  ASSERT_EQ(r.heads.size(), want.heads.size());
  for (size_t i = 0; i < r.heads.size(); ++i) {
    EXPECT_DOUBLE_EQ(r.heads[i].k_sqnr_db, want.heads[i].k_sqnr_db) << i;
    EXPECT_DOUBLE_EQ(r.heads[i].v_sqnr_db, want.heads[i].v_sqnr_db) << i;
  }
}

// bf16 holds finite values up to 3.4e38, but fp32 squares overflow from |x| = 2^64 (1.8e19) up:
// SQNR and cosine stay finite, and the same as at the tensor's own scale.
TEST(AccuracyTest, HugeFiniteBf16ValuesKeepReconstructionMetricsFinite) {
  Fixture f = Make(2, 2, 64, 96, DType::kBF16);
  const KvTensor noisy = AddNoise(f.kv, 0.1, 0.05, 11);
  const KvTensor big = Scaled(f.kv, 0x1.0p80f), big_noisy = Scaled(noisy, 0x1.0p80f);
  float amax = 0.0f;
  for (uint16_t b : big.data) amax = std::max(amax, std::fabs(Bf16ToFloat(b)));
  ASSERT_GT(amax, 0x1.0p64f) << "the squares must overflow fp32";

  auto want = MeasureAccuracy(f.kv, noisy, f.q);
  auto r = MeasureAccuracy(big, big_noisy, f.q);
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(want->k_sqnr_db, 20.0, 0.5);  // noise at 1/10 of the RMS
  ExpectScaleInvariantReconstruction(*want, *r, 0x1.0p80);

  // The largest finite bf16 against its negation: |x - xhat| = 6.8e38 is past fp32 too.
  KvTensor extreme = f.kv, negated = f.kv;
  std::fill(extreme.data.begin(), extreme.data.end(), uint16_t{0x7F7F});  // 3.39e38
  std::fill(negated.data.begin(), negated.data.end(), uint16_t{0xFF7F});
  auto opposite = MeasureAccuracy(extreme, negated, f.q);
  ASSERT_TRUE(opposite.ok());
  // The error is twice the signal, its power 4x: 10 log10(1/4). Every vector points the other way.
  EXPECT_NEAR(opposite->k_sqnr_db, -10.0 * std::log10(4.0), 1e-9);
  EXPECT_NEAR(opposite->v_sqnr_db, -10.0 * std::log10(4.0), 1e-9);
  EXPECT_EQ(opposite->k_cos_mean, -1.0);
  EXPECT_EQ(opposite->v_cos_min, -1.0);
  EXPECT_EQ(opposite->k_max_abs_err, 2.0 * Bf16ToFloat(0x7F7F));
}

// At the other end, fp32 squares of |x| < 2^-63 lose bits or vanish (a whole vector of them
// would read as zero, with cosine 1 and SQNR at the cap); bf16 holds normal values down to 2^-126.
TEST(AccuracyTest, TinyBf16ValuesKeepReconstructionMetrics) {
  Fixture f = Make(2, 2, 64, 96, DType::kBF16);
  const KvTensor noisy = AddNoise(f.kv, 0.1, 0.05, 11);
  auto want = MeasureAccuracy(f.kv, noisy, f.q);
  auto r = MeasureAccuracy(Scaled(f.kv, 0x1.0p-80f), Scaled(noisy, 0x1.0p-80f), f.q);
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectScaleInvariantReconstruction(*want, *r, 0x1.0p-80);
}

TEST(AccuracyTest, HandComputedTwoTokenExample) {
  // One head, D = 2, two tokens, one query q = (1, 0): logits k0.q / sqrt2, k1.q / sqrt2.
  KvTensor ref{{1, 1, 2, 2, DType::kF16}, {}};
  const float k[2][2] = {{2.0f, 0.0f}, {0.0f, 1.0f}};
  const float v[2][2] = {{1.0f, 0.0f}, {0.0f, 1.0f}};
  ref.data.resize(ref.shape.elements());
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint32_t c = 0; c < 2; ++c) {
      ref.data[ref.Offset(0, 0, t, 0, c)] = FloatToHalf(k[t][c]);
      ref.data[ref.Offset(0, 1, t, 0, c)] = FloatToHalf(v[t][c]);
    }
  }
  KvTensor dec = ref;
  dec.data[dec.Offset(0, 0, 0, 0, 0)] = FloatToHalf(1.0f);  // k0 = (1, 0)
  QuerySet q{1, 1, 1, 2, {2}, {1.0f, 0.0f}};
  AccuracyOptions opt;
  opt.top_k = 1;
  auto r = MeasureAccuracy(ref, dec, q, opt);
  ASSERT_TRUE(r.ok());
  const double s2 = std::sqrt(2.0);
  const double p0 = 1.0 / (1.0 + std::exp(-2.0 / s2)), ph0 = 1.0 / (1.0 + std::exp(-1.0 / s2));
  const double kl = p0 * std::log(p0 / ph0) + (1 - p0) * std::log((1 - p0) / (1 - ph0));
  EXPECT_NEAR(r->attn_kl_mean, kl, 1e-12);
  // o = (p0, 1 - p0), ohat = (ph0, 1 - ph0).
  const double rel = std::sqrt(2.0) * std::fabs(p0 - ph0) / std::hypot(p0, 1 - p0);
  EXPECT_NEAR(r->out_rel_err_mean, rel, 1e-6);
  EXPECT_EQ(r->top1_agreement, 1.0);
  EXPECT_EQ(r->topk_overlap, 1.0);
  EXPECT_NEAR(r->logit_mae, (1.0 / s2) / 2, 1e-7);
  EXPECT_NEAR(r->logit_max_err, 1.0 / s2, 1e-7);
  // K: signal 4 + 1 = 5, error 1 -> 10 log10 5; token 0's cosine is still 1.
  EXPECT_NEAR(r->k_sqnr_db, 10.0 * std::log10(5.0), 1e-9);
  EXPECT_EQ(r->k_cos_min, 1.0);
  EXPECT_EQ(r->k_max_abs_err, 1.0);
  EXPECT_NEAR(r->sink_mass_mean, p0, 1e-7);
  EXPECT_NEAR(r->sink_mass_err_mean, p0 - ph0, 1e-7);
}

TEST(AccuracyTest, SubsamplesLayersAndQueries) {
  Fixture f = Make(5, 2, 16, 40);
  AccuracyOptions opt;
  opt.max_layers = 3;
  opt.max_queries = 2;
  auto r = MeasureAccuracy(f.kv, f.kv, f.q, opt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows, 3u * 2 * 2);
  ASSERT_EQ(r->heads.size(), 6u);
  EXPECT_EQ(r->heads[0].layer, 0u);
  EXPECT_EQ(r->heads[2].layer, 2u);
  EXPECT_EQ(r->heads[4].layer, 4u);
  opt.max_layers = 1;
  auto one = MeasureAccuracy(f.kv, f.kv, f.q, opt);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->rows, 1u * 2 * 2);
}

TEST(AccuracyTest, RejectsMismatchedInputs) {
  Fixture f = Make(2, 2, 16, 32);
  const auto expect_invalid = [](const Result<AccuracyReport>& r) {
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  };
  Fixture other = Make(2, 2, 16, 33);
  expect_invalid(MeasureAccuracy(f.kv, other.kv, f.q));
  Fixture heads = Make(2, 1, 16, 32);
  expect_invalid(MeasureAccuracy(f.kv, heads.kv, f.q));
  expect_invalid(MeasureAccuracy(f.kv, f.kv, heads.q));  // query set for another shape
  KvTensor truncated = f.kv;
  truncated.data.pop_back();
  expect_invalid(MeasureAccuracy(f.kv, truncated, f.q));
  AccuracyOptions opt;
  opt.sink_positions = {32};
  expect_invalid(MeasureAccuracy(f.kv, f.kv, f.q, opt));
  QuerySet empty = f.q;
  empty.queries = 0;
  empty.data.clear();
  expect_invalid(MeasureAccuracy(f.kv, f.kv, empty));
  // Different dtypes of the same shape are allowed.
  KvTensor bf = f.kv;
  bf.shape.dtype = DType::kBF16;
  for (size_t i = 0; i < bf.data.size(); ++i) bf.data[i] = FloatToBf16(HalfToFloat(f.kv.data[i]));
  auto mixed = MeasureAccuracy(f.kv, bf, f.q);
  ASSERT_TRUE(mixed.ok());
  EXPECT_GT(mixed->k_sqnr_db, 40.0);
}

}  // namespace
}  // namespace kvault::kernels
