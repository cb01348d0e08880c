#pragma once
// Reader for Mooncake-format request traces (shared/traces/README.md): one JSON object per line
// with `timestamp` (ms), `input_length`, `output_length` (tokens) and `hash_ids` (one id per
// 512-token block; equal ids are equal prefix blocks). Other keys are skipped. Blank lines are
// allowed. Thread-safe (no shared state).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/result.h"

namespace kvault::bench {

struct TraceRequest {
  double timestamp_ms = 0;
  uint64_t input_length = 0;   // 0 when the line has no input_length
  uint64_t output_length = 0;  // 0 when the line has no output_length
  std::vector<uint64_t> hash_ids;
};

// Parses JSONL text and returns the requests sorted by timestamp (stable: equal timestamps keep
// file order). `timestamp` and `hash_ids` are required; lengths and ids are non-negative integers.
// InvalidArgument "<source>:<line>:<column>: <what>" on the first malformed line (1-based).
Result<std::vector<TraceRequest>> ParseMooncakeTrace(std::string_view text,
                                                     std::string_view source = "trace");

// Reads and parses a file (NotFound/IoError from the file system, InvalidArgument as above).
Result<std::vector<TraceRequest>> ReadMooncakeTrace(const std::string& path);

// The block references of a trace with hash ids renumbered densely (0..unique_blocks-1, in order of
// first use), the form the simulators replay.
struct BlockTrace {
  static constexpr uint32_t kRoot = UINT32_MAX;

  std::vector<uint32_t> blocks;       // every request's blocks, request after request
  std::vector<size_t> request_begin;  // request i is blocks[request_begin[i], request_begin[i+1])
  std::vector<uint64_t> hash_ids;     // dense id -> original hash id
  std::vector<uint32_t> parent;       // dense id -> the block before it at first use, or kRoot
  uint32_t unique_blocks = 0;
  // True when every id always follows the same parent (or always starts a request), so the ids
  // form a prefix tree, which the Mooncake ids do.
  bool prefix_consistent = true;

  size_t num_requests() const { return request_begin.empty() ? 0 : request_begin.size() - 1; }
  std::span<const uint32_t> request(size_t i) const {
    return {blocks.data() + request_begin[i], request_begin[i + 1] - request_begin[i]};
  }
};

BlockTrace MakeBlockTrace(std::span<const TraceRequest> requests);

// floor(fraction x unique blocks), the capacity convention of shared/traces/README.md.
uint64_t CapacityForFraction(const BlockTrace& trace, double fraction);

}  // namespace kvault::bench
