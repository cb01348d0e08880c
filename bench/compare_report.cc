// Medians, ratios to raw, the tables and the JSON of `kvault-bench compare` (compare_bench.h).
#include <algorithm>
#include <cstdio>
#include <optional>

#include "codec_bench.h"
#include "compare_bench.h"
#include "kvault/kernels/codec_spec.h"
#include "storage_bench.h"

namespace kvault::bench::compare {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// Median over runs of one figure.
template <typename F>
double MedianOf(const std::vector<RunFigures>& runs, F figure) {
  std::vector<double> v;
  for (const RunFigures& r : runs) v.push_back(figure(r));
  return v.empty() ? 0 : Median(v);
}

double Pct(std::vector<double> samples, double p) {
  return samples.empty() ? 0 : Percentile(samples, p);
}

const TierUse* Host(const RunFigures& r) {
  for (const TierUse& t : r.tiers) {
    if (t.tier == "host") return &t;
  }
  return nullptr;
}

std::string Fixed(double v, int digits) { return Format("%.*f", digits, v); }
std::string Times(double v) { return v > 0 ? Format("%.2fx", v) : "-"; }
std::string Percent(double v) { return Format("%.1f%%", 100 * v); }
std::string Ms(double v) { return v > 0 ? Format(v < 10 ? "%.2f" : "%.1f", v) : "-"; }
std::string Kilo(double v) {
  if (v <= 0) return "-";
  return Format(v >= 1e6 ? "%.2fM" : "%.0fk", v >= 1e6 ? v / 1e6 : v / 1e3);
}

// Every codec figure divided by raw's (the baseline); 0 where raw's is 0.
struct VsRaw {
  double hit_ratio, restore_p50, restore_p99, store_tokens, load_tokens, bytes_per_block,
      blocks_held, daemon_cpu, daemon_hwm, client_cpu;
};

VsRaw Compare(const CodecResult& r, const CodecResult& raw) {
  const CodecSummary &s = r.summary, &b = raw.summary;
  return {Ratio(s.hit_ratio, b.hit_ratio),
          Ratio(s.restore_p50_ms_per_1k, b.restore_p50_ms_per_1k),
          Ratio(s.restore_p99_ms_per_1k, b.restore_p99_ms_per_1k),
          Ratio(s.store_tokens_per_s, b.store_tokens_per_s),
          Ratio(s.load_tokens_per_s, b.load_tokens_per_s),
          Ratio(static_cast<double>(r.accuracy.object_bytes),
                static_cast<double>(raw.accuracy.object_bytes)),
          Ratio(s.host_blocks, b.host_blocks),
          Ratio(s.daemon_cpu_s, b.daemon_cpu_s),
          Ratio(s.daemon_hwm_bytes, b.daemon_hwm_bytes),
          Ratio(s.client_cpu_s, b.client_cpu_s)};
}

}  // namespace

std::optional<CapacityCheck> CheckCapacity(const std::vector<CodecResult>& results) {
  const CodecResult *codec = nullptr, *raw = nullptr;
  Result<kernels::CodecSpec> int4 = kernels::ParseCodecSpec("int4");
  for (const CodecResult& r : results) {
    if (r.capacity_multiple > 1) raw = &r;
    if (r.capacity_multiple == 1 && int4.ok() && r.accuracy.spec == int4->ToString()) codec = &r;
  }
  if (codec == nullptr || raw == nullptr) return std::nullopt;
  return CapacityCheck{codec->label, codec->summary.hit_ratio, raw->capacity_multiple,
                       raw->summary.hit_ratio, codec->summary.hit_ratio >= raw->summary.hit_ratio};
}

CodecSummary Summarize(const std::vector<RunFigures>& runs, const BlockShape& shape) {
  CodecSummary s;
  const double block_tokens = shape.block_tokens;
  const double raw_block = static_cast<double>(shape.raw_bytes());
  std::vector<double> restore_s;
  for (const RunFigures& r : runs) {
    s.restores += r.restore_seconds.size();
    s.restore_ms_per_1k.insert(s.restore_ms_per_1k.end(), r.restore_ms_per_1k.begin(),
                               r.restore_ms_per_1k.end());
    restore_s.insert(restore_s.end(), r.restore_seconds.begin(), r.restore_seconds.end());
  }
  std::sort(s.restore_ms_per_1k.begin(), s.restore_ms_per_1k.end());
  s.restore_p50_ms_per_1k = Pct(s.restore_ms_per_1k, 50);
  s.restore_p99_ms_per_1k = Pct(s.restore_ms_per_1k, 99);
  s.restore_p50_ms = Pct(restore_s, 50) * 1e3;
  s.restore_p99_ms = Pct(restore_s, 99) * 1e3;
  s.lookup_p50_us =
      MedianOf(runs, [](const RunFigures& r) { return Pct(r.lookup_seconds, 50) * 1e6; });
  s.hit_ratio = MedianOf(runs, [](const RunFigures& r) {
    return Ratio(static_cast<double>(r.hit_blocks), static_cast<double>(r.looked_up_blocks));
  });
  s.store_tokens_per_s = MedianOf(runs, [&](const RunFigures& r) {
    return Ratio(static_cast<double>(r.stored_blocks) * block_tokens, r.store_total_s);
  });
  s.load_tokens_per_s = MedianOf(runs, [&](const RunFigures& r) {
    return Ratio(static_cast<double>(r.loaded_blocks) * block_tokens, r.restore_total_s);
  });
  s.store_gbps = MedianOf(runs, [](const RunFigures& r) {
    return Ratio(static_cast<double>(r.stored_bytes), r.store_total_s) / 1e9;
  });
  s.load_gbps = MedianOf(runs, [](const RunFigures& r) {
    return Ratio(static_cast<double>(r.loaded_bytes), r.restore_total_s) / 1e9;
  });
  s.store_fp16_gbps = MedianOf(runs, [&](const RunFigures& r) {
    return Ratio(static_cast<double>(r.stored_blocks) * raw_block, r.store_total_s) / 1e9;
  });
  s.load_fp16_gbps = MedianOf(runs, [&](const RunFigures& r) {
    return Ratio(static_cast<double>(r.loaded_blocks) * raw_block, r.restore_total_s) / 1e9;
  });
  s.replay_tokens_per_s = MedianOf(runs, [&](const RunFigures& r) {
    return Ratio(static_cast<double>(r.looked_up_blocks) * block_tokens, r.replay_s);
  });
  s.daemon_cpu_s = MedianOf(runs, [](const RunFigures& r) { return r.daemon_cpu_s; });
  s.client_cpu_s = MedianOf(runs, [](const RunFigures& r) { return r.client_cpu_s; });
  s.daemon_hwm_bytes =
      MedianOf(runs, [](const RunFigures& r) { return static_cast<double>(r.daemon_hwm_bytes); });
  s.daemon_anon_peak_bytes = MedianOf(
      runs, [](const RunFigures& r) { return static_cast<double>(r.daemon_anon_peak_bytes); });
  s.host_used_bytes = MedianOf(runs, [](const RunFigures& r) {
    const TierUse* h = Host(r);
    return h ? static_cast<double>(h->used_bytes) : 0.0;
  });
  s.host_blocks = MedianOf(runs, [](const RunFigures& r) {
    const TierUse* h = Host(r);
    return h ? static_cast<double>(h->blocks) : 0.0;
  });
  s.evictions = MedianOf(runs, [](const RunFigures& r) {
    double sum = 0;
    for (const TierUse& t : r.tiers) sum += static_cast<double>(t.evictions);
    return sum;
  });
  return s;
}

void PrintReport(const RunContext& ctx, const std::vector<CodecResult>& results) {
  const CodecResult& raw = results.front();
  const Config& c = *ctx.config;
  std::printf(
      "\nPer codec: %llu requests replayed in time order, one after another, against a fresh "
      "kvaultd each (host tier %.1f MiB, no nvme tier); %u run%s per codec, medians.\n",
      static_cast<unsigned long long>(ctx.sample.requests.size()), ctx.capacity / kMiB, c.reps,
      c.reps == 1 ? "" : "s");
  Table main({"codec", "hit ratio", "restore p50", "p99 ms/1k tok", "store tok/s", "load tok/s",
              "store GB/s", "load GB/s", "daemon CPU s", "VmHWM MiB", "host MiB", "blocks held",
              "KiB/block"});
  for (const CodecResult& r : results) {
    const CodecSummary& s = r.summary;
    main.AddRow({r.label, Percent(s.hit_ratio), Ms(s.restore_p50_ms_per_1k),
                 Ms(s.restore_p99_ms_per_1k), Kilo(s.store_tokens_per_s), Kilo(s.load_tokens_per_s),
                 Fixed(s.store_gbps, 2), Fixed(s.load_gbps, 2), Fixed(s.daemon_cpu_s, 2),
                 Fixed(s.daemon_hwm_bytes / kMiB, 0), Fixed(s.host_used_bytes / kMiB, 1),
                 Fixed(s.host_blocks, 0), Fixed(r.accuracy.object_bytes / 1024.0, 1)});
  }
  std::fputs(main.Render().c_str(), stdout);
  for (const CodecResult& r : results) {
    if (r.capacity_multiple > 1) {
      std::printf("%s = raw with %u x the host tier (%.1f MiB)\n", r.label.c_str(),
                  r.capacity_multiple,
                  ctx.capacity * static_cast<double>(r.capacity_multiple) / kMiB);
    }
  }
  if (const std::optional<CapacityCheck> check = CheckCapacity(results)) {
    std::printf("capacity target: %s at 1x hits %s, raw at %ux %s: %s (%s at 1x >= raw at %ux)\n",
                check->codec.c_str(), Percent(check->codec_hit_ratio).c_str(), check->multiple,
                Percent(check->raw_hit_ratio).c_str(), check->met ? "PASS" : "FAIL",
                check->codec.c_str(), check->multiple);
  }
  std::printf(
      "restore = LookupPrefix + LoadPaged (transfer + decode into the engine cache) of a "
      "request's cached prefix, per 1,000 restored tokens (%u-token blocks, %u layers); "
      "throughput: store = StorePaged (encode + transfer) of the new blocks, load = the "
      "restores; tok/s of the benchmark shape, GB/s of stored object bytes\n",
      ctx.shape.block_tokens, ctx.shape.layers);

  std::printf("\nBeside raw (codec / raw, same run order and load):\n");
  Table vs({"codec", "hit ratio", "restore p50", "restore p99", "store tok/s", "load tok/s",
            "bytes/block", "blocks held", "daemon CPU", "VmHWM", "client CPU"});
  for (const CodecResult& r : results) {
    const VsRaw v = Compare(r, raw);
    vs.AddRow({r.label, Times(v.hit_ratio), Times(v.restore_p50), Times(v.restore_p99),
               Times(v.store_tokens), Times(v.load_tokens), Times(v.bytes_per_block),
               Times(v.blocks_held), Times(v.daemon_cpu), Times(v.daemon_hwm),
               Times(v.client_cpu)});
  }
  std::fputs(vs.Render().c_str(), stdout);

  std::printf(
      "\nAccuracy (as `kvault-bench codec` reports it) on the payload KV: %llu tokens of "
      "realistic Llama-3-8B-shaped KV, %u layers, %u-token blocks:\n",
      static_cast<unsigned long long>(ctx.library_tokens), ctx.shape.layers,
      ctx.shape.block_tokens);
  Table acc({"codec", "spec", "bits/elem", "ratio", "K SQNR dB", "V SQNR dB", "attn KL",
             "out rel err", "top-1"});
  for (const CodecResult& r : results) {
    const kernels::AccuracyReport& a = r.accuracy.report;
    acc.AddRow({r.label, r.accuracy.spec, Fixed(r.accuracy.bits_per_element, 3),
                Format("%.2fx", r.accuracy.compression_ratio), Fixed(a.k_sqnr_db, 1),
                Fixed(a.v_sqnr_db, 1), Format("%.2e", a.attn_kl_mean), Fixed(a.out_rel_err_mean, 4),
                Fixed(a.top1_agreement, 3)});
  }
  std::fputs(acc.Render().c_str(), stdout);

  std::printf(
      "\nResources: daemon CPU = kvaultd's threads' time on a CPU during the replay; client CPU "
      "= this process's libkvault threads (encode/decode, transfers):\n");
  Table res({"codec", "daemon CPU s", "client CPU s", "VmHWM MiB", "RssAnon peak MiB",
             "host used MiB", "host blocks", "evictions", "lookup p50 us", "restore p50 ms",
             "restore p99 ms", "replay tok/s"});
  for (const CodecResult& r : results) {
    const CodecSummary& s = r.summary;
    res.AddRow({r.label, Fixed(s.daemon_cpu_s, 2), Fixed(s.client_cpu_s, 2),
                Fixed(s.daemon_hwm_bytes / kMiB, 0), Fixed(s.daemon_anon_peak_bytes / kMiB, 0),
                Fixed(s.host_used_bytes / kMiB, 1), Fixed(s.host_blocks, 0), Fixed(s.evictions, 0),
                Fixed(s.lookup_p50_us, 0), Ms(s.restore_p50_ms), Ms(s.restore_p99_ms),
                Kilo(s.replay_tokens_per_s)});
  }
  std::fputs(res.Render().c_str(), stdout);
  uint64_t verified = 0, mismatched = 0;
  for (const CodecResult& r : results) {
    for (const RunFigures& f : r.runs) {
      verified += f.verified_blocks;
      mismatched += f.mismatched_blocks;
    }
  }
  std::printf(
      "verified     %llu loaded blocks byte-exact, %llu differing (engine cache after LoadPaged "
      "== the codec's own encode + decode of the block's payload; blocks holding sink tokens "
      "are not checked)\n",
      static_cast<unsigned long long>(verified), static_cast<unsigned long long>(mismatched));
  for (const std::string& note : ctx.notes) std::printf("note: %s\n", note.c_str());
  if (!ctx.plot_files.empty()) {
    std::printf("plots:");
    for (const std::string& f : ctx.plot_files) std::printf(" %s", f.c_str());
    std::printf("\n");
  } else if (!ctx.plot_note.empty()) {
    std::printf("plots: none (%s)\n", ctx.plot_note.c_str());
  }
}

Json ReportJson(const RunContext& ctx, const std::vector<CodecResult>& results) {
  const Config& c = *ctx.config;
  const CodecResult& raw = results.front();
  const TraceSample& t = ctx.sample;
  Json::Array codecs;
  for (const CodecResult& r : results) {
    const CodecSummary& s = r.summary;
    const VsRaw v = Compare(r, raw);
    uint64_t looked_up = 0, hits = 0, loaded = 0, stored = 0, failed_load = 0, failed_store = 0,
             verified = 0, mismatched = 0;
    Json::Array tiers;
    for (const RunFigures& f : r.runs) {
      looked_up += f.looked_up_blocks;
      hits += f.hit_blocks;
      loaded += f.loaded_blocks;
      stored += f.stored_blocks;
      failed_load += f.failed_load_blocks;
      failed_store += f.failed_store_blocks;
      verified += f.verified_blocks;
      mismatched += f.mismatched_blocks;
    }
    for (const TierUse& u : r.runs.back().tiers) {
      tiers.push_back(Json::Object{{"tier", u.tier},
                                   {"used_bytes", u.used_bytes},
                                   {"capacity_bytes", u.capacity_bytes},
                                   {"blocks", u.blocks},
                                   {"evictions", u.evictions}});
    }
    codecs.push_back(Json::Object{
        {"label", r.label},
        {"spec", r.accuracy.spec},
        {"capacity_multiple", r.capacity_multiple},
        {"run_capacity_bytes", ctx.capacity * r.capacity_multiple},
        {"hit_ratio", s.hit_ratio},
        {"latency", Json::Object{{"restores", s.restores},
                                 {"restore_p50_ms_per_1k_tokens", s.restore_p50_ms_per_1k},
                                 {"restore_p99_ms_per_1k_tokens", s.restore_p99_ms_per_1k},
                                 {"restore_p50_ms", s.restore_p50_ms},
                                 {"restore_p99_ms", s.restore_p99_ms},
                                 {"lookup_p50_us", s.lookup_p50_us}}},
        {"throughput", Json::Object{{"store_tokens_per_s", s.store_tokens_per_s},
                                    {"load_tokens_per_s", s.load_tokens_per_s},
                                    {"store_gbps", s.store_gbps},
                                    {"load_gbps", s.load_gbps},
                                    {"store_fp16_equivalent_gbps", s.store_fp16_gbps},
                                    {"load_fp16_equivalent_gbps", s.load_fp16_gbps},
                                    {"replay_tokens_per_s", s.replay_tokens_per_s}}},
        {"resources", Json::Object{{"daemon_cpu_seconds", s.daemon_cpu_s},
                                   {"client_cpu_seconds", s.client_cpu_s},
                                   {"daemon_vmhwm_bytes", s.daemon_hwm_bytes},
                                   {"daemon_rss_anon_peak_bytes", s.daemon_anon_peak_bytes},
                                   {"host_used_bytes", s.host_used_bytes},
                                   {"host_blocks", s.host_blocks},
                                   {"evictions", s.evictions},
                                   {"tiers", tiers}}},
        {"accuracy", Json::Object{{"bits_per_element", r.accuracy.bits_per_element},
                                  {"compression_ratio", r.accuracy.compression_ratio},
                                  {"object_bytes", r.accuracy.object_bytes},
                                  {"first_object_bytes", r.accuracy.first_object_bytes},
                                  {"realistic", AccuracyJson(r.accuracy.report)}}},
        {"vs_raw", Json::Object{{"hit_ratio_gain", v.hit_ratio},
                                {"restore_p50_ratio", v.restore_p50},
                                {"restore_p99_ratio", v.restore_p99},
                                {"store_tokens_per_s_ratio", v.store_tokens},
                                {"load_tokens_per_s_ratio", v.load_tokens},
                                {"bytes_per_block_ratio", v.bytes_per_block},
                                {"blocks_held_ratio", v.blocks_held},
                                {"daemon_cpu_ratio", v.daemon_cpu},
                                {"daemon_vmhwm_ratio", v.daemon_hwm},
                                {"client_cpu_ratio", v.client_cpu}}},
        {"counts", Json::Object{{"runs", r.runs.size()},
                                {"looked_up_blocks", looked_up},
                                {"hit_blocks", hits},
                                {"loaded_blocks", loaded},
                                {"stored_blocks", stored},
                                {"failed_load_blocks", failed_load},
                                {"failed_store_blocks", failed_store},
                                {"verified_blocks", verified},
                                {"mismatched_blocks", mismatched}}}});
  }
  Json::Array plots;
  for (const std::string& f : ctx.plot_files) plots.push_back(f);
  Json capacity_target;  // null when int4 or the raw@Nx run is missing
  if (const std::optional<CapacityCheck> check = CheckCapacity(results)) {
    capacity_target = Json::Object{{"codec", check->codec},
                                   {"codec_hit_ratio", check->codec_hit_ratio},
                                   {"raw_capacity_multiple", check->multiple},
                                   {"raw_hit_ratio", check->raw_hit_ratio},
                                   {"met", check->met}};
  }
  return Json::Object{
      {"benchmark", "compare"},
      {"baseline", "raw"},
      {"trace", Json::Object{{"path", c.trace_path},
                             {"trace_requests", t.trace_requests},
                             {"requests_without_full_block", t.without_full_block},
                             {"prefix_trees", t.trace_trees},
                             {"sample", Format("1/%u of prefix trees", c.sample)},
                             {"sampled_trees", t.sampled_trees},
                             {"requests", t.requests.size()},
                             {"block_refs", t.block_refs},
                             {"unique_blocks", t.unique_blocks},
                             {"max_blocks_per_request", t.max_blocks},
                             {"span_seconds", t.span_s}}},
      {"shape", Json::Object{{"model", "Llama-3-8B-shaped"},
                             {"layers", ctx.shape.layers},
                             {"model_layers", kModelLayers},
                             {"kv_heads", kKvHeads},
                             {"head_dim", kHeadDim},
                             {"dtype", "f16"},
                             {"block_tokens", ctx.shape.block_tokens},
                             {"trace_block_tokens", kTraceBlockTokens},
                             {"engine_layout", "vllm-nhd"},
                             {"engine_block_tokens", ctx.shape.engine_block_tokens},
                             {"raw_block_bytes", ctx.shape.raw_bytes()},
                             {"model_block_bytes", BlockShape::model_block_bytes()},
                             {"payload_library_tokens", ctx.library_tokens}}},
      {"capacity_bytes", ctx.capacity},
      {"capacity_rule", ctx.capacity_note},
      {"capacity_target", capacity_target},
      {"reps", c.reps},
      {"wall_seconds", ctx.wall_s},
      {"codecs", codecs},
      {"plots", Json::Object{{"files", plots}, {"note", ctx.plot_note}}},
  };
}

}  // namespace kvault::bench::compare
