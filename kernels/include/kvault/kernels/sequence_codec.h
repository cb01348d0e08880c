#pragma once
// Cuts a sequence's KV into blocks and encodes or decodes all of them on the CPU, in parallel
// across blocks. Block b covers tokens [b * block_tokens, min(tokens, (b + 1) * block_tokens)):
// block 0 starts the sequence and takes the spec's sink tokens; a partial last block is encoded
// too. Used by `kvault codec roundtrip` and the codec benchmark. Thread-safe.

#include <cstdint>
#include <span>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/result.h"
#include "kvault/kernels/codec_spec.h"
#include "kvault/kernels/cpu_codec.h"
#include "kvault/kernels/kv_view.h"

namespace kvault::kernels {

struct SequenceCodecOptions {
  uint32_t block_tokens = 256;  // tokens per block (the last may be shorter)
  CpuIsa isa = DetectCpuIsa();  // instruction set of the CPU path
  unsigned threads = 1;         // worker threads across blocks (>= 1)
  // A window of the sequence, to stream a long one through bounded memory: the calls below
  // handle blocks [first_block, first_block + max_blocks), clipped to the sequence, and the view
  // holds only those, from its token 0 (sequence token first_block * block_tokens). Keys and
  // objects are those of the window's blocks. Defaults: the whole sequence.
  uint64_t first_block = 0;
  uint64_t max_blocks = UINT64_MAX;
};

// Number of blocks for `tokens` tokens.
uint64_t BlockCount(uint64_t tokens, uint32_t block_tokens);
// Number of blocks in the options' window of a sequence of `tokens` tokens (0 when the window
// starts past its last block).
uint64_t WindowBlockCount(uint64_t tokens, const SequenceCodecOptions& options);

// Descriptor of block `index` of a sequence: layout from the view, codecs resolved from the spec,
// sink tokens only in block 0. InvalidArgument if the spec does not fit the layout.
Result<BlockDescriptor> SequenceBlockDescriptor(const PagedKvView& view, uint64_t tokens,
                                                const CodecSpec& spec, uint32_t block_tokens,
                                                uint64_t index, const Digest32& ns_digest,
                                                const Digest32& key);

// Encodes tokens [0, tokens) of `view` (of the window's blocks, with a window) into one sealed
// object per block, resizing `objects` to the block count and each object to its size (buffers
// are reused, so encoding again into the same vector does not allocate). `keys` holds one key per
// block. Errors from SequenceBlockDescriptor/EncodeBlockCpu, or InvalidArgument for a key count
// that does not match the block count or a window that starts past the last block; `objects` is
// unspecified after an error.
Status EncodeSequenceCpu(const PagedKvView& view, uint64_t tokens, const CodecSpec& spec,
                         const Digest32& ns_digest, std::span<const Digest32> keys,
                         const SequenceCodecOptions& options,
                         std::vector<std::vector<uint8_t>>& objects);

// Verifies and decodes the objects of EncodeSequenceCpu for tokens [0, tokens) into `view` (block
// b at token (b - first_block) * block_tokens). InvalidArgument for a window that starts past the
// last block. Corruption if the object count does not cover the sequence (the window), or an
// object fails verification, carries another key than keys[b], or does not fit its position
// (token count, sink tokens only in block 0, layout of the view); nothing is written for the
// failing block.
Status DecodeSequenceCpu(std::span<const std::vector<uint8_t>> objects,
                         std::span<const Digest32> keys, const PagedKvView& view, uint64_t tokens,
                         const SequenceCodecOptions& options);

}  // namespace kvault::kernels
