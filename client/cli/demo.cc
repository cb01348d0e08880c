// kvault demo: the end-to-end demo of README's first command (docs/client.md "The demo"): a
// multi-turn chat workload through libkvault against a running kvaultd, with its figures.

#include "demo.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "demo_workload.h"
#include "kvault/client.h"
#include "kvault/common/cli_args.h"
#include "kvault/kv_store.h"

namespace kvault::cli {
namespace {

constexpr const char* kDemoUsage =
    "Usage: kvault demo --server HOST:PORT [--codec SPEC] [--conversations N] [--turns N]\n"
    "                   [--layers N] [--block-tokens N] [--seed N] [--json FILE]\n"
    "Replays multi-turn chat conversations through libkvault against a running kvaultd. Each\n"
    "turn looks up the prompt's block-key chain with a lease, loads and decodes the cached\n"
    "prefix, checks it byte for byte against a local encode+decode of the same blocks, then\n"
    "stores the full blocks of prompt and reply. KV comes from the realistic generator in a\n"
    "Llama-3-8B-like shape (8 KV heads, head dim 128, fp16) with fewer layers. Prints the prefix\n"
    "hit ratio, bytes saved by quantization, lookup/load/store latency, throughput and the\n"
    "codec's accuracy against the fp16 KV.\n"
    "  --codec SPEC         codec of the stored blocks (default fp8); also raw, int8, int4, int2,\n"
    "                       k=int4,v=int2, int2,g=32,rot,sink=4, ... (docs/codecs.md)\n"
    "  --conversations N    conversations, one after another (default 8)\n"
    "  --turns N            turns per conversation (default 6); each adds 32-192 user tokens\n"
    "                       and a 64-256-token reply\n"
    "  --layers N           layers of the shard (default 8; Llama-3-8B has 32)\n"
    "  --block-tokens N     tokens per block (default 16)\n"
    "  --seed N             seeds token ids, turn lengths and the KV (default 1)\n"
    "  --json FILE          also write the figures as one JSON object to FILE\n"
    "Exit codes: 0 ok; 1 the daemon is unreachable or failed, or a loaded block did not verify;\n"
    "2 bad usage.\n";

int Usage(const Status& s) {
  std::fprintf(stderr, "kvault demo: %s (try kvault demo --help)\n", s.message().c_str());
  return kExitUsage;
}

struct Parsed {
  ClientConfig config;
  DemoOptions demo;
  std::string json_path;
};

Result<Parsed> Parse(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(CliArgs a, CliArgs::Parse(args,
                                                    {"server", "codec", "conversations", "turns",
                                                     "layers", "block-tokens", "seed", "json"},
                                                    {}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  if (!a.Has("server")) return Status::InvalidArgument("--server HOST:PORT is required");
  Parsed p;
  p.config.server = *a.Get("server");
  p.config.client_name = "kvault-demo";
  KVAULT_RETURN_IF_ERROR(p.config.Validate());
  DemoOptions& d = p.demo;
  d.codec = a.GetOr("codec", d.codec);
  KVAULT_ASSIGN_OR_RETURN(uint64_t conversations,
                          a.GetUint("conversations", d.conversations, 1, 100'000));
  KVAULT_ASSIGN_OR_RETURN(uint64_t turns, a.GetUint("turns", d.turns, 1, 1'000));
  KVAULT_ASSIGN_OR_RETURN(uint64_t layers, a.GetUint("layers", d.layers, 1, 128));
  KVAULT_ASSIGN_OR_RETURN(uint64_t block_tokens,
                          a.GetUint("block-tokens", d.block_tokens, 1, 4096));
  KVAULT_ASSIGN_OR_RETURN(d.seed, a.GetUint("seed", d.seed, 0, UINT64_MAX));
  d.conversations = static_cast<uint32_t>(conversations);
  d.turns = static_cast<uint32_t>(turns);
  d.layers = static_cast<uint32_t>(layers);
  d.block_tokens = static_cast<uint32_t>(block_tokens);
  p.json_path = a.GetOr("json", "");
  // A bad spec, or one that does not fit the shape, is bad usage: refuse it before connecting.
  KVAULT_RETURN_IF_ERROR(KvBlockCodec::Create({.num_layers = d.layers,
                                               .kv_heads = 8,
                                               .head_dim = 128,
                                               .dtype = DType::kF16,
                                               .block_tokens = d.block_tokens,
                                               .codec = d.codec})
                             .status());
  return p;
}

std::string MiB(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  return buf;
}

std::string Ms(double seconds) {
  const double ms = seconds * 1e3;
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 1 ? "%.3f ms" : ms < 10 ? "%.2f ms" : "%.1f ms", ms);
  return buf;
}

// "host 209.2 MiB in 823 blocks, nvme 0.0 MiB in 0 blocks" from the daemon's Stats reply (its
// "<tier>.used_bytes" and "<tier>.blocks" entries); empty when it reports none.
std::string TierUse(const std::vector<ServerStat>& stats) {
  std::string out;
  for (const ServerStat& used : stats) {
    const size_t dot = used.name.find('.');
    if (dot == std::string::npos || used.name.substr(dot) != ".used_bytes") continue;
    const std::string tier = used.name.substr(0, dot);
    if (tier == "store" || tier == "daemon") continue;
    std::string blocks = "?";
    for (const ServerStat& b : stats) {
      if (b.name == tier + ".blocks") blocks = std::to_string(static_cast<uint64_t>(b.AsDouble()));
    }
    if (!out.empty()) out += ", ";
    out += tier + " " + MiB(used.AsDouble()) + " in " + blocks + " blocks";
  }
  return out;
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// Every figure of the report, derived once for the table and the JSON.
struct Summary {
  double hit_ratio, token_hit_ratio;
  double new_raw_bytes, saved_bytes, saved_fraction, compression;
  double lookup_p50, lookup_p99, load_p50, load_p99, store_p50, store_p99;
  double load_ms_per_1k_tokens;
  double load_gbps, load_gbps_fp16, store_gbps, store_gbps_fp16;
};

Summary Summarize(const DemoFigures& f, uint32_t block_tokens) {
  Summary s{};
  s.hit_ratio = Ratio(f.hit_blocks, f.looked_up_blocks);
  s.token_hit_ratio = Ratio(f.hit_tokens, f.prompt_tokens);
  s.new_raw_bytes = static_cast<double>(f.new_blocks) * f.raw_block_bytes;
  s.saved_bytes = s.new_raw_bytes - static_cast<double>(f.new_bytes);
  s.saved_fraction = Ratio(s.saved_bytes, s.new_raw_bytes);
  s.compression = Ratio(s.new_raw_bytes, f.new_bytes);
  s.lookup_p50 = Percentile(f.lookup_seconds, 50);
  s.lookup_p99 = Percentile(f.lookup_seconds, 99);
  s.load_p50 = Percentile(f.load_seconds, 50);
  s.load_p99 = Percentile(f.load_seconds, 99);
  s.store_p50 = Percentile(f.store_seconds, 50);
  s.store_p99 = Percentile(f.store_seconds, 99);
  const double loaded_tokens = static_cast<double>(f.loaded_blocks) * block_tokens;
  s.load_ms_per_1k_tokens = Ratio(f.load_total_seconds * 1e3 * 1000, loaded_tokens);
  const double loaded_raw = static_cast<double>(f.loaded_blocks) * f.raw_block_bytes;
  s.load_gbps = Ratio(f.loaded_bytes, f.load_total_seconds) / 1e9;
  s.load_gbps_fp16 = Ratio(loaded_raw, f.load_total_seconds) / 1e9;
  s.store_gbps = Ratio(f.new_bytes, f.store_total_seconds) / 1e9;
  s.store_gbps_fp16 = Ratio(s.new_raw_bytes, f.store_total_seconds) / 1e9;
  return s;
}

void PrintReport(const Parsed& p, const DemoFigures& f, const Summary& s) {
  const DemoOptions& d = p.demo;
  const char* codec = d.codec.c_str();
  std::printf(
      "prefix hits  %llu of %llu looked-up blocks = %.1f%% (a conversation's first turn "
      "misses, later turns hit the earlier ones); %.1f%% of prompt tokens not recomputed\n",
      static_cast<unsigned long long>(f.hit_blocks),
      static_cast<unsigned long long>(f.looked_up_blocks), 100 * s.hit_ratio,
      100 * s.token_hit_ratio);
  if (f.first_turn_hits > 0) {
    std::printf(
        "             %llu of the hits are first-turn blocks an earlier run with this "
        "seed stored\n",
        static_cast<unsigned long long>(f.first_turn_hits));
  }
  std::printf(
      "bytes saved  %llu new blocks stored as %s in %s vs %s fp16: %s saved by "
      "quantization (%.1f%%, %.2fx)\n",
      static_cast<unsigned long long>(f.new_blocks), codec,
      MiB(static_cast<double>(f.new_bytes)).c_str(), MiB(s.new_raw_bytes).c_str(),
      MiB(s.saved_bytes).c_str(), 100 * s.saved_fraction, s.compression);
  std::printf(
      "lookup       p50 %s  p99 %s per turn (%zu lookups of the prompt's key chain, with a "
      "lease)\n",
      Ms(s.lookup_p50).c_str(), Ms(s.lookup_p99).c_str(), f.lookup_seconds.size());
  std::printf(
      "load latency p50 %s  p99 %s per turn (%zu turns with hits; transfer + decode), "
      "%s per 1,000 tokens\n",
      Ms(s.load_p50).c_str(), Ms(s.load_p99).c_str(), f.load_seconds.size(),
      Ms(s.load_ms_per_1k_tokens / 1e3).c_str());
  std::printf(
      "store        p50 %s  p99 %s per turn (encode + transfer of the blocks after the prefix "
      "hits; the daemon skipped %llu it already held)\n",
      Ms(s.store_p50).c_str(), Ms(s.store_p99).c_str(),
      static_cast<unsigned long long>(f.offered_blocks - f.new_blocks));
  std::printf(
      "throughput   load %.2f GB/s %s = %.2f GB/s fp16-equivalent; store %.2f GB/s %s = "
      "%.2f GB/s fp16-equivalent (new blocks)\n",
      s.load_gbps, codec, s.load_gbps_fp16, s.store_gbps, codec, s.store_gbps_fp16);
  if (f.accuracy_samples > 0) {
    if (f.max_abs_err == 0) {
      std::printf("accuracy     %s: the loaded KV equals the generator's fp16 KV (lossless)\n",
                  codec);
    } else {
      std::printf(
          "accuracy     %s vs the generator's fp16 KV: K SQNR %.1f dB, V SQNR %.1f dB, "
          "max abs err %.3g; attention KL %.2e, output rel err %.2e, top-1 %.1f%%\n",
          codec, f.k_sqnr_db, f.v_sqnr_db, f.max_abs_err, f.attn_kl_mean, f.out_rel_err_mean,
          100 * f.top1_agreement);
    }
  }
  std::printf(
      "verified     %llu loaded blocks byte-exact (decoded KV == a local KvBlockCodec "
      "encode+decode of the same blocks)",
      static_cast<unsigned long long>(f.verified_blocks));
  if (f.mismatched_blocks > 0) {
    std::printf("; %llu MISMATCHED", static_cast<unsigned long long>(f.mismatched_blocks));
  }
  std::printf("\n");
}

Status WriteJson(const std::string& path, const Parsed& p, const DemoFigures& f, const Summary& s) {
  std::FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    return Status::IoError("cannot write " + path + ": " + std::strerror(errno));
  }
  const DemoOptions& d = p.demo;
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(out,
               "{\n  \"server\": \"%s\",\n  \"codec\": \"%s\",\n  \"conversations\": %u,\n"
               "  \"turns_per_conversation\": %u,\n  \"layers\": %u,\n  \"kv_heads\": 8,\n"
               "  \"head_dim\": 128,\n  \"dtype\": \"f16\",\n  \"block_tokens\": %u,\n"
               "  \"seed\": %llu,\n  \"tokens\": %llu,\n  \"prompt_tokens\": %llu,\n"
               "  \"hit_tokens\": %llu,\n  \"looked_up_blocks\": %llu,\n  \"hit_blocks\": %llu,\n"
               "  \"hit_ratio\": %.6f,\n  \"token_hit_ratio\": %.6f,\n"
               "  \"first_turn_hits\": %llu,\n",
               p.config.server.c_str(), d.codec.c_str(), d.conversations, d.turns, d.layers,
               d.block_tokens, u(d.seed), u(f.tokens), u(f.prompt_tokens), u(f.hit_tokens),
               u(f.looked_up_blocks), u(f.hit_blocks), s.hit_ratio, s.token_hit_ratio,
               u(f.first_turn_hits));
  std::fprintf(
      out,
      "  \"new_blocks\": %llu,\n  \"stored_bytes\": %llu,\n  \"stored_fp16_bytes\": %.0f,"
      "\n  \"bytes_saved\": %.0f,\n  \"saved_fraction\": %.6f,\n"
      "  \"compression_ratio\": %.4f,\n  \"offered_blocks\": %llu,\n  \"offered_bytes\": %llu,\n"
      "  \"loaded_blocks\": %llu,\n  \"loaded_bytes\": %llu,\n",
      u(f.new_blocks), u(f.new_bytes), s.new_raw_bytes, s.saved_bytes, s.saved_fraction,
      s.compression, u(f.offered_blocks), u(f.offered_bytes), u(f.loaded_blocks),
      u(f.loaded_bytes));
  std::fprintf(out,
               "  \"lookup_p50_ms\": %.4f,\n  \"lookup_p99_ms\": %.4f,\n"
               "  \"load_p50_ms\": %.4f,\n  \"load_p99_ms\": %.4f,\n"
               "  \"load_ms_per_1k_tokens\": %.4f,\n  \"store_p50_ms\": %.4f,\n"
               "  \"store_p99_ms\": %.4f,\n  \"load_gbps\": %.4f,\n  \"load_gbps_fp16\": %.4f,\n"
               "  \"store_gbps\": %.4f,\n  \"store_gbps_fp16\": %.4f,\n",
               s.lookup_p50 * 1e3, s.lookup_p99 * 1e3, s.load_p50 * 1e3, s.load_p99 * 1e3,
               s.load_ms_per_1k_tokens, s.store_p50 * 1e3, s.store_p99 * 1e3, s.load_gbps,
               s.load_gbps_fp16, s.store_gbps, s.store_gbps_fp16);
  std::fprintf(out,
               "  \"k_sqnr_db\": %.4f,\n  \"v_sqnr_db\": %.4f,\n  \"max_abs_err\": %.6g,\n"
               "  \"attn_kl_mean\": %.6g,\n  \"out_rel_err_mean\": %.6g,\n"
               "  \"top1_agreement\": %.6f,\n  \"verified_blocks\": %llu,\n"
               "  \"mismatched_blocks\": %llu,\n  \"failed_store_blocks\": %llu,\n"
               "  \"failed_load_blocks\": %llu\n}\n",
               f.k_sqnr_db, f.v_sqnr_db, f.max_abs_err, f.attn_kl_mean, f.out_rel_err_mean,
               f.top1_agreement, u(f.verified_blocks), u(f.mismatched_blocks),
               u(f.failed_store_blocks), u(f.failed_load_blocks));
  const bool ok = std::ferror(out) == 0;
  if (std::fclose(out) != 0 || !ok) return Status::IoError("cannot write " + path);
  return Status::Ok();
}

}  // namespace

int Demo(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::fputs(kDemoUsage, stdout);
    return kExitOk;
  }
  Result<Parsed> parsed = Parse(args);
  if (!parsed.ok()) return Usage(parsed.status());
  const Parsed& p = *parsed;
  const DemoOptions& d = p.demo;

  Result<std::unique_ptr<Client>> client = Client::Connect(p.config);
  if (!client.ok()) {
    std::fprintf(stderr, "kvault demo: cannot reach kvaultd at %s: %s\n", p.config.server.c_str(),
                 client.status().ToString().c_str());
    return kExitFailure;
  }
  std::printf("kvault demo: multi-turn chat through libkvault against kvaultd at %s\n",
              p.config.server.c_str());
  std::printf(
      "model        Llama-3-8B-like KV shard: %u of its 32 layers (--layers), 8 KV heads, "
      "head dim 128, fp16, from the realistic generator (seed %llu)\n",
      d.layers, static_cast<unsigned long long>(d.seed));
  std::printf(
      "workload     %u conversations x %u turns, %u-token blocks (%.0f KiB fp16 each), "
      "codec %s\n",
      d.conversations, d.turns, d.block_tokens,
      d.layers * 2.0 * d.block_tokens * 8 * 128 * 2 / 1024, d.codec.c_str());
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  Result<DemoFigures> figures = RunDemo(**client, d, [](const std::string& line) {
    std::printf("  %s\n", line.c_str());
    std::fflush(stdout);
  });
  if (!figures.ok()) {
    std::fprintf(stderr, "kvault demo: %s\n", figures.status().ToString().c_str());
    return figures.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const DemoFigures& f = *figures;
  const Summary s = Summarize(f, d.block_tokens);
  PrintReport(p, f, s);
  std::printf("time         %.1f s (%.1f s of it generating KV), %llu tokens in %llu turns\n",
              elapsed, f.generate_seconds, static_cast<unsigned long long>(f.tokens),
              static_cast<unsigned long long>(f.turns));
  if (Result<std::vector<ServerStat>> stats = (*client)->Stats(); stats.ok()) {
    const std::string use = TierUse(*stats);
    if (!use.empty()) std::printf("daemon       holds %s\n", use.c_str());
  }
  if (!p.json_path.empty()) {
    Status written = WriteJson(p.json_path, p, f, s);
    if (!written.ok()) {
      std::fprintf(stderr, "kvault demo: %s\n", written.ToString().c_str());
      return kExitFailure;
    }
    std::printf("json         %s\n", p.json_path.c_str());
  }
  if (f.mismatched_blocks > 0 || f.failed_load_blocks > 0 || f.failed_store_blocks > 0) {
    std::fprintf(stderr,
                 "kvault demo: FAILED: %llu mismatched, %llu failed loads, %llu failed stores "
                 "(first: %s)\n",
                 static_cast<unsigned long long>(f.mismatched_blocks),
                 static_cast<unsigned long long>(f.failed_load_blocks),
                 static_cast<unsigned long long>(f.failed_store_blocks), f.first_failure.c_str());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace kvault::cli
