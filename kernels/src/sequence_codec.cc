#include "kvault/kernels/sequence_codec.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace kvault::kernels {
namespace {

// Runs fn(i) for i in [0, n) on `threads` workers; returns the first error.
Status ParallelFor(uint64_t n, unsigned threads, const std::function<Status(uint64_t)>& fn) {
  std::atomic<uint64_t> next{0};
  std::mutex mu;
  Status first_error;
  auto worker = [&] {
    for (uint64_t i = next++; i < n; i = next++) {
      Status s;
      try {
        s = fn(i);
      } catch (const std::bad_alloc&) {
        s = Status::ResourceExhausted("out of memory in block " + std::to_string(i));
      } catch (const std::exception& e) {
        s = Status::Internal(std::string("block ") + std::to_string(i) + ": " + e.what());
      }
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = std::move(s);
        next = n;
      }
    }
  };
  const unsigned workers = static_cast<unsigned>(std::min<uint64_t>(std::max(1u, threads), n));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < workers; ++t) {
    try {
      pool.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // no more threads: the ones started (and this one) do the work
    }
  }
  worker();
  for (std::thread& t : pool) t.join();
  return first_error;
}

}  // namespace

uint64_t BlockCount(uint64_t tokens, uint32_t block_tokens) {
  return block_tokens == 0 ? 0 : (tokens + block_tokens - 1) / block_tokens;
}

uint64_t WindowBlockCount(uint64_t tokens, const SequenceCodecOptions& options) {
  const uint64_t blocks = BlockCount(tokens, options.block_tokens);
  return options.first_block >= blocks ? 0
                                       : std::min(options.max_blocks, blocks - options.first_block);
}

namespace {

// InvalidArgument for a window that starts past the sequence's last block.
Status CheckWindow(uint64_t tokens, const SequenceCodecOptions& options) {
  const uint64_t blocks = BlockCount(tokens, options.block_tokens);
  if (options.first_block > 0 && options.first_block >= blocks) {
    return Status::InvalidArgument("window starts at block " + std::to_string(options.first_block) +
                                   " of a sequence of " + std::to_string(blocks) + " blocks");
  }
  return Status::Ok();
}

}  // namespace

Result<BlockDescriptor> SequenceBlockDescriptor(const PagedKvView& view, uint64_t tokens,
                                                const CodecSpec& spec, uint32_t block_tokens,
                                                uint64_t index, const Digest32& ns_digest,
                                                const Digest32& key) {
  if (block_tokens == 0) return Status::InvalidArgument("block_tokens must be >= 1");
  const uint64_t first = index * block_tokens;
  if (first >= tokens) return Status::InvalidArgument("block index past the end of the sequence");
  if (spec.sink_tokens > block_tokens) {
    return Status::InvalidArgument("sink=" + std::to_string(spec.sink_tokens) +
                                   " exceeds the block size of " + std::to_string(block_tokens) +
                                   " tokens: sink tokens must fit in the first block");
  }
  BlockDescriptor d;
  d.ns_digest = ns_digest;
  d.key = key;
  d.layout.num_layers = view.num_layers;
  d.layout.kv_heads = view.kv_heads;
  d.layout.head_dim = view.head_dim;
  d.layout.dtype = view.dtype;
  d.layout.block_tokens = static_cast<uint32_t>(std::min<uint64_t>(block_tokens, tokens - first));
  d.layout.sink_tokens = index == 0 ? std::min(spec.sink_tokens, d.layout.block_tokens) : 0;
  KVAULT_ASSIGN_OR_RETURN(d.layers, spec.ResolveLayers(view.num_layers));
  KVAULT_RETURN_IF_ERROR(ValidateDescriptor(d));
  return d;
}

Status EncodeSequenceCpu(const PagedKvView& view, uint64_t tokens, const CodecSpec& spec,
                         const Digest32& ns_digest, std::span<const Digest32> keys,
                         const SequenceCodecOptions& options,
                         std::vector<std::vector<uint8_t>>& objects) {
  KVAULT_RETURN_IF_ERROR(CheckWindow(tokens, options));
  const uint64_t blocks = WindowBlockCount(tokens, options);
  if (keys.size() != blocks) {
    return Status::InvalidArgument("expected " + std::to_string(blocks) + " block keys, got " +
                                   std::to_string(keys.size()));
  }
  objects.resize(blocks);
  return ParallelFor(blocks, options.threads, [&](uint64_t i) -> Status {
    const uint64_t b = options.first_block + i;
    KVAULT_ASSIGN_OR_RETURN(
        BlockDescriptor d,
        SequenceBlockDescriptor(view, tokens, spec, options.block_tokens, b, ns_digest, keys[i]));
    KVAULT_ASSIGN_OR_RETURN(BlockGeometry g, ComputeGeometry(d));
    objects[i].resize(g.total_bytes());
    return EncodeBlockCpu(view, i * options.block_tokens, d, objects[i], options.isa)
        .WithContext("block " + std::to_string(b));
  });
}

Status DecodeSequenceCpu(std::span<const std::vector<uint8_t>> objects,
                         std::span<const Digest32> keys, const PagedKvView& view, uint64_t tokens,
                         const SequenceCodecOptions& options) {
  KVAULT_RETURN_IF_ERROR(CheckWindow(tokens, options));
  const uint64_t blocks = WindowBlockCount(tokens, options);
  if (objects.size() != blocks || keys.size() != blocks) {
    return Status::Corruption("sequence of " + std::to_string(tokens) + " tokens needs " +
                              std::to_string(blocks) + " blocks and keys, got " +
                              std::to_string(objects.size()) + " objects and " +
                              std::to_string(keys.size()) + " keys");
  }
  return ParallelFor(blocks, options.threads, [&](uint64_t i) -> Status {
    const uint64_t b = options.first_block + i;
    const std::string where = "block " + std::to_string(b);
    ParseOptions parse;
    parse.expected_key = &keys[i];
    KVAULT_ASSIGN_OR_RETURN(BlockView block, ParseBlockObject(objects[i], parse));
    const BlockLayout& l = block.descriptor.layout;
    const uint64_t first = b * options.block_tokens;
    const uint64_t want_tokens = std::min<uint64_t>(options.block_tokens, tokens - first);
    if (l.block_tokens != want_tokens || (b > 0 && l.sink_tokens != 0) ||
        l.num_layers != view.num_layers || l.kv_heads != view.kv_heads ||
        l.head_dim != view.head_dim || l.dtype != view.dtype) {
      return Status::Corruption(where + ": object does not fit its position in the sequence");
    }
    return DecodeBlockCpu(block, view, i * options.block_tokens, options.isa).WithContext(where);
  });
}

}  // namespace kvault::kernels
