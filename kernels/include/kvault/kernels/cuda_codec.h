#pragma once
// CUDA codec kernels: gather blocks from an engine's paged KV cache in device memory, encode them
// into block-object payloads in device memory, and decode payloads and scatter them back. The
// bytes equal the CPU reference's (reference_codec.h). Host-only header: no CUDA types; streams
// are passed as `void*` (a cudaStream_t). In a build without CUDA every call returns Unsupported.
//
// A batch is `num_blocks` consecutive blocks of one sequence that share one descriptor (same
// layout, codecs and sink count): block i covers tokens [first_token + i * block_tokens, ... +
// block_tokens). Its payload (the object's bytes after the header) is at
// payloads + i * payload_stride. Headers and checksums are written on the host once the payload
// is there (WriteBlockHeader + SealBlockObject), typically after the copy to pinned staging.
// Calls are asynchronous on `stream`; thread-safe (no shared mutable host state).

#include <cstdint>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"
#include "kvault/kernels/kv_view.h"

namespace kvault::kernels {

// True when this build has CUDA and a usable device is present.
bool CudaAvailable();

// `view` holds device pointers (layer_bases and page_ids arrays live in device memory).
// InvalidArgument: invalid descriptor, view/descriptor mismatch, payload_stride smaller than the
// payload, a token range outside the view. Unavailable: no device. Internal: a launch failed.
Status CudaEncodeBlocks(const PagedKvView& view, uint64_t first_token, uint32_t num_blocks,
                        const BlockDescriptor& descriptor, uint8_t* payloads,
                        uint64_t payload_stride, void* stream);

Status CudaDecodeBlocks(const uint8_t* payloads, uint64_t payload_stride, uint32_t num_blocks,
                        const BlockDescriptor& descriptor, const PagedKvView& view,
                        uint64_t first_token, void* stream);

}  // namespace kvault::kernels
