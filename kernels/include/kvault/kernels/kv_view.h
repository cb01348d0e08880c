#pragma once
// Where a sequence's KV lives in an engine's cache: a strided, paged view that covers the paged
// layouts of DESIGN.md §6 and the contiguous file layout. Element (layer, kv, token, head, dim)
// of the sequence is at
//   layer_base(layer) + kv * kv_stride + page * page_stride + slot * slot_stride
//                     + head * head_stride + dim
// with page = page_ids[token / page_tokens] and slot = token % page_tokens, all strides in
// elements (16-bit). The view does not own memory; pointers are host or device pointers
// depending on the path that receives it (for CUDA, `layer_bases` and `page_ids` point to
// device memory too).

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/common/dtype.h"
#include "kvault/common/result.h"

namespace kvault::kernels {

enum class KvLayout : uint8_t {
  kContiguous = 0,     // [layers][2][tokens][heads][dim], one tensor
  kVllmNhd = 1,        // per layer [2][num_blocks][block_size][heads][dim]
  kVllmHnd = 2,        // per layer [2][num_blocks][heads][block_size][dim] (physical order)
  kFlashInferNhd = 3,  // per layer [pages][2][page_size][heads][dim]
  kFlashInferHnd = 4,  // per layer [pages][2][heads][page_size][dim]
};

// "contiguous", "vllm-nhd", "vllm-hnd", "flashinfer-nhd", "flashinfer-hnd".
const char* KvLayoutName(KvLayout layout);

struct PagedKvView {
  KvLayout layout = KvLayout::kContiguous;
  DType dtype = DType::kF16;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  // One base pointer per layer (array of num_layers pointers).
  uint16_t* const* layer_bases = nullptr;
  int64_t kv_stride = 0;
  int64_t page_stride = 0;
  int64_t slot_stride = 0;
  int64_t head_stride = 0;
  uint32_t page_tokens = 0;
  const int32_t* page_ids = nullptr;  // engine block ids of the sequence, in token order
  uint32_t num_pages = 0;             // entries in page_ids

  // Tokens addressable through the page table.
  uint64_t tokens() const { return uint64_t{num_pages} * page_tokens; }
};

// Host-side storage for the arrays a view points to, so a view can be built by value.
struct PagedKvViewStorage {
  std::vector<uint16_t*> layer_bases;
  std::vector<int32_t> page_ids;
};

// Fills `view` and `storage` for `layout`. `layer_tensors` holds one pointer per layer (for
// kContiguous, a single pointer to the whole tensor; `page_tokens` is then the token count and
// `page_ids` must be {0}). `pages_in_cache` is the engine's number of blocks (bounds for ids).
// InvalidArgument for zero dims, a page id out of range, or a wrong pointer count.
Status MakePagedKvView(KvLayout layout, DType dtype, uint32_t num_layers, uint32_t kv_heads,
                       uint32_t head_dim, uint32_t page_tokens, uint32_t pages_in_cache,
                       std::span<uint16_t* const> layer_tensors, std::span<const int32_t> page_ids,
                       PagedKvView& view, PagedKvViewStorage& storage);

}  // namespace kvault::kernels
