#pragma once
// How the gpu tier turns CUDA runtime error codes into Status: through the kernels module's one
// conversion (STYLE.md: one conversion per foreign error space).

#include <cuda_runtime.h>

#include <string_view>

#include "kvault/common/status.h"
#include "kvault/kernels/cuda_status.h"

namespace kvault::storage::gpu_internal {

// kernels::CudaErrorStatus: the mapping kvault uses everywhere, documented there.
inline Status CudaStatus(cudaError_t err, std::string_view what) {
  return kernels::CudaErrorStatus(static_cast<int>(err), what);
}

}  // namespace kvault::storage::gpu_internal
