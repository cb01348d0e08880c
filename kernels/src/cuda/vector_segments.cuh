#pragma once
// Kernel A's addressing (vector_kernels.cu): which segment of which section a CTA covers, where
// a team's vectors lie in a section, and where a segment's tokens lie in the engine's paged
// cache, all found without dividing in the inner loops. Device code, included by
// vector_kernels.cu only.

#include "cuda/codec_kernels.cuh"

namespace kvault::kernels::cuda_detail {

struct Segment {
  uint32_t first_token;  // within the block
  uint32_t vectors;      // tokens x kv_heads
  uint32_t cta;          // index of this CTA inside the segment
  bool raw;              // copy 16-bit elements as they are
};

// kCodec: the codec of every section of the launch (kRaw also for launches of sinks only).
template <uint32_t kCodec>
__device__ __forceinline__ Segment SegmentOf(const VectorArgs& a, uint32_t local) {
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
    seg.raw = kCodec == kRaw;
  }
  return seg;
}

// Byte offset, inside a section, of the raw 16-bit vector v of a segment (sinks and raw codec):
// vector (token, head) is at (token * kv_heads + head) * head_dim * 2, and token * kv_heads + head
// = seg.first_token * kv_heads + v.
__device__ __forceinline__ uint64_t RawOffset(const BatchShape& s, const Segment& seg, uint32_t v) {
  return (uint64_t{seg.first_token} * s.kv_heads + v) * s.head_dim * 2;
}

// A team's vectors in a segment, v = v0 + r * teams (r < R), as (token, head): token relative to
// the segment, stepped without dividing (VectorArgs::step_tokens / step_heads).
struct VectorWalk {
  uint32_t v, token, head;
  __device__ __forceinline__ VectorWalk(const VectorArgs& a, uint32_t v0) : v(v0) {
    token = FastDiv(v0, a.div_heads);
    head = v0 - token * a.shape.kv_heads;
  }
  __device__ __forceinline__ void Next(const VectorArgs& a, uint32_t teams) {
    v += teams;
    token += a.step_tokens;
    head += a.step_heads;
    if (head >= a.shape.kv_heads) {
      head -= a.shape.kv_heads;
      ++token;
    }
  }
};

// Where a segment of one block starts in the cache: its first token is slot `slot0` of page
// index `page0`; the cache vectors of its tokens are found from there without dividing.
struct SegmentPages {
  const int32_t* page_ids;  // view.page_ids + page0
  uint32_t slot0;           // < page_tokens
  uint32_t room;            // page_tokens - slot0 (>= 1): tokens left in the first page

  __device__ __forceinline__ SegmentPages(const VectorArgs& a, uint64_t first) {
    const uint32_t pt = a.view.page_tokens;
    uint64_t page0;
    if ((first >> 32) == 0) {
      const uint32_t f = static_cast<uint32_t>(first);
      const uint32_t q = FastDiv(f, a.div_page);
      page0 = q;
      slot0 = f - q * pt;
    } else {
      page0 = first / pt;
      slot0 = static_cast<uint32_t>(first - page0 * pt);
    }
    page_ids = a.view.page_ids + page0;
    room = pt - slot0;
  }

  // Element (kv, first + t, head, 0), `kv_base` = layer base + kv * kv_stride: the element
  // CacheVector returns. With t = qa * pt + ra (ra < pt): first + t = (page0 + qa) * pt + slot0 +
  // ra and slot0 + ra < 2 pt, so the page index is page0 + qa + (ra >= room).
  __device__ __forceinline__ uint16_t* Vector(const VectorArgs& a, uint16_t* kv_base, uint32_t t,
                                              uint32_t head) const {
    const DeviceView& view = a.view;
    const uint32_t qa = FastDiv(t, a.div_page);
    const uint32_t ra = t - qa * view.page_tokens;
    const bool next = ra >= room;
    const uint32_t q = next ? qa + 1u : qa;
    const uint32_t slot = next ? ra - room : slot0 + ra;
    const int64_t page = page_ids[q];
    return kv_base + page * view.page_stride + static_cast<int64_t>(slot) * view.slot_stride +
           static_cast<int64_t>(head) * view.head_stride;
  }
};

}  // namespace kvault::kernels::cuda_detail
