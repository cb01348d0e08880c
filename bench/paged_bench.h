#pragma once
// `kvault-bench paged`: is StorePaged / LoadPaged pipelined? For each codec it measures, against
// a live kvaultd, the pipeline end to end (tokens per second into and out of an engine's paged
// KV cache in host memory) and each of its stages alone, in the same run on the same blocks:
//
//   store: gather + encode (KvBlockCodec::Encode from the paged cache), transfer (Client::Store
//          of the sealed objects from registered memory, in the pipeline's waves);
//   load:  transfer (Client::Load into registered memory, same waves), verify + decode +
//          scatter (KvBlockCodec::Decode into a paged cache).
//
// A pipelined transfer runs at the pace of its slowest stage; the target is end to end >= 0.7x
// the slowest stage alone. The loaded cache is compared byte for byte with the stage-alone
// decode (the CPU reference's bytes).
//
// On device memory it also measures LoadPaged from a second daemon whose blocks sit in a gpu tier
// that exports CUDA IPC handles: a leased LoadPaged then decodes straight from the daemon's device
// memory (PagedKvOptions::gpu_ipc), no host staging; the same byte-for-byte check applies.
//
// Files: paged_bench.cc (flags, the daemon, the report), paged_bench_run.cc (one codec's
// measurements). Not thread-safe: the benchmark's main thread drives everything.

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/result.h"
#include "kvault/paged_kv.h"

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunPagedBench(const std::vector<std::string>& args);

namespace paged {

struct Config {
  std::string server;  // --server HOST:PORT; empty: start kvaultd
  // --gpu-tier-server HOST:PORT (cuda only): a daemon with an exporting gpu tier; empty: started
  // beside the other when the benchmark starts its own, else that measurement is skipped.
  std::string gpu_tier_server;
  MemoryKind memory = MemoryKind::kHost;  // --memory host|cuda: where the engine cache lives
  std::vector<std::string> codecs;        // --codecs (default raw,fp8,int4)
  uint32_t layers = 8;                    // --layers (Llama-3-8B has 32)
  uint32_t kv_heads = 8;                  // Llama-3-8B
  uint32_t head_dim = 128;                // Llama-3-8B
  uint32_t block_tokens = 256;            // --block-tokens: tokens per kvault block
  uint32_t engine_block_tokens = 16;      // vLLM block_size
  uint32_t blocks = 32;                   // --blocks: kvault blocks in the sequence
  uint64_t staging_bytes = 64ull << 20;   // --staging-bytes (PagedKvOptions::staging_bytes)
  uint32_t pipeline_depth = 2;            // --depth (PagedKvOptions::pipeline_depth)
  uint32_t reps = 5;                      // --reps: medians reported
  std::string transports = "posix,cma";   // --transports (UCX_TLS)
  std::string kvaultd;                    // --kvaultd PATH
  std::string json_path;                  // --json FILE
  bool keep = false;                      // --keep: keep the scratch directory
};

// Tokens per second of one thing, medians over the reps.
struct Rate {
  double tokens_per_s = 0;
  double gbps = 0;  // object bytes per second / 1e9
};

// Everything measured for one codec.
struct CodecFigures {
  std::string codec;
  uint64_t object_bytes = 0;  // of block 1 (block 0 may differ: sink tokens)
  uint32_t wave_blocks = 0;   // blocks per wave (per staging buffer)
  // Stages alone and end to end. to_host / to_device: the copies of the GPU path (zero on host
  // memory, where there are none).
  Rate encode, to_host, store_transfer, store_e2e;
  Rate load_transfer, to_device, decode, load_e2e;
  bool verified = false;  // the loaded cache equals the stage-alone decode, every rep
  std::string mismatch;   // why not
  // GPU: one large page-locked host-to-device copy, bytes/s / 1e9, the baseline of LoadPaged's
  // fp16-equivalent rate (tokens/s x fp16 bytes per token); 0 on host memory.
  double pinned_h2d_gbps = 0;
  double load_fp16_gbps = 0;
  // End to end / the slowest stage alone. On the GPU path the kernel and its copy run one after
  // the other on one stream (encode then to_host; to_device then decode): each pair counts as
  // one stage whose time is the sum.
  double store_ratio() const;  // store_e2e / min(encode + to_host, store_transfer)
  double load_ratio() const;   // load_e2e / min(load_transfer, to_device + decode)
  double load_vs_h2d() const;  // load_fp16_gbps / pinned_h2d_gbps (0 on host memory)

  // LoadPaged from the gpu tier through CUDA IPC (device memory with a gpu-tier daemon only).
  bool ipc_measured = false;
  Rate ipc_load;              // leased LoadPaged end to end, lookup and export included
  size_t ipc_blocks = 0;      // fewest blocks any rep decoded from the gpu tier (of `blocks`)
  bool ipc_verified = false;  // its cache equals the stage-alone decode, every rep
  std::string ipc_mismatch;   // why not
  double ipc_fp16_gbps = 0;   // ipc_load in fp16-equivalent bytes per second / 1e9
  double ipc_vs_h2d() const;  // ipc_fp16_gbps / pinned_h2d_gbps
};

// Measures one codec against the daemon `client` is connected to, and LoadPaged from the gpu tier
// of the daemon `gpu_tier_client` is connected to when it is not null (device memory only).
// Unavailable for --memory cuda without a CUDA device.
Result<CodecFigures> MeasureCodec(const Config& c, Client& client, Client* gpu_tier_client,
                                  const std::string& codec);

}  // namespace paged
}  // namespace kvault::bench
