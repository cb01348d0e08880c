// nvme_tuning: the measurement behind the nvme tier's defaults (docs/storage_nvme.md, "Tuning").
//
// For each RocksDB configuration and block size it drives a real NvmeTier the way a cache does:
// fill to the capacity cap, then churn (put new blocks, erasing the oldest to stay under the
// cap), close, reopen and recover, then read live blocks once each in a random order, with the
// page cache of the database files dropped. In the same run, on the same filesystem, fio gives the
// baselines: sequential 1 MiB writes and random 1 MiB reads with direct I/O.
//
//   nvme_tuning --dir DIR [--capacity-mib 1024] [--churn-mib 2048] [--sizes 64k,1m,4m]
//               [--configs inline,blob,blob-wal,blob-direct] [--read-seconds 3] [--repeat 1]
//               [--json FILE] [--no-fio]
//
// Configurations: inline, blob (values in blob files), blob-wal, blob-direct (O_DIRECT reads),
// blob-jobs8 (blob-direct with 8 background jobs: 2 flush threads), inline-direct. Prints a table
// for people and, with --json, the same figures for tools.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kvault/common/block_format.h"
#include "kvault/common/cli_args.h"
#include "kvault/storage/nvme_tier.h"

namespace kvault::storage {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct TuningConfig {
  std::string name;
  NvmeTierOptions options;
};

std::vector<TuningConfig> AllConfigs() {
  std::vector<TuningConfig> configs;
  NvmeTierOptions inline_values;
  inline_values.value_layout = NvmeValueLayout::kInline;
  configs.push_back({"inline", inline_values});
  NvmeTierOptions blob;
  blob.value_layout = NvmeValueLayout::kBlobFiles;
  configs.push_back({"blob", blob});
  NvmeTierOptions blob_wal = blob;
  blob_wal.use_wal = true;
  configs.push_back({"blob-wal", blob_wal});
  NvmeTierOptions blob_direct = blob;
  blob_direct.use_direct_reads = true;
  configs.push_back({"blob-direct", blob_direct});
  NvmeTierOptions blob_jobs8 = blob_direct;
  blob_jobs8.background_jobs = 8;  // RocksDB gives a quarter of the jobs to flushes: 2
  configs.push_back({"blob-jobs8", blob_jobs8});
  NvmeTierOptions inline_direct = inline_values;
  inline_direct.use_direct_reads = true;
  configs.push_back({"inline-direct", inline_direct});
  return configs;
}

// Sealed block objects of one size, re-keyed for every put (the key is inside the object).
class ObjectMaker {
 public:
  explicit ObjectMaker(uint64_t target_bytes) {
    // Raw f16, 8 heads of dim 128, 16 tokens: 64 KiB of payload per layer.
    descriptor_.layout = {static_cast<uint32_t>(std::max<uint64_t>(1, target_bytes >> 16)),
                          8,
                          128,
                          16,
                          DType::kF16,
                          0};
    descriptor_.layers.assign(descriptor_.layout.num_layers, LayerCodec{});
    geometry_ = ComputeGeometry(descriptor_).value();
    object_.resize(geometry_.total_bytes());
    std::mt19937_64 rng(42);
    for (size_t i = 0; i + 8 <= object_.size(); i += 8) {
      const uint64_t word = rng();
      std::memcpy(&object_[i], &word, 8);
    }
  }
  static ScopedKey KeyOf(uint64_t index) {
    ScopedKey key;
    uint64_t state = index * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < key.key.size(); i += 8) {
      state ^= state >> 31;
      state *= 0xBF58476D1CE4E5B9ull;
      std::memcpy(&key.key[i], &state, 8);
    }
    return key;
  }
  const std::vector<uint8_t>& Make(const ScopedKey& key) {
    descriptor_.key = key.key;
    WriteBlockHeader(descriptor_, geometry_, object_);
    SealBlockObject(object_);
    return object_;
  }
  uint64_t bytes() const { return object_.size(); }

 private:
  BlockDescriptor descriptor_;
  BlockGeometry geometry_;
  std::vector<uint8_t> object_;
};

// Drops the page cache of every file under `dir` (only ours: other processes keep theirs).
void DropPageCache(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Waits until RocksDB's background work after reopening (compactions, blob GC) has stopped
// changing the files under `dir`, so that it neither competes with the reads nor refills the
// page cache. At most 120 s.
void WaitUntilQuiet(const fs::path& dir) {
  auto snapshot = [&] {
    std::vector<std::pair<std::string, uint64_t>> files;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::error_code ec;
      files.emplace_back(entry.path().filename().string(), entry.file_size(ec));
    }
    std::sort(files.begin(), files.end());
    return files;
  };
  auto last = snapshot();
  int stable = 0;
  for (int i = 0; i < 480 && stable < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto now = snapshot();
    stable = now == last ? stable + 1 : 0;
    last = std::move(now);
  }
}

uint64_t DiskBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().filename() != "kvault-nvme-reserve") {
      total += entry.file_size();
    }
  }
  return total;
}

struct Row {
  std::string config;
  uint64_t block_bytes = 0;
  double fill_mibps = 0, churn_mibps = 0, churn_put_mibps = 0;
  double recover_ms = 0;
  uint64_t live_bytes = 0, disk_bytes = 0;
  double read1_mibps = 0, read1_p50_us = 0, read1_p99_us = 0, read4_mibps = 0;
};

// Reads each live block at most once, in a random order, from `threads` threads, for at most
// `seconds`: repeated reads would hit the page cache that earlier reads (and their readahead)
// filled. Returns MiB/s and fills per-read latencies (microseconds) when asked.
double RandomReads(NvmeTier& tier, std::vector<ScopedKey> keys, uint32_t bytes, int threads,
                   double seconds, std::vector<double>* latencies) {
  std::shuffle(keys.begin(), keys.end(), std::mt19937_64(7));
  std::atomic<size_t> next{0};
  std::vector<std::vector<double>> lat(threads);
  std::atomic<bool> failed{false};
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<uint8_t> out(bytes);
      for (size_t i = next++; i < keys.size() && Clock::now() < end && !failed; i = next++) {
        const auto t0 = Clock::now();
        if (!tier.Read(keys[i], 0, bytes, out).ok()) failed = true;
        lat[t].push_back(Seconds(Clock::now() - t0) * 1e6);
      }
    });
  }
  for (auto& th : pool) th.join();
  const double elapsed = Seconds(Clock::now() - start);
  if (failed) std::fprintf(stderr, "nvme_tuning: a read failed\n");
  uint64_t reads = 0;
  for (int t = 0; t < threads; ++t) {
    reads += lat[t].size();
    if (latencies) latencies->insert(latencies->end(), lat[t].begin(), lat[t].end());
  }
  return MiB(reads * bytes) / elapsed;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

Result<Row> Measure(const TuningConfig& config, uint64_t block_target, const fs::path& base,
                    uint64_t capacity, uint64_t churn, double read_seconds) {
  Row row;
  row.config = config.name;
  ObjectMaker maker(block_target);
  row.block_bytes = maker.bytes();
  const fs::path dir = base / (config.name + "-" + std::to_string(block_target >> 10) + "k");
  fs::remove_all(dir);
  NvmeTierOptions options = config.options;
  options.directory = dir.string();
  options.capacity_bytes = capacity;
  std::deque<ScopedKey> live;
  uint64_t next = 0;
  {
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<NvmeTier> tier, NvmeTier::Open(options));
    auto put = [&](Clock::duration& put_time) -> Status {
      const ScopedKey key = ObjectMaker::KeyOf(next++);
      const std::vector<uint8_t>& object = maker.Make(key);
      while (tier->Usage().used_bytes + object.size() > capacity) {
        tier->Erase(live.front(), 0, static_cast<uint32_t>(object.size()));
        live.pop_front();
      }
      const auto t0 = Clock::now();
      Result<TierSlot> slot = tier->Put(key, object);
      put_time += Clock::now() - t0;
      if (!slot.ok()) return slot.status();
      live.push_back(key);
      return Status::Ok();
    };
    Clock::duration fill_put{}, churn_put{};
    auto t0 = Clock::now();
    while (tier->Usage().used_bytes + maker.bytes() <= capacity)
      KVAULT_RETURN_IF_ERROR(put(fill_put));
    row.fill_mibps = MiB(tier->Usage().used_bytes) / Seconds(Clock::now() - t0);
    const uint64_t churn_blocks = churn / maker.bytes();
    t0 = Clock::now();
    for (uint64_t i = 0; i < churn_blocks; ++i) KVAULT_RETURN_IF_ERROR(put(churn_put));
    const auto t_flush = Clock::now();
    tier.reset();  // flushes what the memtables hold
    const auto flush = Clock::now() - t_flush;
    row.churn_mibps = MiB(churn_blocks * maker.bytes()) / Seconds(Clock::now() - t0);
    row.churn_put_mibps = MiB(churn_blocks * maker.bytes()) / Seconds(churn_put + flush);
  }
  row.live_bytes = live.size() * maker.bytes();
  row.disk_bytes = DiskBytes(dir);

  const auto t_open = Clock::now();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<NvmeTier> tier, NvmeTier::Open(options));
  std::vector<ScopedKey> keys;
  KVAULT_RETURN_IF_ERROR(
      tier->Recover([&](const ScopedKey& key, TierSlot, uint32_t) { keys.push_back(key); }));
  row.recover_ms = Seconds(Clock::now() - t_open) * 1e3;
  if (keys.size() != live.size()) return Status::Internal("recovered a different block count");

  std::vector<double> latencies;
  WaitUntilQuiet(dir);
  DropPageCache(dir);
  row.read1_mibps =
      RandomReads(*tier, keys, static_cast<uint32_t>(maker.bytes()), 1, read_seconds, &latencies);
  row.read1_p50_us = Percentile(latencies, 0.50);
  row.read1_p99_us = Percentile(latencies, 0.99);
  DropPageCache(dir);
  row.read4_mibps =
      RandomReads(*tier, keys, static_cast<uint32_t>(maker.bytes()), 4, read_seconds, nullptr);
  tier.reset();
  fs::remove_all(dir);
  return row;
}

// Runs fio and returns the bandwidth in MiB/s (terse v3: field 7 read KiB/s, 48 write KiB/s).
double Fio(const std::string& args, bool write) {
  const std::string command =
      "fio --output-format=terse --terse-version=3 " + args + " 2>/dev/null";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return 0;
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  std::stringstream line(out.substr(0, out.find('\n')));
  std::string field;
  double kib = 0;
  for (int i = 1; std::getline(line, field, ';'); ++i) {
    if (i == (write ? 48 : 7)) kib = std::atof(field.c_str());
  }
  return kib / 1024;
}

struct FioBaseline {
  double seq_write_mibps = 0, rand_read_mibps = 0, rand_read4_mibps = 0;
};

FioBaseline RunFio(const fs::path& base, double seconds) {
  FioBaseline fio;
  const std::string file = (base / "fio-baseline").string();
  const std::string common = "--name=b --filename=" + file +
                             " --size=1g --bs=1m --direct=1 --ioengine=psync --runtime=" +
                             std::to_string(static_cast<int>(seconds + 0.5)) + " ";
  fio.seq_write_mibps = Fio(common + "--rw=write", true);
  fio.rand_read_mibps = Fio(common + "--rw=randread --time_based", false);
  fio.rand_read4_mibps =
      Fio(common + "--rw=randread --time_based --numjobs=4 --group_reporting", false);
  fs::remove(file);
  return fio;
}

constexpr const char* kUsage =
    R"(nvme_tuning: the measurement behind the nvme tier's RocksDB settings

Usage:
  nvme_tuning --dir DIR [options]

Drives a real NvmeTier per configuration and block size the way a cache does: fill the capacity,
churn (put new blocks, erasing the oldest), close, reopen and recover, drop the page cache of the
database files, then read live blocks in random order from one thread and from four. fio runs in
the same invocation on the same filesystem (sequential 1 MiB writes and random 1 MiB reads,
O_DIRECT) as the baseline. docs/storage_nvme.md ("Tuning, measured") has the figures and the decision.

Options:
  --dir DIR           where the databases and fio's file go (required; emptied per configuration)
  --capacity-mib N    tier capacity and fill size in MiB (default 1024, 16..1048576)
  --churn-mib N       bytes put during the churn phase in MiB (default 2048)
  --sizes LIST        block sizes, comma-separated, with a k or m suffix (default 64k,1m,4m)
  --configs LIST      inline, blob, blob-wal, blob-direct (default: all four)
  --read-seconds S    time limit of each read phase and of each fio run (default 3)
  --repeat N          rounds over every size and configuration (default 1)
  --json FILE         also write every figure as JSON
  --no-fio            skip the fio baseline
  --help              this text

Exit status: 0 on success, 2 for bad usage, 1 when a measurement fails.
)";

struct Options {
  fs::path base;
  uint64_t capacity = 0, churn = 0, repeat = 1;
  double read_seconds = 3;
  std::vector<uint64_t> sizes;
  std::vector<TuningConfig> configs;
};

Result<Options> ParseOptions(const CliArgs& cli) {
  if (!cli.Has("dir")) return Status::InvalidArgument("--dir DIR is required");
  KVAULT_RETURN_IF_ERROR(cli.RejectPositional());
  Options o;
  o.base = *cli.Get("dir");
  KVAULT_ASSIGN_OR_RETURN(uint64_t capacity_mib, cli.GetUint("capacity-mib", 1024, 16, 1 << 20));
  KVAULT_ASSIGN_OR_RETURN(uint64_t churn_mib, cli.GetUint("churn-mib", 2048, 0, 1 << 22));
  KVAULT_ASSIGN_OR_RETURN(uint64_t seconds, cli.GetUint("read-seconds", 3, 1, 600));
  KVAULT_ASSIGN_OR_RETURN(o.repeat, cli.GetUint("repeat", 1, 1, 100));
  o.capacity = capacity_mib << 20;
  o.churn = churn_mib << 20;
  o.read_seconds = static_cast<double>(seconds);
  std::stringstream list(cli.GetOr("sizes", "64k,1m,4m"));
  for (std::string item; std::getline(list, item, ',');) {
    const char suffix = item.empty() ? '\0' : item.back();
    if (suffix != 'k' && suffix != 'm') {
      return Status::InvalidArgument("--sizes: '" + item + "' needs a k or m suffix");
    }
    KVAULT_ASSIGN_OR_RETURN(uint64_t n, ParseUintArg("--sizes", item.substr(0, item.size() - 1), 1,
                                                     suffix == 'm' ? 1024 : 1024 * 1024));
    o.sizes.push_back(n * (suffix == 'm' ? (1u << 20) : (1u << 10)));
  }
  std::stringstream names(cli.GetOr("configs", "inline,blob,blob-wal,blob-direct"));
  for (std::string name; std::getline(names, name, ',');) {
    bool known = false;
    for (const TuningConfig& c : AllConfigs()) {
      if (c.name == name) {
        o.configs.push_back(c);
        known = true;
      }
    }
    if (!known) {
      return Status::InvalidArgument("--configs: unknown configuration '" + name +
                                     "' (inline, blob, blob-wal, blob-direct)");
    }
  }
  if (o.sizes.empty() || o.configs.empty()) {
    return Status::InvalidArgument("--sizes and --configs must not be empty");
  }
  return o;
}

int Run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (WantsHelp(args)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  Result<CliArgs> cli = CliArgs::Parse(
      args,
      {"dir", "capacity-mib", "churn-mib", "sizes", "configs", "read-seconds", "repeat", "json"},
      {"no-fio"});
  Result<Options> parsed = cli.ok() ? ParseOptions(*cli) : Result<Options>(cli.status());
  if (!parsed.ok()) {
    const std::string& message = parsed.status().message();
    std::fprintf(stderr, "nvme_tuning: %s%s\n", message.c_str(),
                 message.find("--help") == std::string::npos ? " (try --help)" : "");
    return 2;
  }
  const Options& o = *parsed;
  const fs::path& base = o.base;
  const uint64_t capacity = o.capacity;
  const uint64_t churn = o.churn;
  const double read_seconds = o.read_seconds;
  const uint64_t repeat = o.repeat;
  const std::vector<uint64_t>& sizes = o.sizes;
  const std::vector<TuningConfig>& configs = o.configs;
  std::error_code ec;
  fs::create_directories(base, ec);
  if (ec) {
    std::fprintf(stderr, "nvme_tuning: cannot create %s: %s\n", base.c_str(), ec.message().c_str());
    return 1;
  }

  FioBaseline fio;
  if (!cli->Has("no-fio")) fio = RunFio(base, read_seconds);
  std::printf(
      "fio baseline (same filesystem, direct I/O, 1 MiB): seq write %.0f MiB/s, "
      "random read %.0f MiB/s (1 job), %.0f MiB/s (4 jobs)\n\n",
      fio.seq_write_mibps, fio.rand_read_mibps, fio.rand_read4_mibps);
  std::printf("%-13s %9s %9s %9s %9s %8s %7s %9s %8s %8s %9s\n", "config", "block", "fill", "churn",
              "put-only", "recover", "space", "read x1", "p50", "p99", "read x4");
  std::printf("%-13s %9s %9s %9s %9s %8s %7s %9s %8s %8s %9s\n", "", "bytes", "MiB/s", "MiB/s",
              "MiB/s", "ms", "amp", "MiB/s", "us", "us", "MiB/s");
  std::vector<Row> rows;
  for (uint64_t round = 0; round < repeat; ++round) {
    for (uint64_t size : sizes) {
      for (const TuningConfig& config : configs) {
        Result<Row> row = Measure(config, size, base, capacity, churn, read_seconds);
        if (!row.ok()) {
          std::fprintf(stderr, "%s %llu: %s\n", config.name.c_str(),
                       static_cast<unsigned long long>(size), row.status().ToString().c_str());
          return 1;
        }
        const Row& r = *row;
        std::printf("%-13s %9llu %9.0f %9.0f %9.0f %8.1f %7.2f %9.0f %8.0f %8.0f %9.0f\n",
                    r.config.c_str(), static_cast<unsigned long long>(r.block_bytes), r.fill_mibps,
                    r.churn_mibps, r.churn_put_mibps, r.recover_ms,
                    static_cast<double>(r.disk_bytes) / std::max<uint64_t>(1, r.live_bytes),
                    r.read1_mibps, r.read1_p50_us, r.read1_p99_us, r.read4_mibps);
        std::fflush(stdout);
        rows.push_back(r);
      }
    }
  }

  if (std::optional<std::string> json = cli->Get("json")) {
    std::ofstream out(*json);
    out << "{\"fio\": {\"seq_write_mibps\": " << fio.seq_write_mibps
        << ", \"rand_read_mibps\": " << fio.rand_read_mibps
        << ", \"rand_read4_mibps\": " << fio.rand_read4_mibps
        << "},\n \"capacity_bytes\": " << capacity << ", \"churn_bytes\": " << churn
        << ",\n \"rows\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      out << (i ? ",\n  " : "\n  ") << "{\"config\": \"" << r.config
          << "\", \"block_bytes\": " << r.block_bytes << ", \"fill_mibps\": " << r.fill_mibps
          << ", \"churn_mibps\": " << r.churn_mibps
          << ", \"churn_put_mibps\": " << r.churn_put_mibps << ", \"recover_ms\": " << r.recover_ms
          << ", \"live_bytes\": " << r.live_bytes << ", \"disk_bytes\": " << r.disk_bytes
          << ", \"read1_mibps\": " << r.read1_mibps << ", \"read1_p50_us\": " << r.read1_p50_us
          << ", \"read1_p99_us\": " << r.read1_p99_us << ", \"read4_mibps\": " << r.read4_mibps
          << "}";
    }
    out << "\n]}\n";
  }
  return 0;
}

}  // namespace
}  // namespace kvault::storage

int main(int argc, char** argv) { return kvault::storage::Run(argc, argv); }
