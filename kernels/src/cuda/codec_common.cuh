#pragma once
// Private to the CUDA codec: kernel argument structs and the __device__ arithmetic that mirrors
// the CPU reference (kernels/src/reference/reference_codec.cc) bit for bit.
//
// Bit-exactness rules followed by every helper here and by the kernels:
//  - all arithmetic in fp32 through the _rn intrinsics (__fadd_rn, __fsub_rn, __fmul_rn,
//    __fdiv_rn = IEEE x / s, __fmaf_rn only where the reference calls fmaf), which are never
//    contracted or reassociated whatever the compiler flags;
//  - fp32 -> fp16/bf16 with the round-to-nearest-even conversions, NaN forced to 0x7FFF (the
//    paired conversion FromF32x2 produces 0x7FFF for a NaN by itself: checked byte-exact by
//    cuda_codec_test on sm_90);
//  - fp32 -> E4M3 with cvt.rn.satfinite (__nv_cvt_float2_to_fp8x2), NaN -> 0x7F; E4M3 -> fp32
//    exactly through fp16;
//  - amax / min / max with NaN-ignoring fmaxf/fminf (NaN never wins, as `if (a > amax)` in the
//    reference); -0/+0 ties may resolve either way in any reduction order, which is harmless
//    because amax sees |x| only and group min/max get `+ 0.0f` before use (MakeGroupParams), as
//    in the reference;
//  - rounding to integers: clamp to [lo, hi] first (fmaxf then fminf, which maps NaN to lo),
//    then add 1.5 * 2^23: the fp32 add rounds half to even and leaves the integer in the low
//    mantissa bits. Equal to the reference's clamp(nearbyintf(v)) because rounding is monotonic
//    and lo, hi are integers; the caller maps NaN to 0 first where lo != 0 (int8);
//  - the rotation's butterflies in the reference's order (spans ascending), then * scale, then
//    * sign (inverse); the forward pass multiplies by the sign first, as the reference.

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/quotient.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#endif

namespace kvault::kernels::cuda_detail {

inline constexpr int kThreads = 128;               // threads per CTA, every kernel
inline constexpr int kMaxSectionsPerLaunch = 128;  // section table entries in kernel params
inline constexpr int kKeySlots = 16;               // 16-byte shared slots per thread (key encode)
inline constexpr int kKeyDecodeTokens = 16;        // tokens per team work item (key decode)

// Codec ids as in block_format.h (kept numeric so this header stays free of host headers).
inline constexpr uint32_t kRaw = 0, kFp8 = 1, kInt8 = 2, kInt4 = 3, kInt2 = 4;

// The engine cache, as the kernels see it (PagedKvView with device arrays).
struct DeviceView {
  uint16_t* const* layer_bases;                              // device array, one per layer
  const int32_t* page_ids;                                   // device array
  int64_t kv_stride, page_stride, slot_stride, head_stride;  // elements
  uint32_t page_tokens;
  uint32_t vec_strides;  // 1 when every stride is a multiple of 8 elements (16 bytes)
};

// One section (the K or the V of one layer) of the block objects in a batch.
struct SectionEntry {
  uint32_t offset;      // from the payload start
  uint32_t params_rel;  // start of scales/zero-points, from the section start
  uint32_t used_rel;    // first padding byte, from the section start
  uint16_t meta;        // bits 0-9 layer, 10 kv (1 = V), 11 rotate, 12-14 codec id
  uint16_t group;       // int4/int2 group size, else 0
};
static_assert(sizeof(SectionEntry) == 16);

__host__ __device__ inline uint32_t EntryLayer(const SectionEntry& e) { return e.meta & 0x3FFu; }
__host__ __device__ inline uint32_t EntryKv(const SectionEntry& e) { return (e.meta >> 10) & 1u; }
__host__ __device__ inline bool EntryRotate(const SectionEntry& e) { return (e.meta >> 11) & 1u; }
__host__ __device__ inline uint32_t EntryCodec(const SectionEntry& e) {
  return (e.meta >> 12) & 7u;
}

// Shape shared by all blocks of a batch.
struct BatchShape {
  uint64_t first_token;
  uint64_t payload_stride;
  uint32_t num_blocks;
  uint32_t block_tokens;
  uint32_t kv_heads;
  uint32_t head_dim;
  uint32_t sink_tokens;
  uint32_t chunks;     // head_dim / 8: 16-byte chunks per (token, head) vector
  uint32_t log2_team;  // team = threads per vector, chosen per launch (cuda_codec.cu TeamFor)
};

struct Rotation {
  uint32_t sign_bits[32];  // bit i set: s_i = -1 (RotationSigns), head_dim <= 1024
  float scale;             // RotationScale(head_dim)
};

// Unsigned 32-bit division by a run-time constant d >= 1 without a divide: Granlund and
// Montgomery, "Division by invariant integers using multiplication" (1994), figure 4.1, exact for
// every n < 2^32. With l = ceil(log2 d): mul = floor(2^32 (2^l - d) / d) + 1 (< 2^32),
// sh1 = min(l, 1), sh2 = max(l - 1, 0); n / d = (t + ((n - t) >> sh1)) >> sh2, t = mulhi(mul, n).
struct FastDivU32 {
  uint32_t mul, sh1, sh2;
};

inline FastDivU32 MakeFastDivU32(uint32_t d) {  // host; d >= 1
  uint32_t l = 0;
  while ((uint64_t{1} << l) < d) ++l;
  FastDivU32 f;
  f.mul = static_cast<uint32_t>((((uint64_t{1} << l) - d) << 32) / d + 1);
  f.sh1 = l < 1 ? l : 1u;
  f.sh2 = l > 1 ? l - 1 : 0u;
  return f;
}

__host__ __device__ __forceinline__ uint32_t FastDiv(uint32_t n, const FastDivU32& f) {
#ifdef __CUDA_ARCH__
  const uint32_t t = __umulhi(n, f.mul);
#else
  const uint32_t t = static_cast<uint32_t>((uint64_t{n} * f.mul) >> 32);
#endif
  return (t + ((n - t) >> f.sh1)) >> f.sh2;
}

// Kernel A: per (token, head) vector work. Covers raw sections, sinks of every section, fp8/int8
// sections and int4/int2 V sections.
struct VectorArgs {
  DeviceView view;
  BatchShape shape;
  Rotation rot;
  uint8_t* payloads;          // encode writes, decode reads (cast back to const there)
  uint32_t ctas_per_section;  // sink_ctas + body_ctas (grid x; grid y = sections, z = blocks)
  uint32_t sink_ctas;         // CTAs for the sink tokens [0, sink)
  uint32_t sink_only;         // 1: the body of these sections belongs to kernel B
  uint32_t num_sections;
  // Addressing precomputed by the host (VectorPlan in cuda_codec.cu). A team's vectors are
  // v = v0 + r * teams: from (token, head) of v0, the next is (token + step_tokens, head +
  // step_heads) with a carry when the head reaches kv_heads (step_* = teams / and % kv_heads).
  FastDivU32 div_heads;  // v / kv_heads
  FastDivU32 div_page;   // t / page_tokens
  uint32_t step_tokens, step_heads;
  SectionEntry sections[kMaxSectionsPerLaunch];
};

// Kernel B: int4/int2 K sections (per channel over groups of g tokens). Every section of one
// launch has the same codec, rotation flag and group.
struct KeyArgs {
  DeviceView view;
  BatchShape shape;
  Rotation rot;
  uint8_t* payloads;
  uint32_t groups;           // token groups per section: ceil((block_tokens - sink) / g)
  uint32_t teams_per_tile;   // encode: M teams share one (head, group) tile
  uint32_t tokens_per_team;  // encode: ceil(min(g, quantized) / M); decode: kKeyDecodeTokens
  uint32_t subs;             // encode: shared-memory refills per pass; decode: items per tile
  uint32_t ctas_per_section;
  uint32_t zero_pad;  // 1: this launch writes the sections' padding (no sink launch did)
  uint32_t num_sections;
  SectionEntry sections[kMaxSectionsPerLaunch];
};

// Kernel launch: `KVAULT_LAUNCH(grid, smem, stream, args, kernel<...>)`. The kernel comes last
// because its template argument list contains commas.
#ifdef KVAULT_CUDA_EMULATION
#define KVAULT_LAUNCH(grid, smem, stream, args, ...) \
  ::kvault_emulation::Launch(__VA_ARGS__, (grid), kThreads, (smem), (args))
#else
#define KVAULT_LAUNCH(grid, smem, stream, args, ...) \
  __VA_ARGS__<<<(grid), kThreads, (smem), (stream)>>>(args)
#endif

// Kernel parameters must fit the classic 4 KiB limit.
static_assert(sizeof(VectorArgs) <= 4096 && sizeof(KeyArgs) <= 4096);

#if defined(__CUDACC__) || defined(KVAULT_CUDA_EMULATION)

inline constexpr uint32_t kFullMask = 0xFFFFFFFFu;
inline constexpr uint16_t kNan16 = 0x7FFF;
inline constexpr uint16_t kHalfOne = 0x3C00;
inline constexpr uint16_t kHalfInf = 0x7C00;

// ---- hardware primitives --------------------------------------------------------------------
// Everything that depends on the GPU is here. A host emulation (a test harness that defines
// KVAULT_CUDA_EMULATION) provides the same functions, the _rn intrinsics, __byte_perm, the
// barriers, threadIdx/blockIdx/gridDim and the kernel attributes as macros, so that the kernel
// code below and in the .cu files runs unchanged on a CPU.
#ifdef __CUDACC__

__device__ __forceinline__ bool IsNan(float x) { return isnan(x); }
// NaN-ignoring min/max (IEEE minNum/maxNum); which zero wins a -0/+0 tie is unspecified, and the
// codec never depends on it (MakeGroupParams canonicalizes zeros).
__device__ __forceinline__ float FMin(float a, float b) { return fminf(a, b); }
__device__ __forceinline__ float FMax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ float ShflXor(float v, uint32_t lane_mask) {
  return __shfl_xor_sync(kFullMask, v, static_cast<int>(lane_mask));
}

template <typename T>
__device__ __forceinline__ T* DynamicSmem() {
  extern __shared__ __align__(16) unsigned char kvault_dynamic_smem[];
  return reinterpret_cast<T*>(kvault_dynamic_smem);
}

template <bool kBf16>
__device__ __forceinline__ float ToF32(uint32_t bits16) {
  if constexpr (kBf16) {
    return __uint_as_float(bits16 << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
  }
}

// fp32 -> fp16/bf16, round to nearest even, subnormals kept, NaN -> 0x7FFF.
template <bool kBf16>
__device__ __forceinline__ uint32_t FromF32(float x) {
  uint32_t b;
  if constexpr (kBf16) {
    b = __bfloat16_as_ushort(__float2bfloat16_rn(x));
  } else {
    b = __half_as_ushort(__float2half_rn(x));
  }
  return isnan(x) ? uint32_t{kNan16} : b;
}

// Two fp32 -> one word of two fp16/bf16 (lo in the low half), round to nearest even, subnormals
// kept, NaN -> 0x7FFF (the canonical NaN the conversion produces, which FromF32 forces): one
// cvt.rn.f16x2.f32 / cvt.rn.bf16x2.f32 for both.
template <bool kBf16>
__device__ __forceinline__ uint32_t FromF32x2(float lo, float hi) {
  if constexpr (kBf16) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// E4M3 byte pair -> two fp32, exactly (via fp16, which holds every E4M3 value; NaN -> NaN).
__device__ __forceinline__ float2 E4M3x2ToF32(uint32_t pair) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair & 0xFFFFu), __NV_E4M3);
  return make_float2(__half2float(__ushort_as_half(h.x)), __half2float(__ushort_as_half(h.y)));
}

// Two fp32 -> E4M3 byte pair (x in the low byte), round to nearest even, saturating to +-448,
// NaN -> 0x7F.
__device__ __forceinline__ uint32_t F32x2ToE4M3(float lo, float hi) {
  return __nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3);
}

// 16-byte global -> shared copy (sm_80+), completed by CpAsyncWaitAll in the same thread.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void CpAsyncWaitAll() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

#endif  // __CUDACC__

__device__ __forceinline__ uint32_t MinU32(uint32_t a, uint32_t b) { return a < b ? a : b; }

// ---- number formats -------------------------------------------------------------------------

__device__ __forceinline__ uint32_t F32ToHalfBits(float x) { return FromF32<false>(x); }
__device__ __forceinline__ float HalfBitsToF32(uint32_t h) { return ToF32<false>(h); }

// Small unsigned integer (< 2^23) to fp32, exactly: mantissa trick, no conversion unit.
__device__ __forceinline__ float SmallUintToF32(uint32_t v) {
  return __fsub_rn(__uint_as_float(0x4B000000u | v), 8388608.0f);
}
// Two's-complement byte to fp32, exactly.
__device__ __forceinline__ float Int8ToF32(uint32_t byte) {
  return __fsub_rn(__uint_as_float(0x4B000000u | ((byte & 0xFFu) ^ 0x80u)), 8388736.0f);
}

// Clamps v to [lo, hi] (NaN -> lo) and rounds half to even; the integer is in the low bits of the
// result (two's complement in the low byte for negative values >= -128).
__device__ __forceinline__ uint32_t RoundClampBits(float v, float lo, float hi) {
  v = FMin(FMax(v, lo), hi);
  return __float_as_uint(__fadd_rn(v, 12582912.0f));
}

// Bytes 0 of a, b, c, d -> one word [a0 b0 c0 d0].
__device__ __forceinline__ uint32_t PackLowBytes(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return __byte_perm(__byte_perm(a, b, 0x0040), __byte_perm(c, d, 0x0040), 0x5410);
}

// Eight rounded words (RoundClampBits) -> packed LSB-first codes of `bits` bits.
template <int kBits>
__device__ __forceinline__ uint32_t PackCodes(const uint32_t (&t)[8], uint32_t& hi) {
  if constexpr (kBits == 8) {
    hi = PackLowBytes(t[4], t[5], t[6], t[7]);
    return PackLowBytes(t[0], t[1], t[2], t[3]);
  } else if constexpr (kBits == 4) {
    const uint32_t even = PackLowBytes(t[0], t[2], t[4], t[6]);
    const uint32_t odd = PackLowBytes(t[1], t[3], t[5], t[7]);
    hi = 0;
    return even | (odd << 4);
  } else {
    const uint32_t w0 = PackLowBytes(t[0], t[4], t[1], t[5]);
    const uint32_t w1 = PackLowBytes(t[2], t[6], t[3], t[7]);
    const uint32_t x = w0 | (w1 << 4);  // [k0|k2<<4, k4|k6<<4, k1|k3<<4, k5|k7<<4]
    hi = 0;
    return (x | (x >> 14)) & 0xFFFFu;
  }
}

// Code e (0..7) of a chunk's packed word(s).
template <int kBits>
__device__ __forceinline__ uint32_t CodeAt(uint32_t lo, uint32_t hi, int e) {
  if constexpr (kBits == 8) {
    return ((e < 4 ? lo : hi) >> (8 * (e & 3))) & 0xFFu;
  } else {
    return (lo >> (kBits * e)) & ((1u << kBits) - 1u);
  }
}

// ---- 16-byte chunks -------------------------------------------------------------------------

__device__ __forceinline__ uint4 LoadChunk(const uint16_t* p, bool vec) {
  if (vec) return *reinterpret_cast<const uint4*>(p);
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = uint32_t{p[2 * i]} | (uint32_t{p[2 * i + 1]} << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void StoreChunk(uint16_t* p, uint4 v, bool vec) {
  if (vec) {
    *reinterpret_cast<uint4*>(p) = v;
    return;
  }
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    p[2 * i] = static_cast<uint16_t>(w[i]);
    p[2 * i + 1] = static_cast<uint16_t>(w[i] >> 16);
  }
}

template <bool kBf16>
__device__ __forceinline__ void ChunkToF32(uint4 v, float (&x)[8]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x[2 * i] = ToF32<kBf16>(w[i] & 0xFFFFu);
    x[2 * i + 1] = ToF32<kBf16>(w[i] >> 16);
  }
}

template <bool kBf16>
__device__ __forceinline__ uint4 F32ToChunk(const float (&x)[8]) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = FromF32x2<kBf16>(x[2 * i], x[2 * i + 1]);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// ---- cache addressing -----------------------------------------------------------------------

// The cache vectors of one head at consecutive tokens: one division where the walk starts, then a
// slot step per token.
struct TokenCursor {
  uint64_t page_index;
  uint32_t slot;

  __device__ __forceinline__ TokenCursor(const DeviceView& v, uint64_t token) {
    if ((token >> 32) == 0) {
      const uint32_t t32 = static_cast<uint32_t>(token);
      const uint32_t p = t32 / v.page_tokens;
      page_index = p;
      slot = t32 - p * v.page_tokens;
    } else {
      page_index = token / v.page_tokens;
      slot = static_cast<uint32_t>(token - page_index * v.page_tokens);
    }
  }
  // Element (kv, token, head, 0) in the layer whose tensor starts at `base`.
  __device__ __forceinline__ uint16_t* Vector(const DeviceView& v, uint16_t* base, uint32_t kv,
                                              uint32_t head) const {
    const int64_t page = v.page_ids[page_index];
    return base + kv * v.kv_stride + page * v.page_stride +
           static_cast<int64_t>(slot) * v.slot_stride + static_cast<int64_t>(head) * v.head_stride;
  }
  __device__ __forceinline__ void Next(const DeviceView& v) {
    if (++slot == v.page_tokens) {
      slot = 0;
      ++page_index;
    }
  }
};

// Element (kv, token, head, 0) of the sequence in the layer whose tensor starts at `base`
// (v.layer_bases[layer], loaded once per CTA by the caller).
__device__ __forceinline__ uint16_t* CacheVector(const DeviceView& v, uint16_t* base, uint32_t kv,
                                                 uint64_t token, uint32_t head) {
  return TokenCursor(v, token).Vector(v, base, kv, head);
}

// 16-byte accesses are legal for a layer when the strides and its base are aligned.
__device__ __forceinline__ bool CacheVec(const DeviceView& v, const uint16_t* base) {
  return v.vec_strides != 0 && (reinterpret_cast<uintptr_t>(base) & 15u) == 0;
}

// ---- team helpers ---------------------------------------------------------------------------
// A team is `T` (power of two <= 32) consecutive lanes that share one (token, head) vector;
// thread `lane` owns chunks c = k * T + lane, k < K, i.e. elements 8c .. 8c + 7.
// Every call below must be reached by all 32 lanes of the warp (full-mask shuffles).

__device__ __forceinline__ float TeamMax(float v, uint32_t team) {
  for (uint32_t d = team >> 1; d >= 1; d >>= 1) v = FMax(v, ShflXor(v, d));
  return v;
}

// Sign bits of chunk c: bit e set means s_{8c+e} = -1.
__device__ __forceinline__ uint32_t SignByte(const Rotation& r, uint32_t c) {
  return (r.sign_bits[c >> 2] >> (8 * (c & 3))) & 0xFFu;
}

// Unnormalized Walsh-Hadamard transform of the team's vector, butterflies with span 1, 2, 4
// (inside a chunk), 8 .. 4T (across lanes), 8T .. (across a thread's chunks): ascending spans as
// in the reference; (a, b) -> (a + b, a - b) with a the lower index.
template <int K>
__device__ __forceinline__ void Fwht(float (&x)[K][8], uint32_t team, uint32_t lane_in_team) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int span = 1; span < 8; span <<= 1) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if ((i & span) == 0) {
          const float a = x[k][i];
          const float b = x[k][i + span];
          x[k][i] = __fadd_rn(a, b);
          x[k][i + span] = __fsub_rn(a, b);
        }
      }
    }
  }
  for (uint32_t d = 1; d < team; d <<= 1) {
    const bool upper = (lane_in_team & d) != 0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float mine = x[k][i];
        const float other = ShflXor(mine, d);
        x[k][i] = upper ? __fsub_rn(other, mine) : __fadd_rn(mine, other);
      }
    }
  }
#pragma unroll
  for (int s = 1; s < K; s <<= 1) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if ((k & s) == 0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float a = x[k][i];
          const float b = x[k + s][i];
          x[k][i] = __fadd_rn(a, b);
          x[k + s][i] = __fsub_rn(a, b);
        }
      }
    }
  }
}

// Forward rotation y = c * H(s . x) (RotateForwardReference).
template <int K>
__device__ __forceinline__ void RotateForward(float (&x)[K][8], const Rotation& r, uint32_t team,
                                              uint32_t lane_in_team) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t sb = SignByte(r, k * team + lane_in_team);
#pragma unroll
    for (int i = 0; i < 8; ++i) x[k][i] = __fmul_rn(x[k][i], ((sb >> i) & 1u) ? -1.0f : 1.0f);
  }
  Fwht<K>(x, team, lane_in_team);
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int i = 0; i < 8; ++i) x[k][i] = __fmul_rn(x[k][i], r.scale);
  }
}

// Inverse rotation x = s . (c * H(y)) (RotateInverseReference: (x * scale) * sign).
template <int K>
__device__ __forceinline__ void RotateInverse(float (&x)[K][8], const Rotation& r, uint32_t team,
                                              uint32_t lane_in_team) {
  Fwht<K>(x, team, lane_in_team);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t sb = SignByte(r, k * team + lane_in_team);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      x[k][i] = __fmul_rn(__fmul_rn(x[k][i], r.scale), ((sb >> i) & 1u) ? -1.0f : 1.0f);
    }
  }
}

// ---- asymmetric (int4/int2) group parameters ------------------------------------------------

struct GroupParams {
  uint32_t scale_bits, zero_bits;  // fp16 as stored
  float sf, zf;                    // the stored values, as fp32
};

// From the NaN-ignoring min and max of a group (+inf / -inf when every element was NaN), exactly
// as EncodeGroup: every-NaN -> (0, 0); -0 -> +0; scale = fp16((mx - mn) / levels), zero = fp16(mn),
// levels = 2^kBits - 1.
template <int kBits>
__device__ __forceinline__ GroupParams MakeGroupParams(float mn, float mx) {
  if (mn > mx) mn = mx = 0.0f;
  mn = __fadd_rn(mn, 0.0f);
  mx = __fadd_rn(mx, 0.0f);
  const uint32_t word = FromF32x2<false>(DivideForScale<(1 << kBits) - 1>(__fsub_rn(mx, mn)), mn);
  GroupParams p;
  p.scale_bits = word & 0xFFFFu;
  p.zero_bits = word >> 16;
  p.sf = HalfBitsToF32(p.scale_bits);
  p.zf = HalfBitsToF32(p.zero_bits);
  return p;
}

// The group's quantizer (quotient.h), from its stored parameters.
__device__ __forceinline__ AsymQuantizer MakeAsymQuantizer(const GroupParams& p) {
  return MakeAsymQuantizer(p.sf, p.zf);
}

// RoundClamp((x - zf) / sf, 0, levels), or 0 when sf == 0 (EncodeGroup); the code is in the low
// bits. No division per element (AsymQuotient).
__device__ __forceinline__ uint32_t QuantizeAsym(float x, const AsymQuantizer& q, float levels) {
  return RoundClampBits(AsymQuotient(x, q), 0.0f, levels);
}

// ---- small unaligned-tolerant stores/loads of params ----------------------------------------

// Stores 4 bytes at p (2-byte aligned at least).
__device__ __forceinline__ void StoreU32(uint8_t* p, uint32_t v) {
  if ((reinterpret_cast<uintptr_t>(p) & 3u) == 0) {
    *reinterpret_cast<uint32_t*>(p) = v;
  } else {
    reinterpret_cast<uint16_t*>(p)[0] = static_cast<uint16_t>(v);
    reinterpret_cast<uint16_t*>(p)[1] = static_cast<uint16_t>(v >> 16);
  }
}
__device__ __forceinline__ uint32_t LoadU32(const uint8_t* p) {
  if ((reinterpret_cast<uintptr_t>(p) & 3u) == 0) return *reinterpret_cast<const uint32_t*>(p);
  const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
  return uint32_t{q[0]} | (uint32_t{q[1]} << 16);
}
// Stores 16 bytes at p (2-byte aligned at least).
__device__ __forceinline__ void StoreU128(uint8_t* p, uint4 v) {
  if ((reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
    *reinterpret_cast<uint4*>(p) = v;
  } else {
    StoreU32(p, v.x);
    StoreU32(p + 4, v.y);
    StoreU32(p + 8, v.z);
    StoreU32(p + 12, v.w);
  }
}
__device__ __forceinline__ uint4 LoadU128(const uint8_t* p) {
  if ((reinterpret_cast<uintptr_t>(p) & 15u) == 0) return *reinterpret_cast<const uint4*>(p);
  return make_uint4(LoadU32(p), LoadU32(p + 4), LoadU32(p + 8), LoadU32(p + 12));
}

// Writes the zero padding of a section (at most 15 bytes); threads 0..14 of one CTA.
__device__ __forceinline__ void ZeroPadding(uint8_t* section, const SectionEntry& e) {
  const uint32_t pad = (16u - (e.used_rel & 15u)) & 15u;
  if (threadIdx.x < pad) section[e.used_rel + threadIdx.x] = 0;
}

#endif  // __CUDACC__ || KVAULT_CUDA_EMULATION

}  // namespace kvault::kernels::cuda_detail
