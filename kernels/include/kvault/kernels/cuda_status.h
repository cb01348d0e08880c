#pragma once
// The one place where CUDA runtime error codes become kvault Status values, for the kernels and
// the storage gpu tier alike (STYLE.md: one conversion per foreign error space). Host-only: the
// code is passed as an int so that this header needs no CUDA include.

#include <string_view>

#include "kvault/common/status.h"

namespace kvault::kernels {

// `cuda_error` is a cudaError_t. OK for cudaSuccess; otherwise "<what>: <error name>: <error
// text>" with a code chosen by what the caller can do about it: Unavailable (no device, driver or
// kernel image for this device: try elsewhere or later), ResourceExhausted (device memory),
// InvalidArgument (a bad handle, pointer or value: e.g. a stale or foreign IPC handle),
// Unsupported (the platform cannot do it, e.g. IPC), Internal (anything else: a failed launch, a
// sticky context error, a bug). In a build without CUDA every non-zero code is Internal.
Status CudaErrorStatus(int cuda_error, std::string_view what);

}  // namespace kvault::kernels
