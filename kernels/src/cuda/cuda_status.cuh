#pragma once
// The one place where CUDA runtime error codes become kvault Status values.

#include <cuda_runtime.h>

#include <string_view>

#include "kvault/common/status.h"

namespace kvault::kernels::cuda_detail {

// kernels::CudaErrorStatus (kvault/kernels/cuda_status.h) for a cudaError_t.
Status CudaStatus(cudaError_t err, std::string_view what);

}  // namespace kvault::kernels::cuda_detail

// Returns from the enclosing function when a CUDA runtime call fails.
#define KVAULT_CUDA_RETURN_IF_ERROR(call, what) \
  KVAULT_RETURN_IF_ERROR(::kvault::kernels::cuda_detail::CudaStatus((call), (what)))
