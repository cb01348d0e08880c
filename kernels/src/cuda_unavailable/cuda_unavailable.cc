// The CUDA codec entry points of a build without nvcc: every call says so.
#include <string>

#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/cuda_status.h"

namespace kvault::kernels {
namespace {
Status NoCuda() { return Status::Unsupported("this kvault build has no CUDA support"); }
}  // namespace

bool CudaAvailable() { return false; }

Status CudaEncodeBlocks(const PagedKvView&, uint64_t, uint32_t, const BlockDescriptor&, uint8_t*,
                        uint64_t, void*) {
  return NoCuda();
}

Status CudaDecodeBlocks(const uint8_t*, uint64_t, uint32_t, const BlockDescriptor&,
                        const PagedKvView&, uint64_t, void*) {
  return NoCuda();
}

}  // namespace kvault::kernels

namespace kvault::kernels {

Status CudaErrorStatus(int cuda_error, std::string_view what) {
  if (cuda_error == 0) return Status::Ok();
  return Status::Internal(std::string(what) + ": CUDA error " + std::to_string(cuda_error));
}

}  // namespace kvault::kernels
