// `kvault-bench compare`: flags, the codec list and the order of the runs (compare_bench.h).
#include "compare_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "flag_checks.h"
#include "kvault/common/cli_args.h"
#include "kvault/kernels/codec_spec.h"
#include "kvault/kv_store.h"
#include "kvault/storage/host_tier.h"
#include "mode_args.h"
#include "number_arg.h"
#include "scratch_dir.h"
#include "size_arg.h"

namespace kvault::bench {
namespace compare {
namespace {

namespace fs = std::filesystem;

// kvaultd's smallest storage.host_capacity.
constexpr uint64_t kMinCapacity = uint64_t{1} << 20;

constexpr const char* kUsage =
    R"(kvault-bench compare: codecs side by side on a request trace against a live kvaultd

Usage: kvault-bench compare --trace FILE [--codecs LIST]
                            [--capacity BYTES | --capacity-fraction F] [--sample K]
                            [--requests N] [--max-seconds S] [--layers N] [--block-tokens N]
                            [--raw-capacity-multiple N] [--reps N] [--seed N] [--json FILE]
                            [--plots DIR] [--transports TLS] [--kvaultd PATH] [--keep]

Replays a Mooncake-format trace (JSONL with timestamp, input_length, output_length, hash_ids;
shared/traces/README.md) once per codec, each time against a fresh kvaultd started by the
benchmark with the same host (RAM) tier and no nvme tier, so that only the codec differs.
Requests run in time order, one after another, as fast as possible (not in trace time). Per
request: the key chain of its full blocks (key i depends on hash ids 0..i) is looked up with a
lease, the cached prefix is loaded and decoded into an engine's paged KV cache (host memory,
vLLM NHD layout, fp16) with LoadPaged, and the request's blocks are then stored with StorePaged
(skip_stored: only the blocks after the cached prefix are encoded and sent). Loaded blocks are
checked byte for byte against the codec's own encode + decode of their payload.

Blocks are Llama-3-8B-shaped (8 KV heads, head dim 128, fp16) and scaled to fit the machine: one
512-token trace block becomes one kvault block of --block-tokens tokens and --layers layers (the
full model's block would be 64 MiB). Payloads come from the realistic KV generator
(docs/kv_generator.md): a library of 64 generated blocks of one sequence, block chosen by a hash
of the trace block's id, so every codec stores the same bytes for the same trace block.

Reported per codec, raw (fp16) being the baseline that every codec is set beside as a ratio:
  latency     restore time (lookup + load of the cached prefix) per 1,000 restored tokens,
              p50 and p99 over the requests with hits
  throughput  tokens/s and GB/s stored (StorePaged of new blocks) and loaded (the restores)
  resources   daemon CPU seconds (its threads' time on a CPU) and peak resident memory
              (VmHWM, RssAnon), bytes and blocks held in each tier (the daemon's Stats),
              libkvault's CPU seconds
  hit ratio   looked-up blocks found as a cached prefix
  accuracy    `kvault-bench codec`'s figures on the payload KV: bits per element, compression,
              K/V SQNR, attention KL, attention output error, top-1 agreement

Options:
  --trace FILE          the trace (required)
  --codecs LIST         codec specs (docs/codecs.md) separated by commas, or by '/'; a term
                        that continues a spec (v=..., g=N, rot, sink=N, layers=...) belongs to
                        the spec before it, so "raw,int4,k=int4,v=int2" is three codecs. raw is
                        always run, first, as the baseline. Default raw,fp8,int8,int4,
                        k=int4,v=int2.
  --capacity BYTES      host tier of every run (suffixes KiB, MiB, GiB); at least 1 MiB and one
                        raw block.
  --capacity-fraction F instead: F x the sample's unique blocks at raw size (default 0.1, the
                        traces README's convention, at least 1 MiB); quantized codecs fit more
                        blocks in it. The daemon holds fewer raw blocks than F x unique: each
                        takes a host-arena size class (up to 12.5% more), and its movers keep
                        the tier under the 0.95 watermark; the table's 'blocks held' says how
                        many.
  --sample K            replay 1 in K prefix trees: requests whose first block's hash id hashes
                        to 0 mod K, all their requests kept (spatial sampling keeps reuse, so
                        hit ratios stay close to the whole trace's); 1 = every request
                        (default 4: 717 requests of synthetic_trace.jsonl, which takes about
                        100 s for the default codecs on two cores).
  --requests N          then only the first N sampled requests (default: all).
  --max-seconds S       stop the first raw replay after S seconds; every codec then replays
                        the requests it got through (default: no limit).
  --layers N            layers per block, 1..32 (default 4: 1 MiB raw blocks).
  --block-tokens N      tokens per kvault block, a multiple of 16 (the engine's block size),
                        16..512 (default 64; int4/int2 group keys over 64 tokens).
  --raw-capacity-multiple N
                        also replay raw with N x the capacity, reported as raw@Nx, and judge
                        the capacity target: int4 (if listed) at 1x hits at least as often as
                        raw at N x (default 3; 0 or 1: no such run, 2..16).
  --reps N              replays per codec, codecs taking turns; medians over them (default 1).
  --seed N              KV generator seed (default 1).
  --json FILE           also write every figure as JSON.
  --plots DIR           write PNG plots with gnuplot: compare_latency_cdf.png (restore latency
                        CDF per codec), compare_hit_ratio.png, compare_throughput.png (store
                        and load tokens/s); without gnuplot there are no plots and a note says so.
  --transports TLS      UCX transports of kvaultd and the client (default posix,cma).
  --kvaultd PATH        the daemon binary (default: kvaultd next to kvault-bench).
  --keep                keep the scratch directory (daemon logs).

Exit status: 0 ok, 2 bad usage or an unreadable trace, 1 when a run fails (the daemon does not
start or dies, a load or store fails, or a loaded block differs from what was stored).
docs/bench_compare.md explains the method and every figure.
)";

int Fail(int code, const Status& s) { return FailMode("compare", code, s); }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Whether a comma-separated term of --codecs continues the spec before it: a V side, or an
// option that applies to the whole segment (docs/codecs.md).
bool ContinuesSpec(const std::string& term) {
  for (const char* prefix : {"v=", "g=", "sink=", "layers="}) {
    if (StartsWith(term, prefix)) return true;
  }
  return term == "rot" || StartsWith(term, "rot;");
}

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a,
      CliArgs::Parse(args,
                     {"trace", "codecs", "capacity", "capacity-fraction", "sample", "requests",
                      "max-seconds", "layers", "block-tokens", "reps", "seed", "json", "plots",
                      "transports", "kvaultd", "raw-capacity-multiple"},
                     {"keep"}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  c.trace_path = a.GetOr("trace", "");
  if (c.trace_path.empty()) return Status::InvalidArgument("--trace FILE is required");
  KVAULT_ASSIGN_OR_RETURN(c.codecs,
                          ParseCodecList(a.GetOr("codecs", "raw,fp8,int8,int4,k=int4,v=int2")));
  if (a.Has("capacity") && a.Has("capacity-fraction")) {
    return Status::InvalidArgument("--capacity and --capacity-fraction exclude each other");
  }
  if (a.Has("capacity")) {
    KVAULT_ASSIGN_OR_RETURN(c.capacity,
                            ParseSizeArg("--capacity", *a.Get("capacity"), 1, uint64_t{1} << 40));
  }
  if (a.Has("capacity-fraction")) {
    KVAULT_ASSIGN_OR_RETURN(
        c.capacity_fraction,
        ParseNumberArg("--capacity-fraction", *a.Get("capacity-fraction"), 1e-6, 1));
  }
  KVAULT_ASSIGN_OR_RETURN(uint64_t sample, a.GetUint("sample", c.sample, 1, 1000000));
  c.sample = static_cast<uint32_t>(sample);
  KVAULT_ASSIGN_OR_RETURN(c.requests, a.GetUint("requests", 0, 1, 100000000));
  if (a.Has("max-seconds")) {
    KVAULT_ASSIGN_OR_RETURN(c.max_seconds,
                            ParseNumberArg("--max-seconds", *a.Get("max-seconds"), 0.01, 86400));
  }
  KVAULT_ASSIGN_OR_RETURN(uint64_t layers, a.GetUint("layers", c.layers, 1, kModelLayers));
  c.layers = static_cast<uint32_t>(layers);
  KVAULT_ASSIGN_OR_RETURN(uint64_t block, a.GetUint("block-tokens", c.block_tokens,
                                                    c.engine_block_tokens, kTraceBlockTokens));
  if (block % c.engine_block_tokens != 0) {
    return Status::InvalidArgument("--block-tokens must be a multiple of " +
                                   std::to_string(c.engine_block_tokens) + ", got " +
                                   std::to_string(block));
  }
  c.block_tokens = static_cast<uint32_t>(block);
  KVAULT_ASSIGN_OR_RETURN(uint64_t multiple,
                          a.GetUint("raw-capacity-multiple", c.raw_capacity_multiple, 0, 16));
  c.raw_capacity_multiple = static_cast<uint32_t>(multiple);
  KVAULT_ASSIGN_OR_RETURN(uint64_t reps, a.GetUint("reps", c.reps, 1, 100));
  c.reps = static_cast<uint32_t>(reps);
  KVAULT_ASSIGN_OR_RETURN(c.seed, a.GetUint("seed", c.seed, 0, ~uint64_t{0}));
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  c.plots_dir = a.GetOr("plots", "");
  c.transports = a.GetOr("transports", c.transports);
  KVAULT_RETURN_IF_ERROR(CheckTransports("--transports", c.transports));
  c.kvaultd = a.GetOr("kvaultd", "");
  if (!c.kvaultd.empty()) KVAULT_RETURN_IF_ERROR(CheckExecutableFile("--kvaultd", c.kvaultd));
  c.keep = a.Has("keep");
  // Every codec must fit the block shape (group sizes, sink tokens).
  for (const std::string& spec : c.codecs) {
    Status s = KvBlockCodec::Create({.num_layers = c.layers,
                                     .kv_heads = kKvHeads,
                                     .head_dim = kHeadDim,
                                     .dtype = DType::kF16,
                                     .block_tokens = c.block_tokens,
                                     .codec = spec,
                                     .ns_digest = {}})
                   .status();
    if (!s.ok()) return Status::InvalidArgument("codec '" + spec + "': " + s.message());
  }
  return c;
}

}  // namespace

Result<std::vector<std::string>> ParseCodecList(const std::string& text) {
  std::vector<std::string> specs;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t slash = std::min(text.find('/', start), text.size());
    const std::string group = text.substr(start, slash - start);
    bool first = true;
    size_t at = 0;
    while (at <= group.size()) {
      const size_t comma = std::min(group.find(',', at), group.size());
      const std::string term = group.substr(at, comma - at);
      if (term.empty()) return Status::InvalidArgument("--codecs: empty codec in '" + text + "'");
      // "v=int2,k=int4" is one spec too: a k= side joins a spec that has only a v= side.
      const bool joins_v = !first && StartsWith(term, "k=") && StartsWith(specs.back(), "v=") &&
                           specs.back().find(",k=") == std::string::npos;
      if (first || (!ContinuesSpec(term) && !joins_v)) {
        specs.push_back(term);
      } else {
        specs.back() += "," + term;
      }
      first = false;
      at = comma + 1;
    }
    start = slash + 1;
  }
  std::vector<std::string> canonical;
  for (const std::string& spec : specs) {
    Result<kernels::CodecSpec> parsed = kernels::ParseCodecSpec(spec);
    if (!parsed.ok()) {
      return Status::InvalidArgument("--codecs: unknown or invalid codec '" + spec +
                                     "': " + parsed.status().message());
    }
    const std::string name = parsed->ToString();
    if (std::find(canonical.begin(), canonical.end(), name) != canonical.end()) {
      return Status::InvalidArgument("--codecs: '" + spec + "' is listed twice");
    }
    canonical.push_back(name);
  }
  // raw is the baseline: always run, first.
  const auto raw = std::find(canonical.begin(), canonical.end(), "raw");
  if (raw != canonical.end()) specs.erase(specs.begin() + (raw - canonical.begin()));
  specs.insert(specs.begin(), "raw");
  return specs;
}

}  // namespace compare

int RunCompareBench(const std::vector<std::string>& args) {
  using namespace compare;  // NOLINT(google-build-using-namespace): this module's helpers
  const double t_start = Now();
  std::optional<Config> parsed;
  if (std::optional<int> done = StartMode("compare", kUsage, args, ParseConfig, parsed))
    return *done;
  const Config& c = *parsed;
  Result<std::vector<TraceRequest>> trace = ReadMooncakeTrace(c.trace_path);
  if (!trace.ok()) return Fail(2, trace.status().WithContext("--trace " + c.trace_path));
  Result<TraceSample> sampled = SampleTrace(*trace, c.sample, c.requests);
  if (!sampled.ok()) return Fail(2, sampled.status());
  trace->clear();

  RunContext ctx;
  ctx.config = &c;
  ctx.shape = {c.layers, c.block_tokens, c.engine_block_tokens};
  ctx.sample = std::move(*sampled);
  Result<KvBlockCodec> raw_codec = KvBlockCodec::Create({.num_layers = c.layers,
                                                         .kv_heads = kKvHeads,
                                                         .head_dim = kHeadDim,
                                                         .dtype = DType::kF16,
                                                         .block_tokens = c.block_tokens,
                                                         .codec = "raw",
                                                         .ns_digest = {}});
  if (!raw_codec.ok()) return Fail(2, raw_codec.status());
  const uint64_t raw_object = raw_codec->ObjectBytes(1);
  ctx.raw_object = raw_object;
  if (c.capacity) {
    ctx.capacity = *c.capacity;
    ctx.capacity_note = "--capacity";
  } else {
    const uint64_t blocks =
        static_cast<uint64_t>(c.capacity_fraction * static_cast<double>(ctx.sample.unique_blocks));
    ctx.capacity = blocks * raw_object;
    ctx.capacity_note = Format(
        "%g x %llu unique blocks of the sample = %llu raw blocks of %llu "
        "bytes",
        c.capacity_fraction, static_cast<unsigned long long>(ctx.sample.unique_blocks),
        static_cast<unsigned long long>(blocks), static_cast<unsigned long long>(raw_object));
  }
  if (!c.capacity && ctx.capacity < kMinCapacity) {
    ctx.capacity = kMinCapacity;
    ctx.capacity_note += ", raised to kvaultd's smallest host tier (1 MiB)";
  }
  // kvaultd holds a block in its host-arena size class, up to 12.5% larger than the block.
  const uint64_t raw_held = storage::HostTierClassBytes(raw_object);
  if (ctx.capacity < raw_held || ctx.capacity < kMinCapacity) {
    return Fail(2, Status::InvalidArgument(Format(
                       "the capacity (%llu bytes) must hold at least one raw block (%llu bytes, "
                       "held in %llu of kvaultd's host tier) and 1 MiB (kvaultd's smallest host "
                       "tier); raise --capacity or --capacity-fraction",
                       static_cast<unsigned long long>(ctx.capacity),
                       static_cast<unsigned long long>(raw_object),
                       static_cast<unsigned long long>(raw_held))));
  }

  const TraceSample& t = ctx.sample;
  std::printf("kvault-bench compare: trace %s\n", c.trace_path.c_str());
  std::printf(
      "sample       %zu of %llu requests (1 in %u prefix trees: %llu of %llu; %llu requests "
      "without a full block skipped), %llu block references, %llu unique blocks, %.0f s of "
      "trace time\n",
      t.requests.size(), static_cast<unsigned long long>(t.trace_requests), c.sample,
      static_cast<unsigned long long>(t.sampled_trees),
      static_cast<unsigned long long>(t.trace_trees),
      static_cast<unsigned long long>(t.without_full_block),
      static_cast<unsigned long long>(t.block_refs),
      static_cast<unsigned long long>(t.unique_blocks), t.span_s);
  std::printf(
      "scale        one 512-token trace block = one kvault block of %u tokens x %u layers of "
      "Llama-3-8B's KV (8 KV heads, head dim 128, fp16): %.0f KiB raw instead of %.0f MiB "
      "(32 layers x 512 tokens), 1/%.0f of it\n",
      c.block_tokens, c.layers, ctx.shape.raw_bytes() / 1024.0,
      BlockShape::model_block_bytes() / 1048576.0,
      static_cast<double>(BlockShape::model_block_bytes()) / ctx.shape.raw_bytes());
  std::printf("capacity     %.1f MiB host tier for every codec (%s), nvme tier off\n",
              ctx.capacity / 1048576.0, ctx.capacity_note.c_str());
  std::printf(
      "             kvaultd holds a raw block in a %llu-byte size class and keeps the tier "
      "under its watermarks: 'blocks held' below is what each codec's run held\n",
      static_cast<unsigned long long>(raw_held));
  if (c.raw_capacity_multiple > 1) {
    std::printf("             and raw@%ux: raw again with %u x that, %.1f MiB\n",
                c.raw_capacity_multiple, c.raw_capacity_multiple,
                ctx.capacity * static_cast<double>(c.raw_capacity_multiple) / 1048576.0);
  }
  std::string list;
  for (const std::string& codec : c.codecs) list += (list.empty() ? "" : " / ") + codec;
  if (c.raw_capacity_multiple > 1) list += Format(" / raw@%ux", c.raw_capacity_multiple);
  std::printf("codecs       %s (raw is the baseline)\n", list.c_str());
  std::fflush(stdout);

  Result<PayloadLibrary> library = PayloadLibrary::Create(ctx.shape, c.library_blocks, c.seed);
  if (!library.ok()) return Fail(1, library.status());
  ctx.library_tokens = uint64_t{c.library_blocks} * c.block_tokens;
  std::vector<CodecResult> results;
  for (const std::string& codec : c.codecs) {
    Result<CodecAccuracy> acc = MeasureCodecAccuracy(ctx.shape, codec, *library);
    if (!acc.ok()) return Fail(1, acc.status().WithContext("accuracy of " + codec));
    results.push_back({codec, std::move(*acc), {}, {}});
  }
  if (c.raw_capacity_multiple > 1) {  // raw again, with the RAM the codecs' compression saves
    CodecResult more{Format("raw@%ux", c.raw_capacity_multiple), results.front().accuracy, {}, {}};
    more.capacity_multiple = c.raw_capacity_multiple;
    results.push_back(std::move(more));
  }
  std::fprintf(stderr, "  measured codec accuracy on %llu tokens of generated KV\n",
               static_cast<unsigned long long>(ctx.library_tokens));

  Result<ScratchDir> scratch = ScratchDir::Create("kvault-bench-compare");
  if (!scratch.ok()) return Fail(1, scratch.status());
  scratch->set_keep(c.keep);
  double max_seconds = c.max_seconds;
  for (uint32_t rep = 0; rep < c.reps; ++rep) {
    for (size_t i = 0; i < results.size(); ++i) {
      CodecResult& r = results[i];
      RunInput in;
      in.config = &c;
      in.shape = ctx.shape;
      in.capacity = ctx.capacity * r.capacity_multiple;
      in.raw_object = ctx.raw_object;
      in.sample = &ctx.sample;
      in.library = &*library;
      in.accuracy = &r.accuracy;
      in.codec = r.capacity_multiple > 1 ? std::string("raw") : r.label;
      in.max_seconds = max_seconds;
      in.scratch = (fs::path(scratch->path()) / Format("run-%u-%zu", rep, i)).string();
      std::error_code ec;
      fs::create_directories(in.scratch, ec);
      Result<RunFigures> run = RunCodec(in);
      if (!run.ok()) {
        scratch->set_keep(true);  // the daemon's log explains the failure
        return Fail(1, run.status().WithContext(r.label + " (logs kept in " + in.scratch + ")"));
      }
      if (max_seconds > 0) {
        // The first replay sets the sample every other replay gets: identical load.
        if (run->requests < ctx.sample.requests.size()) {
          ctx.notes.push_back(
              Format("--max-seconds %g: the raw replay got through %llu of %zu "
                     "sampled requests; every codec replays those",
                     c.max_seconds, static_cast<unsigned long long>(run->requests),
                     ctx.sample.requests.size()));
          ctx.sample = FirstRequests(ctx.sample, run->requests);
        }
        max_seconds = 0;
      }
      std::fprintf(stderr, "  %s: %llu requests in %.1f s, hit ratio %.1f%%\n", r.label.c_str(),
                   static_cast<unsigned long long>(run->requests), run->replay_s,
                   100.0 * run->hit_blocks / std::max<uint64_t>(1, run->looked_up_blocks));
      r.runs.push_back(std::move(*run));
    }
  }
  uint64_t mismatched = 0, failed_loads = 0, failed_stores = 0;
  for (CodecResult& r : results) {
    r.summary = Summarize(r.runs, ctx.shape);
    for (const RunFigures& f : r.runs) {
      mismatched += f.mismatched_blocks;
      failed_loads += f.failed_load_blocks;
      failed_stores += f.failed_store_blocks;
      if (!f.first_failure.empty()) {
        ctx.notes.push_back("WARNING " + r.label + ": " + f.first_failure +
                            Format(" (%llu loads, %llu stores failed)",
                                   static_cast<unsigned long long>(f.failed_load_blocks),
                                   static_cast<unsigned long long>(f.failed_store_blocks)));
      }
    }
  }
  if (!c.plots_dir.empty()) {
    PlotOutcome plots = WritePlots(c.plots_dir, results);
    ctx.plot_files = plots.files;
    ctx.plot_note = plots.note;
  }
  ctx.wall_s = Now() - t_start;
  PrintReport(ctx, results);
  std::printf("time         %.1f s in all\n", ctx.wall_s);
  if (!c.json_path.empty()) {
    Status s = WriteJsonFile(c.json_path, ReportJson(ctx, results));
    if (!s.ok()) return Fail(1, s);
    std::printf("JSON written to %s\n", c.json_path.c_str());
  }
  // Figures with failed transfers are not measurements of a working store (capacity pressure
  // evicts; it does not fail stores).
  if (mismatched > 0 || failed_loads > 0 || failed_stores > 0) {
    return Fail(1, Status::Internal(Format(
                       "%llu loaded blocks differ from what was stored, %llu leased loads and "
                       "%llu stores failed (the WARNING lines above say why)",
                       static_cast<unsigned long long>(mismatched),
                       static_cast<unsigned long long>(failed_loads),
                       static_cast<unsigned long long>(failed_stores))));
  }
  return 0;
}

}  // namespace kvault::bench
