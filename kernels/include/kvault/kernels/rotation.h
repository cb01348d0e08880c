#pragma once
// The randomized Hadamard rotation of the `rot` codec option (docs/codecs.md):
//   forward  y = c * H(s . x)      inverse  x = s . (c * H(y))
// over one head vector of D = head_dim (a power of two) channels, in fp32. H is the unnormalized
// Walsh-Hadamard transform computed in place by butterflies with span 1, 2, 4, ..., D/2 in that
// order ((a, b) -> (a + b, a - b)); c = fp32(1 / sqrt(D)) computed in double then rounded; s is
// a fixed +-1 vector. Every codec path must use this exact order of operations.

#include <cstdint>
#include <vector>

namespace kvault::kernels {

inline constexpr uint64_t kRotationSeed = 0x6b7661756c74726full;  // "kvaultro"

// s_i = -1 when bit (i % 64) of the (i / 64)-th splitmix64 output from kRotationSeed is set.
// Returned as fp32 +-1.0f, length head_dim.
std::vector<float> RotationSigns(uint32_t head_dim);

// c = fp32(1 / sqrt(head_dim)).
float RotationScale(uint32_t head_dim);

// Applies the forward (or inverse) rotation to x[0..head_dim) in place, plain loops.
void RotateForwardReference(float* x, uint32_t head_dim, const float* signs, float scale);
void RotateInverseReference(float* x, uint32_t head_dim, const float* signs, float scale);

}  // namespace kvault::kernels
