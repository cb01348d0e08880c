#include "kvault/kernels/kv_view.h"

#include <string>

namespace kvault::kernels {

const char* KvLayoutName(KvLayout layout) {
  switch (layout) {
    case KvLayout::kContiguous:
      return "contiguous";
    case KvLayout::kVllmNhd:
      return "vllm-nhd";
    case KvLayout::kVllmHnd:
      return "vllm-hnd";
    case KvLayout::kFlashInferNhd:
      return "flashinfer-nhd";
    case KvLayout::kFlashInferHnd:
      return "flashinfer-hnd";
  }
  return "unknown";
}

Status MakePagedKvView(KvLayout layout, DType dtype, uint32_t num_layers, uint32_t kv_heads,
                       uint32_t head_dim, uint32_t page_tokens, uint32_t pages_in_cache,
                       std::span<uint16_t* const> layer_tensors, std::span<const int32_t> page_ids,
                       PagedKvView& view, PagedKvViewStorage& storage) {
  if (num_layers == 0 || kv_heads == 0 || head_dim == 0 || page_tokens == 0 ||
      pages_in_cache == 0) {
    return Status::InvalidArgument("paged view: every dimension must be nonzero");
  }
  const size_t want_ptrs = layout == KvLayout::kContiguous ? 1 : num_layers;
  if (layer_tensors.size() != want_ptrs) {
    return Status::InvalidArgument("paged view: expected " + std::to_string(want_ptrs) +
                                   " tensor pointers, got " + std::to_string(layer_tensors.size()));
  }
  for (int32_t id : page_ids) {
    if (id < 0 || static_cast<uint32_t>(id) >= pages_in_cache) {
      return Status::InvalidArgument("paged view: page id " + std::to_string(id) +
                                     " outside the cache of " + std::to_string(pages_in_cache) +
                                     " pages");
    }
  }
  const int64_t h = kv_heads, d = head_dim, p = page_tokens, n = pages_in_cache;
  view = PagedKvView{};
  view.layout = layout;
  view.dtype = dtype;
  view.num_layers = num_layers;
  view.kv_heads = kv_heads;
  view.head_dim = head_dim;
  view.page_tokens = page_tokens;
  storage.layer_bases.clear();
  switch (layout) {
    case KvLayout::kContiguous:
      if (pages_in_cache != 1 || page_ids.size() != 1) {
        return Status::InvalidArgument("contiguous view: the tensor is a single page, ids {0}");
      }
      view.kv_stride = p * h * d;
      view.page_stride = 0;
      view.slot_stride = h * d;
      view.head_stride = d;
      for (uint32_t l = 0; l < num_layers; ++l) {
        storage.layer_bases.push_back(layer_tensors[0] + int64_t{l} * 2 * p * h * d);
      }
      break;
    case KvLayout::kVllmNhd:
      view.kv_stride = n * p * h * d;
      view.page_stride = p * h * d;
      view.slot_stride = h * d;
      view.head_stride = d;
      break;
    case KvLayout::kVllmHnd:
      view.kv_stride = n * p * h * d;
      view.page_stride = p * h * d;
      view.slot_stride = d;
      view.head_stride = p * d;
      break;
    case KvLayout::kFlashInferNhd:
      view.kv_stride = p * h * d;
      view.page_stride = 2 * p * h * d;
      view.slot_stride = h * d;
      view.head_stride = d;
      break;
    case KvLayout::kFlashInferHnd:
      view.kv_stride = p * h * d;
      view.page_stride = 2 * p * h * d;
      view.slot_stride = d;
      view.head_stride = p * d;
      break;
    default:
      return Status::InvalidArgument("paged view: unknown layout");
  }
  if (layout != KvLayout::kContiguous) {
    storage.layer_bases.assign(layer_tensors.begin(), layer_tensors.end());
  }
  storage.page_ids.assign(page_ids.begin(), page_ids.end());
  view.layer_bases = storage.layer_bases.data();
  view.page_ids = storage.page_ids.data();
  view.num_pages = static_cast<uint32_t>(storage.page_ids.size());
  return Status::Ok();
}

}  // namespace kvault::kernels
