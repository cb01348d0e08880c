// The CUDA codec benchmark of a build without nvcc.
#include "kvault/kernels/cuda_bench.h"

namespace kvault::kernels {

Result<CudaCodecTiming> CudaMeasureCodec(const BlockDescriptor&, const CudaCodecBenchOptions&) {
  return Status::Unsupported("this kvault build has no CUDA support");
}

}  // namespace kvault::kernels
