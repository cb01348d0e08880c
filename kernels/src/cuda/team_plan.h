#pragma once
// How each launch of the CUDA codec kernels splits a head vector across lanes (cuda_codec.cu).
// Host-only arithmetic, no CUDA types, so that CPU tests can check it.
//
// A head vector of head_dim elements is `chunks` = head_dim / 8 chunks of 16 bytes. A launch gives
// each vector a team of 2^log2_team lanes (at most 32), each lane holding K = 1, 2 or 4 chunks
// (lane l: chunks l, l + team, ...). Any split writes the same bytes; it only changes speed.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"

namespace kvault::kernels::cuda_detail {

struct Team {
  uint32_t log2_team = 0;
  int chunks_per_lane = 1;  // K
};

inline uint32_t TeamLog2Ceil(uint64_t v) {
  uint32_t l = 0;
  while ((uint64_t{1} << l) < v) ++l;
  return l;
}

// Chunks per lane each kernel runs fastest with, measured on an H200 at head dim 128
// (kernels/src/cuda/PERF_NOTES.md, 2026-11-27): fp8 and int8 amortize a vector's scale,
// shuffles and addressing over 4 chunks per lane (fp8 encode 0.52x -> 0.77x, decode 0.73x ->
// 0.86x of a device copy); copies lose with fewer lanes; the int4/int2 key kernel (B) loses with
// fewer lanes when encoding and gains with 2 chunks when decoding, as do the int4/int2 value
// sections that kernel A decodes. `key_kernel`: kernel B (then `codec` is not used).
inline int PreferredChunksPerLane(CodecId codec, bool encode, bool key_kernel) {
  if (key_kernel) return encode ? 1 : 2;
  switch (codec) {
    case CodecId::kFp8:
    case CodecId::kInt8:
      return 4;
    case CodecId::kInt4:
    case CodecId::kInt2:
      return encode ? 1 : 2;
    case CodecId::kRaw:
      return 1;
  }
  return 1;
}

// The team for `preferred` chunks per lane (1, 2 or 4), or for `forced_lanes` lanes when set (a
// tuning override), always within 32 lanes and K <= 4 (head_dim <= 1024). chunks >= 1.
inline Team TeamFor(uint32_t chunks, int preferred, std::optional<uint32_t> forced_lanes) {
  const uint32_t log2_chunks = TeamLog2Ceil(chunks);
  const uint32_t most = std::min<uint32_t>(5, log2_chunks);
  const uint32_t fewest = std::min(most, log2_chunks >= 2 ? log2_chunks - 2 : 0u);  // K <= 4
  const uint64_t per = static_cast<uint64_t>(std::max(preferred, 1));
  const uint32_t wanted = forced_lanes ? TeamLog2Ceil(std::max<uint32_t>(*forced_lanes, 1))
                                       : TeamLog2Ceil((chunks + per - 1) / per);
  Team t;
  t.log2_team = std::clamp(wanted, fewest, most);
  const uint64_t lanes = uint64_t{1} << t.log2_team;
  const uint64_t per_lane = (chunks + lanes - 1) / lanes;
  t.chunks_per_lane = per_lane <= 1 ? 1 : (per_lane <= 2 ? 2 : 4);
  return t;
}

// The value of KVAULT_CUDA_VECTOR_LANES (`text`, null when unset): the lanes to force, a power of
// two from 1 to 32, or nullopt when unset or empty. Anything else is InvalidArgument with the
// reason (the caller then keeps the measured splits).
inline Result<std::optional<uint32_t>> ParseForcedLanes(const char* text) {
  if (text == nullptr || *text == '\0') return std::optional<uint32_t>();
  uint32_t v = 0;
  const char* p = text;
  for (; *p >= '0' && *p <= '9' && v <= 32; ++p) v = v * 10 + static_cast<uint32_t>(*p - '0');
  if (*p != '\0' || v < 1 || v > 32 || (v & (v - 1)) != 0) {
    return Status::InvalidArgument("KVAULT_CUDA_VECTOR_LANES='" + std::string(text) +
                                   "' is not a power of two from 1 to 32");
  }
  return std::optional<uint32_t>(v);
}

}  // namespace kvault::kernels::cuda_detail
