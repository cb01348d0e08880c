#include "kvault/kernels/rotation.h"

#include <cmath>

namespace kvault::kernels {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void Fwht(float* x, uint32_t n) {
  for (uint32_t span = 1; span < n; span <<= 1) {
    for (uint32_t base = 0; base < n; base += 2 * span) {
      for (uint32_t i = base; i < base + span; ++i) {
        const float a = x[i];
        const float b = x[i + span];
        x[i] = a + b;
        x[i + span] = a - b;
      }
    }
  }
}

}  // namespace

std::vector<float> RotationSigns(uint32_t head_dim) {
  std::vector<float> signs(head_dim);
  uint64_t state = kRotationSeed;
  uint64_t word = 0;
  for (uint32_t i = 0; i < head_dim; ++i) {
    if (i % 64 == 0) word = SplitMix64(state);
    signs[i] = ((word >> (i % 64)) & 1u) ? -1.0f : 1.0f;
  }
  return signs;
}

float RotationScale(uint32_t head_dim) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

void RotateForwardReference(float* x, uint32_t head_dim, const float* signs, float scale) {
  for (uint32_t i = 0; i < head_dim; ++i) x[i] *= signs[i];
  Fwht(x, head_dim);
  for (uint32_t i = 0; i < head_dim; ++i) x[i] *= scale;
}

void RotateInverseReference(float* x, uint32_t head_dim, const float* signs, float scale) {
  Fwht(x, head_dim);
  for (uint32_t i = 0; i < head_dim; ++i) x[i] = (x[i] * scale) * signs[i];
}

}  // namespace kvault::kernels
