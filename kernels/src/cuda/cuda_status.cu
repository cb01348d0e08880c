#include <string>

#include "cuda/cuda_status.cuh"
#include "kvault/kernels/cuda_status.h"

namespace kvault::kernels {

Status CudaErrorStatus(int cuda_error, std::string_view what) {
  const auto err = static_cast<cudaError_t>(cuda_error);
  if (err == cudaSuccess) return Status::Ok();
  std::string msg(what);
  msg += ": ";
  msg += cudaGetErrorName(err);
  msg += ": ";
  msg += cudaGetErrorString(err);
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorInvalidDevice:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorSystemNotReady:
      return Status::Unavailable(msg);
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(msg);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer:
    case cudaErrorInvalidResourceHandle:
    case cudaErrorMapBufferObjectFailed:
      return Status::InvalidArgument(msg);
    case cudaErrorNotSupported:
    case cudaErrorOperatingSystem:
      return Status::Unsupported(msg);
    default:
      return Status::Internal(msg);
  }
}

namespace cuda_detail {

Status CudaStatus(cudaError_t err, std::string_view what) {
  return CudaErrorStatus(static_cast<int>(err), what);
}

}  // namespace cuda_detail
}  // namespace kvault::kernels
