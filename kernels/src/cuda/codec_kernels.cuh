#pragma once
// Private to the CUDA codec: host-side launchers of the codec kernels. Each picks the template
// instance for the dtype, the chunks per thread (K = 1, 2 or 4) and the code width, launches, and
// returns the CUDA error of the launch (converted to Status by the caller, cuda_codec.cu).
//
// Kernel A (vector_kernels.cu): one team of T lanes per (token, head) vector; raw sections, the
//   sink tokens of every section, fp8/int8 sections and int4/int2 V sections.
// Kernel B (key_kernels.cu): int4/int2 K sections, one or more teams per (head, token group) tile.

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/codec_common.cuh"

namespace kvault::kernels::cuda_detail {

// Dynamic shared memory kernel A needs when a launch has V sections whose group size is neither
// >= head_dim nor 8 * 2^i (the general grouping path), else 0.
size_t VectorScratchBytes(int chunks_per_thread);

// Dynamic shared memory of the key encoder for `teams_per_tile`.
size_t KeyEncodeSmemBytes(int chunks_per_thread, uint32_t teams_per_tile);

// Kernel A: every section of `args` has codec `codec` (kRaw for a launch of sinks only).
cudaError_t LaunchEncodeVectors(const VectorArgs& args, bool bf16, uint32_t codec,
                                int chunks_per_thread, dim3 grid, size_t smem_bytes,
                                cudaStream_t stream);
cudaError_t LaunchDecodeVectors(const VectorArgs& args, bool bf16, uint32_t codec,
                                int chunks_per_thread, dim3 grid, cudaStream_t stream);
cudaError_t LaunchEncodeKeys(const KeyArgs& args, bool bf16, int chunks_per_thread, int bits,
                             dim3 grid, cudaStream_t stream);
cudaError_t LaunchDecodeKeys(const KeyArgs& args, bool bf16, int chunks_per_thread, int bits,
                             dim3 grid, cudaStream_t stream);

// Vectors a team of kernel A handles per CTA: all loaded before any is processed, so that a lane
// has 64 bytes of cache reads in flight whatever its chunk count K (1, 2 or 4).
__host__ __device__ constexpr int VectorsPerTeam(int chunks_per_thread) {
  return 4 / chunks_per_thread;
}

// Vectors one CTA of kernel A covers: (kThreads / team) teams x vectors per team.
inline uint32_t VectorsPerCta(uint32_t log2_team, int chunks_per_thread) {
  return (static_cast<uint32_t>(kThreads) >> log2_team) *
         static_cast<uint32_t>(VectorsPerTeam(chunks_per_thread));
}

}  // namespace kvault::kernels::cuda_detail
