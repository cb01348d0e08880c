#pragma once
// `kvault-bench compare`: replays a Mooncake-format trace against a live single-node kvaultd with
// real KV payloads, once per codec, under the same load and the same RAM capacity, and reports
// per codec the three measures operators ask for (restore latency, throughput, resource use),
// the prefix hit ratio and the codec's accuracy, each beside the raw (fp16) baseline.
// docs/bench_compare.md explains the method.
//
// Files: compare_bench.cc (flags, codec list, order of the runs), compare_workload.cc (trace
// sample, block shape, KV payload library, engine cache, key chains), compare_accuracy.cc (codec
// accuracy on the payload library), compare_run.cc (one codec run against a fresh kvaultd),
// compare_report.cc (medians, ratios to raw, tables, JSON) and compare_plots.cc (gnuplot PNGs).
// Not thread-safe: the benchmark's main thread drives everything.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/kernels/accuracy.h"
#include "kvault/kernels/kv_generator.h"
#include "kvault/paged_kv.h"
#include "report.h"
#include "trace/mooncake_trace.h"

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage or unreadable trace, 1 failure).
int RunCompareBench(const std::vector<std::string>& args);

namespace compare {

// Tokens of one block of a Mooncake trace (shared/traces/README.md).
inline constexpr uint32_t kTraceBlockTokens = 512;
// Llama-3-8B: KV heads and head dimension kept at full size; layers and block tokens are scaled.
inline constexpr uint32_t kKvHeads = 8;
inline constexpr uint32_t kHeadDim = 128;
inline constexpr uint32_t kModelLayers = 32;

struct Config {
  std::string trace_path;           // --trace FILE (required)
  std::vector<std::string> codecs;  // --codecs; raw first (the baseline)
  // --capacity BYTES: host tier of every run; absent: capacity_fraction of the sample's unique
  // blocks at raw size.
  std::optional<uint64_t> capacity;
  double capacity_fraction = 0.1;     // --capacity-fraction F (default 0.1)
  uint32_t sample = 4;                // --sample K: keep 1 in K prefix trees (default 4)
  uint64_t requests = 0;              // --requests N: first N sampled requests; 0 = all
  double max_seconds = 0;             // --max-seconds S: bounds the first raw replay; 0 = none
  uint32_t layers = 4;                // --layers N (default 4 of Llama-3-8B's 32)
  uint32_t block_tokens = 64;         // --block-tokens N: tokens per kvault block (default 64)
  uint32_t engine_block_tokens = 16;  // vLLM block_size of the engine cache
  uint32_t library_blocks = 64;       // distinct generated blocks payloads are drawn from
  // --raw-capacity-multiple N: raw also runs with N x the capacity (the capacity a codec's
  // compression stands in for), reported as "raw@Nx"; 0 or 1: not run.
  uint32_t raw_capacity_multiple = 3;
  uint32_t reps = 1;                     // --reps N: replays per codec (medians reported)
  uint64_t seed = 1;                     // --seed N: KV generator seed
  std::string json_path;                 // --json FILE
  std::string plots_dir;                 // --plots DIR
  std::string transports = "posix,cma";  // --transports: UCX_TLS of kvaultd and the client
  std::string kvaultd;                   // --kvaultd PATH; empty: next to this binary
  bool keep = false;                     // --keep: keep the scratch directory
};

// Splits a --codecs value into codec specs. Commas separate codecs, except that a term which
// continues a spec (one starting with "v=", "g=", "sink=" or "layers=", "rot", or a "k=" after
// a lone "v=") joins the spec before it, so "raw,int4,k=int4,v=int2,int2,g=32,rot" is
// {raw, int4, "k=int4,v=int2", "int2,g=32,rot"}. '/' always separates. Every spec is validated
// (kernels::ParseCodecSpec); InvalidArgument names a bad, empty or repeated one. raw is moved
// (or added) to the front: the baseline.
Result<std::vector<std::string>> ParseCodecList(const std::string& text);

// ---- compare_workload.cc ----

// The benchmark's block: Llama-3-8B-shaped (8 KV heads, head dim 128, fp16) with `layers`
// layers and `block_tokens` tokens standing for one 512-token trace block.
struct BlockShape {
  uint32_t layers = 4;
  uint32_t block_tokens = 64;
  uint32_t engine_block_tokens = 16;
  // fp16 bytes of one block: layers * 2 * block_tokens * kv_heads * head_dim * 2.
  uint64_t raw_bytes() const;
  // fp16 bytes of one full Llama-3-8B trace block (32 layers, 512 tokens): 64 MiB.
  static uint64_t model_block_bytes();
};

// The part of the trace that is replayed: whole prefix trees picked by a hash of their root
// block's id (spatial sampling, as SHARDS does for caches: reuse within a tree is kept and the
// hit ratio at a proportionally scaled capacity stays close to the full trace's), in time order.
struct TraceSample {
  // Full blocks of each replayed request (a partial last trace block is never stored).
  std::vector<std::vector<uint64_t>> requests;
  std::vector<double> times_ms;                 // their trace timestamps
  uint64_t trace_requests = 0;                  // in the file
  uint64_t without_full_block = 0;              // shorter than one trace block: nothing to cache
  uint64_t trace_trees = 0, sampled_trees = 0;  // distinct root blocks
  uint64_t block_refs = 0, unique_blocks = 0;   // over `requests`
  uint32_t max_blocks = 0;                      // longest request
  double span_s = 0;                            // first to last replayed request, trace time
};

// Keeps requests whose first block's id hashes to 0 modulo `sample` (1 keeps all), then the
// first `limit` of them (0: all). InvalidArgument when nothing is left.
Result<TraceSample> SampleTrace(const std::vector<TraceRequest>& trace, uint32_t sample,
                                uint64_t limit);
// The same sample cut to its first `count` requests (counts recomputed).
TraceSample FirstRequests(const TraceSample& sample, size_t count);

// KV payloads: `blocks` blocks of one sequence from the realistic generator (one seed), and the
// decode queries that go with it. Trace block `hash_id` carries library block BlockFor(hash_id),
// so every codec stores the same bytes for the same trace block.
class PayloadLibrary {
 public:
  static Result<PayloadLibrary> Create(const BlockShape& shape, uint32_t blocks, uint64_t seed);
  const kernels::KvTensor& kv() const { return kv_; }
  const kernels::QuerySet& queries() const { return queries_; }
  const kernels::KvGeneratorOptions& options() const { return options_; }
  uint32_t blocks() const { return blocks_; }
  uint32_t BlockFor(uint64_t hash_id) const;

 private:
  PayloadLibrary() = default;
  kernels::KvGeneratorOptions options_;
  kernels::KvTensor kv_;
  kernels::QuerySet queries_;
  uint32_t blocks_ = 0;
};

// The block_tokens * kv_heads * head_dim contiguous elements of (layer, kv) of block `block` in a
// contiguous tensor of whole blocks.
const uint16_t* BlockRun(const kernels::KvTensor& t, uint32_t block_tokens, uint32_t block,
                         uint32_t layer, uint32_t kv);

// An engine's paged KV cache in host memory: vLLM flash-attention NHD, fp16, one tensor per layer
// [2][num_blocks][engine_block_tokens][8][128]. A request's kvault block i lives in engine blocks
// i * r .. i * r + r - 1 (r = block_tokens / engine_block_tokens), so each (layer, kv) half of a
// kvault block is one contiguous run.
class EngineCache {
 public:
  // Room for `max_blocks` kvault blocks. InvalidArgument when block_tokens is not a multiple of
  // engine_block_tokens.
  static Result<EngineCache> Create(const BlockShape& shape, uint32_t max_blocks);
  const PagedKvCache& cache() const { return cache_; }
  // Engine block ids of a request with `blocks` kvault blocks.
  std::span<const int32_t> Ids(uint32_t blocks) const;
  uint16_t* Run(uint32_t block, uint32_t layer, uint32_t kv);
  const uint16_t* Run(uint32_t block, uint32_t layer, uint32_t kv) const;
  uint64_t run_elements() const { return run_elements_; }

 private:
  EngineCache() = default;
  BlockShape shape_;
  PagedKvCache cache_;
  std::vector<std::vector<uint16_t>> layers_;
  std::vector<int32_t> ids_;
  uint64_t run_elements_ = 0;
};

// The namespace digest of the benchmark's blocks.
Result<BlockKey> CompareNamespace(const BlockShape& shape);
// key_0 = NextBlockKey(ns, id_0), key_i = NextBlockKey(key_{i-1}, id_i), each id as two u32
// words: key i depends on ids 0..i, as a prefix cache's keys do.
std::vector<BlockKey> ChainKeys(const BlockKey& ns, std::span<const uint64_t> hash_ids);

// ---- compare_accuracy.cc ----

struct CodecAccuracy {
  std::string spec;                 // canonical (CodecSpec::ToString)
  uint32_t sink_tokens = 0;         // of the spec
  double bits_per_element = 0;      // payload bits per KV element, as `kvault-bench codec`
  double compression_ratio = 0;     // 16 / bits_per_element
  uint64_t object_bytes = 0;        // one stored block (header + payload), block index >= 1
  uint64_t first_object_bytes = 0;  // block index 0 (differs with sink tokens)
  kernels::AccuracyReport report;   // decoded library vs the generator's fp16 KV
  kernels::KvTensor decoded;        // the library after encode + decode, block by block
};

// Encodes every library block with `spec` (block b as block index b of one sequence), decodes it
// and measures accuracy (accuracy.h) against the generator's KV with its decode queries.
Result<CodecAccuracy> MeasureCodecAccuracy(const BlockShape& shape, const std::string& spec,
                                           const PayloadLibrary& library);

// ---- compare_run.cc ----

struct TierUse {
  std::string tier;  // "host", "nvme", "gpu"
  uint64_t used_bytes = 0, capacity_bytes = 0, blocks = 0, evictions = 0;
};

// One replay of the sample with one codec against a fresh kvaultd.
struct RunFigures {
  uint64_t requests = 0;
  uint64_t looked_up_blocks = 0, hit_blocks = 0;
  uint64_t loaded_blocks = 0, loaded_bytes = 0, failed_load_blocks = 0;
  uint64_t stored_blocks = 0, stored_bytes = 0, failed_store_blocks = 0;
  uint64_t verified_blocks = 0, mismatched_blocks = 0;
  // Per request with hits: lookup + load of the leading hits, in seconds and in ms per 1,000
  // restored tokens.
  std::vector<double> restore_seconds, restore_ms_per_1k;
  std::vector<double> lookup_seconds;   // every request
  double restore_total_s = 0;           // summed over requests with hits
  double store_total_s = 0;             // summed over requests that sent blocks
  double replay_s = 0;                  // the whole replay, wall clock
  double daemon_cpu_s = 0;              // daemon utime + stime during the replay
  double client_cpu_s = 0;              // libkvault's threads (process CPU minus the replay thread)
  uint64_t daemon_hwm_bytes = 0;        // VmHWM at the end
  uint64_t daemon_anon_peak_bytes = 0;  // largest RssAnon sampled during the replay
  std::vector<TierUse> tiers;           // from the daemon's Stats at the end
  std::string first_failure;            // first failed block (load, store or verification)
};

struct RunInput {
  const Config* config = nullptr;
  BlockShape shape;
  uint64_t capacity = 0;
  uint64_t raw_object = 0;  // bytes of one raw block's object, the largest any codec stores
  const TraceSample* sample = nullptr;
  const PayloadLibrary* library = nullptr;
  const CodecAccuracy* accuracy = nullptr;
  std::string codec;       // the spec as given
  std::string scratch;     // an existing directory for this run's daemon
  double max_seconds = 0;  // stop the replay after this long (0: replay the whole sample)
};

// Starts kvaultd (host tier = capacity, no nvme tier), replays the sample one request after the
// other and stops the daemon. Per request: LookupPrefix with a lease, LoadPaged of the leading
// hits into the engine cache (timed together: the restore), release of the lease, byte check of
// the loaded blocks against the codec's own encode + decode, then StorePaged of the request's
// blocks (skip_stored; timed). Errors: the daemon did not start, a whole lookup or transfer
// failed (daemon died or timed out). Failed blocks are counted in the figures.
Result<RunFigures> RunCodec(const RunInput& in);

// ---- compare_report.cc ----

// One codec's figures over its runs: latencies over every run's samples, other figures the
// median over runs.
struct CodecSummary {
  double hit_ratio = 0;
  uint64_t restores = 0;  // requests with hits, summed over runs
  double restore_p50_ms_per_1k = 0, restore_p99_ms_per_1k = 0;
  double restore_p50_ms = 0, restore_p99_ms = 0;
  double lookup_p50_us = 0;
  double store_tokens_per_s = 0, load_tokens_per_s = 0;
  double store_gbps = 0, load_gbps = 0;            // object bytes moved
  double store_fp16_gbps = 0, load_fp16_gbps = 0;  // the same tokens at fp16
  double replay_tokens_per_s = 0;                  // looked-up tokens / replay wall time
  double daemon_cpu_s = 0, client_cpu_s = 0;
  double daemon_hwm_bytes = 0, daemon_anon_peak_bytes = 0;
  double host_used_bytes = 0, host_blocks = 0, evictions = 0;
  std::vector<double> restore_ms_per_1k;  // every run's samples, sorted (the CDF)
};

struct CodecResult {
  std::string label;  // the spec as given, or "raw@Nx" for the raw run at N x the capacity
  CodecAccuracy accuracy;
  std::vector<RunFigures> runs;
  CodecSummary summary;
  uint32_t capacity_multiple = 1;  // this codec's host tier = the run's capacity x this
};

// The capacity target: a codec at 1x the capacity hits at least as often as raw at N x.
struct CapacityCheck {
  std::string codec;  // the label of the quantized codec judged ("int4")
  double codec_hit_ratio = 0;
  uint32_t multiple = 0;  // raw's capacity multiple
  double raw_hit_ratio = 0;
  bool met = false;
};

// The check for int4 (the spec "int4" with its defaults) against the raw@Nx run; nullopt when
// either of them was not run.
std::optional<CapacityCheck> CheckCapacity(const std::vector<CodecResult>& results);

CodecSummary Summarize(const std::vector<RunFigures>& runs, const BlockShape& shape);

// What the report says about the run as a whole.
struct RunContext {
  const Config* config = nullptr;
  BlockShape shape;
  uint64_t capacity = 0;
  uint64_t raw_object = 0;    // bytes of one raw block's object
  std::string capacity_note;  // how the capacity was chosen
  TraceSample sample;         // as replayed
  uint64_t library_tokens = 0;
  std::vector<std::string> notes;  // printed under the tables
  std::vector<std::string> plot_files;
  std::string plot_note;  // why there are no plots, when there are none
  double wall_s = 0;
};

void PrintReport(const RunContext& ctx, const std::vector<CodecResult>& results);
Json ReportJson(const RunContext& ctx, const std::vector<CodecResult>& results);

// ---- compare_plots.cc ----

struct PlotOutcome {
  std::vector<std::string> files;  // PNGs written
  std::string note;                // empty, or why plots are missing
};

// Writes compare_latency_cdf.png (restore ms per 1,000 tokens, one CDF per codec),
// compare_hit_ratio.png and compare_throughput.png (store and load tokens/s) into `dir`
// (created if missing) with gnuplot (pngcairo, else png), beside the .dat files and the .gp
// script they come from. No plots and a note when gnuplot is missing or fails.
PlotOutcome WritePlots(const std::string& dir, const std::vector<CodecResult>& results);

}  // namespace compare
}  // namespace kvault::bench
