#include <string>

#include "cuda/cuda_status.cuh"

namespace kvault::kernels::cuda_detail {

Status CudaStatus(cudaError_t err, std::string_view what) {
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
      return Status::Unavailable(msg);
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(msg);
    default:
      return Status::Internal(msg);
  }
}

}  // namespace kvault::kernels::cuda_detail
