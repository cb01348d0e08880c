#include "trace_bench.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "flag_checks.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/eviction_policy.h"
#include "kvault/storage/nvme_tier.h"
#include "report.h"
#include "trace/belady.h"
#include "trace/mooncake_trace.h"

namespace kvault::bench {
namespace {

constexpr const char* kUsage =
    R"(kvault-bench trace: prefix hit ratio of an eviction policy on a request trace

Usage:
  kvault-bench trace --trace FILE (--capacity-blocks N | --capacity-fraction F) [options]

Replays a Mooncake-format trace (JSONL: timestamp, input_length, output_length, hash_ids; see
shared/traces/README.md) through the real BlockStore in time order: each request looks up its
blocks (its hits are the leading run present on arrival; block i hits only if blocks 0..i are
all present), then touches or inserts every block, block 0 first, each with its predecessor as
parent. The same replay runs with LRU, and Belady's MIN is simulated offline, at the same
capacity; all three are printed side by side.

Options:
  --trace FILE              the trace (required)
  --capacity-blocks N       host tier capacity in blocks
  --capacity-fraction F     capacity = floor(F x unique blocks of the trace), 0 < F <= 1
  --policy NAME             eviction policy under test (default: prefix; see below)
  --tiers host|host,nvme    host only (default), or host plus an nvme tier (RocksDB) that takes
                            what host evicts; hits then count in either tier
  --block-bytes B           payload bytes per block (default 0: the smallest valid object);
                            with host,nvme every block object really moves through both tiers
  --nvme-capacity-blocks N  nvme tier capacity in blocks (default: 4 x the host capacity);
                            with host,nvme only
  --dir DIR                 where the nvme tier's database goes (default: ./kvault-bench-trace,
                            removed afterwards); with host,nvme only
  --json FILE               also write the figures as JSON (hit_ratio, lru_hit_ratio,
                            belady_hit_ratio, ...)
  --help                    this text

Exit status: 0 on success, 2 for bad usage or an unreadable trace, 1 when the replay fails.
)";

struct Config {
  std::string trace_path;
  uint64_t capacity_blocks = 0;
  double capacity_fraction = 0;  // 0: use capacity_blocks
  std::string policy = "prefix";
  bool with_nvme = false;
  uint64_t block_bytes = 0;
  uint64_t nvme_capacity_blocks = 0;
  std::string dir = "kvault-bench-trace";
  std::string json_path;
};

// Whether a host tier of `capacity_blocks` objects of --block-bytes fits this machine's memory.
Status CheckHostTierFits(const Config& c, uint64_t capacity_blocks) {
  const double bytes =
      static_cast<double>(capacity_blocks) *
      static_cast<double>(storage::HostTierClassBytes(SyntheticObjectBytes(c.block_bytes)));
  return CheckFitsInMemory("a host tier of " + std::to_string(capacity_blocks) +
                               " blocks of --block-bytes " + std::to_string(c.block_bytes),
                           bytes);
}

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a, CliArgs::Parse(args,
                                {"trace", "capacity-blocks", "capacity-fraction", "policy", "tiers",
                                 "block-bytes", "nvme-capacity-blocks", "dir", "json"},
                                {}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  c.trace_path = a.GetOr("trace", "");
  if (c.trace_path.empty()) return Status::InvalidArgument("--trace FILE is required");
  if (a.Has("capacity-blocks") == a.Has("capacity-fraction")) {
    return Status::InvalidArgument("give exactly one of --capacity-blocks and --capacity-fraction");
  }
  KVAULT_ASSIGN_OR_RETURN(c.capacity_blocks, a.GetUint("capacity-blocks", 0, 1, 1u << 30));
  if (auto f = a.Get("capacity-fraction")) {
    char* end = nullptr;
    c.capacity_fraction = std::strtod(f->c_str(), &end);
    if (end == f->c_str() || *end != '\0' || !(c.capacity_fraction > 0) ||
        c.capacity_fraction > 1) {
      return Status::InvalidArgument("--capacity-fraction must be a number in (0, 1], got '" + *f +
                                     "'");
    }
  }
  c.policy = a.GetOr("policy", "prefix");
  KVAULT_RETURN_IF_ERROR(storage::MakeEvictionPolicy(c.policy).status());
  const std::string tiers = a.GetOr("tiers", "host");
  if (tiers != "host" && tiers != "host,nvme") {
    return Status::InvalidArgument("--tiers must be host or host,nvme, got '" + tiers + "'");
  }
  c.with_nvme = tiers == "host,nvme";
  for (const char* nvme_only : {"nvme-capacity-blocks", "dir"}) {
    if (!c.with_nvme && a.Has(nvme_only)) {
      return Status::InvalidArgument(std::string("--") + nvme_only +
                                     " is about the nvme tier: it needs --tiers host,nvme");
    }
  }
  KVAULT_ASSIGN_OR_RETURN(c.block_bytes, a.GetUint("block-bytes", 0, 0, 64u << 20));
  KVAULT_ASSIGN_OR_RETURN(c.nvme_capacity_blocks,
                          a.GetUint("nvme-capacity-blocks", 0, 1, 1u << 30));
  c.dir = a.GetOr("dir", c.dir);
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  if (c.capacity_blocks > 0) KVAULT_RETURN_IF_ERROR(CheckHostTierFits(c, c.capacity_blocks));
  return c;
}

// The store key of a trace block: the hash id spread over 32 bytes.
BlockKey KeyForHashId(uint64_t hash_id) {
  BlockKey key{};
  uint64_t z = hash_id;
  for (int word = 0; word < 4; ++word) {
    z += 0x9E3779B97F4A7C15ull;
    uint64_t x = z;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    std::memcpy(key.data() + 8 * word, &x, 8);
  }
  return key;
}

struct ReplayResult {
  HitStats stats;
  double seconds = 0;
  uint64_t bytes_written = 0;  // block objects committed
  uint64_t bytes_read = 0;     // block objects read back (host,nvme: every hit is pinned)
  uint64_t host_hits = 0, nvme_hits = 0;
  uint64_t demotions = 0, promotions = 0, evictions = 0;
};

class CounterMap final : public storage::CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    values_[std::string(tier) + "." + std::string(name)] = static_cast<double>(value);
  }
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    values_[std::string(tier) + "." + std::string(name)] = value;
  }
  double Get(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? 0 : it->second;
  }

 private:
  std::map<std::string, double> values_;
};

Result<ReplayResult> ReplayThroughStore(const Config& c, const std::string& policy,
                                        const BlockTrace& trace, uint64_t capacity_blocks) {
  const uint64_t object_bytes = SyntheticObjectBytes(c.block_bytes);
  storage::StoreTiers tiers;
  // The host tier holds exactly capacity_blocks objects: all objects have one size, so the
  // arena is capacity_blocks extents of that size class with no fragmentation.
  KVAULT_ASSIGN_OR_RETURN(
      tiers.host,
      storage::HostTier::Create(
          {.capacity_bytes = capacity_blocks * storage::HostTierClassBytes(object_bytes)}));
  std::filesystem::path dir;
  if (c.with_nvme) {
    dir = std::filesystem::path(c.dir) / (policy + "-" + std::to_string(getpid()));
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IoError("cannot create " + dir.string() + ": " + ec.message());
    const uint64_t nvme_blocks =
        c.nvme_capacity_blocks ? c.nvme_capacity_blocks : 4 * capacity_blocks;
    KVAULT_ASSIGN_OR_RETURN(
        tiers.nvme, storage::NvmeTier::Open(
                        {.directory = dir.string(), .capacity_bytes = nvme_blocks * object_bytes}));
  }
  // Movers off: room is made in the writer, so the host tier holds exactly its capacity.
  storage::BlockStoreOptions options;
  options.policy = policy;
  options.promote_on_hit = true;
  options.mover_threads = 0;
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<storage::BlockStore> store,
                          storage::BlockStore::Create(options, std::move(tiers)));
  ReplayResult result;
  result.stats.requests = trace.num_requests();
  result.stats.block_refs = trace.blocks.size();
  std::vector<BlockKey> keys;
  const auto start = std::chrono::steady_clock::now();
  for (size_t r = 0; r < trace.num_requests(); ++r) {
    const auto blocks = trace.request(r);
    keys.clear();
    for (uint32_t b : blocks) keys.push_back(KeyForHashId(trace.hash_ids[b]));
    // The hits are the blocks present on arrival; touching happens in the pass below.
    storage::LookupResult hits = store->Lookup(0, keys, {.touch = false});
    result.stats.hits += hits.leading_hits;
    for (uint32_t i = 0; i < hits.leading_hits; ++i) {
      (hits.tiers[i] == storage::TierKind::kHost ? result.host_hits : result.nvme_hits) += 1;
      if (!c.with_nvme) continue;
      // Real payloads: read every hit back (a cold one is promoted on the way).
      KVAULT_ASSIGN_OR_RETURN(std::optional<storage::BlockPin> pin, store->Pin(0, keys[i]));
      if (pin) result.bytes_read += pin->bytes().size();
    }
    for (size_t i = 0; i < keys.size(); ++i) {
      storage::WriteOptions options;
      if (i > 0) options.parent = keys[i - 1];
      KVAULT_ASSIGN_OR_RETURN(
          std::optional<storage::WriteReservation> reservation,
          store->Reserve(0, keys[i], static_cast<uint32_t>(object_bytes), options));
      if (!reservation) continue;  // present: Reserve touched it
      KVAULT_RETURN_IF_ERROR(WriteSyntheticBlock(keys[i], c.block_bytes, reservation->bytes()));
      KVAULT_RETURN_IF_ERROR(reservation->Commit());
      result.bytes_written += object_bytes;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CounterMap counters;
  store->VisitCounters(counters);
  result.stats.inserts = static_cast<uint64_t>(counters.Get(".commits_total"));
  result.demotions = static_cast<uint64_t>(counters.Get("host.demotions_total"));
  result.promotions = static_cast<uint64_t>(counters.Get("host.promotions_total"));
  result.evictions = static_cast<uint64_t>(counters.Get("host.evictions_total") +
                                           counters.Get("nvme.evictions_total"));
  store.reset();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return result;
}

std::string Pct(double ratio) { return Format("%.1f%%", 100.0 * ratio); }

int Run(const Config& c) {
  Result<std::vector<TraceRequest>> requests = ReadMooncakeTrace(c.trace_path);
  if (!requests.ok()) {
    std::fprintf(stderr, "kvault-bench trace: %s\n", requests.status().ToString().c_str());
    return 2;
  }
  const BlockTrace trace = MakeBlockTrace(*requests);
  if (trace.blocks.empty()) {
    std::fprintf(stderr,
                 "kvault-bench trace: %s holds no request with a block: nothing to replay\n",
                 c.trace_path.c_str());
    return 2;
  }
  const uint64_t capacity =
      c.capacity_fraction > 0 ? CapacityForFraction(trace, c.capacity_fraction) : c.capacity_blocks;
  if (capacity == 0) {
    std::fprintf(stderr, "kvault-bench trace: the capacity comes to 0 blocks\n");
    return 2;
  }
  if (Status fits = CheckHostTierFits(c, capacity); !fits.ok()) {
    std::fprintf(stderr, "kvault-bench trace: %s\n", fits.message().c_str());
    return 2;
  }
  std::printf("trace %s: %zu requests, %zu block references, %u unique blocks%s\n",
              c.trace_path.c_str(), trace.num_requests(), trace.blocks.size(), trace.unique_blocks,
              trace.prefix_consistent ? "" : " (NOT prefix-consistent)");
  std::printf("capacity %llu blocks (%.2f%% of unique), tiers %s, object %llu bytes\n\n",
              static_cast<unsigned long long>(capacity),
              100.0 * static_cast<double>(capacity) / trace.unique_blocks,
              c.with_nvme ? "host,nvme" : "host",
              static_cast<unsigned long long>(SyntheticObjectBytes(c.block_bytes)));

  Result<ReplayResult> chosen = ReplayThroughStore(c, c.policy, trace, capacity);
  Result<ReplayResult> lru =
      c.policy == "lru" ? chosen : ReplayThroughStore(c, "lru", trace, capacity);
  for (const Result<ReplayResult>* r : {&chosen, &lru}) {
    if (!r->ok()) {
      std::fprintf(stderr, "kvault-bench trace: replay failed: %s\n",
                   r->status().ToString().c_str());
      return 1;
    }
  }
  // With a colder tier the store holds host + nvme blocks, and so does the optimum it is held to.
  const uint64_t total_capacity =
      c.with_nvme ? capacity + (c.nvme_capacity_blocks ? c.nvme_capacity_blocks : 4 * capacity)
                  : capacity;
  const HitStats belady = SimulateBelady(trace, total_capacity);
  const double gap = belady.hit_ratio() - lru->stats.hit_ratio();
  const double closed = gap > 0 ? (chosen->stats.hit_ratio() - lru->stats.hit_ratio()) / gap : 0;

  Table table({"policy", "hit ratio", "hits", "host hits", "nvme hits", "inserts", "seconds",
               "write MB/s", "read MB/s"});
  auto add = [&](const std::string& name, const ReplayResult& r) {
    table.AddRow({name, Pct(r.stats.hit_ratio()), std::to_string(r.stats.hits),
                  std::to_string(r.host_hits), std::to_string(r.nvme_hits),
                  std::to_string(r.stats.inserts), Format("%.2f", r.seconds),
                  Format("%.1f", r.bytes_written / 1e6 / r.seconds),
                  Format("%.1f", r.bytes_read / 1e6 / r.seconds)});
  };
  add(c.policy + " (store)", *chosen);
  if (c.policy != "lru") add("lru (store)", *lru);
  table.AddRow({c.with_nvme ? "belady (offline, host+nvme capacity)" : "belady (offline)",
                Pct(belady.hit_ratio()), std::to_string(belady.hits), "-", "-",
                std::to_string(belady.inserts), "-", "-", "-"});
  std::fputs(table.Render().c_str(), stdout);
  if (c.with_nvme) {
    // Every object has one size, so bytes per tier follow from the moves the store counted.
    const double object = static_cast<double>(SyntheticObjectBytes(c.block_bytes));
    Table tiers({"replay", "tier", "bytes in", "bytes out", "in MB/s", "out MB/s"});
    auto add_tiers = [&](const std::string& name, const ReplayResult& r) {
      const double host_in = static_cast<double>(r.bytes_written) + r.promotions * object;
      const double host_out = r.demotions * object;
      const double nvme_in = r.demotions * object;
      const double nvme_out = r.promotions * object;
      tiers.AddRow({name, "host", Format("%.0f", host_in), Format("%.0f", host_out),
                    Format("%.1f", host_in / 1e6 / r.seconds),
                    Format("%.1f", host_out / 1e6 / r.seconds)});
      tiers.AddRow({name, "nvme", Format("%.0f", nvme_in), Format("%.0f", nvme_out),
                    Format("%.1f", nvme_in / 1e6 / r.seconds),
                    Format("%.1f", nvme_out / 1e6 / r.seconds)});
    };
    add_tiers(c.policy, *chosen);
    if (c.policy != "lru") add_tiers("lru", *lru);
    std::printf("\nBytes moved per tier (host in = commits + promotions; nvme in = demotions):\n");
    std::fputs(tiers.Render().c_str(), stdout);
  }
  std::printf("\n%s closes %.0f%% of the gap from LRU to Belady (target >= 50%%)\n",
              c.policy.c_str(), 100.0 * closed);

  if (!c.json_path.empty()) {
    auto replay_json = [](const ReplayResult& r) {
      return Json(Json::Object{{"hit_ratio", r.stats.hit_ratio()},
                               {"hits", r.stats.hits},
                               {"host_hits", r.host_hits},
                               {"nvme_hits", r.nvme_hits},
                               {"inserts", r.stats.inserts},
                               {"seconds", r.seconds},
                               {"bytes_written", r.bytes_written},
                               {"bytes_read", r.bytes_read},
                               {"demotions", r.demotions},
                               {"promotions", r.promotions},
                               {"evictions", r.evictions}});
    };
    Json json(Json::Object{
        {"trace", c.trace_path},
        {"requests", static_cast<uint64_t>(trace.num_requests())},
        {"block_refs", static_cast<uint64_t>(trace.blocks.size())},
        {"unique_blocks", trace.unique_blocks},
        {"capacity_blocks", capacity},
        {"belady_capacity_blocks", total_capacity},
        {"tiers", c.with_nvme ? "host,nvme" : "host"},
        {"object_bytes", SyntheticObjectBytes(c.block_bytes)},
        {"policy", c.policy},
        {"hit_ratio", chosen->stats.hit_ratio()},
        {"lru_hit_ratio", lru->stats.hit_ratio()},
        {"belady_hit_ratio", belady.hit_ratio()},
        {"gap_closed", closed},
        {"policy_replay", replay_json(*chosen)},
        {"lru_replay", replay_json(*lru)},
    });
    Status written = WriteJsonFile(c.json_path, json);
    if (!written.ok()) {
      std::fprintf(stderr, "kvault-bench trace: %s\n", written.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

int RunTraceBench(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::fputs(kUsage, stdout);
    std::printf("\nPolicies:");
    for (const std::string& name : storage::EvictionPolicyNames()) {
      std::printf(" %s", name.c_str());
    }
    std::printf("\n");
    return 0;
  }
  Result<Config> config = ParseConfig(args);
  if (!config.ok()) {
    const std::string& message = config.status().message();
    std::fprintf(stderr, "kvault-bench trace: %s%s\n", message.c_str(),
                 message.find("--help") == std::string::npos ? " (try --help)" : "");
    return 2;
  }
  return Run(*config);
}

}  // namespace kvault::bench
