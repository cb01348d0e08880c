#pragma once
// What a tensor-like object given for a kvault.PagedKvCache (a torch tensor, an object with
// __cuda_array_interface__) says of itself, checked against the cache description.

#include <cstdint>
#include <string>

#include "kvault/paged_kv.h"
#include "py_common.h"

namespace kvault::python {

// Checks what `obj` tells of itself against cache `c` (one tensor per layer, or, `stacked`, one
// for all layers) of `want_elements` 16-bit elements: its device (torch's device.type: "cpu" for
// host memory, "cuda" for device memory), its dtype (torch's: float16 or bfloat16 as the cache's,
// or int16 holding the bits), its size, and that it is dense and lies in memory in the layout's
// physical order (kv_view.h; a permuted view of such memory is fine); an interface's read-only
// flag, and that its strides, when given, are C order's. Attributes it does not have are not
// checked (a bare pointer is the caller's word). Raises InvalidArgumentError naming `what`.
// A host cache's object with __cuda_array_interface__ (device memory: a CuPy, numba or PyCUDA
// array) is refused: the host codec would read device memory on the CPU.
void CheckTensorLike(py::handle obj, const PagedKvCache& c, bool stacked, uint64_t want_elements,
                     const std::string& what);

// Checks that a host numpy array (C-contiguous, so its shape is its memory order) is shaped as
// the layout's physical dimensions, size-1 dimensions aside: an array of the right size in
// another layout's shape would store and load scrambled KV. Raises InvalidArgumentError.
void CheckArrayLayout(const py::array& a, const PagedKvCache& c, bool stacked,
                      const std::string& what);

}  // namespace kvault::python
