// `kvault-bench store`: flags, timed windows and the order of the phases.
#include "store_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "flag_checks.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/synthetic_block.h"
#include "mode_args.h"
#include "scratch_dir.h"
#include "size_arg.h"

namespace kvault::bench {
namespace store_bench {
namespace {

constexpr const char* kUsage =
    R"(kvault-bench store: kvaultd through libkvault vs redis-server and ucx_perftest

Usage: kvault-bench store [--server HOST:PORT] [--json FILE] [--sizes LIST] [--concurrency LIST]
                          [--seconds S | --ops N] [--reps N] [--warmup N] [--transports TLS]
                          [--data-plane ucx|process-memory]
                          [--host-capacity B] [--pool-bytes B] [--chain-keys N] [--lookups N]
                          [--perftest-bytes B] [--kvaultd PATH] [--redis PATH|none]
                          [--perftest PATH|none] [--client-memory allocate|register|register-direct]
                          [--keep]

  --server HOST:PORT   measure this daemon (its memory is then not measured); default: start
                       kvaultd from this binary's directory with ports 0, a scratch data
                       directory, no nvme tier and --host-capacity, and stop it at the end.
  --json FILE          also write every figure as JSON.
  --sizes LIST         block payload sizes, comma-separated, suffixes K/KiB, M/MiB, G/GiB
                       (default 64KiB,1MiB,4MiB); objects are a small header larger.
  --concurrency LIST   worker threads, each with its own Client (and redis connection) and one
                       request in flight (default 1,4).
  --seconds S          length of one timed window (default 0.5).
  --ops N              instead: operations per timed window, all threads together.
  --reps N             timed windows per figure, medians reported (default 3); kvault and redis
                       windows alternate.
  --warmup N           untimed windows before the timed ones, for store, SET, load and GET alike
                       (default 1; 0..100), each one whole pass over the row's objects: the first
                       pass pays one-time costs (the daemon faults in its host tier, redis grows
                       its heap). Failed operations in them still count.
  --transports TLS     UCX transports (UCX_TLS syntax) of kvaultd, the clients and ucx_perftest
                       (default posix,cma; tcp for the network path).
  --data-plane P       ucx (default) or process-memory: the started kvaultd copies the clients'
                       bytes straight from and to their memory (data_plane.process_memory on,
                       the plane a daemon with tenants gives local clients).
  --host-capacity B    host tier of the started kvaultd (default 256MiB); the load set is a
                       quarter of it.
  --pool-bytes B       distinct objects one store window may write, all threads (default
                       384MiB): more than the tier holds, so that stores evict; at least 8
                       objects of the largest size per thread. Not with --ops.
  --chain-keys N       length of the looked-up chain (default 1000).
  --lookups N          timed chain lookups per round, --reps rounds (default 2000).
  --perftest-bytes B   bytes one ucx_perftest run moves (default 512MiB; 100..100000 messages).
                       Not with --ops (the run then moves --ops messages).
  --kvaultd PATH       the daemon binary (default: kvaultd next to kvault-bench).
  --redis PATH         redis-server binary (default from PATH); "none" skips the redis baseline.
  --perftest PATH      ucx_perftest binary (default from PATH); "none" skips that baseline.
  --client-memory M    where the clients' objects and load destinations live: allocate
                       (default; Client::AllocateMemory, shared memory the daemon copies to and
                       from), register (page-aligned memory of this process registered with
                       Client::RegisterMemory, as an engine's own buffers would be; the client
                       stages its requests through its own shared memory), or register-direct
                       (the same with the client's staging off: UCX moves registered memory).
  --keep               keep the scratch directory (daemon and redis logs).

Store windows write objects not stored before (they are deleted again after each window); load
windows read a set stored beforehand, round-robin, and check the last objects byte for byte;
load-hot windows reload one object per thread, cached like the one buffer ucx_perftest resends
(the ucx_perftest target is judged on them; ucx_perftest is one stream, so it runs beside the
rows of concurrency 1 only). The exit code is 0 whether or not a target is met; targets are
printed as PASS/FAIL notes.
)";

int Fail(int code, const Status& s) { return FailMode("store", code, s); }

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a, CliArgs::Parse(args,
                                {"server", "json", "sizes", "concurrency", "seconds", "ops", "reps",
                                 "warmup", "transports", "host-capacity", "pool-bytes",
                                 "chain-keys", "lookups", "perftest-bytes", "kvaultd", "redis",
                                 "perftest", "client-memory", "data-plane"},
                                {"keep"}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  c.server = a.GetOr("server", "");
  if (a.Has("server") && c.server.find(':') == std::string::npos) {
    return Status::InvalidArgument("--server takes HOST:PORT, got '" + c.server + "'");
  }
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  for (const std::string& size : SplitCommaList(a.GetOr("sizes", "64KiB,1MiB,4MiB"))) {
    KVAULT_ASSIGN_OR_RETURN(uint64_t bytes, ParseSizeArg("--sizes", size, 1, 64ull << 20));
    c.sizes.push_back(bytes);
  }
  for (const std::string& n : SplitCommaList(a.GetOr("concurrency", "1,4"))) {
    KVAULT_ASSIGN_OR_RETURN(uint64_t threads, ParseUintArg("--concurrency", n, 1, 256));
    c.concurrency.push_back(static_cast<uint32_t>(threads));
  }
  for (const char* sized : {"pool-bytes", "perftest-bytes"}) {
    if (a.Has("ops") && a.Has(sized)) {
      return Status::InvalidArgument(std::string("--") + sized +
                                     " has no effect with --ops, which sets how many objects a "
                                     "window and a ucx_perftest run move");
    }
  }
  if (a.Has("seconds") && a.Has("ops")) {
    return Status::InvalidArgument("--seconds and --ops exclude each other");
  }
  if (a.Has("seconds")) {
    const std::string s = *a.Get("seconds");
    char* end = nullptr;
    c.seconds = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !(c.seconds >= 0.01) || c.seconds > 3600) {
      return Status::InvalidArgument("--seconds must be from 0.01 to 3600, got '" + s + "'");
    }
  }
  KVAULT_ASSIGN_OR_RETURN(c.ops, a.GetUint("ops", 0, 1, 100000000));
  KVAULT_ASSIGN_OR_RETURN(uint64_t reps, a.GetUint("reps", 3, 1, 1000));
  c.reps = static_cast<uint32_t>(reps);
  KVAULT_ASSIGN_OR_RETURN(uint64_t warmup, a.GetUint("warmup", 1, 0, 100));
  c.warmup = static_cast<uint32_t>(warmup);
  c.transports = a.GetOr("transports", "posix,cma");
  KVAULT_RETURN_IF_ERROR(CheckTransports("--transports", c.transports));
  const std::string plane = a.GetOr("data-plane", "ucx");
  if (plane != "ucx" && plane != "process-memory") {
    return Status::InvalidArgument("--data-plane takes ucx or process-memory, got '" + plane + "'");
  }
  c.process_memory = plane == "process-memory";
  if (c.process_memory && a.Has("server")) {
    return Status::InvalidArgument(
        "--data-plane is for the kvaultd the benchmark starts; the "
        "daemon of --server chooses its own");
  }
  KVAULT_ASSIGN_OR_RETURN(
      c.host_capacity,
      ParseSizeArg("--host-capacity", a.GetOr("host-capacity", "256MiB"), 1ull << 20, 1ull << 40));
  KVAULT_ASSIGN_OR_RETURN(
      c.pool_bytes, ParseSizeArg("--pool-bytes", a.GetOr("pool-bytes", "384MiB"), 1, 1ull << 40));
  if (c.ops == 0 && !c.sizes.empty() && !c.concurrency.empty()) {
    // A store window writes each distinct object once and stops when they run out: a pool of a
    // few objects per thread would make a store figure of a handful of operations.
    constexpr uint64_t kMinObjectsPerThread = 8;
    const uint64_t object = SyntheticObjectBytes(*std::max_element(c.sizes.begin(), c.sizes.end()));
    const uint64_t threads = *std::max_element(c.concurrency.begin(), c.concurrency.end());
    const uint64_t need = kMinObjectsPerThread * object * threads;
    if (object > 0 && c.pool_bytes < need) {
      return Status::InvalidArgument(
          "--pool-bytes " + std::to_string(c.pool_bytes) + " holds fewer than " +
          std::to_string(kMinObjectsPerThread) + " objects of the largest size per thread at " +
          "concurrency " + std::to_string(threads) + "; give at least " + std::to_string(need));
    }
  }
  KVAULT_ASSIGN_OR_RETURN(uint64_t chain, a.GetUint("chain-keys", 1000, 1, 100000));
  c.chain_keys = static_cast<uint32_t>(chain);
  KVAULT_ASSIGN_OR_RETURN(uint64_t lookups, a.GetUint("lookups", 2000, 1, 10000000));
  c.lookups = static_cast<uint32_t>(lookups);
  KVAULT_ASSIGN_OR_RETURN(
      c.perftest_bytes,
      ParseSizeArg("--perftest-bytes", a.GetOr("perftest-bytes", "512MiB"), 1, 1ull << 40));
  c.kvaultd = a.GetOr("kvaultd", "");
  c.redis = a.GetOr("redis", "redis-server");
  c.perftest = a.GetOr("perftest", "ucx_perftest");
  // Programs named on the command line must exist now, not after the kvault phase. The default
  // redis-server and ucx_perftest may be missing: their baselines are then reported as missing.
  if (!c.kvaultd.empty() && c.server.empty()) {
    KVAULT_RETURN_IF_ERROR(CheckExecutableFile("--kvaultd", c.kvaultd));
  }
  if (a.Has("redis") && c.redis != "none") {
    KVAULT_RETURN_IF_ERROR(CheckExecutableFile("--redis", c.redis));
  }
  if (a.Has("perftest") && c.perftest != "none") {
    KVAULT_RETURN_IF_ERROR(CheckExecutableFile("--perftest", c.perftest));
  }
  c.keep = a.Has("keep");
  const std::string memory = a.GetOr("client-memory", "allocate");
  if (memory == "allocate") {
    c.memory = ClientMemory::kAllocate;
  } else if (memory == "register") {
    c.memory = ClientMemory::kRegister;
  } else if (memory == "register-direct") {
    c.memory = ClientMemory::kRegisterDirect;
  } else {
    return Status::InvalidArgument(
        "--client-memory takes allocate, register or register-direct, got '" + memory + "'");
  }
  // Loads need a set that fits the tier next to an object being stored.
  for (uint64_t size : c.sizes) {
    if (c.server.empty() && SyntheticObjectBytes(size) > c.host_capacity / 4) {
      return Status::InvalidArgument(
          "--host-capacity must hold at least four of the largest "
          "objects (" +
          SizeName(SyntheticObjectBytes(size)) + ")");
    }
  }
  return c;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Measures one (size, concurrency) row: store windows alternating with redis SET windows, then
// load windows alternating with redis GET windows, each followed by a load-hot window. With
// `perftest` set (prepared for this size), one ucx_perftest run follows each load-hot window into
// row.perftest; a run that fails leaves row.perftest empty and `perftest_note` says why.
Status MeasureRow(const Config& c, KvaultSide& kv, RedisSide* redis, RssSampler* sampler,
                  std::optional<PerftestRun> perftest, std::string& perftest_note, uint64_t size,
                  uint32_t threads, Row& row) {
  KVAULT_RETURN_IF_ERROR(kv.PrepareRow(c, size, threads, row));
  if (redis != nullptr) KVAULT_RETURN_IF_ERROR(redis->Prepare(threads, row.object_bytes));
  auto object = [&kv](uint32_t t, uint64_t j) { return kv.Object(t, j); };
  std::vector<Window> store, load, load_hot, set, get;
  // Warm-up: the first pass over a row's objects pays one-time costs on both sides (the daemon
  // faults in its host tier's pages, redis grows its heap), several times slower here. So a
  // warm-up window is one whole pass over the objects, however long it takes.
  Config pass = c;
  pass.seconds = 0;
  pass.ops = 0;  // store and SET windows end after one pass
  std::vector<Window> warm_store, warm_load, warm_set, warm_get;
  for (uint32_t rep = 0; rep < c.warmup; ++rep) {
    warm_store.push_back(kv.StoreWindow(pass));
    if (redis != nullptr) {
      warm_set.push_back(redis->SetWindow(pass, kv.objects_per_thread(), object));
    }
  }
  for (uint32_t rep = 0; rep < c.reps; ++rep) {
    if (sampler != nullptr) sampler->Start();
    store.push_back(kv.StoreWindow(c));
    if (sampler != nullptr) sampler->Stop();
    if (redis != nullptr) set.push_back(redis->SetWindow(c, kv.objects_per_thread(), object));
  }
  KVAULT_RETURN_IF_ERROR(kv.StoreLoadSet());
  if (redis != nullptr) KVAULT_RETURN_IF_ERROR(redis->Fill(kv.load_per_thread(), object));
  pass.ops = kv.load_per_thread() * threads;  // load and GET windows: each object once
  for (uint32_t rep = 0; rep < c.warmup; ++rep) {
    KVAULT_ASSIGN_OR_RETURN(Window w, kv.LoadWindow(pass));
    warm_load.push_back(w);
    if (redis != nullptr) warm_get.push_back(redis->GetWindow(pass, kv.load_per_thread(), object));
  }
  for (uint32_t rep = 0; rep < c.reps; ++rep) {
    KVAULT_ASSIGN_OR_RETURN(Window w, kv.LoadWindow(c));
    load.push_back(w);
    if (redis != nullptr) get.push_back(redis->GetWindow(c, kv.load_per_thread(), object));
    KVAULT_ASSIGN_OR_RETURN(Window hot, kv.LoadWindow(c, /*hot=*/true));
    load_hot.push_back(hot);
    if (perftest) {  // the daemon is idle meanwhile (its progress threads sleep without work)
      if (Status s = RunPerftestOnce(c, *perftest); !s.ok()) {
        perftest_note = "no ucx_perftest baseline: " + s.message();
        perftest.reset();
      }
    }
  }
  row.perftest = std::move(perftest);
  row.kvault_store = Summarize(store, warm_store);
  row.kvault_load = Summarize(load, warm_load);
  row.kvault_load_hot = Summarize(load_hot);
  if (redis != nullptr) {
    row.redis_set = Summarize(set, warm_set);
    row.redis_get = Summarize(get, warm_get);
  }
  return Status::Ok();
}

}  // namespace

Window RunWindow(uint32_t threads, double seconds, uint64_t ops_per_thread, const StepFn& step) {
  struct PerThread {
    uint64_t ops = 0, bytes = 0, failures = 0;
    std::string first_failure;
    double end = 0;
  };
  std::vector<PerThread> per(threads);
  std::atomic<uint32_t> ready{0};
  std::atomic<bool> go{false};
  double start = 0;
  std::vector<std::thread> workers;
  for (uint32_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      PerThread& me = per[t];
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const double deadline = seconds > 0 ? start + seconds : 0;
      for (uint64_t i = 0; ops_per_thread == 0 || i < ops_per_thread; ++i) {
        if (deadline > 0 && Now() >= deadline) break;
        uint64_t bytes = 0;
        std::string why;
        const Step s = step(t, i, bytes, why);
        if (s == Step::kDone) break;
        if (s == Step::kOk) {
          ++me.ops;
          me.bytes += bytes;
        } else {
          ++me.failures;
          if (me.first_failure.empty()) me.first_failure = why;
        }
      }
      me.end = Now();
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  start = Now();
  go.store(true, std::memory_order_release);
  for (std::thread& w : workers) w.join();
  Window out;
  double end = start;
  for (const PerThread& p : per) {
    out.ops += p.ops;
    out.bytes += p.bytes;
    out.failures += p.failures;
    if (out.first_failure.empty()) out.first_failure = p.first_failure;
    end = std::max(end, p.end);
  }
  out.seconds = end - start;
  return out;
}

Throughput Summarize(const std::vector<Window>& windows, const std::vector<Window>& untimed) {
  Throughput t;
  for (const Window& w : untimed) {
    t.failures += w.failures;
    if (t.first_failure.empty()) t.first_failure = w.first_failure;
  }
  std::vector<double> ops_per_s;
  for (const Window& w : windows) {
    t.ops += w.ops;
    t.failures += w.failures;
    if (t.first_failure.empty()) t.first_failure = w.first_failure;
    const double s = std::max(w.seconds, 1e-9);
    t.window_gbps.push_back(w.bytes / s / 1e9);
    ops_per_s.push_back(w.ops / s);
  }
  if (!windows.empty()) {
    t.gbps = Median(t.window_gbps);
    t.ops_per_s = Median(ops_per_s);
  }
  return t;
}

}  // namespace store_bench

int RunStoreBench(const std::vector<std::string>& args) {
  using namespace store_bench;  // NOLINT(google-build-using-namespace): this module's helpers
  std::optional<Config> parsed;
  if (std::optional<int> done = StartMode("store", kUsage, args, ParseConfig, parsed)) return *done;
  const Config& c = *parsed;
  Result<ScratchDir> scratch = ScratchDir::Create("kvault-bench-store");
  if (!scratch.ok()) return Fail(1, scratch.status());
  scratch->set_keep(c.keep);

  Results r;
  Result<std::unique_ptr<KvaultSide>> kv = KvaultSide::Create(c, scratch->path());
  if (!kv.ok()) return Fail(1, kv.status());  // it ends with the tail of the daemon's log
  r.server = (*kv)->server();
  r.started_daemon = (*kv)->started();
  r.daemon_version = (*kv)->ready_line();
  std::printf(
      "kvault-bench store: kvaultd %s (%s), UCX_TLS=%s, data plane %s, client memory %s, scratch "
      "%s\n",
      r.server.c_str(), r.started_daemon ? "started by the benchmark" : "given with --server",
      c.transports.c_str(),
      !r.started_daemon  ? "the daemon's own"
      : c.process_memory ? "process-memory"
                         : "ucx",
      ClientMemoryName(c), scratch->path().c_str());
  std::fflush(stdout);

  std::unique_ptr<RedisSide> redis;
  if (c.redis == "none") {
    r.redis_note = "redis baseline skipped (--redis none)";
  } else if (Result<std::unique_ptr<RedisSide>> made = RedisSide::Create(c, scratch->path());
             made.ok()) {
    redis = std::move(*made);
  } else {
    r.redis_note = "no redis baseline: " + made.status().message();
  }
  bool perftest = c.perftest != "none";
  if (!perftest) r.perftest_note = "ucx_perftest baseline skipped (--perftest none)";
  if (perftest &&
      std::find(c.concurrency.begin(), c.concurrency.end(), 1u) == c.concurrency.end()) {
    r.perftest_note =
        "no ucx_perftest baseline: it is one stream, run beside rows of concurrency 1 only, and "
        "--concurrency has none";
    perftest = false;
  }

  Result<Lookup> lookup = (*kv)->MeasureLookup(c);
  if (!lookup.ok()) return Fail(1, lookup.status().WithContext("lookup"));
  r.lookup = *lookup;
  std::fprintf(stderr, "  measured chain lookup\n");

  std::unique_ptr<RssSampler> sampler;
  if (r.started_daemon) sampler = std::make_unique<RssSampler>((*kv)->daemon_pid());
  for (uint64_t size : c.sizes) {
    for (uint32_t threads : c.concurrency) {
      // ucx_perftest is one client and one server: beside the one-client rows only (a row of
      // N clients adds N streams up).
      std::optional<PerftestRun> paired;
      if (perftest && threads == 1) {
        Result<PerftestRun> prepared = PreparePerftest(c, size, SyntheticObjectBytes(size));
        if (prepared.ok()) {
          paired = *prepared;
        } else {
          r.perftest_note = "no ucx_perftest baseline: " + prepared.status().message();
          perftest = false;
        }
      }
      Row row;
      Status s = MeasureRow(c, **kv, redis.get(), sampler.get(), std::move(paired), r.perftest_note,
                            size, threads, row);
      if (perftest && threads == 1 && !row.perftest) {  // a run failed: no baseline, no more
        perftest = false;
        for (Row& earlier : r.rows) earlier.perftest.reset();
      }
      if (!s.ok()) {
        return Fail(1, s.WithContext(SizeName(size) + " x" + std::to_string(threads)));
      }
      r.rows.push_back(row);
      std::fprintf(stderr, "  measured %s x%u", SizeName(size).c_str(), threads);
      if (r.started_daemon) {
        const ProcMemory m = ReadProcMemory((*kv)->daemon_pid());
        std::fprintf(stderr, " (daemon now: VmRSS %.0f MiB, RssAnon %.0f MiB, RssShmem %.0f MiB)",
                     m.rss / 1048576.0, m.anon / 1048576.0, m.shmem / 1048576.0);
      }
      std::fputc('\n', stderr);
    }
  }
  if (sampler) {
    Memory m;
    m.pid = (*kv)->daemon_pid();
    const ProcMemory peak = sampler->peak();
    m.max_rss_bytes = peak.rss;
    m.max_anon_bytes = peak.anon;
    m.max_shmem_bytes = peak.shmem;
    m.hwm_bytes = ReadProcMemory(m.pid).hwm;
    m.capacity_bytes = c.host_capacity;
    m.bound_bytes = c.host_capacity + (128ull << 20);
    r.memory = m;
  } else {
    r.memory_note = "daemon memory not measured (--server: not this benchmark's process)";
  }
  r.staging = (*kv)->staging();
  if (redis) redis->Stop();
  (*kv)->Stop();

  PrintReport(c, r);
  if (!c.json_path.empty()) {
    Status s = WriteJsonFile(c.json_path, ReportJson(c, r));
    if (!s.ok()) return Fail(1, s);
    std::printf("JSON written to %s\n", c.json_path.c_str());
  }
  // Figures with failed operations are not measurements of a working store.
  uint64_t failures = 0;
  for (const Row& row : r.rows) {
    failures += row.kvault_store.failures + row.kvault_load.failures + row.kvault_load_hot.failures;
    if (row.redis_set) failures += row.redis_set->failures + row.redis_get->failures;
  }
  if (failures > 0) {
    return Fail(1, Status::Internal(std::to_string(failures) +
                                    " operations failed (the WARNING lines above say why)"));
  }
  return 0;
}

}  // namespace kvault::bench
