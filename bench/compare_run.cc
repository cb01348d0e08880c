// One codec run of `kvault-bench compare` (compare_bench.h): a fresh kvaultd, the trace sample
// replayed through LookupPrefix / LoadPaged / StorePaged, and the daemon's resource use.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>

#include "compare_bench.h"
#include "kvaultd_process.h"
#include "store_bench.h"

namespace kvault::bench::compare {
namespace {

using store_bench::ProcMemory;
using store_bench::RssSampler;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Seconds(const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; }

// CPU seconds of this process (every thread) and of the calling thread.
double ProcessCpu() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return Seconds(u.ru_utime) + Seconds(u.ru_stime);
}
double ThreadCpu() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return Seconds(u.ru_utime) + Seconds(u.ru_stime);
}

// "<tier>.used_bytes", ".capacity_bytes", ".blocks", ".evictions_total" of the Stats reply.
std::vector<TierUse> Tiers(const std::vector<ServerStat>& stats) {
  std::map<std::string, TierUse> tiers;
  for (const ServerStat& s : stats) {
    const size_t dot = s.name.find('.');
    if (dot == std::string::npos) continue;
    const std::string tier = s.name.substr(0, dot), what = s.name.substr(dot + 1);
    if (tier == "store" || tier == "daemon" || tier == "tenant") continue;
    const uint64_t v = static_cast<uint64_t>(s.AsDouble());
    TierUse& t = tiers[tier];
    t.tier = tier;
    if (what == "used_bytes") t.used_bytes = v;
    if (what == "capacity_bytes") t.capacity_bytes = v;
    if (what == "blocks") t.blocks = v;
    if (what == "evictions_total") t.evictions = v;
  }
  std::vector<TierUse> out;
  for (auto& [name, t] : tiers) out.push_back(t);
  return out;
}

void NoteFailure(RunFigures& f, const std::string& what) {
  if (f.first_failure.empty()) f.first_failure = what;
}

// The replay state of one run.
class Replay {
 public:
  Replay(const RunInput& in, Client& client, PagedKvStore& paged, EngineCache& engine,
         const BlockKey& ns)
      : in_(in), client_(client), paged_(paged), engine_(engine), ns_(ns) {}

  // One request; errors only for a failed whole lookup or transfer.
  Status Request(const std::vector<uint64_t>& ids, RunFigures& f);

 private:
  uint64_t ObjectBytes(size_t first, size_t end) const {
    uint64_t sum = 0;
    for (size_t i = first; i < end; ++i) sum += paged_.ObjectBytes(i);
    return sum;
  }
  // Whether loaded block `i` (trace id `id`) holds the codec's encode + decode of its payload.
  // Blocks whose bytes depend on their position (sink tokens) are not checked.
  std::optional<bool> Verify(uint32_t i, uint64_t id) const;
  // Writes the payload of block `i` (trace id `id`) into the engine cache: the engine's prefill.
  void Fill(uint32_t i, uint64_t id);

  const RunInput& in_;
  Client& client_;
  PagedKvStore& paged_;
  EngineCache& engine_;
  const BlockKey ns_;
};

std::optional<bool> Replay::Verify(uint32_t i, uint64_t id) const {
  const uint32_t b = in_.library->BlockFor(id);
  if (in_.accuracy->sink_tokens > 0 && (i == 0 || b == 0)) return std::nullopt;
  const size_t bytes = engine_.run_elements() * sizeof(uint16_t);
  for (uint32_t l = 0; l < in_.shape.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const uint16_t* want = BlockRun(in_.accuracy->decoded, in_.shape.block_tokens, b, l, kv);
      if (std::memcmp(engine_.Run(i, l, kv), want, bytes) != 0) return false;
    }
  }
  return true;
}

void Replay::Fill(uint32_t i, uint64_t id) {
  const uint32_t b = in_.library->BlockFor(id);
  const size_t bytes = engine_.run_elements() * sizeof(uint16_t);
  for (uint32_t l = 0; l < in_.shape.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      std::memcpy(engine_.Run(i, l, kv),
                  BlockRun(in_.library->kv(), in_.shape.block_tokens, b, l, kv), bytes);
    }
  }
}

Status Replay::Request(const std::vector<uint64_t>& ids, RunFigures& f) {
  const uint32_t n = static_cast<uint32_t>(ids.size());
  const uint32_t block_tokens = in_.shape.block_tokens;
  const std::vector<BlockKey> keys = ChainKeys(ns_, ids);
  const PagedSequence seq{engine_.Ids(n), uint64_t{n} * block_tokens, keys};
  ++f.requests;
  f.looked_up_blocks += n;

  // Restore: lookup with a lease, then load the leading hits.
  const double t0 = Now();
  const LookupResult hit =
      client_.LookupPrefix(keys, {.want_lease = true, .lease_ttl = {}, .deadline = {}});
  const double t1 = Now();
  KVAULT_RETURN_IF_ERROR(hit.status.WithContext("lookup"));
  f.lookup_seconds.push_back(t1 - t0);
  const uint32_t hits = hit.leading_hits;
  f.hit_blocks += hits;
  uint32_t loaded = 0;
  if (hits > 0) {
    PagedLoadHandle load = paged_.LoadPaged(hit.lease, seq, hits);
    const Status s = load.Wait();
    const double t2 = Now();
    KVAULT_RETURN_IF_ERROR(s.WithContext("load"));
    loaded = static_cast<uint32_t>(load.leading_ok());
    if (loaded < hits) {
      f.failed_load_blocks += hits - loaded;
      NoteFailure(
          f, "load of block " + std::to_string(loaded) + ": " + load.key_status(loaded).ToString());
    }
    if (loaded > 0) {
      f.restore_seconds.push_back(t2 - t0);
      f.restore_ms_per_1k.push_back((t2 - t0) * 1e3 * 1000.0 /
                                    (static_cast<double>(loaded) * block_tokens));
      f.restore_total_s += t2 - t0;
      f.loaded_blocks += loaded;
      f.loaded_bytes += ObjectBytes(0, loaded);
    }
  }
  // A lease the daemon already dropped is fine: the load is over.
  if (hit.lease.valid()) (void)client_.ReleaseLease(hit.lease);

  for (uint32_t i = 0; i < loaded; ++i) {
    const std::optional<bool> same = Verify(i, ids[i]);
    if (!same.has_value()) continue;
    if (*same) {
      ++f.verified_blocks;
    } else {
      ++f.mismatched_blocks;
      NoteFailure(f, "loaded block " + std::to_string(i) + " differs from the codec's own encode " +
                         "+ decode of its payload");
    }
  }
  // "Prefill" computes the rest; then every full block is offered, the stored prefix skipped.
  for (uint32_t i = loaded; i < n; ++i) Fill(i, ids[i]);
  const double s0 = Now();
  PagedStoreHandle store =
      paged_.StorePaged(seq, {.deadline = {}, .skip_stored = true, .stream = nullptr});
  const Status s = store.Wait();
  const double s1 = Now();
  KVAULT_RETURN_IF_ERROR(s.WithContext("store"));
  const size_t skipped = store.skipped(), ok = store.leading_ok();
  if (n > skipped) f.store_total_s += s1 - s0;
  if (ok > skipped) {
    f.stored_blocks += ok - skipped;
    f.stored_bytes += ObjectBytes(skipped, ok);
  }
  if (ok < n) {
    f.failed_store_blocks += n - ok;
    NoteFailure(f, "store of block " + std::to_string(ok) + ": " + store.key_status(ok).ToString());
  }
  return Status::Ok();
}

}  // namespace

Result<RunFigures> RunCodec(const RunInput& in) {
  const Config& c = *in.config;
  KvaultdLaunch launch;
  launch.binary = c.kvaultd;
  launch.scratch = in.scratch;
  launch.host_capacity = in.capacity;
  // 64 MiB (or one raw block, when larger), lowered to the largest block whose size class fits the
  // host tier: kvaultd refuses a larger limit, and the capacity check (RunCompareBench) keeps a
  // raw block within it.
  launch.max_block_bytes =
      MaxBlockBytesFitting(in.capacity, std::max<uint64_t>(in.raw_object, uint64_t{64} << 20));
  launch.transports = c.transports;
  KVAULT_ASSIGN_OR_RETURN(RunningKvaultd daemon, StartKvaultd(launch));
  const pid_t pid = daemon.process->pid();
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
                          ConnectToKvaultd(daemon.server, c.transports, "kvault-bench compare"));
  KVAULT_ASSIGN_OR_RETURN(EngineCache engine, EngineCache::Create(in.shape, in.sample->max_blocks));
  KVAULT_ASSIGN_OR_RETURN(BlockKey ns, CompareNamespace(in.shape));
  PagedKvOptions options;
  options.cache = engine.cache();
  options.block_tokens = in.shape.block_tokens;
  options.codec = in.codec;
  options.ns_digest = ns;
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<PagedKvStore> paged,
                          PagedKvStore::Create(*client, options));

  RunFigures f;
  Replay replay(in, *client, *paged, engine, ns);
  RssSampler sampler(pid);
  sampler.Start();
  CpuSource cpu_source = CpuSource::kUnset;
  const double cpu0 = ReadProcCpuSeconds(pid, cpu_source).value_or(0);
  const double process0 = ProcessCpu(), thread0 = ThreadCpu();
  const double start = Now();
  for (const std::vector<uint64_t>& ids : in.sample->requests) {
    KVAULT_RETURN_IF_ERROR(
        replay.Request(ids, f).WithContext("request " + std::to_string(f.requests + 1)));
    if (in.max_seconds > 0 && Now() - start >= in.max_seconds) break;
  }
  f.replay_s = Now() - start;
  f.client_cpu_s = (ProcessCpu() - process0) - (ThreadCpu() - thread0);
  f.daemon_cpu_s = std::max(0.0, ReadProcCpuSeconds(pid, cpu_source).value_or(cpu0) - cpu0);
  sampler.Stop();
  f.daemon_anon_peak_bytes = sampler.peak().anon;
  f.daemon_hwm_bytes = store_bench::ReadProcMemory(pid).hwm;
  KVAULT_ASSIGN_OR_RETURN(std::vector<ServerStat> stats, client->Stats());
  f.tiers = Tiers(stats);
  paged.reset();
  client.reset();
  daemon.process->Stop(10);
  return f;
}

}  // namespace kvault::bench::compare
