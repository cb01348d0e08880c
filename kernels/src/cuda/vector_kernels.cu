// Kernel A: per (token, head) vector encode/decode.
//
// Grid: x = sections of the launch x ctas_per_section, y = blocks (strided loop past 65535).
// A CTA covers one segment of one section: the sink tokens [0, sink) (copied raw) or the body
// [sink, block_tokens). Its 128 threads form teams of T = min(32, pow2ceil(head_dim / 8)) lanes;
// a team owns one vector at a time, lane l holding chunks l, l + T, ... (8 elements = 16 bytes
// each), so a warp reads whole 16-byte-per-lane rows along head_dim. Each team handles R = 4 / K
// vectors (K = chunks per lane), all loaded (encode) or addressed and loaded (decode) before any
// is processed.
//
//  raw / sinks : 16-byte copies.
//  fp8 / int8  : fp32, optional rotation (shuffle butterflies), amax by a shuffle max over the
//  team,
//                fp16 scale, x / s per element, 8 codes stored as one 8-byte word per chunk.
//  int4 / int2 V (groups of g channels): a chunk lies in one group when g % 8 == 0 and g / 8 is a
//                power of two (or g >= head_dim): min/max per chunk, then across the k chunks of a
//                lane and across lanes with xor shuffles limited to the group; otherwise the
//                general path stages the vector in shared memory and scans each group.

#include "cuda/codec_kernels.cuh"

namespace kvault::kernels::cuda_detail {
namespace {

struct Segment {
  uint32_t first_token;  // within the block
  uint32_t vectors;      // tokens x kv_heads
  uint32_t cta;          // index of this CTA inside the segment
  bool raw;              // copy 16-bit elements as they are
};

__device__ __forceinline__ Segment SegmentOf(const VectorArgs& a, const SectionEntry& e,
                                             uint32_t local) {
  const BatchShape& s = a.shape;
  Segment seg;
  if (local < a.sink_ctas) {
    seg.first_token = 0;
    seg.vectors = s.sink_tokens * s.kv_heads;
    seg.cta = local;
    seg.raw = true;
  } else {
    seg.first_token = s.sink_tokens;
    seg.vectors = (s.block_tokens - s.sink_tokens) * s.kv_heads;
    seg.cta = local - a.sink_ctas;
    seg.raw = EntryCodec(e) == kRaw;
  }
  return seg;
}

// Byte offset, inside a section, of the raw 16-bit vector (token, head) (sinks and raw codec).
__device__ __forceinline__ uint64_t RawOffset(const BatchShape& s, uint32_t token, uint32_t head) {
  return (uint64_t{token} * s.kv_heads + head) * s.head_dim * 2;
}

// ---- encode helpers -------------------------------------------------------------------------

template <int K, bool kFp8>
__device__ __forceinline__ void EncodeSymmetric(const float (&x)[K][8], uint32_t team, uint32_t tl,
                                                uint32_t chunks, bool valid, uint8_t* codes,
                                                uint8_t* scale_out) {
  float amax = 0.0f;  // NaN never wins FMax; |x| is never -0
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = FMax(amax, fabsf(x[k][i]));
  }
  amax = TeamMax(amax, team);
  uint32_t sbits = F32ToHalfBits(__fdiv_rn(amax, kFp8 ? 448.0f : 127.0f));
  if (HalfBitsToF32(sbits) == 0.0f) sbits = kHalfOne;
  const float sf = HalfBitsToF32(sbits);
  if (!valid) return;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t c = k * team + tl;
    if (c >= chunks) continue;
    float q[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) q[i] = __fdiv_rn(x[k][i], sf);
    uint2 word;
    if constexpr (kFp8) {
      word.x = F32x2ToE4M3(q[0], q[1]) | (F32x2ToE4M3(q[2], q[3]) << 16);
      word.y = F32x2ToE4M3(q[4], q[5]) | (F32x2ToE4M3(q[6], q[7]) << 16);
    } else {
      uint32_t t[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) t[i] = RoundClampBits(IsNan(q[i]) ? 0.0f : q[i], -127.0f, 127.0f);
      word.x = PackCodes<8>(t, word.y);
    }
    *reinterpret_cast<uint2*>(codes + 8 * c) = word;
  }
  if (tl == 0) *reinterpret_cast<uint16_t*>(scale_out) = static_cast<uint16_t>(sbits);
}

template <int kBits>
__device__ __forceinline__ void StoreChunkCodes(uint8_t* codes, uint32_t c,
                                                const uint32_t (&t)[8]) {
  uint32_t hi;
  const uint32_t w = PackCodes<kBits>(t, hi);
  if constexpr (kBits == 4) {
    *reinterpret_cast<uint32_t*>(codes + 4 * c) = w;
  } else {
    *reinterpret_cast<uint16_t*>(codes + 2 * c) = static_cast<uint16_t>(w);
  }
}

// int4/int2 V: per (token, head) over groups of g channels. `codes` and `params` point at this
// vector's codes and its ceil(D / g) (scale, zero) pairs.
template <int K, int kBits>
__device__ __forceinline__ void EncodeValueGroups(const float (&x)[K][8], uint32_t team,
                                                  uint32_t tl, uint32_t chunks, uint32_t dim,
                                                  uint32_t g, bool valid, uint8_t* codes,
                                                  uint8_t* params, float* scratch) {
  const float levels = static_cast<float>((1u << kBits) - 1u);
  const uint32_t g8 = g >> 3;
  const bool fast = g >= dim || ((g & 7u) == 0 && (g8 & (g8 - 1u)) == 0);
  if (fast) {
    // Chunks per group: all of them for a single group.
    const uint32_t gc = g >= dim ? team * K : g8;
    float mn[K], mx[K];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      mn[k] = __int_as_float(0x7F800000);  // +inf
      mx[k] = __int_as_float(0xFF800000);  // -inf
      if (k * team + tl < chunks) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          mn[k] = FMin(mn[k], x[k][i]);  // NaN ignored; -0/+0 ties fixed in MakeGroupParams
          mx[k] = FMax(mx[k], x[k][i]);
        }
      }
    }
    // Across a lane's chunks, in aligned blocks of gc / team chunks.
    const uint32_t kblock = gc > team ? gc / team : 1u;
#pragma unroll
    for (int s = 1; s < K; s <<= 1) {
      if (static_cast<uint32_t>(s) < kblock) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
          if ((k & s) == 0) {
            const float a = FMin(mn[k], mn[k | s]);
            const float b = FMax(mx[k], mx[k | s]);
            mn[k] = mn[k | s] = a;
            mx[k] = mx[k | s] = b;
          }
        }
      }
    }
    // Across lanes, in aligned segments of min(gc, team) lanes.
    const uint32_t lanes = gc < team ? gc : team;
    for (uint32_t d = 1; d < lanes; d <<= 1) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
        mn[k] = FMin(mn[k], ShflXor(mn[k], d));
        mx[k] = FMax(mx[k], ShflXor(mx[k], d));
      }
    }
    if (!valid) return;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t c = k * team + tl;
      if (c >= chunks) continue;
      const GroupParams p = MakeGroupParams(mn[k], mx[k], levels);
      uint32_t t[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) t[i] = QuantizeAsym(x[k][i], p.sf, p.zf, levels);
      StoreChunkCodes<kBits>(codes, c, t);
      const uint32_t first = 8 * c;
      if (first % g == 0) StoreU32(params + 4 * (first / g), p.scale_bits | (p.zero_bits << 16));
    }
    return;
  }
  // General group size: stage the team's vector, then scan every group a chunk touches.
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t c = k * team + tl;
    if (c < chunks) {
#pragma unroll
      for (int i = 0; i < 8; ++i) scratch[8 * c + i] = x[k][i];
    }
  }
  __syncwarp();
  if (valid) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t c = k * team + tl;
      if (c >= chunks) continue;
      const uint32_t c0 = 8 * c;
      uint32_t t[8];
      for (uint32_t j = c0 / g; j <= (c0 + 7) / g; ++j) {
        const uint32_t lo = j * g;
        const uint32_t hi = lo + g < dim ? lo + g : dim;
        float mn = __int_as_float(0x7F800000), mx = __int_as_float(0xFF800000);
        for (uint32_t i = lo; i < hi; ++i) {
          const float v = scratch[i];
          mn = FMin(mn, v);
          mx = FMax(mx, v);
        }
        const GroupParams p = MakeGroupParams(mn, mx, levels);
        if (lo >= c0) StoreU32(params + 4 * j, p.scale_bits | (p.zero_bits << 16));
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (c0 + i >= lo && c0 + i < hi) t[i] = QuantizeAsym(x[k][i], p.sf, p.zf, levels);
        }
      }
      StoreChunkCodes<kBits>(codes, c, t);
    }
  }
  __syncwarp();
}

template <bool kBf16, int K>
__global__ void __launch_bounds__(kThreads)
    EncodeVectorsKernel(const __grid_constant__ VectorArgs a) {
  constexpr int R = VectorsPerTeam(K);
  float* const scratch_all = DynamicSmem<float>();
  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t sec = blockIdx.x / a.ctas_per_section;
  const uint32_t local = blockIdx.x - sec * a.ctas_per_section;
  const SectionEntry& e = a.sections[sec];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e), codec = EntryCodec(e);
  const bool rotate = EntryRotate(e);
  const Segment seg = SegmentOf(a, e, local);
  uint16_t* const base = a.view.layer_bases[layer];
  const bool vec = CacheVec(a.view, base);
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;
  const uint32_t groups_v = e.group ? (dim + e.group - 1u) / e.group : 0u;
  float* scratch = scratch_all + team_id * team * 8 * K;

  for (uint32_t b = blockIdx.y; b < s.num_blocks; b += gridDim.y) {
    uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    if (local == 0) ZeroPadding(section, e);
    const uint64_t block_first = s.first_token + uint64_t{b} * s.block_tokens;

    uint4 in[R][K];
    uint32_t tok[R], head[R];
    bool valid[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint32_t v = (seg.cta * R + r) * teams + team_id;
      valid[r] = v < seg.vectors;
      tok[r] = seg.first_token + v / heads;
      head[r] = v % heads;
      const uint16_t* src =
          valid[r] ? CacheVector(a.view, base, kv, block_first + tok[r], head[r]) : nullptr;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t c = k * team + tl;
        in[r][k] = (valid[r] && c < chunks) ? LoadChunk(src + 8 * c, vec) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (seg.raw) {
        if (!valid[r]) continue;
        uint8_t* dst = section + RawOffset(s, tok[r], head[r]);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          if (c < chunks) *reinterpret_cast<uint4*>(dst + 16 * c) = in[r][k];
        }
        continue;
      }
      float x[K][8];
#pragma unroll
      for (int k = 0; k < K; ++k) ChunkToF32<kBf16>(in[r][k], x[k]);
      if (rotate) RotateForward<K>(x, a.rot, team, tl);
      const uint64_t vq = uint64_t{tok[r] - s.sink_tokens} * heads + head[r];
      uint8_t* codes = section + sink_bytes;
      uint8_t* params = section + e.params_rel;
      switch (codec) {
        case kFp8:
          EncodeSymmetric<K, true>(x, team, tl, chunks, valid[r], codes + vq * dim,
                                   params + 2 * vq);
          break;
        case kInt8:
          EncodeSymmetric<K, false>(x, team, tl, chunks, valid[r], codes + vq * dim,
                                    params + 2 * vq);
          break;
        case kInt4:
          EncodeValueGroups<K, 4>(x, team, tl, chunks, dim, e.group, valid[r], codes + vq * dim / 2,
                                  params + 4 * vq * groups_v, scratch);
          break;
        case kInt2:
          EncodeValueGroups<K, 2>(x, team, tl, chunks, dim, e.group, valid[r], codes + vq * dim / 4,
                                  params + 4 * vq * groups_v, scratch);
          break;
        default:
          break;
      }
    }
  }
}

// ---- decode ---------------------------------------------------------------------------------

template <int K>
__device__ __forceinline__ void DequantSymmetric(const uint4 (&w)[K], bool fp8, float sf,
                                                 float (&x)[K][8]) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t words[2] = {w[k].x, w[k].y};
#pragma unroll
    for (int i = 0; i < 8; i += 2) {
      const uint32_t pair = words[i >> 2] >> (8 * (i & 3));
      float a, b;
      if (fp8) {
        const float2 f = E4M3x2ToF32(pair);
        a = f.x;
        b = f.y;
      } else {
        a = Int8ToF32(pair);
        b = Int8ToF32(pair >> 8);
      }
      x[k][i] = __fmul_rn(a, sf);
      x[k][i + 1] = __fmul_rn(b, sf);
    }
  }
}

template <int K, int kBits>
__device__ __forceinline__ void DequantValueGroups(const uint4 (&w)[K], uint32_t team, uint32_t tl,
                                                   uint32_t chunks, uint32_t g, bool valid,
                                                   const uint8_t* params, float (&x)[K][8]) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t c = k * team + tl;
    const uint32_t c0 = 8 * c;
    if (!valid || c >= chunks) {
#pragma unroll
      for (int i = 0; i < 8; ++i) x[k][i] = 0.0f;
      continue;
    }
    const uint32_t j0 = c0 / g;
    const bool one_group = j0 == (c0 + 7) / g;
    uint32_t p = LoadU32(params + 4 * j0);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (!one_group) p = LoadU32(params + 4 * ((c0 + i) / g));
      const float sf = HalfBitsToF32(p & 0xFFFFu);
      const float zf = HalfBitsToF32(p >> 16);
      x[k][i] = __fmaf_rn(SmallUintToF32(CodeAt<kBits>(w[k].x, 0, i)), sf, zf);
    }
  }
}

template <bool kBf16, int K>
__global__ void __launch_bounds__(kThreads)
    DecodeVectorsKernel(const __grid_constant__ VectorArgs a) {
  constexpr int R = VectorsPerTeam(K);
  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t sec = blockIdx.x / a.ctas_per_section;
  const uint32_t local = blockIdx.x - sec * a.ctas_per_section;
  const SectionEntry& e = a.sections[sec];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e), codec = EntryCodec(e);
  const bool rotate = EntryRotate(e);
  const Segment seg = SegmentOf(a, e, local);
  uint16_t* const base = a.view.layer_bases[layer];
  const bool vec = CacheVec(a.view, base);
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;
  const uint32_t groups_v = e.group ? (dim + e.group - 1u) / e.group : 0u;
  const uint32_t bits = codec == kInt4 ? 4 : (codec == kInt2 ? 2 : (codec == kRaw ? 16 : 8));

  for (uint32_t b = blockIdx.y; b < s.num_blocks; b += gridDim.y) {
    const uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    const uint64_t block_first = s.first_token + uint64_t{b} * s.block_tokens;
    const uint8_t* codes = section + sink_bytes;
    const uint8_t* params = section + e.params_rel;

    uint4 in[R][K];
    uint32_t tok[R], head[R];
    bool valid[R];
    float sf[R];
    uint16_t* dst[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint32_t v = (seg.cta * R + r) * teams + team_id;
      valid[r] = v < seg.vectors;
      tok[r] = seg.first_token + v / heads;
      head[r] = v % heads;
      sf[r] = 1.0f;
      dst[r] = valid[r] ? CacheVector(a.view, base, kv, block_first + tok[r], head[r]) : nullptr;
      const uint64_t vq = uint64_t{tok[r] - s.sink_tokens} * heads + head[r];
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t c = k * team + tl;
        in[r][k] = make_uint4(0, 0, 0, 0);
        if (!valid[r] || c >= chunks) continue;
        if (seg.raw) {
          in[r][k] =
              *reinterpret_cast<const uint4*>(section + RawOffset(s, tok[r], head[r]) + 16 * c);
        } else if (bits == 8) {
          const uint2 w = *reinterpret_cast<const uint2*>(codes + vq * dim + 8 * c);
          in[r][k].x = w.x;
          in[r][k].y = w.y;
        } else if (bits == 4) {
          in[r][k].x = *reinterpret_cast<const uint32_t*>(codes + (vq * dim + 8 * c) / 2);
        } else {
          in[r][k].x = *reinterpret_cast<const uint16_t*>(codes + (vq * dim + 8 * c) / 4);
        }
      }
      if (valid[r] && !seg.raw && bits == 8) {
        sf[r] = HalfBitsToF32(*reinterpret_cast<const uint16_t*>(params + 2 * vq));
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (seg.raw) {
        if (!valid[r]) continue;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          if (c < chunks) StoreChunk(dst[r] + 8 * c, in[r][k], vec);
        }
        continue;
      }
      float x[K][8];
      const uint64_t vq = uint64_t{tok[r] - s.sink_tokens} * heads + head[r];
      switch (codec) {
        case kFp8:
          DequantSymmetric<K>(in[r], true, sf[r], x);
          break;
        case kInt8:
          DequantSymmetric<K>(in[r], false, sf[r], x);
          break;
        case kInt4:
          DequantValueGroups<K, 4>(in[r], team, tl, chunks, e.group, valid[r],
                                   params + 4 * vq * groups_v, x);
          break;
        default:
          DequantValueGroups<K, 2>(in[r], team, tl, chunks, e.group, valid[r],
                                   params + 4 * vq * groups_v, x);
          break;
      }
      if (rotate) RotateInverse<K>(x, a.rot, team, tl);
      if (!valid[r]) continue;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t c = k * team + tl;
        if (c < chunks) StoreChunk(dst[r] + 8 * c, F32ToChunk<kBf16>(x[k]), vec);
      }
    }
  }
}

template <bool kBf16>
cudaError_t EncodeVectorsFor(const VectorArgs& args, int k, dim3 grid, size_t smem,
                             cudaStream_t stream) {
  switch (k) {
    case 1:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 1>);
      break;
    case 2:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 2>);
      break;
    default:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 4>);
      break;
  }
  return cudaGetLastError();
}

template <bool kBf16>
cudaError_t DecodeVectorsFor(const VectorArgs& args, int k, dim3 grid, cudaStream_t stream) {
  switch (k) {
    case 1:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 1>);
      break;
    case 2:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 2>);
      break;
    default:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 4>);
      break;
  }
  return cudaGetLastError();
}

}  // namespace

size_t VectorScratchBytes(int chunks_per_thread) {
  return size_t{kThreads} * 8 * static_cast<size_t>(chunks_per_thread) * sizeof(float);
}

cudaError_t LaunchEncodeVectors(const VectorArgs& args, bool bf16, int chunks_per_thread, dim3 grid,
                                size_t smem_bytes, cudaStream_t stream) {
  return bf16 ? EncodeVectorsFor<true>(args, chunks_per_thread, grid, smem_bytes, stream)
              : EncodeVectorsFor<false>(args, chunks_per_thread, grid, smem_bytes, stream);
}

cudaError_t LaunchDecodeVectors(const VectorArgs& args, bool bf16, int chunks_per_thread, dim3 grid,
                                cudaStream_t stream) {
  return bf16 ? DecodeVectorsFor<true>(args, chunks_per_thread, grid, stream)
              : DecodeVectorsFor<false>(args, chunks_per_thread, grid, stream);
}

}  // namespace kvault::kernels::cuda_detail
