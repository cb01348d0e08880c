#pragma once
// Private to kvault_kernels: the per-instruction-set section kernels behind cpu_codec.cc.
//
// Each kernel encodes (or decodes) the quantized tokens [sink, tokens) of one lossy section,
// reading from (or writing to) a paged view directly, and must give exactly the bytes and elements
// of ReferenceEncodeSection / ReferenceDecodeSection (reference_codec.cc). The dispatcher handles
// raw sections, sink tokens, section padding, the header and the checksum.
//
// Only plain data crosses this boundary, and this header defines no functions: an inline function
// shared between translation units built with different -m flags could have its AVX-512 copy
// picked by the linker for baseline code. Kernel files keep all their helpers in an anonymous
// namespace and use no standard-library templates for the same reason.

#include <cstddef>
#include <cstdint>

namespace kvault::kernels::simd {

// CodecId values of the lossy codecs (kvault/common/block_format.h).
inline constexpr uint8_t kCodecFp8 = 1;
inline constexpr uint8_t kCodecInt8 = 2;
inline constexpr uint8_t kCodecInt4 = 3;
inline constexpr uint8_t kCodecInt2 = 4;

// Encode kernels work on up to this many heads of a token at a time.
inline constexpr uint32_t kHeadBatch = 16;

struct SectionJob {
  // Codec of the section.
  uint8_t codec = 0;    // kCodecFp8 .. kCodecInt2 (never raw)
  bool is_key = false;  // int4/int2: K grouping (per channel over token groups) or V grouping
  bool rotate = false;
  bool bf16 = false;   // source/destination elements are bf16 (else fp16)
  uint32_t group = 0;  // int4/int2 group size
  uint32_t heads = 0;
  uint32_t dim = 0;     // multiple of 8, <= 1024
  uint32_t sink = 0;    // tokens [0, sink) are not touched by the kernels
  uint32_t tokens = 0;  // block tokens

  // Element (t, h, c) of the block lives at base[token_offsets[t] + h * head_stride + c]; the
  // head_dim elements of one (t, h) vector are contiguous.
  uint16_t* base = nullptr;
  const int64_t* token_offsets = nullptr;  // one per block token
  int64_t head_stride = 0;

  // Rotation: fp32 +-1 signs (dim entries) and the scale c (kvault/kernels/rotation.h).
  const float* signs = nullptr;
  float rot_scale = 0.0f;

  // Section bytes after the sink: codes, then params (block_format.h SectionLayoutFor).
  uint8_t* codes_out = nullptr;        // encode
  uint8_t* params_out = nullptr;       // encode
  const uint8_t* codes_in = nullptr;   // decode
  const uint8_t* params_in = nullptr;  // decode

  // Scratch owned by the caller, each region 64-byte aligned and padded so that any access of a
  // whole 16-float chunk starting below its logical end stays inside it. vec_stride is head_dim
  // rounded up to 16; `signs` is zero past head_dim.
  // B = max(heads, kHeadBatch).
  uint32_t vec_stride = 0;
  float* vec = nullptr;       // kHeadBatch * vec_stride floats
  float* mn = nullptr;        // kHeadBatch * vec_stride floats
  float* mx = nullptr;        // kHeadBatch * vec_stride floats
  float* sf = nullptr;        // B * vec_stride floats
  float* zf = nullptr;        // B * vec_stride floats
  uint8_t* codes8 = nullptr;  // vec_stride bytes
  // Encode of rotated int4/int2 keys: room for key_buf_tokens rotated vectors (vec_stride floats
  // apart); when a group has more tokens than that, the kernel rotates each vector twice.
  float* key_buf = nullptr;
  uint32_t key_buf_tokens = 0;
};

void EncodeSectionAvx2(const SectionJob& job);
void DecodeSectionAvx2(const SectionJob& job);
void EncodeSectionAvx512(const SectionJob& job);
void DecodeSectionAvx512(const SectionJob& job);

}  // namespace kvault::kernels::simd
