#pragma once
// Device benchmark of the CUDA codec (`kvault-bench codec --device cuda`). Host-only header.
//
// Builds, in device memory, a vLLM flash-attention NHD paged cache of `num_blocks` pages per layer
// ([2][num_blocks][block_tokens][kv_heads][head_dim] per layer, page size = block_tokens) filled
// with synthetic KV (normals with a few outlier channels, no NaN), and a sequence of num_blocks
// blocks whose page ids are a seeded random permutation. It then times, with CUDA events on a
// private stream after `warmup` untimed runs, the median over `reps` runs of:
//   - encode: CudaEncodeBlocks of the whole batch (gather + quantize + pack into payloads);
//   - decode: CudaDecodeBlocks of the whole batch (unpack + dequantize + scatter into the cache);
//   - memcpy: cudaMemcpyAsync device-to-device of moved_bytes / 2 bytes, so that it reads and
//     writes the same moved_bytes as one encode or one decode: the bandwidth baseline.
// GB/s figures are moved_bytes / median time (10^9 bytes per second). All device memory is freed
// before returning. Not for concurrent use with other timing-sensitive work on the same device.

#include <cstdint>
#include <string>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"

namespace kvault::kernels {

struct CudaCodecBenchOptions {
  uint32_t num_blocks = 1024;  // blocks in the batch = pages per layer in the cache
  uint32_t warmup = 3;         // untimed runs of each measurement
  uint32_t reps = 20;          // timed runs of each measurement (median reported)
  uint64_t seed = 1;           // data and page permutation
  bool verify = true;          // compare a few device-encoded payloads with ReferenceEncodeBlock
};

struct CudaCodecTiming {
  std::string device_name;
  uint32_t num_blocks = 0;
  uint64_t kv_bytes = 0;       // 16-bit KV of the batch: read by encode, written by decode
  uint64_t payload_bytes = 0;  // payloads of the batch: written by encode, read by decode
  uint64_t moved_bytes = 0;    // kv_bytes + payload_bytes
  double encode_ms = 0, decode_ms = 0, memcpy_ms = 0;        // medians
  double encode_gbps = 0, decode_gbps = 0, memcpy_gbps = 0;  // moved_bytes / time
  double encode_ratio = 0, decode_ratio = 0;                 // codec GB/s / memcpy GB/s
  // With options.verify: the first, middle and last blocks' device payloads equal the CPU
  // reference's bytes, and decoding them gives the reference's values. False when not checked.
  bool verified = false;
};

// InvalidArgument: invalid descriptor, num_blocks or reps of 0. Unavailable: no CUDA device
// (or a build without CUDA: Unsupported). ResourceExhausted: the cache does not fit in device
// memory. Internal: a CUDA call failed, or verification found a mismatch.
Result<CudaCodecTiming> CudaMeasureCodec(const BlockDescriptor& descriptor,
                                         const CudaCodecBenchOptions& options = {});

}  // namespace kvault::kernels
