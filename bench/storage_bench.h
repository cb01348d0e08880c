#pragma once
// `kvault-bench storage`: put, lookup and read throughput and latency of the host and nvme tiers
// for several block sizes, each beside a baseline measured in the same run (single-thread memcpy
// for the host tier, fio for the nvme tier), plus the latency of a 1,000-key chain lookup and the
// resident memory of a process holding a full host tier. docs/storage.md ("Storage benchmark")
// explains the method and what every figure means.
//
// The phases live in storage_bench.cc (flags, order of the phases), storage_host.cc (host tier,
// chain lookup, memory check), storage_nvme.cc (nvme tier, filesystem probing), storage_fio.cc
// (fio and child processes) and storage_report.cc (tables, JSON, targets); the declarations below
// are shared between them.
// Not thread-safe: the benchmark's main thread drives every phase.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvault/common/block_key.h"
#include "kvault/common/result.h"
#include "kvault/storage/nvme_tier.h"
#include "report.h"

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunStorageBench(const std::vector<std::string>& args);

namespace storage_bench {

struct Config {
  std::string json_path;
  std::string parent_dir = ".";       // where the run's scratch directory is created
  std::vector<uint64_t> block_sizes;  // payload bytes per block
  bool host = true, nvme = true;
  uint32_t reps = 7;                        // timed host repetitions (plus one warm-up)
  uint64_t host_pass_bytes = 128ull << 20;  // blocks written per host repetition, in bytes
  uint64_t host_capacity = 512ull << 20;    // host tier cap (host rows and the memory check)
  uint64_t nvme_bytes = 1ull << 30;         // bytes written to the nvme tier per block size
  storage::NvmeTierOptions nvme_options;    // directory and capacity are set per block size
  std::string fio = "fio";                  // "none" skips the fio baseline
  uint64_t fio_bytes = 1ull << 30;          // fio's file, written sequentially
  uint32_t fio_seconds = 3;                 // fio random-read runtime
  // The nvme reads run in this many slices, each between two fio random-read runs of
  // kPairedFioSeconds on fio's file (0: no pairing; the ratio then uses the fio medians).
  uint32_t read_slices = 4;
  uint32_t chain_keys = 1000;
  uint32_t chain_lookups = 2000;
  std::string policy;  // eviction policy of every store; empty: the store's default
  uint64_t seed = 1;
  bool keep = false;          // keep the scratch directory
  bool memory_child = false;  // hidden: run as the memory-check child
};

// Throughput and latency of one operation over many calls.
struct OpStats {
  uint64_t ops = 0;
  double gbps = 0;       // object bytes / time in the calls (0 for lookups)
  double ops_per_s = 0;  // calls / time in the calls
  double p50_us = 0, p99_us = 0;
};

// Per-call latencies in seconds -> OpStats; `bytes_per_op` 0 for operations that move no bytes.
OpStats Summarize(std::vector<double> seconds, uint64_t bytes_per_op);
// Rounds of one operation -> their medians (gbps, ops_per_s, p50_us, p99_us), ops summed.
OpStats MedianOverRounds(const std::vector<OpStats>& rounds);

// Seconds since an arbitrary fixed point (steady clock).
double NowSeconds();

// The benchmark's keys: distinct per (seed, index), SHA-256 like real block keys.
BlockKey BenchKey(uint64_t seed, uint64_t index);

// `count` distinct synthetic block objects with `block_bytes` of payload, back to back in one
// buffer; object j carries keys[j] (so it verifies under that key, for any tenant).
struct BlockPool {
  uint64_t object_bytes = 0;
  std::vector<BlockKey> keys;
  std::vector<uint8_t> bytes;
  std::span<const uint8_t> At(uint64_t j) const {
    return {bytes.data() + j * object_bytes, object_bytes};
  }
};
Result<BlockPool> MakeBlockPool(uint64_t seed, uint64_t block_bytes, uint64_t count);

struct HostRow {
  uint64_t block_bytes = 0, object_bytes = 0, blocks_per_rep = 0;
  OpStats put, lookup, read;  // latencies pooled over the timed repetitions
  // Medians over repetitions; each repetition's memcpy pass runs right before its store passes.
  double put_gbps = 0, read_gbps = 0, memcpy_gbps = 0;
  double put_vs_memcpy = 0, read_vs_memcpy = 0;  // medians of per-repetition ratios
};

// Runtime of each fio random-read run paired with a slice of the nvme reads.
inline constexpr uint32_t kPairedFioSeconds = 1;

// One slice of the nvme reads and the fio random reads right before and after it.
struct ReadSlice {
  uint64_t blocks = 0;
  double tier_gbps = 0;  // object bytes / time in the slice's Read calls
  double fio_before_gbps = 0, fio_after_gbps = 0;
  double fio_gbps() const { return (fio_before_gbps + fio_after_gbps) / 2; }
  double ratio() const { return fio_gbps() > 0 ? tier_gbps / fio_gbps() : 0; }
};

struct NvmeRow {
  uint64_t block_bytes = 0, object_bytes = 0, blocks = 0;
  OpStats put;                    // the Put calls alone (memtable inserts, stalls included)
  double sustained_put_gbps = 0;  // bytes / (Put calls + close (flush) + fsync of every file)
  double flush_sync_s = 0;        // the close + fsync part of that time
  double recover_ms = 0;          // reopen + Recover (index rebuilt from RocksDB)
  OpStats read;                   // every block once, random order, page cache dropped first
  OpStats lookup;                 // BlockStore::Lookup of one key held in the nvme tier
  // Empty without fio or with --read-slices 0.
  std::vector<ReadSlice> read_slices;
  double write_vs_fio = 0, read_vs_fio = 0;
  // The fio random-read rate read_vs_fio divides by: the median of the slices' fio rates when
  // the reads were paired, the median of the standalone fio runs otherwise.
  double read_base_gbps = 0;
};

struct FioRun {
  double write_gbps = 0, read_gbps = 0;
  double write_p50_us = 0, write_p99_us = 0, read_p50_us = 0, read_p99_us = 0;
};

struct Filesystem {
  std::string type;        // "ext4", "xfs", "tmpfs", ... or the statfs magic in hex
  bool direct_io = false;  // O_DIRECT opens and reads work in the directory
};

struct ChainLookup {
  uint32_t keys = 0;
  // Medians over --reps rounds of --chain-lookups calls each (ops: all rounds together).
  OpStats plain;   // Lookup with touch, no lease
  OpStats leased;  // Lookup with touch and a lease (released outside the timing)
  std::vector<double> round_p99_us;  // each round's p99 of the plain lookups
};

struct MemoryCheck {
  uint64_t capacity_bytes = 0, block_bytes = 0, blocks = 0, used_bytes = 0;
  uint64_t rss_bytes = 0, hwm_bytes = 0, bound_bytes = 0;
};

// Everything one run measured.
struct Results {
  std::string scratch_dir;
  Filesystem filesystem;
  std::vector<HostRow> host;
  std::optional<ChainLookup> chain;
  std::optional<MemoryCheck> memory;
  std::vector<NvmeRow> nvme;
  std::string nvme_note;  // why there are no nvme rows, when there are none
  std::vector<FioRun> fio_runs;
  FioRun fio;  // medians over fio_runs
  bool fio_direct = false;
  std::string fio_note;  // how the fio baseline deviates from the plan, if it does
};

// "64K", "1M", or plain bytes.
std::string SizeLabel(uint64_t bytes);

// storage_report.cc
// Takes the medians of the fio runs and the nvme rows' ratios to them.
void FinishFio(Results& r);
// The tables, the baselines and the targets, on stdout.
void PrintReport(const Config& c, const Results& r);
Json ReportJson(const Config& c, const Results& r);

// storage_host.cc
Result<HostRow> MeasureHost(const Config& c, uint64_t block_bytes);
Result<ChainLookup> MeasureChainLookup(const Config& c);
// Starts this binary again as a child that fills a host tier and reports its memory.
Result<MemoryCheck> RunMemoryCheck(const Config& c);
// The child's side: fills the tier, prints one "key=value ..." line, returns the exit code.
int RunMemoryChild(const Config& c);

// storage_nvme.cc
Result<Filesystem> ProbeFilesystem(const std::string& dir);
// `paired_fio` (may be empty) runs fio's random reads once and returns GB/s: called before the
// first slice of the reads and after every slice.
Result<NvmeRow> MeasureNvme(const Config& c, const std::string& dir, uint64_t block_bytes,
                            const std::function<Result<double>()>& paired_fio);

// storage_fio.cc
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string out;     // stdout
};
// Runs argv[0] (searched in PATH) with stdout captured; stderr is inherited.
// Unavailable when it cannot be started.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv);
// Sequential 1 MiB writes then random 1 MiB reads on one file in `dir`, FioFilePath(dir); the
// file is removed afterwards unless `keep_file` (and the run succeeded).
Result<FioRun> RunFio(const Config& c, const std::string& dir, bool direct, bool keep_file);
// Random 1 MiB reads for `seconds` of the file a RunFio(keep_file = true) left in `dir`; GB/s.
Result<double> RunFioRandRead(const Config& c, const std::string& dir, bool direct,
                              uint32_t seconds);
std::string FioFilePath(const std::string& dir);
// Removes fio's file from `dir`; a missing file is fine.
void RemoveFioFile(const std::string& dir);

}  // namespace storage_bench
}  // namespace kvault::bench
