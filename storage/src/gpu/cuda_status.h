#pragma once
// The one place where the gpu tier turns CUDA runtime error codes into Status (STYLE.md: one
// conversion file per foreign error space).

#include <cuda_runtime.h>

#include <string_view>

#include "kvault/common/status.h"

namespace kvault::storage::gpu_internal {

// OK for cudaSuccess; otherwise "<what>: <cudaErrorName>: <description>" with a code chosen by
// what the caller can do about it: Unavailable (no device or driver: try elsewhere or later),
// ResourceExhausted (device memory), InvalidArgument (a bad handle, pointer or value: usually a
// stale or foreign IPC handle), Unsupported (the platform cannot do it, e.g. IPC), Internal
// (anything else: a sticky context error or a bug).
Status CudaStatus(cudaError_t err, std::string_view what);

}  // namespace kvault::storage::gpu_internal
