// `kvault-bench paged` (paged_bench.h): flags, the daemon, the report.
#include "paged_bench.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <system_error>

#include "compare_bench.h"
#include "flag_checks.h"
#include "kvault/common/cli_args.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kv_store.h"
#include "kvaultd_process.h"
#include "mode_args.h"
#include "report.h"
#include "scratch_dir.h"
#include "size_arg.h"
#include "store_bench.h"

namespace kvault::bench {
namespace {

using paged::CodecFigures;
using paged::Config;

constexpr double kTarget = 0.7;  // end to end >= 0.7x the slowest stage alone

constexpr const char* kUsage =
    R"(kvault-bench paged: StorePaged / LoadPaged end to end vs their stages alone

Usage: kvault-bench paged [--memory host|cuda] [--server HOST:PORT] [--gpu-tier-server HOST:PORT]
                          [--codecs LIST] [--layers N] [--block-tokens N] [--blocks N]
                          [--staging-bytes B] [--depth N] [--reps N] [--transports TLS]
                          [--kvaultd PATH] [--json FILE] [--keep]

  --memory KIND        where the engine cache lives: host (default; the CPU codecs) or cuda
                       (device memory of GPU 0: the CUDA kernels, page-locked staging;
                       exit 2 at once when no CUDA device is usable).
  --server HOST:PORT   use this daemon; default: start kvaultd from this binary's directory
                       (ports 0, scratch data directory, no nvme tier, a host tier that holds
                       the run) and stop it at the end.
  --gpu-tier-server HOST:PORT
                       with --memory cuda: a daemon on this host whose gpu tier exports CUDA
                       IPC handles (storage.gpu_ipc_export); default: with --server, none (that
                       measurement is skipped), else a second kvaultd started beside the first
                       with a gpu tier on GPU 0 where blocks land (when it cannot start: a
                       warning, and that measurement is skipped).
  --codecs LIST        codec specs as for kvault-bench compare: separated by commas (a term
                       that continues a spec, such as v=int2, joins it) or '/' (default
                       raw,fp8,int4; raw always runs, first).
  --layers N           layers of the Llama-3-8B-shaped KV (8 KV heads, head dim 128, fp16;
                       default 8 of its 32, to fit the machine; stated in the output).
  --block-tokens N     tokens per kvault block (default 256; a multiple of 16, the engine's
                       vLLM block size).
  --blocks N           kvault blocks in the sequence (default 32: 8192 tokens).
  --staging-bytes B    PagedKvOptions::staging_bytes (default 64MiB).
  --depth N            PagedKvOptions::pipeline_depth (default 2).
  --reps N             repetitions, medians reported (default 5), after one untimed warm-up.
  --transports TLS     UCX transports of the daemon and the client (default posix,cma).
  --kvaultd PATH       the daemon binary (default: kvaultd next to kvault-bench).
  --json FILE          also write every figure as JSON.
  --keep               keep the scratch directory (the daemon's log); it is also kept, and
                       named on stderr, when a measurement fails for another reason than bad
                       input.

The engine cache is in vLLM's flash NHD layout, filled with the realistic KV generator's data.
For each codec and repetition, on the same blocks:
  store stages alone   encode = gather + encode of every block from the cache (host:
                       KvBlockCodec::Encode; cuda: the CUDA kernel into device memory);
                       to host (cuda only) = copy to page-locked staging, header and checksum;
                       transfer = Client::Store of the sealed objects from registered memory,
                       in the pipeline's waves (staging-bytes / depth per wave), one at a time
  load stages alone    transfer = Client::Load of the objects into registered memory, same
                       waves; to device (cuda only) = verify and copy the payloads to the
                       device; decode = verify (host) and decode + scatter into a cache
  end to end           StorePaged of the sequence under new keys; LoadPaged of it into a cleared
                       cache (cuda: until its stream is done), compared byte for byte with the
                       stage-alone decode
  gpu tier (cuda only) StorePaged to the gpu-tier daemon, wait until the blocks sit in its gpu
                       tier, then LookupPrefix with a lease + LoadPaged (PagedKvOptions::gpu_ipc):
                       the blocks are decoded straight from the daemon's device memory through
                       CUDA IPC, no host staging; timed from the lookup to the stream's end, the
                       same byte-for-byte check, and every block must have come that way (else
                       the target reads NOT VIA IPC and the exit code is 1)
A pipelined transfer should run at the pace of its slowest stage: the targets are end to end
>= 0.7x the slowest stage alone, for store and for load (with cuda a kernel and its copy run one
after the other on one stream, so encode + to host and to device + decode each count as one
stage, their times added); with cuda also LoadPaged with fp8 >= 1.4x a page-locked
host-to-device copy, counted in fp16-equivalent bytes, once from the host tier (the staged path)
and once from the gpu tier (CUDA IPC). Targets are printed as PASS/FAIL, not
asserted: the exit code is 0 whether or not one is met, 1 when a run fails or a loaded byte
differs.
)";

int Fail(int code, const Status& s) { return FailMode("paged", code, s); }

// Raw (fp16) bytes of one block's KV.
uint64_t RawBlockBytes(const Config& c) {
  return uint64_t{c.layers} * 2 * c.block_tokens * c.kv_heads * c.head_dim * 2;
}

// The largest --limits-max-block-bytes kvaultd accepts (its flag is a 32-bit size).
constexpr uint64_t kKvaultdMaxBlockBytes = 4294967295;

// The started kvaultd's limits: stage-alone and end-to-end objects of one codec at once, at raw
// size, with room to spare.
uint64_t DaemonHostCapacity(const Config& c) {
  return std::max<uint64_t>(256ull << 20, 3 * uint64_t{c.blocks} * RawBlockBytes(c));
}
uint64_t DaemonMaxBlockBytes(const Config& c) {
  return std::max<uint64_t>(64ull << 20, 2 * RawBlockBytes(c));
}

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a,
      CliArgs::Parse(args,
                     {"memory", "server", "gpu-tier-server", "codecs", "layers", "block-tokens",
                      "blocks", "staging-bytes", "depth", "reps", "transports", "kvaultd", "json"},
                     {"keep"}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  const std::string memory = a.GetOr("memory", "host");
  if (memory != "host" && memory != "cuda") {
    return Status::InvalidArgument("--memory takes host or cuda, got '" + memory + "'");
  }
  c.memory = memory == "cuda" ? MemoryKind::kCuda : MemoryKind::kHost;
  c.server = a.GetOr("server", "");
  if (a.Has("server") && c.server.find(':') == std::string::npos) {
    return Status::InvalidArgument("--server takes HOST:PORT, got '" + c.server + "'");
  }
  c.gpu_tier_server = a.GetOr("gpu-tier-server", "");
  if (a.Has("gpu-tier-server") && c.gpu_tier_server.find(':') == std::string::npos) {
    return Status::InvalidArgument("--gpu-tier-server takes HOST:PORT, got '" + c.gpu_tier_server +
                                   "'");
  }
  if (a.Has("gpu-tier-server") && c.memory != MemoryKind::kCuda) {
    return Status::InvalidArgument("--gpu-tier-server needs --memory cuda");
  }
  KVAULT_ASSIGN_OR_RETURN(c.codecs, compare::ParseCodecList(a.GetOr("codecs", "raw,fp8,int4")));
  KVAULT_ASSIGN_OR_RETURN(uint64_t layers, a.GetUint("layers", 8, 1, 128));
  c.layers = static_cast<uint32_t>(layers);
  KVAULT_ASSIGN_OR_RETURN(uint64_t block_tokens, a.GetUint("block-tokens", 256, 16, 4096));
  if (block_tokens % c.engine_block_tokens != 0) {
    return Status::InvalidArgument("--block-tokens must be a multiple of 16, got " +
                                   std::to_string(block_tokens));
  }
  c.block_tokens = static_cast<uint32_t>(block_tokens);
  KVAULT_ASSIGN_OR_RETURN(uint64_t blocks, a.GetUint("blocks", 32, 1, 4096));
  c.blocks = static_cast<uint32_t>(blocks);
  KVAULT_ASSIGN_OR_RETURN(
      c.staging_bytes,
      ParseSizeArg("--staging-bytes", a.GetOr("staging-bytes", "64MiB"), 1 << 20, 1ull << 36));
  KVAULT_ASSIGN_OR_RETURN(uint64_t depth, a.GetUint("depth", 2, 1, 16));
  c.pipeline_depth = static_cast<uint32_t>(depth);
  KVAULT_ASSIGN_OR_RETURN(uint64_t reps, a.GetUint("reps", 5, 1, 1000));
  c.reps = static_cast<uint32_t>(reps);
  c.transports = a.GetOr("transports", "posix,cma");
  KVAULT_RETURN_IF_ERROR(CheckTransports("--transports", c.transports));
  c.kvaultd = a.GetOr("kvaultd", "");
  if (!c.kvaultd.empty() && c.server.empty()) {
    KVAULT_RETURN_IF_ERROR(CheckExecutableFile("--kvaultd", c.kvaultd));
  }
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  c.keep = a.Has("keep");
  if (c.server.empty()) {
    if (DaemonMaxBlockBytes(c) > kKvaultdMaxBlockBytes) {
      return Status::InvalidArgument(
          "--layers " + std::to_string(c.layers) + " x --block-tokens " +
          std::to_string(c.block_tokens) + " make " + std::to_string(RawBlockBytes(c) >> 20) +
          " MiB raw blocks; the kvaultd this run starts takes objects up to twice that, which "
          "must stay under 4 GiB (kvaultd's limit): use fewer layers or tokens per block");
    }
    KVAULT_RETURN_IF_ERROR(CheckFitsInMemory(
        "the kvaultd this run starts, with a host tier of 3 x --blocks x the raw block,",
        static_cast<double>(DaemonHostCapacity(c))));
  }
  if (c.memory == MemoryKind::kHost) {
    KVAULT_RETURN_IF_ERROR(
        CheckFitsInMemory("the engine cache (--blocks x the raw block)",
                          static_cast<double>(c.blocks) * static_cast<double>(RawBlockBytes(c))));
  }
  // Each staging buffer must hold the largest object of every codec: checked here, before a
  // daemon starts (MeasureCodec checks it again).
  const uint64_t per_buffer = c.staging_bytes / c.pipeline_depth;
  for (const std::string& codec : c.codecs) {
    KVAULT_ASSIGN_OR_RETURN(KvBlockCodec block_codec,
                            KvBlockCodec::Create({c.layers, c.kv_heads, c.head_dim, DType::kF16,
                                                  c.block_tokens, codec, BlockKey{}}));
    uint64_t largest = 0;
    for (uint32_t i = 0; i < c.blocks; ++i) {
      largest = std::max(largest, block_codec.ObjectBytes(i));
    }
    if (per_buffer < largest) {
      return Status::InvalidArgument("--staging-bytes / --depth (" + std::to_string(per_buffer) +
                                     " bytes) cannot hold one " + codec + " object of " +
                                     std::to_string(largest) + " bytes");
    }
  }
  return c;
}

std::string Tps(const paged::Rate& r) {
  return r.tokens_per_s > 0 ? Format("%.0f", r.tokens_per_s) : "-";
}

Json RateJson(const paged::Rate& r) {
  return Json::Object{{"tokens_per_s", r.tokens_per_s}, {"gbps", r.gbps}};
}

// The gpu-tier rows (CUDA IPC), when measured.
void ReportGpuTier(const std::vector<CodecFigures>& all, const std::string& gpu_server) {
  Table t({"codec", "via IPC", "LoadPaged", "GB/s objects", "GB/s fp16-eq", "x pinned H2D",
           "x staged LoadPaged", "verified"});
  for (const CodecFigures& f : all) {
    if (!f.ipc_measured) continue;
    t.AddRow({f.codec, Format("%zu", f.ipc_blocks), Tps(f.ipc_load),
              Format("%.2f", f.ipc_load.gbps), Format("%.2f", f.ipc_fp16_gbps),
              Format("%.2fx", f.ipc_vs_h2d()),
              Format("%.2fx", f.load_e2e.tokens_per_s > 0
                                  ? f.ipc_load.tokens_per_s / f.load_e2e.tokens_per_s
                                  : 0.0),
              f.ipc_verified ? "yes" : "NO"});
  }
  std::printf(
      "\nLoadPaged from the gpu tier of kvaultd %s (CUDA IPC, leased; 'via IPC' = fewest blocks "
      "any rep decoded straight from the daemon's device memory), tokens per second:\n%s",
      gpu_server.c_str(), t.Render().c_str());
}

void Report(const Config& c, const std::vector<CodecFigures>& all, const std::string& server,
            const std::string& gpu_server) {
  std::printf(
      "\nBlocks: %u x %u tokens, Llama-3-8B-shaped with %u of 32 layers (8 KV heads, head dim "
      "128, fp16: %.1f MiB raw per block); engine cache: %s memory, vLLM NHD, %u-token engine "
      "blocks; staging %.0f MiB in %u buffers; medians of %u reps; tokens per second.\n",
      c.blocks, c.block_tokens, c.layers, RawBlockBytes(c) / 1048576.0,
      std::string(MemoryKindName(c.memory)).c_str(), c.engine_block_tokens,
      c.staging_bytes / 1048576.0, c.pipeline_depth, c.reps);
  Table t({"codec", "object KiB", "wave", "encode", "to host", "store xfer", "StorePaged",
           "x slowest", "load xfer", "to device", "decode", "LoadPaged", "x slowest", "verified"});
  for (const CodecFigures& f : all) {
    t.AddRow({f.codec, Format("%.0f", f.object_bytes / 1024.0), std::to_string(f.wave_blocks),
              Tps(f.encode), Tps(f.to_host), Tps(f.store_transfer), Tps(f.store_e2e),
              Format("%.2fx", f.store_ratio()), Tps(f.load_transfer), Tps(f.to_device),
              Tps(f.decode), Tps(f.load_e2e), Format("%.2fx", f.load_ratio()),
              f.verified ? "yes" : "NO"});
  }
  std::printf("%s", t.Render().c_str());
  std::printf("GB/s of object bytes (transfers):");
  for (const CodecFigures& f : all) {
    std::printf("  %s store %.2f / StorePaged %.2f, load %.2f / LoadPaged %.2f;", f.codec.c_str(),
                f.store_transfer.gbps, f.store_e2e.gbps, f.load_transfer.gbps, f.load_e2e.gbps);
  }
  std::printf("\n");
  if (!gpu_server.empty()) ReportGpuTier(all, gpu_server);
  std::printf("\nTargets (not asserted), daemon %s:\n", server.c_str());
  for (const CodecFigures& f : all) {
    std::printf("  %-10s StorePaged >= %.1fx its slowest stage   %.2fx   %s\n", f.codec.c_str(),
                kTarget, f.store_ratio(), f.store_ratio() >= kTarget ? "PASS" : "FAIL");
    std::printf("  %-10s LoadPaged  >= %.1fx its slowest stage   %.2fx   %s\n", f.codec.c_str(),
                kTarget, f.load_ratio(), f.load_ratio() >= kTarget ? "PASS" : "FAIL");
    if (f.pinned_h2d_gbps > 0 && f.codec == "fp8") {
      std::printf(
          "  %-10s LoadPaged >= 1.4x pinned host-to-device copy (fp16-equivalent: %.2f vs "
          "%.2f GB/s)   %.2fx   %s\n",
          f.codec.c_str(), f.load_fp16_gbps, f.pinned_h2d_gbps, f.load_vs_h2d(),
          f.load_vs_h2d() >= 1.4 ? "PASS" : "FAIL");
    }
    if (f.ipc_measured && f.codec == "fp8") {
      std::printf(
          "  %-10s LoadPaged from the gpu tier (CUDA IPC) >= 1.4x pinned host-to-device copy "
          "(fp16-equivalent: %.2f vs %.2f GB/s)   %.2fx   %s\n",
          f.codec.c_str(), f.ipc_fp16_gbps, f.pinned_h2d_gbps, f.ipc_vs_h2d(),
          f.ipc_blocks < c.blocks ? "NOT VIA IPC"
          : f.ipc_vs_h2d() >= 1.4 ? "PASS"
                                  : "FAIL");
    }
    if (!f.verified) std::printf("  %-10s %s\n", f.codec.c_str(), f.mismatch.c_str());
    if (f.ipc_measured && !f.ipc_verified) {
      std::printf("  %-10s %s\n", f.codec.c_str(), f.ipc_mismatch.c_str());
    }
  }
}

Json ToJson(const Config& c, const std::vector<CodecFigures>& all, const std::string& server,
            const std::string& gpu_server) {
  Json::Array rows;
  for (const CodecFigures& f : all) {
    Json::Object row{{"codec", f.codec},
                     {"object_bytes", f.object_bytes},
                     {"wave_blocks", f.wave_blocks},
                     {"encode", RateJson(f.encode)},
                     {"to_host", RateJson(f.to_host)},
                     {"store_transfer", RateJson(f.store_transfer)},
                     {"store_paged", RateJson(f.store_e2e)},
                     {"store_vs_slowest_stage", f.store_ratio()},
                     {"load_transfer", RateJson(f.load_transfer)},
                     {"to_device", RateJson(f.to_device)},
                     {"decode", RateJson(f.decode)},
                     {"load_paged", RateJson(f.load_e2e)},
                     {"load_vs_slowest_stage", f.load_ratio()},
                     {"load_paged_fp16_gbps", f.load_fp16_gbps},
                     {"pinned_h2d_gbps", f.pinned_h2d_gbps},
                     {"load_vs_pinned_h2d", f.load_vs_h2d()},
                     {"verified", f.verified}};
    if (f.ipc_measured) {  // LoadPaged from the gpu tier (CUDA IPC): device memory only
      row.insert(row.end(), {{"gpu_tier_load_paged", RateJson(f.ipc_load)},
                             {"gpu_tier_blocks_via_ipc", f.ipc_blocks},
                             {"gpu_tier_fp16_gbps", f.ipc_fp16_gbps},
                             {"gpu_tier_vs_pinned_h2d", f.ipc_vs_h2d()},
                             {"gpu_tier_verified", f.ipc_verified}});
    }
    rows.push_back(std::move(row));
  }
  return Json::Object{{"benchmark", "kvault-bench paged"},
                      {"server", server},
                      {"gpu_tier_server", gpu_server},
                      {"config", Json::Object{{"layers", c.layers},
                                              {"kv_heads", c.kv_heads},
                                              {"head_dim", c.head_dim},
                                              {"block_tokens", c.block_tokens},
                                              {"engine_block_tokens", c.engine_block_tokens},
                                              {"blocks", c.blocks},
                                              {"raw_block_bytes", RawBlockBytes(c)},
                                              {"staging_bytes", c.staging_bytes},
                                              {"pipeline_depth", c.pipeline_depth},
                                              {"reps", c.reps},
                                              {"transports", c.transports},
                                              {"memory", std::string(MemoryKindName(c.memory))}}},
                      {"target_vs_slowest_stage", kTarget},
                      {"codecs", rows}};
}

}  // namespace

int RunPagedBench(const std::vector<std::string>& args) {
  std::optional<Config> parsed;
  if (std::optional<int> done = StartMode("paged", kUsage, args, ParseConfig, parsed)) return *done;
  const Config& c = *parsed;
  // As `codec --device cuda`: refused before any daemon starts.
  if (c.memory == MemoryKind::kCuda && !kernels::CudaAvailable()) {
    return Fail(2, Status::Unavailable("--memory cuda: no usable CUDA device in this build or "
                                       "machine"));
  }
  Result<ScratchDir> scratch = ScratchDir::Create("kvault-bench-paged");
  if (!scratch.ok()) return Fail(1, scratch.status());
  scratch->set_keep(c.keep);

  KvaultdLaunch launch;
  launch.binary = c.kvaultd;
  launch.scratch = scratch->path();
  launch.host_capacity = DaemonHostCapacity(c);
  launch.max_block_bytes = DaemonMaxBlockBytes(c);
  launch.transports = c.transports;
  std::optional<RunningKvaultd> daemon, gpu_daemon;
  std::string server = c.server, gpu_server = c.gpu_tier_server;
  if (server.empty()) {
    Result<RunningKvaultd> started = StartKvaultd(launch);
    if (!started.ok()) return Fail(1, started.status());  // it ends with the tail of its log
    daemon.emplace(std::move(*started));
    server = daemon->server;
  }
  if (c.memory == MemoryKind::kCuda && c.server.empty() && gpu_server.empty()) {
    // A second daemon, in its own directory, whose blocks land in an exporting gpu tier.
    std::error_code ec;
    launch.scratch = scratch->path() + "/gpu-tier";
    std::filesystem::create_directories(launch.scratch, ec);
    launch.gpu_capacity = launch.host_capacity;
    Result<RunningKvaultd> started = StartKvaultd(launch);
    if (started.ok()) {
      gpu_daemon.emplace(std::move(*started));
      gpu_server = gpu_daemon->server;
    } else {
      // No gpu tier here (no CUDA IPC, too little device memory): the rest still runs.
      std::fprintf(stderr,
                   "kvault-bench paged: warning: no gpu-tier kvaultd, its measurement is skipped: "
                   "%s\n",
                   started.status().ToString().c_str());
    }
  }
  Result<std::unique_ptr<Client>> client =
      ConnectToKvaultd(server, c.transports, "kvault-bench paged");
  if (!client.ok()) return Fail(1, client.status());
  std::unique_ptr<Client> gpu_client;
  if (!gpu_server.empty()) {
    Result<std::unique_ptr<Client>> connected =
        ConnectToKvaultd(gpu_server, c.transports, "kvault-bench paged (gpu tier)");
    if (!connected.ok()) return Fail(1, connected.status().WithContext("the gpu-tier kvaultd"));
    gpu_client = std::move(*connected);
  }
  std::printf("kvault-bench paged: kvaultd %s (%s), UCX_TLS=%s\n", server.c_str(),
              daemon ? "started by the benchmark" : "given with --server", c.transports.c_str());
  if (gpu_client) {
    std::printf("kvault-bench paged: gpu-tier kvaultd %s (%s)\n", gpu_server.c_str(),
                gpu_daemon ? "started by the benchmark: gpu tier on GPU 0, CUDA IPC export on"
                           : "given with --gpu-tier-server");
  }
  std::fflush(stdout);

  std::vector<CodecFigures> all;
  bool verified = true;
  for (const std::string& codec : c.codecs) {
    Result<CodecFigures> f = paged::MeasureCodec(c, **client, gpu_client.get(), codec);
    if (!f.ok()) {
      // The daemon's log may explain a failed measurement; bad usage needs no log.
      if (f.status().code() != StatusCode::kInvalidArgument) {
        scratch->set_keep(true);
        std::fprintf(stderr, "kvault-bench paged: kept %s (the daemon's log)\n",
                     scratch->path().c_str());
      }
      return Fail(f.status().code() == StatusCode::kInvalidArgument ? 2 : 1,
                  f.status().WithContext(codec));
    }
    std::fprintf(stderr, "  measured %s\n", codec.c_str());
    verified = verified && f->verified && (!f->ipc_measured || f->ipc_verified);
    all.push_back(std::move(*f));
  }
  Report(c, all, server, gpu_client ? gpu_server : std::string());
  if (!c.json_path.empty()) {
    const Status s =
        WriteJsonFile(c.json_path, ToJson(c, all, server, gpu_client ? gpu_server : std::string()));
    if (!s.ok()) return Fail(1, s);
    std::printf("JSON written to %s\n", c.json_path.c_str());
  }
  return verified ? 0 : 1;
}

}  // namespace kvault::bench
