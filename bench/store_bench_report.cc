// The table, the targets and the JSON of `kvault-bench store`.
#include <cstdio>

#include "store_bench.h"

namespace kvault::bench::store_bench {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// Target figures from the issue; shown, never asserted.
constexpr double kStoreVsSetTarget = 2.0;
constexpr double kLoadVsGetTarget = 2.0;
constexpr double kLoadVsPerftestTarget = 0.7;
constexpr double kLookupP99TargetUs = 250;

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// kvault against ucx_perftest on the same machine moments: the median over the repetitions of
// kvault window i / ucx_perftest run i (each run follows the row's load-hot window i).
double PairedRatio(const Throughput& kvault, const PerftestRun& p) {
  std::vector<double> ratios;
  for (size_t i = 0; i < kvault.window_gbps.size() && i < p.run_mbps.size(); ++i) {
    const double base = p.run_mbps[i] * 1048576.0 / 1e9;
    if (base > 0) ratios.push_back(kvault.window_gbps[i] / base);
  }
  return ratios.empty() ? 0 : Median(ratios);
}

struct Target {
  std::string name;
  std::optional<double> value;  // absent: not measured
  double target = 0;
  bool at_most = false;  // value <= target passes (else value >= target)
  std::string unit;      // "x" for ratios
  bool pass() const { return value && (at_most ? *value <= target : *value >= target); }
};

std::vector<Target> Targets(const Results& r) {
  std::vector<Target> out;
  for (const Row& row : r.rows) {
    if (row.block_bytes != kMiB) continue;
    const std::string at = "1MiB x" + std::to_string(row.concurrency);
    Target store{"kvault store " + at + " >= 2x redis SET", std::nullopt, kStoreVsSetTarget, false,
                 "x"};
    Target load{"kvault load " + at + " >= 2x redis GET", std::nullopt, kLoadVsGetTarget, false,
                "x"};
    if (row.redis_set) store.value = Ratio(row.kvault_store.gbps, row.redis_set->gbps);
    if (row.redis_get) load.value = Ratio(row.kvault_load.gbps, row.redis_get->gbps);
    out.insert(out.end(), {store, load});
    // ucx_perftest is one stream: judged against one client.
    if (row.concurrency != 1) continue;
    Target perftest{"kvault load-hot " + at + " >= 0.7x ucx_perftest tag_bw", std::nullopt,
                    kLoadVsPerftestTarget, false, "x"};
    if (row.perftest) perftest.value = PairedRatio(row.kvault_load_hot, *row.perftest);
    out.push_back(perftest);
  }
  if (out.empty()) {
    out.push_back({"targets at 1MiB (not in --sizes)", std::nullopt, 0, false, "x"});
  }
  out.push_back({"lookup p99 (" + std::to_string(r.lookup.keys) + "-key chain) <= 250 us",
                 r.lookup.p99_us, kLookupP99TargetUs, true, "us"});
  Target memory{"daemon VmHWM <= host capacity + 128 MiB", std::nullopt, 0, true, "MiB"};
  Target own{"daemon RssAnon (own memory) <= host capacity + 128 MiB", std::nullopt, 0, true,
             "MiB"};
  if (r.memory) {
    memory.value = r.memory->hwm_bytes / double(kMiB);
    own.value = r.memory->max_anon_bytes / double(kMiB);
    memory.target = own.target = r.memory->bound_bytes / double(kMiB);
  }
  out.push_back(own);
  out.push_back(memory);
  return out;
}

std::string Gbps(double v) { return Format("%.3f", v); }
std::string Ops(double v) { return Format("%.0f", v); }
std::string Times(double v) { return v > 0 ? Format("%.2fx", v) : "-"; }

Json ThroughputJson(const Throughput& t) {
  Json::Array windows;
  for (double g : t.window_gbps) windows.emplace_back(g);
  return Json::Object{{"gbps", t.gbps},
                      {"ops_per_s", t.ops_per_s},
                      {"ops", t.ops},
                      {"failures", t.failures},
                      {"window_gbps", windows}};
}

}  // namespace

std::string SizeName(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) {
    return std::to_string(bytes >> 30) + "GiB";
  }
  if (bytes >= kMiB && bytes % kMiB == 0) return std::to_string(bytes >> 20) + "MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes) + "B";
}

void PrintReport(const Config& c, const Results& r) {
  std::printf(
      "\nChain lookup: %u keys, all present, %u rounds of %u timed LookupPrefix calls (one "
      "Client, no lease), medians over the rounds\n  p50 %.1f us   p99 %.1f us   mean %.1f us"
      "   (p99 of each round:",
      r.lookup.keys, static_cast<unsigned>(r.lookup.round_p99_us.size()), r.lookup.lookups,
      r.lookup.p50_us, r.lookup.p99_us, r.lookup.mean_us);
  for (double p99 : r.lookup.round_p99_us) std::printf(" %.1f", p99);
  std::printf(")\n");

  std::printf(
      "\nThroughput: medians of %u timed windows (%s) after %u untimed warm-up window(s); "
      "every thread has its own Client and redis connection, one request in flight each. "
      "GB/s = 1e9 object bytes/s.\n",
      c.reps,
      c.ops > 0 ? Format("%llu ops each", static_cast<unsigned long long>(c.ops)).c_str()
                : Format("%.2f s each", c.seconds).c_str(),
      c.warmup);
  Table t({"block", "thr", "op", "kvault GB/s", "kvault op/s", "redis", "redis GB/s", "redis op/s",
           "x redis", "ucx_perftest GB/s", "x perftest"});
  for (const Row& row : r.rows) {
    const std::string block = SizeName(row.block_bytes);
    const std::string thr = std::to_string(row.concurrency);
    const Throughput* set = row.redis_set ? &*row.redis_set : nullptr;
    const Throughput* get = row.redis_get ? &*row.redis_get : nullptr;
    t.AddRow({block, thr, "store", Gbps(row.kvault_store.gbps), Ops(row.kvault_store.ops_per_s),
              "SET", set ? Gbps(set->gbps) : "-", set ? Ops(set->ops_per_s) : "-",
              set ? Times(Ratio(row.kvault_store.gbps, set->gbps)) : "-", "", ""});
    const PerftestRun* p = row.perftest ? &*row.perftest : nullptr;
    t.AddRow({block, thr, "load", Gbps(row.kvault_load.gbps), Ops(row.kvault_load.ops_per_s), "GET",
              get ? Gbps(get->gbps) : "-", get ? Ops(get->ops_per_s) : "-",
              get ? Times(Ratio(row.kvault_load.gbps, get->gbps)) : "-", p ? Gbps(p->gbps) : "-",
              p ? Times(PairedRatio(row.kvault_load, *p)) : "-"});
    t.AddRow({block, thr, "load-hot", Gbps(row.kvault_load_hot.gbps),
              Ops(row.kvault_load_hot.ops_per_s), "", "", "", "", p ? Gbps(p->gbps) : "-",
              p ? Times(PairedRatio(row.kvault_load_hot, *p)) : "-"});
  }
  std::fputs(t.Render().c_str(), stdout);
  for (const Row& row : r.rows) {
    for (const auto& [what, tp] :
         {std::pair<const char*, const Throughput*>{"kvault store", &row.kvault_store},
          {"kvault load", &row.kvault_load},
          {"kvault load-hot", &row.kvault_load_hot},
          {"redis SET", row.redis_set ? &*row.redis_set : nullptr},
          {"redis GET", row.redis_get ? &*row.redis_get : nullptr}}) {
      if (tp != nullptr && tp->failures > 0) {
        std::printf("  WARNING %s %s x%u: %llu failed operations, first: %s\n", what,
                    SizeName(row.block_bytes).c_str(), row.concurrency,
                    static_cast<unsigned long long>(tp->failures), tp->first_failure.c_str());
      }
    }
  }
  bool perftest_header = false;
  for (const Row& row : r.rows) {
    if (!row.perftest) continue;
    const PerftestRun& p = *row.perftest;
    if (!perftest_header) {
      std::printf(
          "ucx_perftest tag_bw, UCX_TLS=%s, one client and one server process on loopback, "
          "message = the object size; one run right after each load-hot window of the row, "
          "'x perftest' = median over the repetitions of window / run:\n",
          c.transports.c_str());
      perftest_header = true;
    }
    std::printf("  %s x%u (%llu-byte messages, %llu per run): median %.1f MB/s (MB = 2^20 B) = "
                "%.3f GB/s; runs",
                SizeName(p.block_bytes).c_str(), row.concurrency,
                static_cast<unsigned long long>(p.message_bytes),
                static_cast<unsigned long long>(p.iterations), p.mbps, p.gbps);
    for (double m : p.run_mbps) std::printf(" %.0f", m);
    std::printf(" MB/s\n");
  }
  if (perftest_header) {
    std::printf(
        "  ucx_perftest resends one buffer that stays in cache; `load` reads a load set larger\n"
        "  than the caches, `load-hot` reloads one object per thread: the like-for-like figure.\n"
        "  It is one stream, so it runs beside the one-client rows only.\n");
  }
  if (c.memory != ClientMemory::kAllocate) {
    std::printf(
        "  client staging of registered memory (%.0f MiB pool per client): %llu requests "
        "staged, %llu direct\n",
        r.staging.pool_bytes / 1048576.0,
        static_cast<unsigned long long>(r.staging.staged_requests),
        static_cast<unsigned long long>(r.staging.direct_requests));
  }
  for (const std::string& note : {r.redis_note, r.perftest_note, r.memory_note}) {
    if (!note.empty()) std::printf("  note: %s\n", note.c_str());
  }
  if (r.memory) {
    const Memory& m = *r.memory;
    std::printf(
        "\nDaemon memory (pid %d), largest during the store windows: VmRSS %.1f MiB = "
        "RssAnon %.1f MiB (its own) + RssShmem %.1f MiB (clients' memory it maps) "
        "+ files; VmHWM %.1f MiB. Host tier %.0f MiB, bound %.0f MiB (capacity + 128 "
        "MiB)\n",
        static_cast<int>(m.pid), m.max_rss_bytes / double(kMiB), m.max_anon_bytes / double(kMiB),
        m.max_shmem_bytes / double(kMiB), m.hwm_bytes / double(kMiB),
        m.capacity_bytes / double(kMiB), m.bound_bytes / double(kMiB));
  }
  std::printf("\nTargets (not asserted):\n");
  for (const Target& target : Targets(r)) {
    if (!target.value) {
      std::printf("  %-58s not measured\n", target.name.c_str());
      continue;
    }
    const std::string value = target.unit == "x"
                                  ? Format("%.2fx", *target.value)
                                  : Format("%.1f %s", *target.value, target.unit.c_str());
    std::printf("  %-58s %-12s %s\n", target.name.c_str(), value.c_str(),
                target.pass() ? "PASS" : "FAIL");
  }
}

Json ReportJson(const Config& c, const Results& r) {
  Json::Array round_p99;
  for (double p99 : r.lookup.round_p99_us) round_p99.push_back(p99);
  Json::Array rows;
  for (const Row& row : r.rows) {
    Json::Object o{{"block_bytes", row.block_bytes},
                   {"object_bytes", row.object_bytes},
                   {"concurrency", row.concurrency},
                   {"store_objects", row.store_objects},
                   {"load_objects", row.load_objects},
                   {"kvault_store", ThroughputJson(row.kvault_store)},
                   {"kvault_load", ThroughputJson(row.kvault_load)},
                   {"kvault_load_hot", ThroughputJson(row.kvault_load_hot)},
                   {"kvault_store_gbps", row.kvault_store.gbps},
                   {"kvault_load_gbps", row.kvault_load.gbps},
                   {"kvault_load_hot_gbps", row.kvault_load_hot.gbps}};
    if (row.redis_set && row.redis_get) {
      o.emplace_back("redis_set", ThroughputJson(*row.redis_set));
      o.emplace_back("redis_get", ThroughputJson(*row.redis_get));
      o.emplace_back("redis_set_gbps", row.redis_set->gbps);
      o.emplace_back("redis_get_gbps", row.redis_get->gbps);
      o.emplace_back("store_vs_redis_set", Ratio(row.kvault_store.gbps, row.redis_set->gbps));
      o.emplace_back("load_vs_redis_get", Ratio(row.kvault_load.gbps, row.redis_get->gbps));
    }
    if (const PerftestRun* p = row.perftest ? &*row.perftest : nullptr) {
      o.emplace_back("perftest_gbps", p->gbps);
      o.emplace_back("load_vs_perftest", PairedRatio(row.kvault_load, *p));
      o.emplace_back("load_hot_vs_perftest", PairedRatio(row.kvault_load_hot, *p));
    }
    rows.emplace_back(std::move(o));
  }
  Json::Array perftest;
  for (const Row& row : r.rows) {
    if (!row.perftest) continue;
    const PerftestRun& p = *row.perftest;
    Json::Array runs;
    for (double m : p.run_mbps) runs.emplace_back(m);
    perftest.emplace_back(Json::Object{{"block_bytes", p.block_bytes},
                                       {"concurrency", row.concurrency},
                                       {"message_bytes", p.message_bytes},
                                       {"iterations", p.iterations},
                                       {"perftest_mbps", p.mbps},
                                       {"perftest_gbps", p.gbps},
                                       {"run_mbps", runs}});
  }
  Json::Array targets;
  for (const Target& t : Targets(r)) {
    targets.emplace_back(Json::Object{{"name", t.name},
                                      {"value", t.value ? Json(*t.value) : Json()},
                                      {"target", t.target},
                                      {"pass", t.pass()}});
  }
  Json memory;
  if (r.memory) {
    memory = Json::Object{{"daemon_pid", static_cast<int64_t>(r.memory->pid)},
                          {"max_rss_bytes", r.memory->max_rss_bytes},
                          {"max_anon_bytes", r.memory->max_anon_bytes},
                          {"max_shmem_bytes", r.memory->max_shmem_bytes},
                          {"hwm_bytes", r.memory->hwm_bytes},
                          {"capacity_bytes", r.memory->capacity_bytes},
                          {"bound_bytes", r.memory->bound_bytes}};
  }
  Json::Array sizes, concurrency;
  for (uint64_t s : c.sizes) sizes.emplace_back(s);
  for (uint32_t n : c.concurrency) concurrency.emplace_back(n);
  return Json::Object{
      {"benchmark", "store"},
      {"server", r.server},
      {"started_daemon", r.started_daemon},
      {"transports", c.transports},
      {"data_plane", !r.started_daemon  ? "the daemon's own"
                     : c.process_memory ? "process-memory"
                                        : "ucx"},
      {"client_memory", ClientMemoryName(c)},
      {"registered_staging", Json::Object{{"pool_bytes", r.staging.pool_bytes},
                                          {"staged_requests", r.staging.staged_requests},
                                          {"direct_requests", r.staging.direct_requests}}},
      {"concurrency_model",
       "one thread per unit of concurrency, each with its own Client (and "
       "redis connection), one request in flight per thread"},
      {"config", Json::Object{{"sizes", sizes},
                              {"concurrency", concurrency},
                              {"window_seconds", c.ops > 0 ? Json() : Json(c.seconds)},
                              {"window_ops", c.ops > 0 ? Json(c.ops) : Json()},
                              {"reps", c.reps},
                              {"warmup_windows", c.warmup},
                              {"host_capacity_bytes", c.host_capacity},
                              {"pool_bytes", c.pool_bytes}}},
      {"lookup", Json::Object{{"keys", r.lookup.keys},
                              {"lookups", r.lookup.lookups},
                              {"p50_us", r.lookup.p50_us},
                              {"p99_us", r.lookup.p99_us},
                              {"mean_us", r.lookup.mean_us},
                              {"round_p99_us", round_p99}}},
      {"rows", rows},
      {"perftest", perftest},
      {"memory", memory},
      {"notes", Json::Array{r.redis_note, r.perftest_note, r.memory_note}},
      {"targets", targets}};
}

}  // namespace kvault::bench::store_bench
