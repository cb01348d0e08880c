// Kernel B: int4/int2 K sections, quantized per channel over groups of g tokens.
//
// Grid: x = sections of the launch x ctas_per_section, y = blocks (strided loop past 65535).
// A tile is one (head, token group) of one section: n <= g tokens x head_dim channels. Its teams
// (T lanes each, lane l owning chunks l, l + T, ... as in kernel A) read whole 16-byte rows of a
// token along head_dim.
//
// Encode: M teams share a tile (M chosen on the host so a team holds at most kKeySlots / K tokens);
// team m takes tokens m, m + M, .... Pass 1 copies the team's tokens into per-thread shared slots
// with cp.async (a thread only ever reads the slots it filled itself), converts, rotates and keeps
// a running per-channel min/max; the M partial results meet in shared memory. Scales/zeros are
// written by team 0 as 32-byte rows ([head][group][channel] order). Pass 2 re-reads the slots
// (refilled from global memory only when the tile did not fit), rotates again (deterministic),
// quantizes and stores 2 or 4 bytes of codes per chunk and token. Loops have team-uniform trip
// counts so every lane reaches every shuffle and barrier.
//
// Decode: one team per (tile, run of kKeyDecodeTokens tokens); each lane loads the (scale, zero)
// of its channels once, then dequantizes its tokens four at a time, rotates back and stores,
// walking the run's tokens with a TokenCursor (no division per token).

#include "cuda/codec_kernels.cuh"

namespace kvault::kernels::cuda_detail {
namespace {

template <int K>
__device__ __forceinline__ void InitMinMax(float (&mn)[K][8], float (&mx)[K][8]) {
#pragma unroll
  for (int k = 0; k < K; ++k) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      mn[k][i] = __int_as_float(0x7F800000);
      mx[k][i] = __int_as_float(0xFF800000);
    }
  }
}

template <bool kBf16, int K, int kBits>
__global__ void __launch_bounds__(kThreads) EncodeKeysKernel(const __grid_constant__ KeyArgs a) {
  uint4* const smem = DynamicSmem<uint4>();
  uint4* slots = smem;                                                 // [kKeySlots][kThreads]
  float* red = reinterpret_cast<float*>(smem + kKeySlots * kThreads);  // [2][K * 8][kThreads]
  constexpr int kSlotTokens = kKeySlots / K;
  const float levels = static_cast<float>((1u << kBits) - 1u);

  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t M = a.teams_per_tile;
  const uint32_t m = team_id & (M - 1u);
  const uint32_t sec = blockIdx.x / a.ctas_per_section;
  const uint32_t local = blockIdx.x - sec * a.ctas_per_section;
  const SectionEntry& e = a.sections[sec];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e);
  const bool rotate = EntryRotate(e);
  const uint32_t g = e.group;
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint32_t quantized = s.block_tokens - s.sink_tokens;
  const uint32_t tile = local * (teams / M) + team_id / M;
  const bool tile_valid = tile < heads * a.groups;
  const uint32_t h = tile_valid ? tile / a.groups : 0;
  const uint32_t j = tile_valid ? tile % a.groups : 0;
  const uint32_t n = tile_valid ? MinU32(g, quantized - j * g) : 0;
  uint16_t* const base = a.view.layer_bases[layer];
  const bool vec = CacheVec(a.view, base);
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;
  const uint32_t per_team = a.tokens_per_team;

  for (uint32_t b = blockIdx.y; b < s.num_blocks; b += gridDim.y) {
    uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    if (a.zero_pad && local == 0) ZeroPadding(section, e);
    const uint64_t tile_first =
        s.first_token + uint64_t{b} * s.block_tokens + s.sink_tokens + uint64_t{j} * g;

    // Copies tokens [u0, u0 + count) of this team (tile tokens m + M * u) into the slots.
    auto fill = [&](uint32_t u0, uint32_t count) {
      for (uint32_t ul = 0; ul < count; ++ul) {
        const uint32_t i = m + M * (u0 + ul);
        if (i >= n) continue;
        const uint16_t* src = CacheVector(a.view, base, kv, tile_first + i, h);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          if (c >= chunks) continue;
          uint4* slot = &slots[(ul * K + k) * kThreads + threadIdx.x];
          if (vec) {
            CpAsync16(slot, src + 8 * c);
          } else {
            *slot = LoadChunk(src + 8 * c, false);
          }
        }
      }
      CpAsyncWaitAll();
    };
    auto token_values = [&](uint32_t ul, float(&x)[K][8]) {
#pragma unroll
      for (int k = 0; k < K; ++k)
        ChunkToF32<kBf16>(slots[(ul * K + k) * kThreads + threadIdx.x], x[k]);
      if (rotate) RotateForward<K>(x, a.rot, team, tl);
    };

    // Pass 1: per-channel min/max over this team's tokens.
    float mn[K][8], mx[K][8];
    InitMinMax<K>(mn, mx);
    for (uint32_t sub = 0; sub < a.subs; ++sub) {
      const uint32_t u0 = sub * kSlotTokens;
      const uint32_t count = MinU32(static_cast<uint32_t>(kSlotTokens), per_team - u0);
      fill(u0, count);
      for (uint32_t ul = 0; ul < count; ++ul) {
        float x[K][8];
        token_values(ul, x);
        if (m + M * (u0 + ul) >= n) continue;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          if (k * team + tl >= chunks) continue;
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            mn[k][i] = FMin(mn[k][i], x[k][i]);  // NaN ignored; -0/+0 fixed in MakeGroupParams
            mx[k][i] = FMax(mx[k][i], x[k][i]);
          }
        }
      }
    }
    // The M teams of a tile combine their partial results.
    if (M > 1) {
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          red[(k * 8 + i) * kThreads + threadIdx.x] = mn[k][i];
          red[((K + k) * 8 + i) * kThreads + threadIdx.x] = mx[k][i];
        }
      }
      __syncthreads();
      const uint32_t first_team = team_id - m;
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          float a_mn = __int_as_float(0x7F800000), a_mx = __int_as_float(0xFF800000);
          for (uint32_t t = 0; t < M; ++t) {
            const uint32_t thread = (first_team + t) * team + tl;
            a_mn = FMin(a_mn, red[(k * 8 + i) * kThreads + thread]);
            a_mx = FMax(a_mx, red[((K + k) * 8 + i) * kThreads + thread]);
          }
          mn[k][i] = a_mn;
          mx[k][i] = a_mx;
        }
      }
      __syncthreads();
    }
    // Scales and zero-points of this lane's channels.
    AsymQuantizer quant[K][8];
    uint8_t* params = section + e.params_rel;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t c = k * team + tl;
      uint32_t w[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const GroupParams p = MakeGroupParams<kBits>(mn[k][i], mx[k][i]);
        quant[k][i] = MakeAsymQuantizer(p);
        w[i] = p.scale_bits | (p.zero_bits << 16);
      }
      if (tile_valid && m == 0 && c < chunks) {
        uint8_t* row = params + ((uint64_t{h} * a.groups + j) * dim + 8 * c) * 4;
        StoreU128(row, make_uint4(w[0], w[1], w[2], w[3]));
        StoreU128(row + 16, make_uint4(w[4], w[5], w[6], w[7]));
      }
    }
    // Pass 2: quantize and pack.
    uint8_t* codes = section + sink_bytes;
    for (uint32_t sub = 0; sub < a.subs; ++sub) {
      const uint32_t u0 = sub * kSlotTokens;
      const uint32_t count = MinU32(static_cast<uint32_t>(kSlotTokens), per_team - u0);
      if (a.subs > 1) fill(u0, count);
      for (uint32_t ul = 0; ul < count; ++ul) {
        float x[K][8];
        token_values(ul, x);
        const uint32_t i = m + M * (u0 + ul);
        if (i >= n) continue;
        const uint64_t vq = (uint64_t{j} * g + i) * heads + h;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          if (c >= chunks) continue;
          uint32_t t[8];
#pragma unroll
          for (int q = 0; q < 8; ++q) t[q] = QuantizeAsym(x[k][q], quant[k][q], levels);
          uint32_t hi;
          const uint32_t word = PackCodes<kBits>(t, hi);
          if constexpr (kBits == 4) {
            *reinterpret_cast<uint32_t*>(codes + (vq * dim + 8 * c) / 2) = word;
          } else {
            *reinterpret_cast<uint16_t*>(codes + (vq * dim + 8 * c) / 4) =
                static_cast<uint16_t>(word);
          }
        }
      }
    }
  }
}

template <bool kBf16, int K, int kBits>
__global__ void __launch_bounds__(kThreads) DecodeKeysKernel(const __grid_constant__ KeyArgs a) {
  constexpr int kBatch = 4;
  const BatchShape& s = a.shape;
  const uint32_t team = 1u << s.log2_team;
  const uint32_t tl = threadIdx.x & (team - 1u);
  const uint32_t team_id = threadIdx.x >> s.log2_team;
  const uint32_t teams = kThreads >> s.log2_team;
  const uint32_t sec = blockIdx.x / a.ctas_per_section;
  const uint32_t local = blockIdx.x - sec * a.ctas_per_section;
  const SectionEntry& e = a.sections[sec];
  const uint32_t layer = EntryLayer(e), kv = EntryKv(e);
  const bool rotate = EntryRotate(e);
  const uint32_t g = e.group;
  const uint32_t heads = s.kv_heads, dim = s.head_dim, chunks = s.chunks;
  const uint32_t quantized = s.block_tokens - s.sink_tokens;
  const uint32_t item = local * teams + team_id;
  const bool item_valid = item < heads * a.groups * a.subs;
  const uint32_t tile = item_valid ? item / a.subs : 0;
  const uint32_t sub = item_valid ? item % a.subs : 0;
  const uint32_t h = tile / a.groups, j = tile % a.groups;
  const uint32_t n = item_valid ? MinU32(g, quantized - j * g) : 0;
  const uint32_t i0 = sub * a.tokens_per_team;
  const uint32_t i1 = MinU32(n, i0 + a.tokens_per_team);
  uint16_t* const base = a.view.layer_bases[layer];
  const bool vec = CacheVec(a.view, base);
  const uint64_t sink_bytes = uint64_t{s.sink_tokens} * heads * dim * 2;

  for (uint32_t b = blockIdx.y; b < s.num_blocks; b += gridDim.y) {
    const uint8_t* section = a.payloads + b * s.payload_stride + e.offset;
    const uint8_t* codes = section + sink_bytes;
    const uint8_t* params = section + e.params_rel;
    const uint64_t tile_first =
        s.first_token + uint64_t{b} * s.block_tokens + s.sink_tokens + uint64_t{j} * g;
    float sf[K][8], zf[K][8];
#pragma unroll
    for (int k = 0; k < K; ++k) {
      const uint32_t c = k * team + tl;
      uint4 lo = make_uint4(0, 0, 0, 0), hi = make_uint4(0, 0, 0, 0);
      if (i0 < i1 && c < chunks) {
        const uint8_t* row = params + ((uint64_t{h} * a.groups + j) * dim + 8 * c) * 4;
        lo = LoadU128(row);
        hi = LoadU128(row + 16);
      }
      const uint32_t w[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        sf[k][i] = HalfBitsToF32(w[i] & 0xFFFFu);
        zf[k][i] = HalfBitsToF32(w[i] >> 16);
      }
    }
    TokenCursor cursor(a.view, tile_first + i0);
    for (uint32_t run = i0; run < i0 + a.tokens_per_team; run += kBatch) {
      uint32_t cw[kBatch][K];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t i = run + u;
        const uint64_t vq = (uint64_t{j} * g + i) * heads + h;
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          cw[u][k] = 0;
          if (i >= i1 || c >= chunks) continue;
          if constexpr (kBits == 4) {
            cw[u][k] = *reinterpret_cast<const uint32_t*>(codes + (vq * dim + 8 * c) / 2);
          } else {
            cw[u][k] = *reinterpret_cast<const uint16_t*>(codes + (vq * dim + 8 * c) / 4);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const uint32_t i = run + u;
        float x[K][8];
#pragma unroll
        for (int k = 0; k < K; ++k) {
#pragma unroll
          for (int q = 0; q < 8; ++q) {
            x[k][q] = __fmaf_rn(SmallUintToF32(CodeAt<kBits>(cw[u][k], 0, q)), sf[k][q], zf[k][q]);
          }
        }
        if (rotate) RotateInverse<K>(x, a.rot, team, tl);
        if (i >= i1) continue;  // and so is every later token of the run
        uint16_t* dst = cursor.Vector(a.view, base, kv, h);
        cursor.Next(a.view);
#pragma unroll
        for (int k = 0; k < K; ++k) {
          const uint32_t c = k * team + tl;
          if (c < chunks) StoreChunk(dst + 8 * c, F32ToChunk<kBf16>(x[k]), vec);
        }
      }
    }
  }
}

template <bool kBf16, int K>
cudaError_t EncodeKeysFor(const KeyArgs& args, int bits, dim3 grid, size_t smem,
                          cudaStream_t stream) {
  cudaError_t err = cudaSuccess;
  if (bits == 4) {
    if (smem > 48 * 1024) {
      err =
          cudaFuncSetAttribute(EncodeKeysKernel<kBf16, K, 4>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    }
    if (err == cudaSuccess) KVAULT_LAUNCH(grid, smem, stream, args, EncodeKeysKernel<kBf16, K, 4>);
  } else {
    if (smem > 48 * 1024) {
      err =
          cudaFuncSetAttribute(EncodeKeysKernel<kBf16, K, 2>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    }
    if (err == cudaSuccess) KVAULT_LAUNCH(grid, smem, stream, args, EncodeKeysKernel<kBf16, K, 2>);
  }
  return err != cudaSuccess ? err : cudaGetLastError();
}

template <bool kBf16, int K>
cudaError_t DecodeKeysFor(const KeyArgs& args, int bits, dim3 grid, cudaStream_t stream) {
  if (bits == 4) {
    KVAULT_LAUNCH(grid, 0, stream, args, DecodeKeysKernel<kBf16, K, 4>);
  } else {
    KVAULT_LAUNCH(grid, 0, stream, args, DecodeKeysKernel<kBf16, K, 2>);
  }
  return cudaGetLastError();
}

template <bool kBf16>
cudaError_t EncodeKeysDtype(const KeyArgs& args, int k, int bits, dim3 grid, cudaStream_t stream) {
  const size_t smem = KeyEncodeSmemBytes(k, args.teams_per_tile);
  switch (k) {
    case 1:
      return EncodeKeysFor<kBf16, 1>(args, bits, grid, smem, stream);
    case 2:
      return EncodeKeysFor<kBf16, 2>(args, bits, grid, smem, stream);
    default:
      return EncodeKeysFor<kBf16, 4>(args, bits, grid, smem, stream);
  }
}

template <bool kBf16>
cudaError_t DecodeKeysDtype(const KeyArgs& args, int k, int bits, dim3 grid, cudaStream_t stream) {
  switch (k) {
    case 1:
      return DecodeKeysFor<kBf16, 1>(args, bits, grid, stream);
    case 2:
      return DecodeKeysFor<kBf16, 2>(args, bits, grid, stream);
    default:
      return DecodeKeysFor<kBf16, 4>(args, bits, grid, stream);
  }
}

}  // namespace

size_t KeyEncodeSmemBytes(int chunks_per_thread, uint32_t teams_per_tile) {
  size_t bytes = size_t{kKeySlots} * kThreads * sizeof(uint4);
  if (teams_per_tile > 1) {
    bytes += size_t{2} * 8 * static_cast<size_t>(chunks_per_thread) * kThreads * sizeof(float);
  }
  return bytes;
}

cudaError_t LaunchEncodeKeys(const KeyArgs& args, bool bf16, int chunks_per_thread, int bits,
                             dim3 grid, cudaStream_t stream) {
  return bf16 ? EncodeKeysDtype<true>(args, chunks_per_thread, bits, grid, stream)
              : EncodeKeysDtype<false>(args, chunks_per_thread, bits, grid, stream);
}

cudaError_t LaunchDecodeKeys(const KeyArgs& args, bool bf16, int chunks_per_thread, int bits,
                             dim3 grid, cudaStream_t stream) {
  return bf16 ? DecodeKeysDtype<true>(args, chunks_per_thread, bits, grid, stream)
              : DecodeKeysDtype<false>(args, chunks_per_thread, bits, grid, stream);
}

}  // namespace kvault::kernels::cuda_detail
