// CheckTensorLike (py_tensor_like.h).

#include "py_tensor_like.h"

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <vector>

namespace kvault::python {
namespace {

// The sizes of the layout's physical dimensions, outermost first (kv_view.h), with the layers
// in front for one tensor holding them all.
std::vector<uint64_t> PhysicalDims(const PagedKvCache& c, bool stacked) {
  const uint64_t blocks = c.engine_num_blocks, tokens = c.engine_block_tokens;
  const uint64_t heads = c.kv_heads, dim = c.head_dim;
  std::vector<uint64_t> d;
  switch (c.layout) {
    case kernels::KvLayout::kContiguous:
      d = {2, blocks * tokens, heads, dim};
      break;
    case kernels::KvLayout::kVllmNhd:
      d = {2, blocks, tokens, heads, dim};
      break;
    case kernels::KvLayout::kVllmHnd:
      d = {2, blocks, heads, tokens, dim};
      break;
    case kernels::KvLayout::kFlashInferNhd:
      d = {blocks, 2, tokens, heads, dim};
      break;
    case kernels::KvLayout::kFlashInferHnd:
      d = {blocks, 2, heads, tokens, dim};
      break;
  }
  if (stacked) d.insert(d.begin(), c.num_layers);
  return d;
}

std::string DimsText(const std::vector<uint64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// `in_memory`: the tensor's sizes, outermost first in memory, size-1 dimensions left out.
void CheckPhysicalOrder(const std::vector<uint64_t>& in_memory, const PagedKvCache& c, bool stacked,
                        const std::string& what) {
  std::vector<uint64_t> want = PhysicalDims(c, stacked);
  std::erase(want, uint64_t{1});
  if (!in_memory.empty() && in_memory != want) {
    Invalid(what + " lies in memory as " + DimsText(in_memory) + ", layout " +
            kernels::KvLayoutName(c.layout) + " is " + DimsText(want) +
            " (a tensor that only looks like another layout is a permuted view)");
  }
}

}  // namespace

void CheckArrayLayout(const py::array& a, const PagedKvCache& c, bool stacked,
                      const std::string& what) {
  std::vector<uint64_t> in_memory;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) != 1) in_memory.push_back(static_cast<uint64_t>(a.shape(i)));
  }
  CheckPhysicalOrder(in_memory, c, stacked, what);
}

void CheckTensorLike(py::handle obj, const PagedKvCache& c, bool stacked, uint64_t want_elements,
                     const std::string& what) {
  const bool host = c.memory == MemoryKind::kHost;
  if (host && py::hasattr(obj, "__cuda_array_interface__")) {
    Invalid(what + " is device memory (it has __cuda_array_interface__): use memory='cuda'");
  }
  if (py::hasattr(obj, "device") && py::hasattr(obj.attr("device"), "type")) {
    const std::string device = py::str(obj.attr("device").attr("type"));
    if (device != (host ? "cpu" : "cuda")) {
      Invalid(what + " is on device '" + device + "', the cache is memory='" +
              (host ? "host" : "cuda") + "'");
    }
  }
  if (py::hasattr(obj, "dtype")) {
    const std::string dtype = py::str(obj.attr("dtype"));
    if (dtype.rfind("torch.", 0) == 0) {
      const bool f16 = dtype == "torch.float16" || dtype == "torch.half";
      const bool bf16 = dtype == "torch.bfloat16";
      const bool bits = dtype == "torch.int16" || dtype == "torch.uint16";  // the raw bits
      if (!bits && (c.dtype == DType::kF16 ? !f16 : !bf16)) {
        Invalid(what + " has dtype " + dtype + ", the cache is " +
                (c.dtype == DType::kF16 ? "float16" : "bfloat16"));
      }
    }
  }
  // Dense, and in memory in the layout's physical order: its dimensions sorted by stride must be
  // the layout's (a permuted view of such memory, as vLLM's HND caches are, is fine; a slice, a
  // broadcast, or memory in another order is not).
  if (py::hasattr(obj, "stride") && py::hasattr(obj, "shape")) {
    const py::object strides = obj.attr("stride")();
    std::vector<std::pair<uint64_t, uint64_t>> dims;  // (stride, size)
    size_t i = 0;
    for (py::handle n : obj.attr("shape")) {
      dims.emplace_back(ToUint64(strides[py::int_(i)], what), ToUint64(n, what));
      ++i;
    }
    std::sort(dims.begin(), dims.end());
    uint64_t dense = 1;
    std::vector<uint64_t> in_memory;  // sizes, outermost first, size-1 dimensions left out
    for (const auto& [stride, size] : dims) {
      if (size == 1) continue;
      if (stride != dense) Invalid(what + " must be dense (use .contiguous())");
      dense *= size;
      in_memory.insert(in_memory.begin(), size);
    }
    CheckPhysicalOrder(in_memory, c, stacked, what);
  }
  if (py::hasattr(obj, "numel") && py::hasattr(obj, "element_size")) {
    const uint64_t bytes =
        ToUint64(obj.attr("numel")(), what) * ToUint64(obj.attr("element_size")(), what);
    if (bytes != want_elements * 2) {
      Invalid(what + " holds " + std::to_string(bytes) + " bytes; the cache description needs " +
              std::to_string(want_elements * 2));
    }
  }
  if (!py::hasattr(obj, "data_ptr") && py::hasattr(obj, "__cuda_array_interface__")) {
    const py::object cai = obj.attr("__cuda_array_interface__");
    if (!py::isinstance<py::dict>(cai)) return;
    const py::dict d = cai;
    if (d.contains("data")) {
      const py::object data = d["data"];
      if (py::isinstance<py::tuple>(data) && py::len(data) >= 2 && py::bool_(data[py::int_(1)])) {
        Invalid(what + " is read-only");
      }
    }
    if (d.contains("shape") && d.contains("typestr")) {
      std::vector<uint64_t> shape;
      uint64_t elements = 1;
      for (py::handle n : d["shape"]) {
        shape.push_back(ToUint64(n, what));
        elements *= shape.back();
      }
      const std::string type = py::str(d["typestr"]);
      const uint64_t item = type.size() >= 3 ? std::strtoull(type.c_str() + 2, nullptr, 10) : 0;
      // Strides may be given when they are C order's (PyCUDA always gives them).
      if (d.contains("strides") && !d["strides"].is_none()) {
        uint64_t expect = item;
        std::vector<uint64_t> strides;
        for (py::handle n : d["strides"]) {
          if (py::isinstance<py::int_>(n) && n.cast<int64_t>() < 0) {
            Invalid(what + " has negative strides (a reversed view): not supported");
          }
          strides.push_back(ToUint64(n, what));
        }
        bool c_order = strides.size() == shape.size();
        for (size_t k = shape.size(); c_order && k-- > 0;) {
          if (shape[k] > 1 && strides[k] != expect) c_order = false;
          expect *= shape[k];
        }
        if (!c_order) Invalid(what + " must be C-contiguous (its __cuda_array_interface__)");
      }
      std::vector<uint64_t> in_memory = shape;  // C order: the shape is the order in memory
      std::erase(in_memory, uint64_t{1});
      CheckPhysicalOrder(in_memory, c, stacked, what);
      if (elements * item != want_elements * 2) {
        Invalid(what + " holds " + std::to_string(elements * item) +
                " bytes; the cache description needs " + std::to_string(want_elements * 2));
      }
    }
  }
}

}  // namespace kvault::python
