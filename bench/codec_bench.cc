#include "codec_bench.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "flag_checks.h"
#include "kvault/common/block_key.h"
#include "kvault/common/cli_args.h"
#include "kvault/kernels/accuracy.h"
#include "kvault/kernels/cuda_bench.h"
#include "kvault/kernels/cuda_codec.h"
#include "kvault/kernels/kv_generator.h"
#include "kvault/kernels/sequence_codec.h"
#include "mode_args.h"
#include "report.h"

namespace kvault::bench {
namespace {

using kernels::KvGeneratorOptions;
using kernels::KvTensor;

constexpr const char* kUsage = R"(kvault-bench codec: accuracy, size and speed of the KV codecs

Usage: kvault-bench codec [--device cpu|cuda] [--json FILE] [--tokens N] [--layers N]
                          [--block-tokens N] [--reps N] [--codecs SPEC/SPEC/...]
                          [--accuracy-layers N] [--seed N] [--cuda-blocks N]

  --device          cpu (default): the CPU SIMD path, one thread, against single-thread memcpy;
                    cuda: gather+encode and decode+scatter kernels on a vLLM paged cache in
                    device memory, against device-to-device cudaMemcpy (needs a GPU).
  --json FILE       also write every figure as JSON.
  --tokens N        tokens of generated KV per dataset (default 4096).
  --layers N        layers (default 32; kv heads 8 and head dim 128 as Llama-3-8B).
  --block-tokens N  tokens per block (default 256).
  --reps N          timed repetitions per figure, the median is reported (default 5).
  --codecs LIST     codec specs separated by '/', e.g. "fp8/int4,rot/k=int4,v=int2"
                    (default: the published set, see docs/codecs.md).
  --accuracy-layers N  measure attention accuracy on N layers spread evenly from the first to
                    the last (default all); SQNR always covers every layer.
  --seed N          generator seed (default 1).
  --cuda-blocks N   blocks per CUDA batch (default 64; 2 GiB of fp16 KV at the default shape);
                    with --device cuda only.

Datasets: "realistic" (RoPE keys with outlier channels, sinks; docs/kv_generator.md) and
"gaussian" (the plain control). Throughput is measured on the realistic data.
)";

struct Config {
  bool cuda = false;
  std::string json_path;
  uint32_t tokens = 4096, layers = 32, block_tokens = 256, reps = 5, accuracy_layers = 0;
  uint64_t seed = 1;
  uint32_t cuda_blocks = 64;
  std::vector<std::pair<std::string, std::string>> cases;
};

struct CaseResult {
  std::string label, spec;
  double bits = 0, ratio = 0;
  double enc_gbps = 0, dec_gbps = 0;
  double enc_ratio = 0, dec_ratio = 0;  // medians of per-repetition ratios to the baseline
  double baseline_gbps = 0;             // median baseline measured beside this codec
  bool cuda_verified = false;
  kernels::AccuracyReport realistic, gaussian;
};

Result<Config> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(
      CliArgs a, CliArgs::Parse(args,
                                {"device", "json", "tokens", "layers", "block-tokens", "reps",
                                 "codecs", "accuracy-layers", "seed", "cuda-blocks"},
                                {}));
  KVAULT_RETURN_IF_ERROR(a.RejectPositional());
  Config c;
  const std::string device = a.GetOr("device", "cpu");
  if (device != "cpu" && device != "cuda") {
    return Status::InvalidArgument("--device must be cpu or cuda, got '" + device + "'");
  }
  c.cuda = device == "cuda";
  if (!c.cuda && a.Has("cuda-blocks")) {
    return Status::InvalidArgument("--cuda-blocks is about the CUDA run: it needs --device cuda");
  }
  c.json_path = a.GetOr("json", "");
  KVAULT_RETURN_IF_ERROR(CheckOutputFile("--json", c.json_path));
  KVAULT_ASSIGN_OR_RETURN(uint64_t tokens, a.GetUint("tokens", 4096, 1, 1u << 20));
  KVAULT_ASSIGN_OR_RETURN(uint64_t layers, a.GetUint("layers", 32, 1, kMaxLayers));
  KVAULT_ASSIGN_OR_RETURN(uint64_t block, a.GetUint("block-tokens", 256, 1, kMaxBlockTokens));
  KVAULT_ASSIGN_OR_RETURN(uint64_t reps, a.GetUint("reps", 5, 1, 1000));
  KVAULT_ASSIGN_OR_RETURN(uint64_t acc_layers, a.GetUint("accuracy-layers", 0, 0, kMaxLayers));
  KVAULT_ASSIGN_OR_RETURN(c.seed, a.GetUint("seed", 1, 0, ~uint64_t{0}));
  KVAULT_ASSIGN_OR_RETURN(uint64_t cuda_blocks, a.GetUint("cuda-blocks", 64, 1, 1u << 20));
  c.cuda_blocks = static_cast<uint32_t>(cuda_blocks);
  c.tokens = static_cast<uint32_t>(tokens);
  c.layers = static_cast<uint32_t>(layers);
  c.block_tokens = static_cast<uint32_t>(block);
  c.reps = static_cast<uint32_t>(reps);
  c.accuracy_layers = static_cast<uint32_t>(acc_layers);
  // Fewer tokens than one block leave no whole block to encode: the figures would be
  // placeholders.
  if (c.tokens < c.block_tokens) {
    return Status::InvalidArgument("--tokens (" + std::to_string(c.tokens) +
                                   ") must be at least --block-tokens (" +
                                   std::to_string(c.block_tokens) + ")");
  }
  // Two generated datasets (realistic, gaussian) of fp16 KV, 8 heads x 128 dims, and per codec a
  // decoded copy, the memcpy baseline's copy and the encoded objects: about five datasets.
  const double dataset_bytes = static_cast<double>(c.tokens) * c.layers * 2 * 8 * 128 * 2;
  KVAULT_RETURN_IF_ERROR(CheckFitsInMemory(
      "--tokens " + std::to_string(c.tokens) + " x --layers " + std::to_string(c.layers) +
          " (two KV datasets, their decoded and copied images and the encoded objects)",
      5 * dataset_bytes));
  if (auto list = a.Get("codecs")) {
    size_t start = 0;
    while (start <= list->size()) {
      const size_t end = std::min(list->find('/', start), list->size());
      const std::string spec = list->substr(start, end - start);
      KVAULT_RETURN_IF_ERROR(kernels::ParseCodecSpec(spec).status());
      c.cases.emplace_back(spec, spec);
      start = end + 1;
    }
  } else {
    c.cases = DefaultCodecCases();
  }
  return c;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One single-thread memcpy of src into dst (same size, pages already touched); returns GB/s.
double MemcpyGbps(const std::vector<uint16_t>& src, std::vector<uint16_t>& dst) {
  const size_t bytes = src.size() * 2;
  auto t0 = std::chrono::steady_clock::now();
  std::memcpy(dst.data(), src.data(), bytes);
  const double gbps = bytes / Seconds(t0) / 1e9;
  if (dst[bytes / 4] != src[bytes / 4]) std::abort();  // the copy must not be optimized away
  return gbps;
}

struct ContiguousViews {
  kernels::PagedKvView view;
  kernels::PagedKvViewStorage storage;
  uint16_t* base = nullptr;
};

Status MakeContiguous(KvTensor& t, ContiguousViews& v) {
  v.base = t.data.data();
  const int32_t page0 = 0;
  return kernels::MakePagedKvView(kernels::KvLayout::kContiguous, t.shape.dtype, t.shape.layers,
                                  t.shape.kv_heads, t.shape.head_dim, t.shape.tokens, 1,
                                  {&v.base, 1}, {&page0, 1}, v.view, v.storage);
}

std::vector<Digest32> PositionKeys(uint32_t tokens, uint32_t block_tokens) {
  std::vector<Digest32> keys;
  Digest32 parent{};
  for (uint32_t first = 0; first < tokens; first += block_tokens) {
    const uint32_t pos[1] = {first};
    parent = NextBlockKey(parent, pos);
    keys.push_back(parent);
  }
  return keys;
}

struct Dataset {
  KvTensor kv;
  kernels::QuerySet queries;
};

Result<Dataset> MakeDataset(const Config& c, KvGeneratorOptions::Kind kind) {
  KvGeneratorOptions o;
  o.kind = kind;
  o.seed = c.seed;
  o.shape.tokens = c.tokens;
  o.shape.layers = c.layers;
  Dataset d;
  KVAULT_ASSIGN_OR_RETURN(d.kv, kernels::GenerateKv(o));
  KVAULT_ASSIGN_OR_RETURN(d.queries, kernels::GenerateQueries(o));
  return d;
}

// Encodes and decodes `data` with `spec` on the CPU; fills size, throughput (when timed) and the
// decoded tensor.
Status RunCpu(const Config& c, const kernels::CodecSpec& spec, Dataset& data, bool timed,
              CaseResult& r, KvTensor& decoded) {
  ContiguousViews in, out;
  decoded.shape = data.kv.shape;
  decoded.data.assign(data.kv.data.size(), 0);
  KVAULT_RETURN_IF_ERROR(MakeContiguous(data.kv, in));
  KVAULT_RETURN_IF_ERROR(MakeContiguous(decoded, out));
  kernels::SequenceCodecOptions options;
  options.block_tokens = c.block_tokens;
  // Throughput is per core; accuracy-only runs may use every core.
  options.threads = timed ? 1 : std::max(1u, std::thread::hardware_concurrency());
  const std::vector<Digest32> keys = PositionKeys(c.tokens, c.block_tokens);
  const double input_bytes = data.kv.data.size() * 2.0;
  std::vector<double> enc, dec, base, enc_ratio, dec_ratio;
  std::vector<std::vector<uint8_t>> objects;
  std::vector<uint16_t> copy_dst(timed ? data.kv.data.size() : 0, 1);
  // Rep 0 is a warm-up (it also touches the output pages); the timed reps reuse its buffers.
  // The shared machine is noisy, so every repetition measures the baseline right beside the
  // codec and the ratio is taken per repetition.
  const uint32_t reps = timed ? c.reps + 1 : 1;
  for (uint32_t rep = 0; rep < reps; ++rep) {
    if (timed && rep > 0) base.push_back(MemcpyGbps(data.kv.data, copy_dst));
    auto t0 = std::chrono::steady_clock::now();
    KVAULT_RETURN_IF_ERROR(
        kernels::EncodeSequenceCpu(in.view, c.tokens, spec, Digest32{}, keys, options, objects));
    if (rep > 0) enc.push_back(input_bytes / Seconds(t0) / 1e9);
    if (!timed) {  // accuracy only: decode on every core
      KVAULT_RETURN_IF_ERROR(
          kernels::DecodeSequenceCpu(objects, keys, out.view, c.tokens, options));
      continue;
    }
    // Decode times the codec alone: objects are parsed and their checksums verified first (the
    // storage read path does that), as the encode figure includes sealing the object.
    std::vector<BlockView> views;
    for (const auto& o : objects) {
      KVAULT_ASSIGN_OR_RETURN(BlockView v, ParseBlockObject(o));
      views.push_back(std::move(v));
    }
    t0 = std::chrono::steady_clock::now();
    for (size_t b = 0; b < views.size(); ++b) {
      KVAULT_RETURN_IF_ERROR(
          kernels::DecodeBlockCpu(views[b], out.view, b * c.block_tokens, options.isa));
    }
    if (rep > 0) {
      dec.push_back(input_bytes / Seconds(t0) / 1e9);
      enc_ratio.push_back(enc.back() / base.back());
      dec_ratio.push_back(dec.back() / base.back());
    }
  }
  uint64_t payload = 0;
  for (const auto& o : objects) {
    KVAULT_ASSIGN_OR_RETURN(BlockView v, ParseBlockObject(o));
    payload += v.geometry.payload_bytes;
  }
  r.bits = 8.0 * payload / (input_bytes / 2.0);
  r.ratio = 16.0 / r.bits;
  if (timed) {
    r.enc_gbps = Median(enc);
    r.dec_gbps = Median(dec);
    r.baseline_gbps = Median(base);
    r.enc_ratio = Median(enc_ratio);
    r.dec_ratio = Median(dec_ratio);
  }
  return Status::Ok();
}

std::string Sci(double v) { return Format("%.2e", v); }

int Fail(int code, const Status& s) { return FailMode("codec", code, s); }

}  // namespace

Json AccuracyJson(const kernels::AccuracyReport& a) {
  return Json::Object{{"k_sqnr_db", a.k_sqnr_db},
                      {"v_sqnr_db", a.v_sqnr_db},
                      {"k_cos_min", a.k_cos_min},
                      {"attn_kl_mean", a.attn_kl_mean},
                      {"attn_kl_max", a.attn_kl_max},
                      {"out_rel_err_mean", a.out_rel_err_mean},
                      {"out_rel_err_max", a.out_rel_err_max},
                      {"top1_agreement", a.top1_agreement},
                      {"logit_mae", a.logit_mae},
                      {"nonfinite", a.nonfinite}};
}

std::vector<std::pair<std::string, std::string>> DefaultCodecCases() {
  return {
      {"raw", "raw"},
      {"fp8", "fp8"},
      {"int8", "int8"},
      {"int4", "int4"},
      {"int2", "int2"},
      {"int4+rot", "int4,rot"},
      {"int2+rot", "int2,rot"},
      {"k=int4,v=int2", "k=int4,v=int2"},
      {"k=int8,v=int4", "k=int8,v=int4"},
      // Tuned on the realistic generator (docs/codecs.md): keys get smaller groups, values
      // larger ones, both rotated, the attention sink kept raw; fewer bits than plain int4/int2.
      {"best 8-bit", "int8,rot,sink=1"},
      {"best 4-bit", "k=int4:g=52:rot,v=int4:g=128:rot,sink=1"},
      {"best 2-bit", "k=int2:g=52:rot,v=int2:g=128:rot,sink=1"},
  };
}

int RunCodecBench(const std::vector<std::string>& args) {
  std::optional<Config> parsed;
  if (std::optional<int> done = StartMode("codec", kUsage, args, ParseConfig, parsed)) return *done;
  const Config& c = *parsed;
  if (c.cuda && !kernels::CudaAvailable()) {
    return Fail(2, Status::Unavailable("--device cuda: no usable CUDA device in this build or "
                                       "machine"));
  }
  std::printf(
      "kvault-bench codec: %u layers x 8 kv heads x 128 head dim, %u tokens, blocks of "
      "%u tokens, fp16, device %s (%s)\n",
      c.layers, c.tokens, c.block_tokens, c.cuda ? "cuda" : "cpu",
      kernels::CpuIsaName(kernels::DetectCpuIsa()));
  std::fflush(stdout);

  Result<Dataset> realistic = MakeDataset(c, KvGeneratorOptions::Kind::kRealistic);
  if (!realistic.ok()) return Fail(1, realistic.status());
  Result<Dataset> gaussian = MakeDataset(c, KvGeneratorOptions::Kind::kGaussian);
  if (!gaussian.ok()) return Fail(1, gaussian.status());
  kernels::AccuracyOptions acc_options;
  acc_options.max_layers = c.accuracy_layers;

  std::string baseline_name =
      "single-thread memcpy of the same KV bytes, measured beside each "
      "codec";
  std::vector<CaseResult> results;
  for (const auto& [label, spec_text] : c.cases) {
    CaseResult r;
    r.label = label;
    Result<kernels::CodecSpec> spec = kernels::ParseCodecSpec(spec_text);
    if (!spec.ok()) return Fail(2, spec.status());
    r.spec = spec->ToString();
    KvTensor decoded;
    Status s = RunCpu(c, *spec, *realistic, !c.cuda, r, decoded);
    if (!s.ok()) return Fail(1, s.WithContext(label));
    auto acc = kernels::MeasureAccuracy(realistic->kv, decoded, realistic->queries, acc_options);
    if (!acc.ok()) return Fail(1, acc.status());
    r.realistic = *acc;
    s = RunCpu(c, *spec, *gaussian, false, r, decoded);
    if (!s.ok()) return Fail(1, s.WithContext(label));
    acc = kernels::MeasureAccuracy(gaussian->kv, decoded, gaussian->queries, acc_options);
    if (!acc.ok()) return Fail(1, acc.status());
    r.gaussian = *acc;
    if (c.cuda) {
      // A full-size batch of blocks (no sink: the sink block is one in a sequence).
      BlockDescriptor d;
      d.layout = {c.layers, 8, 128, c.block_tokens, DType::kF16, 0};
      Result<std::vector<LayerCodec>> layers = spec->ResolveLayers(c.layers);
      if (!layers.ok()) return Fail(2, layers.status());
      d.layers = *layers;
      kernels::CudaCodecBenchOptions options;
      options.num_blocks = c.cuda_blocks;
      options.reps = c.reps;
      Result<kernels::CudaCodecTiming> t = kernels::CudaMeasureCodec(d, options);
      if (!t.ok()) return Fail(1, t.status().WithContext(label));
      r.enc_gbps = t->encode_gbps;
      r.dec_gbps = t->decode_gbps;
      r.cuda_verified = t->verified;
      r.baseline_gbps = t->memcpy_gbps;
      r.enc_ratio = t->encode_ratio;
      r.dec_ratio = t->decode_ratio;
      baseline_name =
          "device-to-device cudaMemcpy on " + t->device_name + " (GB/s = bytes read + written)";
    }
    results.push_back(r);
    std::fprintf(stderr, "  measured %s\n", label.c_str());
  }

  Table table({"codec", "bits/elem", "ratio", "K SQNR dB", "V SQNR dB", "attn KL", "out rel err",
               "top-1", "enc GB/s", "x base", "dec GB/s", "x base", "base GB/s"});
  Table control({"codec", "K SQNR dB", "V SQNR dB", "attn KL", "out rel err", "top-1"});
  Json::Array rows;
  for (const CaseResult& r : results) {
    const auto& a = r.realistic;
    table.AddRow(
        {r.label, Format("%.3f", r.bits), Format("%.2fx", r.ratio), Format("%.1f", a.k_sqnr_db),
         Format("%.1f", a.v_sqnr_db), Sci(a.attn_kl_mean), Format("%.4f", a.out_rel_err_mean),
         Format("%.3f", a.top1_agreement), Format("%.2f", r.enc_gbps), Format("%.2f", r.enc_ratio),
         Format("%.2f", r.dec_gbps), Format("%.2f", r.dec_ratio), Format("%.2f", r.baseline_gbps)});
    const auto& g = r.gaussian;
    control.AddRow({r.label, Format("%.1f", g.k_sqnr_db), Format("%.1f", g.v_sqnr_db),
                    Sci(g.attn_kl_mean), Format("%.4f", g.out_rel_err_mean),
                    Format("%.3f", g.top1_agreement)});
    rows.push_back(Json::Object{{"label", r.label},
                                {"spec", r.spec},
                                {"bits_per_element", r.bits},
                                {"compression_ratio", r.ratio},
                                {"encode_gbps", r.enc_gbps},
                                {"decode_gbps", r.dec_gbps},
                                {"baseline_gbps", r.baseline_gbps},
                                {"encode_vs_baseline", r.enc_ratio},
                                {"decode_vs_baseline", r.dec_ratio},
                                {"cuda_verified_against_reference", r.cuda_verified},
                                {"realistic", AccuracyJson(r.realistic)},
                                {"gaussian", AccuracyJson(r.gaussian)}});
  }
  std::printf("\nRealistic KV (accuracy) and %s throughput, GB/s of fp16 in or out:\n%s",
              c.cuda ? "CUDA" : "single-core CPU", table.Render().c_str());
  std::printf("baseline: %s; 'x base' = median over repetitions of codec GB/s / baseline GB/s\n",
              baseline_name.c_str());
  std::printf("\nPlain-Gaussian control (accuracy):\n%s", control.Render().c_str());
  if (!c.json_path.empty()) {
    Json doc = Json::Object{{"benchmark", "codec"},
                            {"device", c.cuda ? "cuda" : "cpu"},
                            {"isa", kernels::CpuIsaName(kernels::DetectCpuIsa())},
                            {"shape", Json::Object{{"layers", c.layers},
                                                   {"kv_heads", 8},
                                                   {"head_dim", 128},
                                                   {"tokens", c.tokens},
                                                   {"block_tokens", c.block_tokens},
                                                   {"dtype", "f16"}}},
                            {"baseline", baseline_name},
                            {"codecs", rows}};
    Status s = WriteJsonFile(c.json_path, doc);
    if (!s.ok()) return Fail(1, s);
    std::printf("JSON written to %s\n", c.json_path.c_str());
  }
  return 0;
}

}  // namespace kvault::bench
