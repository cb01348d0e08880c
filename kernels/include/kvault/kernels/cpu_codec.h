#pragma once
// The fast CPU codec path: gathers a block from a paged host view, encodes it into a block object,
// and decodes objects back into a paged view. Produces exactly the bytes of the reference
// (reference_codec.h). The instruction set is chosen at run time (AVX-512, AVX2, or a portable
// scalar fallback). Thread-safe: no shared mutable state; callers may encode different blocks from
// different threads.

#include <cstdint>
#include <span>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"
#include "kvault/kernels/kv_view.h"

namespace kvault::kernels {

enum class CpuIsa : uint8_t { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// The best instruction set this CPU supports (AVX-512 needs F, BW, VL and DQ; AVX2 needs FMA and
// F16C too).
CpuIsa DetectCpuIsa();
bool CpuSupports(CpuIsa isa);
// "scalar", "avx2", "avx512".
const char* CpuIsaName(CpuIsa isa);

// Encodes tokens [first_token, first_token + descriptor.layout.block_tokens) of the sequence in
// `src` (host memory) into `out`, which must be exactly ComputeGeometry(descriptor).total_bytes()
// long; the object is sealed (header and checksum written).
// InvalidArgument: invalid descriptor, a view whose layers/heads/dim/dtype differ from the
// descriptor's layout, a token range outside the view, or a wrong `out` size.
// Unsupported: `isa` is not supported by this CPU.
Status EncodeBlockCpu(const PagedKvView& src, uint64_t first_token,
                      const BlockDescriptor& descriptor, std::span<uint8_t> out,
                      CpuIsa isa = DetectCpuIsa());

// Decodes a parsed object into tokens [first_token, first_token + block_tokens) of `dst`.
// Same errors as EncodeBlockCpu.
Status DecodeBlockCpu(const BlockView& block, const PagedKvView& dst, uint64_t first_token,
                      CpuIsa isa = DetectCpuIsa());

}  // namespace kvault::kernels
