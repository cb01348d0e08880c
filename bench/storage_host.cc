// The host-tier phases of `kvault-bench storage`: put, lookup and read through a BlockStore over a
// HostTier against single-thread memcpy, the 1,000-key chain lookup, and the memory check (a child
// process that fills a host tier and reports its resident memory).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "report.h"
#include "storage_bench.h"

namespace kvault::bench::storage_bench {
namespace {

using storage::BlockStore;
using storage::BlockStoreOptions;
using storage::HostTier;
using storage::HostTierOptions;
using storage::LookupOptions;
using storage::LookupResult;
using storage::StoreTiers;
using storage::TenantId;

// Payload of the blocks the memory check fills the host tier with.
constexpr uint64_t kMemoryBlockBytes = 64 << 10;
// Payload of the chain lookup's blocks: lookups never touch block bytes, so they are small.
constexpr uint64_t kChainBlockBytes = 4 << 10;

Result<std::unique_ptr<BlockStore>> MakeHostStore(const Config& c, uint64_t capacity_bytes) {
  HostTierOptions host_options;
  host_options.capacity_bytes = capacity_bytes;
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<HostTier> host, HostTier::Create(host_options));
  StoreTiers tiers;
  tiers.host = std::move(host);
  BlockStoreOptions options;
  options.policy = c.policy;
  return BlockStore::Create(options, std::move(tiers));
}

// Gauges the memory check reports, by "tier/name".
class GaugeCollector final : public storage::CounterVisitor {
 public:
  void Counter(std::string_view, std::string_view, uint64_t) override {}
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    gauges_[std::string(tier) + "/" + std::string(name)] = value;
  }
  uint64_t Get(const std::string& key) const {
    auto it = gauges_.find(key);
    return it == gauges_.end() ? 0 : static_cast<uint64_t>(it->second);
  }

 private:
  std::map<std::string, double> gauges_;
};

// VmRSS and VmHWM of this process from /proc/self/status, in bytes.
Result<std::pair<uint64_t, uint64_t>> ResidentMemory() {
  std::ifstream status("/proc/self/status");
  if (!status) return Status::IoError("cannot read /proc/self/status");
  uint64_t rss = 0, hwm = 0;
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string name;
    uint64_t kib = 0;
    fields >> name >> kib;
    if (name == "VmRSS:") rss = kib << 10;
    if (name == "VmHWM:") hwm = kib << 10;
  }
  if (rss == 0) return Status::IoError("no VmRSS in /proc/self/status");
  return std::make_pair(rss, hwm);
}

// Parses the child's "name=value ..." line.
std::map<std::string, uint64_t> ParseFields(const std::string& text) {
  std::map<std::string, uint64_t> fields;
  std::istringstream in(text);
  std::string token;
  while (in >> token) {
    const size_t eq = token.find('=');
    if (eq == std::string::npos) continue;
    fields[token.substr(0, eq)] = std::strtoull(token.c_str() + eq + 1, nullptr, 10);
  }
  return fields;
}

double SumOf(const std::vector<double>& v, size_t from) {
  double sum = 0;
  for (size_t i = from; i < v.size(); ++i) sum += v[i];
  return sum;
}

}  // namespace

Result<HostRow> MeasureHost(const Config& c, uint64_t block_bytes) {
  HostRow row;
  row.block_bytes = block_bytes;
  row.object_bytes = SyntheticObjectBytes(block_bytes);
  if (row.object_bytes == 0) return Status::OutOfRange("block size too large");
  const uint64_t n = std::max<uint64_t>(1, c.host_pass_bytes / row.object_bytes);
  row.blocks_per_rep = n;
  KVAULT_ASSIGN_OR_RETURN(BlockPool pool, MakeBlockPool(c.seed, block_bytes, n));
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<BlockStore> store, MakeHostStore(c, c.host_capacity));
  // Where memcpy and reads copy to: the same buffer for both, touched before the first pass.
  std::vector<uint8_t> dst(pool.bytes.size(), 1);
  const uint64_t obj = row.object_bytes;
  const double pass_bytes = static_cast<double>(n * obj);

  std::vector<double> put_lat, lookup_lat, read_lat;
  std::vector<double> put_gbps, read_gbps, copy_gbps, put_ratio, read_ratio;
  // Repetition 0 is a warm-up: it faults in the arena and the destination.
  for (uint32_t rep = 0; rep <= c.reps; ++rep) {
    const TenantId tenant = rep + 1;  // every repetition stores new blocks
    std::vector<double> copy, put, lookup, read;
    for (uint64_t j = 0; j < n; ++j) {
      const double t0 = NowSeconds();
      std::memcpy(dst.data() + j * obj, pool.At(j).data(), obj);
      copy.push_back(NowSeconds() - t0);
    }
    for (uint64_t j = 0; j < n; ++j) {
      const double t0 = NowSeconds();
      Result<bool> stored = store->Put(tenant, pool.keys[j], pool.At(j));
      put.push_back(NowSeconds() - t0);
      if (!stored.ok()) return stored.status().WithContext("host put");
      if (!*stored) return Status::Internal("host put: block already present");
    }
    for (uint64_t j = 0; j < n; ++j) {
      const double t0 = NowSeconds();
      LookupResult found = store->Lookup(tenant, {&pool.keys[j], 1});
      lookup.push_back(NowSeconds() - t0);
      if (found.leading_hits != 1) return Status::Internal("host lookup: a stored block missed");
    }
    for (uint64_t j = 0; j < n; ++j) {
      const double t0 = NowSeconds();
      {
        Result<std::optional<storage::BlockPin>> pin = store->Pin(tenant, pool.keys[j]);
        if (!pin.ok()) return pin.status().WithContext("host read");
        if (!pin->has_value() || (*pin)->bytes().size() != obj) {
          return Status::Internal("host read: a stored block missed");
        }
        std::memcpy(dst.data() + j * obj, (*pin)->bytes().data(), obj);
      }
      read.push_back(NowSeconds() - t0);
    }
    // Self-check outside the timing: every byte read back is the byte written.
    if (std::memcmp(dst.data(), pool.bytes.data(), dst.size()) != 0) {
      return Status::Corruption("host read: bytes differ from what was put");
    }
    for (uint64_t j = 0; j < n; ++j) {
      Result<bool> deleted = store->Delete(tenant, pool.keys[j]);
      if (!deleted.ok()) return deleted.status().WithContext("host delete");
    }
    if (rep == 0) continue;
    copy_gbps.push_back(pass_bytes / SumOf(copy, 0) / 1e9);
    put_gbps.push_back(pass_bytes / SumOf(put, 0) / 1e9);
    read_gbps.push_back(pass_bytes / SumOf(read, 0) / 1e9);
    put_ratio.push_back(put_gbps.back() / copy_gbps.back());
    read_ratio.push_back(read_gbps.back() / copy_gbps.back());
    put_lat.insert(put_lat.end(), put.begin(), put.end());
    lookup_lat.insert(lookup_lat.end(), lookup.begin(), lookup.end());
    read_lat.insert(read_lat.end(), read.begin(), read.end());
  }
  row.put = Summarize(std::move(put_lat), obj);
  row.lookup = Summarize(std::move(lookup_lat), 0);
  row.read = Summarize(std::move(read_lat), obj);
  row.put_gbps = Median(put_gbps);
  row.read_gbps = Median(read_gbps);
  row.memcpy_gbps = Median(copy_gbps);
  row.put_vs_memcpy = Median(put_ratio);
  row.read_vs_memcpy = Median(read_ratio);
  return row;
}

Result<ChainLookup> MeasureChainLookup(const Config& c) {
  ChainLookup out;
  out.keys = c.chain_keys;
  const uint64_t obj = SyntheticObjectBytes(kChainBlockBytes);
  KVAULT_ASSIGN_OR_RETURN(
      std::unique_ptr<BlockStore> store,
      MakeHostStore(c, std::max<uint64_t>(64ull << 20, 2 * obj * c.chain_keys)));
  // A real chain: key i hashes key i-1, and each block names its parent.
  std::vector<BlockKey> chain;
  BlockKey parent = BenchKey(c.seed, ~uint64_t{0});
  for (uint32_t i = 0; i < c.chain_keys; ++i) {
    const uint32_t tokens[1] = {i};
    const BlockKey key = NextBlockKey(parent, tokens);
    KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> object, MakeSyntheticBlock(key, kChainBlockBytes));
    storage::WriteOptions write;
    if (i > 0) write.parent = parent;
    KVAULT_ASSIGN_OR_RETURN(bool stored, store->Put(0, key, object, write));
    if (!stored) return Status::Internal("chain lookup: duplicate key");
    chain.push_back(key);
    parent = key;
  }
  LookupOptions leased;
  leased.lease_ttl = std::chrono::minutes(1);
  // One plain and one leased lookup, timed (they alternate, so both see the same machine noise).
  auto lookup_pair = [&](double& plain_s, double& lease_s) -> Status {
    double t0 = NowSeconds();
    LookupResult plain = store->Lookup(0, chain);
    plain_s = NowSeconds() - t0;
    t0 = NowSeconds();
    LookupResult lease = store->Lookup(0, chain, leased);
    lease_s = NowSeconds() - t0;
    if (plain.leading_hits != c.chain_keys || lease.leading_hits != c.chain_keys) {
      return Status::Internal("chain lookup: a stored block missed");
    }
    if (lease.lease == 0) return Status::Internal("chain lookup: no lease granted");
    return store->ReleaseLease(lease.lease);
  };
  constexpr uint32_t kWarmup = 50;
  double plain_s = 0, lease_s = 0;
  for (uint32_t i = 0; i < kWarmup; ++i) KVAULT_RETURN_IF_ERROR(lookup_pair(plain_s, lease_s));
  // --reps rounds of --chain-lookups pairs; each figure is the median over the rounds, so that one
  // burst of the machine's noise moves one round's p99, not the reported one.
  std::vector<OpStats> plain_rounds, leased_rounds;
  for (uint32_t round = 0; round < c.reps; ++round) {
    std::vector<double> plain_lat, leased_lat;
    for (uint32_t i = 0; i < c.chain_lookups; ++i) {
      KVAULT_RETURN_IF_ERROR(lookup_pair(plain_s, lease_s));
      plain_lat.push_back(plain_s);
      leased_lat.push_back(lease_s);
    }
    plain_rounds.push_back(Summarize(std::move(plain_lat), 0));
    leased_rounds.push_back(Summarize(std::move(leased_lat), 0));
    out.round_p99_us.push_back(plain_rounds.back().p99_us);
  }
  out.plain = MedianOverRounds(plain_rounds);
  out.leased = MedianOverRounds(leased_rounds);
  return out;
}

Result<MemoryCheck> RunMemoryCheck(const Config& c) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::IoError("memory check: cannot find this binary: " + ec.message());
  KVAULT_ASSIGN_OR_RETURN(ProcessResult child,
                          RunProcess({self.string(), "storage", "--memory-child", "--host-capacity",
                                      std::to_string(c.host_capacity), "--policy", c.policy,
                                      "--seed", std::to_string(c.seed)}));
  if (child.exit_code != 0) {
    return Status::Internal("memory check: child exited with " + std::to_string(child.exit_code) +
                            ": " + child.out);
  }
  std::map<std::string, uint64_t> f = ParseFields(child.out);
  MemoryCheck m;
  m.capacity_bytes = f["capacity_bytes"];
  m.block_bytes = f["block_bytes"];
  m.blocks = f["indexed_blocks"];
  m.used_bytes = f["used_bytes"];
  m.rss_bytes = f["rss_bytes"];
  m.hwm_bytes = f["hwm_bytes"];
  if (m.rss_bytes == 0 || m.blocks == 0) {
    return Status::Internal("memory check: unexpected child output: " + child.out);
  }
  m.bound_bytes = m.capacity_bytes + (64ull << 20) + 128 * m.blocks;
  return m;
}

int RunMemoryChild(const Config& c) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "kvault-bench storage --memory-child: %s\n", s.ToString().c_str());
    return 1;
  };
  Result<std::unique_ptr<BlockStore>> store = MakeHostStore(c, c.host_capacity);
  if (!store.ok()) return fail(store.status());
  const uint64_t obj = SyntheticObjectBytes(kMemoryBlockBytes);
  // Over-fill by a quarter so the tier ends full and has evicted (gone: there is no colder tier).
  const uint64_t n = c.host_capacity / obj + c.host_capacity / obj / 4 + 1;
  for (uint64_t i = 0; i < n; ++i) {
    const BlockKey key = BenchKey(c.seed, i);
    // Written in place into the reservation: no staging copy inflates the figure.
    Result<std::optional<storage::WriteReservation>> r =
        (*store)->Reserve(0, key, static_cast<uint32_t>(obj));
    if (!r.ok()) return fail(r.status());
    if (!r->has_value()) return fail(Status::Internal("duplicate key"));
    storage::WriteReservation& reservation = **r;
    Status s = WriteSyntheticBlock(key, kMemoryBlockBytes, reservation.bytes());
    if (s.ok()) s = reservation.Commit();
    if (!s.ok()) return fail(s);
  }
  (*store)->WaitForMovers();
  GaugeCollector gauges;
  (*store)->VisitCounters(gauges);
  Result<std::pair<uint64_t, uint64_t>> mem = ResidentMemory();
  if (!mem.ok()) return fail(mem.status());
  std::printf(
      "capacity_bytes=%llu block_bytes=%llu indexed_blocks=%llu used_bytes=%llu "
      "rss_bytes=%llu hwm_bytes=%llu\n",
      static_cast<unsigned long long>(c.host_capacity), static_cast<unsigned long long>(obj),
      static_cast<unsigned long long>(gauges.Get("/indexed_blocks")),
      static_cast<unsigned long long>(gauges.Get("host/used_bytes")),
      static_cast<unsigned long long>(mem->first), static_cast<unsigned long long>(mem->second));
  return 0;
}

}  // namespace kvault::bench::storage_bench
