#include "kvault/kernels/kv_generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace kvault::kernels {
namespace {

using Kind = KvGeneratorOptions::Kind;

KvGeneratorOptions Small(uint32_t layers, uint32_t heads, uint32_t dim, uint32_t tokens) {
  KvGeneratorOptions o;
  o.shape = {layers, heads, dim, tokens, DType::kF16};
  return o;
}

uint64_t Fnv1a(const std::vector<uint16_t>& data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint16_t v : data) {
    h = (h ^ (v & 0xFF)) * 0x100000001b3ull;
    h = (h ^ (v >> 8)) * 0x100000001b3ull;
  }
  return h;
}

// Per channel of one (layer, head): mean over tokens of |K|, skipping the sink tokens.
std::vector<double> ChannelLevels(const KvTensor& t, uint32_t layer, uint32_t head, uint32_t skip) {
  std::vector<double> level(t.shape.head_dim, 0.0);
  for (uint32_t tok = skip; tok < t.shape.tokens; ++tok) {
    for (uint32_t c = 0; c < t.shape.head_dim; ++c) {
      level[c] += std::fabs(t.At(layer, 0, tok, head, c));
    }
  }
  for (double& v : level) v /= (t.shape.tokens - skip);
  return level;
}

double MaxOverMedian(std::vector<double> level) {
  const double max = *std::max_element(level.begin(), level.end());
  std::sort(level.begin(), level.end());
  const size_t n = level.size();
  const double median = n % 2 ? level[n / 2] : 0.5 * (level[n / 2 - 1] + level[n / 2]);
  return max / median;
}

TEST(KvShapeTest, SizesAndOffsets) {
  const KvShape s{2, 3, 4, 5, DType::kBF16};
  EXPECT_EQ(s.elements(), 2u * 2 * 5 * 3 * 4);
  EXPECT_EQ(s.bytes(), s.elements() * 2);
  KvTensor t{s, std::vector<uint16_t>(s.elements())};
  EXPECT_EQ(t.Offset(0, 0, 0, 0, 0), 0u);
  EXPECT_EQ(t.Offset(0, 0, 0, 1, 0), 4u);
  EXPECT_EQ(t.Offset(0, 0, 1, 0, 0), 12u);
  EXPECT_EQ(t.Offset(0, 1, 0, 0, 0), 60u);
  EXPECT_EQ(t.Offset(1, 0, 0, 0, 0), 120u);
  EXPECT_EQ(t.Offset(1, 1, 4, 2, 3), s.elements() - 1);
  EXPECT_EQ(kLlama3_8BShape.elements(), 268435456u);
}

TEST(KvGeneratorTest, SameSeedSameBytesOtherSeedOtherBytes) {
  for (Kind kind : {Kind::kRealistic, Kind::kGaussian}) {
    for (DType dtype : {DType::kF16, DType::kBF16}) {
      KvGeneratorOptions o = Small(2, 2, 32, 200);
      o.kind = kind;
      o.shape.dtype = dtype;
      o.delimiter_sinks = 2;
      auto a = GenerateKv(o);
      auto b = GenerateKv(o);
      ASSERT_TRUE(a.ok()) << a.status().ToString();
      ASSERT_TRUE(b.ok());
      EXPECT_EQ(a->data, b->data);
      EXPECT_EQ(a->shape, o.shape);
      EXPECT_EQ(a->data.size(), o.shape.elements());
      auto qa = GenerateQueries(o);
      auto qb = GenerateQueries(o);
      ASSERT_TRUE(qa.ok());
      EXPECT_EQ(qa->data, qb->data);

      o.seed = 2;
      auto c = GenerateKv(o);
      ASSERT_TRUE(c.ok());
      EXPECT_NE(a->data, c->data);
      size_t same = 0;
      for (size_t i = 0; i < a->data.size(); ++i) same += a->data[i] == c->data[i];
      EXPECT_LT(same, a->data.size() / 10);
      auto qc = GenerateQueries(o);
      EXPECT_NE(qa->data, qc->data);
    }
  }
}

// The generator uses only IEEE basic operations, so these bytes must not change across
// platforms and compilers. A deliberate change to the model updates the constants.
TEST(KvGeneratorTest, GoldenChecksum) {
  KvGeneratorOptions o = Small(3, 2, 64, 300);
  o.seed = 7;
  o.delimiter_sinks = 1;
  auto kv = GenerateKv(o);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(Fnv1a(kv->data), 0x416457cc755cfde2ull);
  o.kind = Kind::kGaussian;
  o.shape.dtype = DType::kBF16;
  auto g = GenerateKv(o);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(Fnv1a(g->data), 0x46ffc9d25f754060ull);
}

TEST(KvGeneratorTest, RejectsInvalidOptions) {
  const auto invalid = [](KvGeneratorOptions o) {
    auto r = GenerateKv(o);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
    EXPECT_EQ(GenerateQueries(o).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ValidateKvGeneratorOptions(o).code(), StatusCode::kInvalidArgument);
  };
  KvGeneratorOptions o = Small(1, 1, 8, 16);
  EXPECT_TRUE(ValidateKvGeneratorOptions(o).ok());
  KvGeneratorOptions bad = o;
  bad.shape.head_dim = 7;
  invalid(bad);
  bad = o;
  bad.shape.layers = 0;
  invalid(bad);
  bad = o;
  bad.shape.kv_heads = 0;
  invalid(bad);
  bad = o;
  bad.shape.tokens = 0;
  invalid(bad);
  bad = o;
  bad.shape.head_dim = 0;
  invalid(bad);
  bad = o;
  bad.queries_per_head = 0;
  invalid(bad);
  bad = o;
  bad.sink_tokens = 10;
  bad.delimiter_sinks = 7;
  invalid(bad);
  bad = o;
  bad.outliers_min = 5;
  bad.outliers_max = 4;
  invalid(bad);
  bad = o;
  bad.rope_theta = 1.0f;
  invalid(bad);
  bad = o;
  bad.value_heavy_fraction = 1.5f;
  invalid(bad);
  bad = o;
  bad.key_sigma_log_std = -0.1f;
  invalid(bad);
  bad = o;
  bad.shape = {1u << 10, 1u << 10, 1u << 10, 1u << 10, DType::kF16};
  invalid(bad);
}

TEST(KvGeneratorTest, OutlierChannelsSitInLowFrequencyPairs) {
  KvGeneratorOptions o = Small(2, 4, 128, 1024);
  o.bias_layers = false;
  o.apply_rope = false;
  auto pre = GenerateKv(o);
  ASSERT_TRUE(pre.ok());
  o.apply_rope = true;
  auto post = GenerateKv(o);
  ASSERT_TRUE(post.ok());
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t h = 0; h < 4; ++h) {
      const std::vector<double> level = ChannelLevels(*pre, l, h, o.sink_tokens);
      const double ratio = MaxOverMedian(level);
      EXPECT_GT(ratio, 8.0) << l << "/" << h;
      EXPECT_LT(ratio, 40.0) << l << "/" << h;
      // The largest channels are in the 8 lowest-frequency pairs: just below D/2 and D.
      size_t big = 0;
      for (uint32_t c = 0; c < 128; ++c) {
        if (level[c] > 5.0) {
          ++big;
          EXPECT_TRUE((c >= 56 && c < 64) || c >= 120) << "channel " << c;
        }
      }
      EXPECT_GE(big, 2u);
      EXPECT_LE(big, 6u);
      // Low-frequency pairs barely rotate, so the outliers survive RoPE.
      const double post_ratio = MaxOverMedian(ChannelLevels(*post, l, h, o.sink_tokens));
      EXPECT_GT(post_ratio, 0.5 * ratio);
    }
  }
}

TEST(KvGeneratorTest, BiasLayersReachThirtyToFortyTimesTheMedian) {
  KvGeneratorOptions o = Small(4, 2, 64, 512);
  o.apply_rope = false;
  const std::vector<uint32_t> bias = BiasLayers(o);
  ASSERT_FALSE(bias.empty());
  for (uint32_t l : bias) EXPECT_TRUE(l == 0 || l == 3);
  auto kv = GenerateKv(o);
  ASSERT_TRUE(kv.ok());
  for (uint32_t l = 0; l < 4; ++l) {
    const bool is_bias = std::find(bias.begin(), bias.end(), l) != bias.end();
    for (uint32_t h = 0; h < 2; ++h) {
      const double ratio = MaxOverMedian(ChannelLevels(*kv, l, h, o.sink_tokens));
      if (is_bias) {
        EXPECT_GT(ratio, 27.0) << "layer " << l;
        EXPECT_LT(ratio, 42.0) << "layer " << l;
      } else {
        EXPECT_LT(ratio, 40.0) << "layer " << l;
      }
    }
  }
  o.bias_layers = false;
  EXPECT_TRUE(BiasLayers(o).empty());
  o.bias_layers = true;
  o.kind = Kind::kGaussian;
  EXPECT_TRUE(BiasLayers(o).empty());
}

TEST(KvGeneratorTest, RopeAfterTheFactMatchesRopeAtGeneration) {
  KvGeneratorOptions o = Small(2, 2, 64, 300);
  o.apply_rope = false;
  auto pre = GenerateKv(o);
  ASSERT_TRUE(pre.ok());
  o.apply_rope = true;
  auto post = GenerateKv(o);
  ASSERT_TRUE(post.ok());
  KvTensor rotated = *pre;
  ASSERT_TRUE(ApplyRope(rotated, o.rope_theta).ok());
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t t = 0; t < 300; ++t) {
      for (uint32_t h = 0; h < 2; ++h) {
        for (uint32_t c = 0; c < 64; ++c) {
          const float want = post->At(l, 0, t, h, c);
          EXPECT_NEAR(rotated.At(l, 0, t, h, c), want, 2e-3 * std::fabs(want) + 2e-3);
          // Values are not rotated.
          EXPECT_EQ(pre->At(l, 1, t, h, c), post->At(l, 1, t, h, c));
        }
        // RoPE preserves the norm of every pair (i, i + D/2).
        for (uint32_t i = 0; i < 32; ++i) {
          const double a = std::hypot(pre->At(l, 0, t, h, i), pre->At(l, 0, t, h, i + 32));
          const double b = std::hypot(post->At(l, 0, t, h, i), post->At(l, 0, t, h, i + 32));
          EXPECT_NEAR(a, b, 2e-3 * a + 2e-3);
        }
      }
    }
  }
  // Position 0 is the identity.
  KvTensor copy = *pre;
  for (uint32_t c = 0; c < 64; ++c) EXPECT_EQ(copy.At(0, 0, 0, 0, c), post->At(0, 0, 0, 0, c));
  KvTensor odd{{1, 1, 3, 1, DType::kF16}, std::vector<uint16_t>(6)};
  EXPECT_EQ(ApplyRope(odd, 1e4f).code(), StatusCode::kInvalidArgument);
}

// Attention mass on the sinks, averaged over every (layer, head, query).
double SinkMass(const KvTensor& kv, const QuerySet& q, const std::vector<uint32_t>& sinks) {
  const uint32_t d = kv.shape.head_dim;
  double total = 0.0;
  std::vector<double> logits(kv.shape.tokens);
  for (uint32_t l = 0; l < kv.shape.layers; ++l) {
    for (uint32_t h = 0; h < kv.shape.kv_heads; ++h) {
      for (uint32_t j = 0; j < q.queries; ++j) {
        const float* qj = q.Query(l, h, j);
        for (uint32_t t = 0; t < kv.shape.tokens; ++t) {
          double dot = 0.0;
          for (uint32_t c = 0; c < d; ++c) dot += qj[c] * kv.At(l, 0, t, h, c);
          logits[t] = dot / std::sqrt(static_cast<double>(d));
        }
        const double m = *std::max_element(logits.begin(), logits.end());
        double z = 0.0;
        for (double v : logits) z += std::exp(v - m);
        for (uint32_t s : sinks) total += std::exp(logits[s] - m) / z;
      }
    }
  }
  return total / (kv.shape.layers * kv.shape.kv_heads * q.queries);
}

TEST(KvGeneratorTest, SinkTokenDrawsAttentionAndHasSmallValues) {
  KvGeneratorOptions o = Small(2, 4, 128, 2048);
  o.queries_per_head = 4;
  auto kv = GenerateKv(o);
  auto q = GenerateQueries(o);
  ASSERT_TRUE(kv.ok());
  ASSERT_TRUE(q.ok());
  const std::vector<uint32_t> sinks = SinkPositions(o);
  ASSERT_EQ(sinks, std::vector<uint32_t>{0});
  const double mass = SinkMass(*kv, *q, sinks);
  EXPECT_GT(mass, 0.2);
  EXPECT_LT(mass, 0.8);

  // The value of the sink is scaled by 0.05.
  double sink_abs = 0.0, other_abs = 0.0;
  for (uint32_t l = 0; l < 2; ++l) {
    for (uint32_t h = 0; h < 4; ++h) {
      for (uint32_t c = 0; c < 128; ++c) {
        sink_abs += std::fabs(kv->At(l, 1, 0, h, c));
        for (uint32_t t = 1; t < 2048; ++t) other_abs += std::fabs(kv->At(l, 1, t, h, c));
      }
    }
  }
  const double ratio = (sink_abs / 1) / (other_abs / 2047);
  EXPECT_GT(ratio, 0.02);
  EXPECT_LT(ratio, 0.12);

  // The Gaussian control has no sink: token 0 gets about 1/tokens of the mass.
  o.kind = Kind::kGaussian;
  auto g = GenerateKv(o);
  auto gq = GenerateQueries(o);
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(gq.ok());
  EXPECT_LT(SinkMass(*g, *gq, {0}), 0.01);
  EXPECT_TRUE(SinkPositions(o).empty());
}

TEST(KvGeneratorTest, DelimiterSinksAreDistinctAndInRange) {
  KvGeneratorOptions o = Small(1, 1, 16, 40);
  o.sink_tokens = 2;
  o.delimiter_sinks = 30;
  const std::vector<uint32_t> sinks = SinkPositions(o);
  ASSERT_EQ(sinks.size(), 32u);
  EXPECT_EQ(sinks[0], 0u);
  EXPECT_EQ(sinks[1], 1u);
  for (size_t i = 1; i < sinks.size(); ++i) EXPECT_LT(sinks[i - 1], sinks[i]);
  EXPECT_LT(sinks.back(), 40u);
  EXPECT_TRUE(GenerateKv(o).ok());
}

TEST(KvGeneratorTest, GaussianControlIsStandardNormal) {
  KvGeneratorOptions o = Small(1, 4, 128, 1024);
  o.kind = Kind::kGaussian;
  auto kv = GenerateKv(o);
  ASSERT_TRUE(kv.ok());
  double sum = 0.0, sum2 = 0.0, sum4 = 0.0;
  size_t beyond3 = 0;
  for (uint16_t bits : kv->data) {
    const double x = HalfToFloat(bits);
    sum += x;
    sum2 += x * x;
    sum4 += x * x * x * x;
    beyond3 += std::fabs(x) > 3.0;
  }
  const double n = static_cast<double>(kv->data.size());  // 1M samples
  EXPECT_NEAR(sum / n, 0.0, 0.005);
  EXPECT_NEAR(sum2 / n, 1.0, 0.005);
  EXPECT_NEAR(sum4 / n, 3.0, 0.05);
  EXPECT_NEAR(beyond3 / n, 0.0027, 0.0003);
  auto q = GenerateQueries(o);
  ASSERT_TRUE(q.ok());
  double q2 = 0.0;
  for (float v : q->data) q2 += v * v;
  EXPECT_NEAR(q2 / q->data.size(), 1.0, 0.05);
}

TEST(KvGeneratorTest, QueriesSitAtDecodePositionsWithExpectedNorm) {
  KvGeneratorOptions o = Small(2, 2, 128, 100);
  auto q = GenerateQueries(o);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->layers, 2u);
  EXPECT_EQ(q->kv_heads, 2u);
  EXPECT_EQ(q->queries, 16u);
  EXPECT_EQ(q->head_dim, 128u);
  ASSERT_EQ(q->positions.size(), 16u);
  EXPECT_EQ(q->positions.front(), 100u);
  EXPECT_EQ(q->positions.back(), 115u);
  ASSERT_EQ(q->data.size(), 2u * 2 * 16 * 128);
  // |q|^2 ~ |m|^2 + D * 0.7^2 = 0.98 D; queries of one head share the mean direction.
  double norm2 = 0.0;
  for (float v : q->data) norm2 += v * v;
  EXPECT_NEAR(norm2 / (2 * 2 * 16), 0.98 * 128, 0.1 * 128);
  const float* a = q->Query(0, 0, 0);
  const float* b = q->Query(0, 0, 1);
  const float* c = q->Query(1, 1, 0);
  double ab = 0.0, ac = 0.0, aa = 0.0;
  for (uint32_t i = 0; i < 128; ++i) ab += a[i] * b[i], ac += a[i] * c[i], aa += a[i] * a[i];
  EXPECT_GT(ab / aa, 0.25);            // same head: correlated through m
  EXPECT_LT(std::fabs(ac / aa), 0.3);  // other head: independent
}

TEST(KvGeneratorTest, ValuesHaveHeavyTailsAndNoOutlierChannels) {
  KvGeneratorOptions o = Small(1, 2, 128, 2048);
  auto kv = GenerateKv(o);
  ASSERT_TRUE(kv.ok());
  double sum2 = 0.0, sum4 = 0.0;
  std::vector<double> level(128, 0.0);
  for (uint32_t t = 1; t < 2048; ++t) {
    for (uint32_t c = 0; c < 128; ++c) {
      const double x = kv->At(0, 1, t, 0, c);
      sum2 += x * x;
      sum4 += x * x * x * x;
      level[c] += std::fabs(x);
    }
  }
  const double n = 2047.0 * 128;
  EXPECT_GT((sum4 / n) / ((sum2 / n) * (sum2 / n)), 3.3);  // per-token gains + t(5) tokens
  EXPECT_LT(MaxOverMedian(level), 3.0);
}

}  // namespace
}  // namespace kvault::kernels
