// `kvault-bench storage`: flags, the order of the phases, the tables, the JSON and the targets.
#include "storage_bench.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>

#include "flag_checks.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/eviction_policy.h"
#include "mode_args.h"
#include "number_arg.h"
#include "report.h"
#include "signal_cleanup.h"

namespace kvault::bench {
namespace storage_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = R"(kvault-bench storage: put, lookup and read of the storage tiers

Usage: kvault-bench storage [--json FILE] [--dir DIR] [--sizes LIST] [--tiers host,nvme]
                            [--reps N] [--host-bytes B] [--host-capacity B] [--nvme-bytes B]
                            [--nvme-layout blob|inline] [--nvme-buffered-reads]
                            [--nvme-buffered-writes]
                            [--nvme-write-buffer B] [--nvme-gc-age-cutoff F]
                            [--nvme-gc-min-garbage F]
                            [--fio PATH|none] [--fio-bytes B]
                            [--fio-seconds S] [--read-slices N] [--chain-keys N]
                            [--chain-lookups N]
                            [--policy NAME] [--seed N] [--keep]

  --json FILE          also write every figure as JSON.
  --dir DIR            where the nvme tier and fio's file live (default: the current directory);
                       the run uses a fresh kvault-bench-storage.<pid> directory there and
                       removes it at the end. Point it at the filesystem you want measured.
  --sizes LIST         block payload sizes, comma-separated, suffixes K, M, G (default 64K,1M,4M).
  --tiers LIST         host, nvme or host,nvme (default host,nvme).
  --reps N             timed host repetitions, after one warm-up (default 7); each repetition
                       runs memcpy, put, lookup and read over the same blocks, medians reported.
  --host-bytes B       bytes of blocks per host repetition (default 128M).
  --host-capacity B    host tier cap, also of the memory check's tier (default 512M).
  --nvme-bytes B       bytes written to the nvme tier per block size, then all read back once in
                       random order (default 1G).
  --nvme-layout L      nvme tier value layout: blob (default) or inline.
  --nvme-buffered-reads  nvme tier reads through the page cache (default: O_DIRECT, the tier's
                       default; it falls back to buffered where O_DIRECT is refused).
  --nvme-buffered-writes  nvme tier flushes and compactions write through the page cache
                       (default: O_DIRECT, the tier's default, with the same fallback).
  --nvme-write-buffer B  nvme tier memtable size (default 64M, the tier's default).
  --nvme-gc-age-cutoff F  nvme tier blob GC age cutoff, 0..1 (default 0.25, the tier's
                       default); 0 turns blob relocation during compaction off.
  --nvme-gc-min-garbage F  blob GC runs only while the files it would relocate hold this
                       fraction of garbage, 0..1 (default 0.05, the tier's default); 0: GC
                       always runs (RocksDB's behaviour).
  --fio PATH           fio binary (default "fio" from PATH); "none" skips the fio baseline.
  --fio-bytes B        fio's file, written sequentially once per fio run (default 1G).
  --fio-seconds S      fio random-read runtime per fio run (default 3).
  --read-slices N      the nvme reads of each block size run in N slices, with a 1 s fio random
                       read on fio's file before the first and after each (default 4, 0..64);
                       the read ratio is the median of the slices' ratios, each over the mean of
                       its two fio runs. 0: the reads run alone, the ratio uses the fio medians.
  --chain-keys N       length of the chain for the chain lookup (default 1000).
  --chain-lookups N    timed chain lookups per round, --reps rounds (default 2000).
  --policy NAME        eviction policy of the block stores (default: the store's default).
  --seed N             seed of keys and read order (default 1).
  --keep               keep the scratch directory.

Baselines, measured in the same run: single-thread memcpy of the same blocks for the host tier
(interleaved with every repetition) and fio (1 MiB sequential writes, 1 MiB random reads, one
job, queue depth 1, O_DIRECT, before every nvme block size and once after, and the random reads
again between the slices of the nvme reads) for the nvme tier.
The exit code is 0 whether or not a target is met; targets are printed as PASS/FAIL notes.
)";

int Fail(int code, const Status& s) { return FailMode("storage", code, s); }

// "64K" -> 65536; K, M, G are binary multiples.
Result<uint64_t> ParseBytes(std::string_view what, std::string_view text, uint64_t min,
                            uint64_t max) {
  const std::string original(text);
  uint64_t scale = 1;
  if (!text.empty()) {
    const char suffix = text.back();
    const std::string_view units = "KMG";
    const size_t at = units.find(static_cast<char>(std::toupper(suffix)));
    if (at != std::string_view::npos) {
      scale = uint64_t{1} << (10 * (at + 1));
      text.remove_suffix(1);
    }
  }
  Result<uint64_t> n = ParseUintArg(what, text, 0, max / scale);
  if (!n.ok() || *n * scale < min || *n * scale > max) {
    return Status::InvalidArgument(std::string(what) + " must be a byte count from " +
                                   std::to_string(min) + " to " + std::to_string(max) +
                                   " (suffixes K, M, G), got '" + original + "'");
  }
  return *n * scale;
}

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  const std::set<std::string> value_flags = {"json",
                                             "dir",
                                             "sizes",
                                             "tiers",
                                             "reps",
                                             "host-bytes",
                                             "host-capacity",
                                             "nvme-bytes",
                                             "nvme-layout",
                                             "nvme-write-buffer",
                                             "nvme-gc-age-cutoff",
                                             "nvme-gc-min-garbage",
                                             "fio",
                                             "fio-bytes",
                                             "fio-seconds",
                                             "read-slices",
                                             "chain-keys",
                                             "chain-lookups",
                                             "policy",
                                             "seed"};
  KVAULT_ASSIGN_OR_RETURN(CliArgs a, CliArgs::Parse(args, value_flags,
                                                    {"nvme-buffered-reads", "nvme-buffered-writes",
                                                     "keep", "memory-child"}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  c.parent_dir = a.GetOr("dir", ".");
  for (const std::string& size : SplitCommaList(a.GetOr("sizes", "64K,1M,4M"))) {
    KVAULT_ASSIGN_OR_RETURN(uint64_t bytes, ParseBytes("--sizes", size, 1, 256ull << 20));
    c.block_sizes.push_back(bytes);
  }
  const std::string tiers = a.GetOr("tiers", "host,nvme");
  c.host = c.nvme = false;
  for (const std::string& tier : SplitCommaList(tiers)) {
    if ((tier == "host" && c.host) || (tier == "nvme" && c.nvme)) {
      return Status::InvalidArgument("--tiers names " + tier + " twice, got '" + tiers + "'");
    }
    if (tier == "host") {
      c.host = true;
    } else if (tier == "nvme") {
      c.nvme = true;
    } else {
      return Status::InvalidArgument("--tiers takes host and/or nvme, got '" + tiers + "'");
    }
  }
  KVAULT_ASSIGN_OR_RETURN(uint64_t reps, a.GetUint("reps", 7, 1, 1000));
  c.reps = static_cast<uint32_t>(reps);
  constexpr uint64_t kTiB = uint64_t{1} << 40;
  KVAULT_ASSIGN_OR_RETURN(c.host_pass_bytes,
                          ParseBytes("--host-bytes", a.GetOr("host-bytes", "128M"), 1, kTiB));
  KVAULT_ASSIGN_OR_RETURN(
      c.host_capacity,
      ParseBytes("--host-capacity", a.GetOr("host-capacity", "512M"), 1 << 20, kTiB));
  KVAULT_ASSIGN_OR_RETURN(c.nvme_bytes,
                          ParseBytes("--nvme-bytes", a.GetOr("nvme-bytes", "1G"), 1, kTiB));
  const std::string layout = a.GetOr("nvme-layout", "blob");
  if (layout != "blob" && layout != "inline") {
    return Status::InvalidArgument("--nvme-layout must be blob or inline, got '" + layout + "'");
  }
  c.nvme_options.value_layout =
      layout == "blob" ? storage::NvmeValueLayout::kBlobFiles : storage::NvmeValueLayout::kInline;
  if (a.Has("nvme-buffered-reads")) c.nvme_options.use_direct_reads = false;
  if (a.Has("nvme-buffered-writes")) c.nvme_options.use_direct_writes = false;
  KVAULT_ASSIGN_OR_RETURN(
      c.nvme_options.write_buffer_bytes,
      ParseBytes("--nvme-write-buffer", a.GetOr("nvme-write-buffer", "64M"), 1 << 20, 16ull << 30));
  KVAULT_ASSIGN_OR_RETURN(
      c.nvme_options.blob_gc_age_cutoff,
      ParseNumberArg("--nvme-gc-age-cutoff", a.GetOr("nvme-gc-age-cutoff", "0.25"), 0, 1));
  KVAULT_ASSIGN_OR_RETURN(
      c.nvme_options.blob_gc_min_garbage,
      ParseNumberArg("--nvme-gc-min-garbage", a.GetOr("nvme-gc-min-garbage", "0.05"), 0, 1));
  c.fio = a.GetOr("fio", "fio");
  KVAULT_ASSIGN_OR_RETURN(c.fio_bytes,
                          ParseBytes("--fio-bytes", a.GetOr("fio-bytes", "1G"), 1 << 20, kTiB));
  KVAULT_ASSIGN_OR_RETURN(uint64_t fio_seconds, a.GetUint("fio-seconds", 3, 1, 3600));
  c.fio_seconds = static_cast<uint32_t>(fio_seconds);
  KVAULT_ASSIGN_OR_RETURN(uint64_t read_slices, a.GetUint("read-slices", 4, 0, 64));
  c.read_slices = static_cast<uint32_t>(read_slices);
  KVAULT_ASSIGN_OR_RETURN(uint64_t chain_keys, a.GetUint("chain-keys", 1000, 1, 1000000));
  c.chain_keys = static_cast<uint32_t>(chain_keys);
  KVAULT_ASSIGN_OR_RETURN(uint64_t lookups, a.GetUint("chain-lookups", 2000, 1, 10000000));
  c.chain_lookups = static_cast<uint32_t>(lookups);
  c.policy = a.GetOr("policy", storage::BlockStoreOptions().policy);
  KVAULT_RETURN_IF_ERROR(storage::MakeEvictionPolicy(c.policy).status().WithContext("--policy"));
  KVAULT_ASSIGN_OR_RETURN(c.seed, a.GetUint("seed", 1, 0, ~uint64_t{0}));
  c.keep = a.Has("keep");
  c.memory_child = a.Has("memory-child");
  // Room for the blocks of a repetition with size-class rounding (up to 1/8) under the tier's
  // high watermark, so that no repetition evicts.
  for (uint64_t size : c.block_sizes) {
    const uint64_t need = std::max(c.host_pass_bytes, SyntheticObjectBytes(size));
    if (c.host && !c.memory_child && need > c.host_capacity / 4 * 3) {
      return Status::InvalidArgument(
          "--host-capacity must be at least 4/3 of --host-bytes and of the largest block");
    }
  }
  return c;
}

// Removes the scratch directory on every way out unless asked to keep it, a stop by a signal
// included (signal_cleanup.h).
class ScratchDir {
 public:
  ScratchDir(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {
    if (!keep_) RegisterScratchDir(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!keep_) fs::remove_all(path_, ec);
    UnregisterScratchDir(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_;
};

}  // namespace

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

OpStats Summarize(std::vector<double> seconds, uint64_t bytes_per_op) {
  OpStats s;
  s.ops = seconds.size();
  if (seconds.empty()) return s;
  double total = 0;
  for (double t : seconds) total += t;
  s.ops_per_s = s.ops / total;
  s.gbps = static_cast<double>(bytes_per_op) * s.ops / total / 1e9;
  s.p50_us = Percentile(seconds, 50) * 1e6;
  s.p99_us = Percentile(seconds, 99) * 1e6;
  return s;
}

OpStats MedianOverRounds(const std::vector<OpStats>& rounds) {
  OpStats out;
  if (rounds.empty()) return out;
  std::vector<double> gbps, ops_per_s, p50, p99;
  for (const OpStats& r : rounds) {
    out.ops += r.ops;
    gbps.push_back(r.gbps);
    ops_per_s.push_back(r.ops_per_s);
    p50.push_back(r.p50_us);
    p99.push_back(r.p99_us);
  }
  out.gbps = Median(gbps);
  out.ops_per_s = Median(ops_per_s);
  out.p50_us = Median(p50);
  out.p99_us = Median(p99);
  return out;
}

std::string SizeLabel(uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return std::to_string(bytes >> 30) + "G";
  if (bytes % (1ull << 20) == 0) return std::to_string(bytes >> 20) + "M";
  if (bytes % (1ull << 10) == 0) return std::to_string(bytes >> 10) + "K";
  return std::to_string(bytes);
}

BlockKey BenchKey(uint64_t seed, uint64_t index) {
  const uint32_t words[4] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                             static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32)};
  return NextBlockKey(BlockKey{}, words);
}

Result<BlockPool> MakeBlockPool(uint64_t seed, uint64_t block_bytes, uint64_t count) {
  BlockPool pool;
  pool.object_bytes = SyntheticObjectBytes(block_bytes);
  if (pool.object_bytes == 0) return Status::OutOfRange("block size too large");
  pool.bytes.resize(pool.object_bytes * count);
  for (uint64_t j = 0; j < count; ++j) {
    pool.keys.push_back(BenchKey(seed, j));
    std::span<uint8_t> out(pool.bytes.data() + j * pool.object_bytes, pool.object_bytes);
    KVAULT_RETURN_IF_ERROR(WriteSyntheticBlock(pool.keys.back(), block_bytes, out));
  }
  return pool;
}

}  // namespace storage_bench

int RunStorageBench(const std::vector<std::string>& args) {
  using namespace storage_bench;  // NOLINT(google-build-using-namespace): this module's helpers
  std::optional<Config> parsed;
  if (std::optional<int> done = StartMode("storage", kUsage, args, ParseConfig, parsed))
    return *done;
  const Config& c = *parsed;
  if (c.memory_child) return RunMemoryChild(c);

  std::error_code ec;
  fs::create_directories(c.parent_dir, ec);
  if (ec) return Fail(2, Status::InvalidArgument("--dir " + c.parent_dir + ": " + ec.message()));
  ScratchDir scratch(
      fs::absolute(fs::path(c.parent_dir) / ("kvault-bench-storage." + std::to_string(getpid())))
          .lexically_normal()
          .string(),
      c.keep);
  fs::create_directory(scratch.path(), ec);
  if (ec) return Fail(1, Status::IoError("create " + scratch.path() + ": " + ec.message()));
  Results r;
  r.scratch_dir = scratch.path();
  Result<Filesystem> filesystem = ProbeFilesystem(scratch.path());
  if (!filesystem.ok()) return Fail(1, filesystem.status());
  r.filesystem = *filesystem;
  if (c.nvme) {
    struct statvfs st;
    const bool fio = c.fio != "none";
    const uint64_t need = c.nvme_bytes / 4 * 5 + (fio ? c.fio_bytes : 0) + (256ull << 20);
    if (::statvfs(scratch.path().c_str(), &st) == 0 && st.f_bavail * st.f_frsize < need) {
      return Fail(1, Status::ResourceExhausted(
                         Format("%s has %.1f GiB free; the nvme phase needs about %.1f GiB (lower "
                                "--nvme-bytes and --fio-bytes, or choose another --dir)",
                                scratch.path().c_str(), st.f_bavail * st.f_frsize / 1073741824.0,
                                need / 1073741824.0)));
    }
  }
  std::printf("kvault-bench storage: blocks of");
  for (uint64_t size : c.block_sizes) std::printf(" %s", SizeLabel(size).c_str());
  std::printf(" payload; tiers%s%s; scratch %s (%s, O_DIRECT %s)\n", c.host ? " host" : "",
              c.nvme ? " nvme" : "", r.scratch_dir.c_str(), r.filesystem.type.c_str(),
              r.filesystem.direct_io ? "supported" : "unsupported");
  std::fflush(stdout);

  if (c.host) {
    for (uint64_t size : c.block_sizes) {
      Result<HostRow> row = MeasureHost(c, size);
      if (!row.ok()) return Fail(1, row.status().WithContext("host " + SizeLabel(size)));
      r.host.push_back(*row);
      std::fprintf(stderr, "  measured host %s\n", SizeLabel(size).c_str());
    }
    Result<ChainLookup> chain = MeasureChainLookup(c);
    if (!chain.ok()) return Fail(1, chain.status());
    r.chain = *chain;
    Result<MemoryCheck> memory = RunMemoryCheck(c);
    if (!memory.ok()) return Fail(1, memory.status());
    r.memory = *memory;
    std::fprintf(stderr, "  measured chain lookup and memory\n");
  }
  if (c.nvme) {
    r.fio_direct = r.filesystem.direct_io;
    bool fio = c.fio != "none";
    if (!fio) r.fio_note = "fio skipped (--fio none)";
    if (fio && !r.fio_direct) {
      r.fio_note = r.filesystem.type +
                   " does not support O_DIRECT: fio ran buffered (--direct=0), so its figures "
                   "include the page cache";
    } else if (r.filesystem.type == "tmpfs") {
      r.fio_note =
          "the scratch directory is on tmpfs (RAM): fio and the nvme tier measure "
          "memory, not a device";
    }
    // fio runs before every block size and once after, so both see the same machine.
    auto run_fio = [&](bool keep_file) -> Status {
      if (!fio) return Status::Ok();
      Result<FioRun> run = RunFio(c, scratch.path(), r.fio_direct, keep_file);
      if (run.ok()) {
        r.fio_runs.push_back(*run);
      } else if (run.status().code() == StatusCode::kUnavailable) {
        r.fio_note = run.status().message() + ": no fio baseline";
        fio = false;
      } else {
        return run.status().WithContext("fio");
      }
      return Status::Ok();
    };
    // The run before each block size keeps fio's file for the random reads paired with the
    // tier's (--read-slices).
    std::function<Result<double>()> paired_fio;
    for (uint64_t size : c.block_sizes) {
      if (Status s = run_fio(c.read_slices > 0); !s.ok()) return Fail(1, s);
      paired_fio = nullptr;
      if (fio && c.read_slices > 0) {
        paired_fio = [&]() {
          return RunFioRandRead(c, scratch.path(), r.fio_direct, kPairedFioSeconds);
        };
      }
      Result<NvmeRow> row = MeasureNvme(c, scratch.path(), size, paired_fio);
      RemoveFioFile(scratch.path());
      if (!row.ok() && row.status().code() == StatusCode::kUnsupported) {
        r.nvme_note = row.status().message();
        break;
      }
      if (!row.ok()) return Fail(1, row.status().WithContext("nvme " + SizeLabel(size)));
      r.nvme.push_back(*row);
      std::fprintf(stderr, "  measured nvme %s\n", SizeLabel(size).c_str());
    }
    if (r.nvme_note.empty()) {
      if (Status s = run_fio(false); !s.ok()) return Fail(1, s);
    }
    FinishFio(r);
  }
  PrintReport(c, r);
  if (!c.json_path.empty()) {
    Status s = WriteJsonFile(c.json_path, ReportJson(c, r));
    if (!s.ok()) return Fail(1, s);
    std::printf("JSON written to %s\n", c.json_path.c_str());
  }
  return 0;
}

}  // namespace kvault::bench
