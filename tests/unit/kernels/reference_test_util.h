#pragma once
// Helpers shared by the reference codec tests (reference_*_test.cc): block layouts and section
// codecs in one call, section encode/decode into buffers pre-filled with garbage, fp16 byte
// helpers, and hex comparisons that print every byte or half on failure.
//
// Inputs are given as fp16 (or bf16) bit patterns; every expected code, scale, zero point and
// decoded value in those tests is a constant computed by hand, with the reasoning next to it.
// Notation: fp16(v) is v rounded to binary16 (RNE); "spacing" is the distance between neighbouring
// halves in v's binade, e.g. 2^-11 in [0.5, 1) and 2^-13 in [0.125, 0.25). The numbers were
// cross-checked with Python's struct module ('e' and 'f' formats), which implements IEEE rounding
// independently of kvault.

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "kvault/kernels/reference_codec.h"

namespace kvault::kernels::reference_test {

using Bytes = std::vector<uint8_t>;
using Halves = std::vector<uint16_t>;

inline BlockLayout Layout(uint32_t tokens, uint32_t heads, uint32_t dim, uint32_t sink = 0,
                          DType dtype = DType::kF16) {
  BlockLayout l;
  l.num_layers = 1;
  l.kv_heads = heads;
  l.head_dim = dim;
  l.block_tokens = tokens;
  l.dtype = dtype;
  l.sink_tokens = sink;
  return l;
}

inline SectionCodec Codec(CodecId id, uint16_t group = 0, bool rotate = false) {
  return {id, rotate, group};
}

inline Bytes Encode(const Halves& src, const SectionCodec& c, bool is_key, const BlockLayout& l) {
  EXPECT_EQ(src.size(), uint64_t{l.block_tokens} * l.kv_heads * l.head_dim);
  const SectionLayout sl = SectionLayoutFor(c, is_key, l);
  Bytes out(sl.padded_bytes, 0xCD);  // garbage: the encoder must overwrite padding with zeros
  ReferenceEncodeSection(src.data(), c, is_key, l, out.data());
  return out;
}

inline Halves Decode(const Bytes& in, const SectionCodec& c, bool is_key, const BlockLayout& l) {
  Halves out(uint64_t{l.block_tokens} * l.kv_heads * l.head_dim, 0xABCD);
  ReferenceDecodeSection(in.data(), c, is_key, l, out.data());
  return out;
}

// Little-endian fp16 pairs written out as bytes.
inline void PutHalf(Bytes& b, uint16_t h) {
  b.push_back(static_cast<uint8_t>(h & 0xFF));
  b.push_back(static_cast<uint8_t>(h >> 8));
}
inline uint16_t GetHalf(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

inline Halves Repeat(uint16_t h, size_t n) { return Halves(n, h); }
inline Halves Concat(std::initializer_list<Halves> parts) {
  Halves out;
  for (const Halves& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline std::string Hex(const Bytes& b) {
  static const char* d = "0123456789ABCDEF";
  std::string s;
  for (uint8_t v : b) {
    s += d[v >> 4];
    s += d[v & 15];
    s += ' ';
  }
  return s;
}
inline std::string Hex(const Halves& h) {
  static const char* d = "0123456789ABCDEF";
  std::string s;
  for (uint16_t v : h) {
    for (int sh = 12; sh >= 0; sh -= 4) s += d[(v >> sh) & 15];
    s += ' ';
  }
  return s;
}

// Compare as hex strings, so that a failure prints every byte (half) of both sides.
#define EXPECT_BYTES(expected, actual)                                                            \
  EXPECT_EQ(                                                                                      \
      ::kvault::kernels::reference_test::Hex(::kvault::kernels::reference_test::Bytes(expected)), \
      ::kvault::kernels::reference_test::Hex(actual))
#define EXPECT_HALVES(expected, actual)                                                            \
  EXPECT_EQ(                                                                                       \
      ::kvault::kernels::reference_test::Hex(::kvault::kernels::reference_test::Halves(expected)), \
      ::kvault::kernels::reference_test::Hex(actual))

// Frequently used halves.
inline constexpr uint16_t kZero = 0x0000, kNegZero = 0x8000, kOne = 0x3C00, kNan = 0x7E00;

}  // namespace kvault::kernels::reference_test
