#pragma once
// The CPU reference of the codecs: plain loops that define the bytes every other path (SIMD,
// CUDA) must reproduce (docs/codecs.md has the arithmetic). Works on contiguous host arrays and
// computes its own offsets. Thread-safe: no shared state. On x86 every function computes in the
// IEEE default floating-point mode (round to nearest even, subnormals kept) whatever the calling
// thread set in MXCSR (flush-to-zero, another rounding mode), and gives the thread its mode back.

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"

namespace kvault::kernels {

// Encodes one section. `src` is [block_tokens][kv_heads][head_dim] elements of layout.dtype;
// `out` receives SectionLayoutFor(codec, is_key, layout).padded_bytes bytes (padding zeroed).
// Preconditions: codec and layout valid (ValidateDescriptor).
void ReferenceEncodeSection(const uint16_t* src, const SectionCodec& codec, bool is_key,
                            const BlockLayout& layout, uint8_t* out);

// Decodes one section written by ReferenceEncodeSection into `dst` (same shape as `src` above).
void ReferenceDecodeSection(const uint8_t* in, const SectionCodec& codec, bool is_key,
                            const BlockLayout& layout, uint16_t* dst);

// Encodes a whole block. `src` is the block's KV, contiguous [layers][2][block_tokens][kv_heads]
// [head_dim]. Returns the sealed block object, or InvalidArgument for an invalid descriptor or a
// source of the wrong size; OutOfRange for a layout past the format limits (ComputeGeometry).
Result<std::vector<uint8_t>> ReferenceEncodeBlock(const BlockDescriptor& descriptor,
                                                  std::span<const uint16_t> src);

// Decodes a parsed object into `dst` (shape as `src` above). InvalidArgument if dst has the wrong
// size.
Status ReferenceDecodeBlock(const BlockView& block, std::span<uint16_t> dst);

}  // namespace kvault::kernels
