// Kernel A: per (token, head) vector encode/decode.
//
// Grid: x = ctas_per_section, y = sections of the launch, z = blocks (strided loop past 65535);
// every section of a launch has the codec the kernel is specialized on. A CTA covers one segment
// of one section: the sink tokens [0, sink) (copied raw) or the body
// [sink, block_tokens). Its 128 threads form teams of T lanes (a power of two, at most 32, chosen
// per launch by cuda_codec.cu TeamFor so that each lane has K = 1, 2 or 4 chunks: fp8 and int8
// use 4); a team owns one vector at a time, lane l holding chunks l, l + T, ... (8 elements = 16
// bytes each), so a warp reads whole 16-byte-per-lane rows along head_dim. Each team handles
// R = 4 / K vectors (K = chunks per lane), all loaded (encode) or addressed and loaded (decode)
// before any is processed.
//
//  raw / sinks : 16-byte copies.
//  fp8 / int8  : fp32, optional rotation (shuffle butterflies), amax by a shuffle max over the
//                team, fp16 scale, x / s per element (ExactQuotient: one reciprocal per
//                vector, two FMAs per element), 8 codes stored as one 8-byte word per chunk.
//  int4 / int2 V (groups of g channels): a chunk lies in one group when g % 8 == 0 and g / 8 is a
//                power of two (or g >= head_dim): min/max per chunk, then across the k chunks of a
//                lane and across lanes with xor shuffles limited to the group; otherwise the
//                general path stages the vector in shared memory and scans each group; each
//                group's codes come from an AsymQuantizer (one reciprocal per group, no division
//                per element).
//  decode      : fp32 results to fp16/bf16 two at a time (FromF32x2).

#include "cuda/codec_kernels.cuh"
#include "cuda/vector_segments.cuh"

namespace kvault::kernels::cuda_detail {
namespace {

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
  constexpr int kMaxCode = kFp8 ? 448 : 127;
  uint32_t sbits = F32ToHalfBits(DivideForScale<kMaxCode>(amax));
  if (HalfBitsToF32(sbits) == 0.0f) sbits = kHalfOne;
  const float sf = HalfBitsToF32(sbits);
  if (!valid) return;
  // The divider only for an infinite scale (an infinite amax); ExactQuotient otherwise. The
  // choice is the team's (one vector), so lanes of a team never diverge on it.
  const bool divide = sbits == kHalfInf;
  const float rf = __frcp_rn(sf);
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const uint32_t c = k * team + tl;
    if (c >= chunks) continue;
    float q[8];
    if (divide) {
#pragma unroll
      for (int i = 0; i < 8; ++i) q[i] = __fdiv_rn(x[k][i], sf);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) q[i] = ExactQuotient(x[k][i], sf, rf);
    }
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
      const GroupParams p = MakeGroupParams<kBits>(mn[k], mx[k]);
      const AsymQuantizer quant = MakeAsymQuantizer(p);
      uint32_t t[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) t[i] = QuantizeAsym(x[k][i], quant, levels);
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
        const GroupParams p = MakeGroupParams<kBits>(mn, mx);
        const AsymQuantizer quant = MakeAsymQuantizer(p);
        if (lo >= c0) StoreU32(params + 4 * j, p.scale_bits | (p.zero_bits << 16));
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (c0 + i >= lo && c0 + i < hi) t[i] = QuantizeAsym(x[k][i], quant, levels);
        }
      }
      StoreChunkCodes<kBits>(codes, c, t);
    }
  }
  __syncwarp();
}

// Resident CTAs per SM the register allocation is bounded for (ptxas -v, CUDA 13, sm_90, no
// spills): 8 (64 registers) for copies and fp8/int8; int4/int2 would spill there, so 5 (encode,
// <= 96 registers) and 6 (decode, <= 80).
constexpr int MinCtasPerSm(uint32_t codec, bool encode) {
  return codec == kInt4 || codec == kInt2 ? (encode ? 5 : 6) : 8;
}

template <bool kBf16, int K, uint32_t kCodec>
__global__ void __launch_bounds__(kThreads, MinCtasPerSm(kCodec, true))
    EncodeVectorsKernel(const __grid_constant__ VectorArgs a) {
  constexpr int R = VectorsPerTeam(K);
  float* const scratch_all = DynamicSmem<float>();
  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t local = blockIdx.x;
  const SectionEntry& e = a.sections[blockIdx.y];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e);
  constexpr uint32_t codec = kCodec;
  const bool rotate = EntryRotate(e);
  const Segment seg = SegmentOf<kCodec>(a, local);
  uint16_t* const base = a.view.layer_bases[layer];
  uint16_t* const kv_base = base + kv * a.view.kv_stride;
  const bool vec = CacheVec(a.view, base);
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;
  const uint32_t groups_v = e.group ? (dim + e.group - 1u) / e.group : 0u;
  float* scratch = scratch_all + team_id * team * 8 * K;
  const uint32_t v0 = seg.cta * R * teams + team_id;

  for (uint32_t b = blockIdx.z; b < s.num_blocks; b += gridDim.z) {
    uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    if (local == 0) ZeroPadding(section, e);
    const SegmentPages pages(a, s.first_token + uint64_t{b} * s.block_tokens + seg.first_token);

    uint4 in[R][K];
    VectorWalk w(a, v0);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r > 0) w.Next(a, teams);
      const bool valid = w.v < seg.vectors;
      const uint16_t* src = valid ? pages.Vector(a, kv_base, w.token, w.head) : nullptr;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t c = k * team + tl;
        in[r][k] = (valid && c < chunks) ? LoadChunk(src + 8 * c, vec) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint32_t v = v0 + r * teams;
      const bool valid = v < seg.vectors;
      if (seg.raw) {
        if (!valid) continue;
        uint8_t* dst = section + RawOffset(s, seg, v);
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
      // A quantized vector is in the body, whose segment starts at the first non-sink token: its
      // index among the section's quantized vectors, (token - sink) * heads + head, is v.
      const uint64_t vq = v;
      uint8_t* codes = section + sink_bytes;
      uint8_t* params = section + e.params_rel;
      switch (codec) {
        case kFp8:
          EncodeSymmetric<K, true>(x, team, tl, chunks, valid, codes + vq * dim, params + 2 * vq);
          break;
        case kInt8:
          EncodeSymmetric<K, false>(x, team, tl, chunks, valid, codes + vq * dim, params + 2 * vq);
          break;
        case kInt4:
          EncodeValueGroups<K, 4>(x, team, tl, chunks, dim, e.group, valid, codes + vq * dim / 2,
                                  params + 4 * vq * groups_v, scratch);
          break;
        case kInt2:
          EncodeValueGroups<K, 2>(x, team, tl, chunks, dim, e.group, valid, codes + vq * dim / 4,
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

template <bool kBf16, int K, uint32_t kCodec>
__global__ void __launch_bounds__(kThreads, MinCtasPerSm(kCodec, false))
    DecodeVectorsKernel(const __grid_constant__ VectorArgs a) {
  constexpr int R = VectorsPerTeam(K);
  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t local = blockIdx.x;
  const SectionEntry& e = a.sections[blockIdx.y];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e);
  constexpr uint32_t codec = kCodec;
  const bool rotate = EntryRotate(e);
  const Segment seg = SegmentOf<kCodec>(a, local);
  uint16_t* const base = a.view.layer_bases[layer];
  uint16_t* const kv_base = base + kv * a.view.kv_stride;
  const bool vec = CacheVec(a.view, base);
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;
  const uint32_t groups_v = e.group ? (dim + e.group - 1u) / e.group : 0u;
  constexpr uint32_t bits = codec == kInt4 ? 4 : (codec == kInt2 ? 2 : (codec == kRaw ? 16 : 8));

  const uint32_t v0 = seg.cta * R * teams + team_id;

  for (uint32_t b = blockIdx.z; b < s.num_blocks; b += gridDim.z) {
    const uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    const SegmentPages pages(a, s.first_token + uint64_t{b} * s.block_tokens + seg.first_token);
    const uint8_t* codes = section + sink_bytes;
    const uint8_t* params = section + e.params_rel;

    uint4 in[R][K];
    bool valid[R];
    float sf[R];
    uint16_t* dst[R];
    VectorWalk w(a, v0);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r > 0) w.Next(a, teams);
      valid[r] = w.v < seg.vectors;
      sf[r] = 1.0f;
      dst[r] = valid[r] ? pages.Vector(a, kv_base, w.token, w.head) : nullptr;
      const uint64_t vq = w.v;  // body vectors only (see the encoder)
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const uint32_t c = k * team + tl;
        in[r][k] = make_uint4(0, 0, 0, 0);
        if (!valid[r] || c >= chunks) continue;
        if (seg.raw) {
          in[r][k] = *reinterpret_cast<const uint4*>(section + RawOffset(s, seg, w.v) + 16 * c);
        } else if constexpr (bits == 8) {
          const uint2 w = *reinterpret_cast<const uint2*>(codes + vq * dim + 8 * c);
          in[r][k].x = w.x;
          in[r][k].y = w.y;
        } else if constexpr (bits == 4) {
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
      const uint64_t vq = v0 + r * teams;
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

template <bool kBf16, uint32_t kCodec>
cudaError_t EncodeVectorsFor(const VectorArgs& args, int k, dim3 grid, size_t smem,
                             cudaStream_t stream) {
  switch (k) {
    case 1:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 1, kCodec>);
      break;
    case 2:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 2, kCodec>);
      break;
    default:
      KVAULT_LAUNCH(grid, smem, stream, args, EncodeVectorsKernel<kBf16, 4, kCodec>);
      break;
  }
  return cudaGetLastError();
}

template <bool kBf16, uint32_t kCodec>
cudaError_t DecodeVectorsFor(const VectorArgs& args, int k, dim3 grid, cudaStream_t stream) {
  switch (k) {
    case 1:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 1, kCodec>);
      break;
    case 2:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 2, kCodec>);
      break;
    default:
      KVAULT_LAUNCH(grid, 0, stream, args, DecodeVectorsKernel<kBf16, 4, kCodec>);
      break;
  }
  return cudaGetLastError();
}

template <bool kBf16>
cudaError_t EncodeVectorsFor(const VectorArgs& args, uint32_t codec, int k, dim3 grid,
                             size_t smem, cudaStream_t stream) {
  switch (codec) {
    case kFp8:
      return EncodeVectorsFor<kBf16, kFp8>(args, k, grid, smem, stream);
    case kInt8:
      return EncodeVectorsFor<kBf16, kInt8>(args, k, grid, smem, stream);
    case kInt4:
      return EncodeVectorsFor<kBf16, kInt4>(args, k, grid, smem, stream);
    case kInt2:
      return EncodeVectorsFor<kBf16, kInt2>(args, k, grid, smem, stream);
    default:
      return EncodeVectorsFor<kBf16, kRaw>(args, k, grid, smem, stream);
  }
}

template <bool kBf16>
cudaError_t DecodeVectorsFor(const VectorArgs& args, uint32_t codec, int k, dim3 grid,
                             cudaStream_t stream) {
  switch (codec) {
    case kFp8:
      return DecodeVectorsFor<kBf16, kFp8>(args, k, grid, stream);
    case kInt8:
      return DecodeVectorsFor<kBf16, kInt8>(args, k, grid, stream);
    case kInt4:
      return DecodeVectorsFor<kBf16, kInt4>(args, k, grid, stream);
    case kInt2:
      return DecodeVectorsFor<kBf16, kInt2>(args, k, grid, stream);
    default:
      return DecodeVectorsFor<kBf16, kRaw>(args, k, grid, stream);
  }
}

}  // namespace

size_t VectorScratchBytes(int chunks_per_thread) {
  return size_t{kThreads} * 8 * static_cast<size_t>(chunks_per_thread) * sizeof(float);
}

cudaError_t LaunchEncodeVectors(const VectorArgs& args, bool bf16, uint32_t codec,
                                int chunks_per_thread, dim3 grid, size_t smem_bytes,
                                cudaStream_t stream) {
  return bf16 ? EncodeVectorsFor<true>(args, codec, chunks_per_thread, grid, smem_bytes, stream)
              : EncodeVectorsFor<false>(args, codec, chunks_per_thread, grid, smem_bytes, stream);
}

cudaError_t LaunchDecodeVectors(const VectorArgs& args, bool bf16, uint32_t codec,
                                int chunks_per_thread, dim3 grid, cudaStream_t stream) {
  return bf16 ? DecodeVectorsFor<true>(args, codec, chunks_per_thread, grid, stream)
              : DecodeVectorsFor<false>(args, codec, chunks_per_thread, grid, stream);
}

}  // namespace kvault::kernels::cuda_detail
