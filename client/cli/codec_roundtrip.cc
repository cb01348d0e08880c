// kvault codec roundtrip: encode a KV tensor file block by block, decode it, write it back.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "commands.h"
#include "kvault/common/block_key.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/file_io.h"
#include "kvault/kernels/sequence_codec.h"

namespace kvault::cli {
namespace {

using kernels::PagedKvView;
using kernels::PagedKvViewStorage;

struct RoundtripConfig {
  kernels::CodecSpec spec;
  uint32_t layers = 0, kv_heads = 0, head_dim = 0, block_tokens = 0;
  uint64_t tokens = 0;
  DType dtype = DType::kF16;
  unsigned threads = 1;
  std::string emit_dir, in, out;
};

Result<RoundtripConfig> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(CliArgs a,
                          CliArgs::Parse(args,
                                         {"codec", "layers", "kv-heads", "head-dim", "tokens",
                                          "block-tokens", "dtype", "threads", "emit-blocks"},
                                         {}));
  for (const char* required :
       {"codec", "layers", "kv-heads", "head-dim", "tokens", "block-tokens"}) {
    if (!a.Has(required))
      return Status::InvalidArgument(std::string("--") + required + " is required");
  }
  if (a.positional().size() != 2) {
    return Status::InvalidArgument("expected two positional arguments IN OUT, got " +
                                   std::to_string(a.positional().size()));
  }
  RoundtripConfig c;
  KVAULT_ASSIGN_OR_RETURN(c.spec, kernels::ParseCodecSpec(*a.Get("codec")));
  KVAULT_ASSIGN_OR_RETURN(uint64_t layers, a.GetUint("layers", 0, 1, kMaxLayers));
  KVAULT_ASSIGN_OR_RETURN(uint64_t heads, a.GetUint("kv-heads", 0, 1, kMaxKvHeads));
  KVAULT_ASSIGN_OR_RETURN(uint64_t dim, a.GetUint("head-dim", 0, 1, kMaxHeadDim));
  KVAULT_ASSIGN_OR_RETURN(c.tokens, a.GetUint("tokens", 0, 1, uint64_t{1} << 31));
  KVAULT_ASSIGN_OR_RETURN(uint64_t block, a.GetUint("block-tokens", 0, 1, kMaxBlockTokens));
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  KVAULT_ASSIGN_OR_RETURN(uint64_t threads, a.GetUint("threads", hw, 1, 256));
  c.layers = static_cast<uint32_t>(layers);
  c.kv_heads = static_cast<uint32_t>(heads);
  c.head_dim = static_cast<uint32_t>(dim);
  c.block_tokens = static_cast<uint32_t>(block);
  c.threads = static_cast<unsigned>(threads);
  const std::string dtype = a.GetOr("dtype", "f16");
  const auto parsed = ParseDType(dtype);
  if (!parsed) return Status::InvalidArgument("--dtype must be f16 or bf16, got '" + dtype + "'");
  c.dtype = *parsed;
  c.emit_dir = a.GetOr("emit-blocks", "");
  c.in = a.positional()[0];
  c.out = a.positional()[1];
  return c;
}

// Keys of the CLI's blocks: a namespace for the file's layout, chained over token positions.
Result<std::vector<Digest32>> CliBlockKeys(const RoundtripConfig& c, Digest32& ns_digest) {
  Namespace ns;
  ns.model_id = "kvault-cli-roundtrip";
  ns.num_layers = c.layers;
  ns.kv_heads = c.kv_heads;
  ns.head_dim = c.head_dim;
  ns.dtype = std::string(DTypeName(c.dtype));
  ns.block_tokens = c.block_tokens;
  KVAULT_ASSIGN_OR_RETURN(ns_digest, NamespaceDigest(ns));
  std::vector<Digest32> keys;
  Digest32 parent = ns_digest;
  for (uint64_t first = 0; first < c.tokens; first += c.block_tokens) {
    std::vector<uint32_t> positions;
    for (uint64_t t = first; t < std::min<uint64_t>(c.tokens, first + c.block_tokens); ++t) {
      positions.push_back(static_cast<uint32_t>(t));
    }
    parent = NextBlockKey(parent, positions);
    keys.push_back(parent);
  }
  return keys;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int Fail(const Status& s) {
  std::fprintf(stderr, "kvault codec roundtrip: %s\n", s.message().c_str());
  return ExitCodeFor(s);
}

}  // namespace

int CodecRoundtrip(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::puts(
        "Usage: kvault codec roundtrip --codec SPEC --layers L --kv-heads H --head-dim D\n"
        "         --tokens T --block-tokens B [--dtype f16|bf16] [--threads N]\n"
        "         [--emit-blocks DIR] IN OUT\n"
        "Encodes the [L][2][T][H][D] tensor in IN block by block with SPEC, decodes it into\n"
        "OUT and prints one JSON line. See `kvault --help` and docs/codecs.md.");
    return kExitOk;
  }
  Result<RoundtripConfig> parsed = ParseConfig(args);
  if (!parsed.ok()) return Fail(parsed.status());
  const RoundtripConfig& c = *parsed;
  const uint64_t elements = uint64_t{c.layers} * 2 * c.tokens * c.kv_heads * c.head_dim;
  const uint64_t input_bytes = elements * 2;

  // Spec and shape first (e.g. rot with a non-power-of-two head_dim), before touching the file.
  PagedKvView shape_view;
  shape_view.dtype = c.dtype;
  shape_view.num_layers = c.layers;
  shape_view.kv_heads = c.kv_heads;
  shape_view.head_dim = c.head_dim;
  Digest32 ns_digest{};
  Result<std::vector<Digest32>> keys = CliBlockKeys(c, ns_digest);
  if (!keys.ok()) return Fail(keys.status());
  Result<BlockDescriptor> first = kernels::SequenceBlockDescriptor(
      shape_view, c.tokens, c.spec, c.block_tokens, 0, ns_digest, (*keys)[0]);
  if (!first.ok()) return Fail(first.status());

  Result<uint64_t> size = FileSize(c.in);
  if (!size.ok()) return Fail(size.status());
  if (*size != input_bytes) {
    return Fail(Status::InvalidArgument(
        "input '" + c.in + "' has " + std::to_string(*size) + " bytes; the shape [" +
        std::to_string(c.layers) + "][2][" + std::to_string(c.tokens) + "][" +
        std::to_string(c.kv_heads) + "][" + std::to_string(c.head_dim) + "] of " +
        std::string(DTypeName(c.dtype)) + " needs " + std::to_string(input_bytes)));
  }
  std::vector<uint16_t> input(elements);
  std::vector<uint16_t> output(elements, 0);
  uint16_t* in_ptr = input.data();
  uint16_t* out_ptr = output.data();
  const int32_t page0 = 0;
  PagedKvView in_view, out_view;
  PagedKvViewStorage in_storage, out_storage;
  Status s = kernels::MakePagedKvView(kernels::KvLayout::kContiguous, c.dtype, c.layers, c.kv_heads,
                                      c.head_dim, static_cast<uint32_t>(c.tokens), 1, {&in_ptr, 1},
                                      {&page0, 1}, in_view, in_storage);
  if (s.ok()) {
    s = kernels::MakePagedKvView(kernels::KvLayout::kContiguous, c.dtype, c.layers, c.kv_heads,
                                 c.head_dim, static_cast<uint32_t>(c.tokens), 1, {&out_ptr, 1},
                                 {&page0, 1}, out_view, out_storage);
  }
  if (!s.ok()) return Fail(s);

  s = ReadFileExact(c.in, {reinterpret_cast<uint8_t*>(input.data()), input_bytes});
  if (!s.ok()) return Fail(s);

  kernels::SequenceCodecOptions options;
  options.block_tokens = c.block_tokens;
  options.threads = c.threads;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<uint8_t>> objects;
  s = kernels::EncodeSequenceCpu(in_view, c.tokens, c.spec, ns_digest, *keys, options, objects);
  const double encode_s = SecondsSince(t0);
  if (!s.ok()) return Fail(s);
  t0 = std::chrono::steady_clock::now();
  s = kernels::DecodeSequenceCpu(objects, *keys, out_view, c.tokens, options);
  const double decode_s = SecondsSince(t0);
  if (!s.ok()) return Fail(s);

  uint64_t encoded_bytes = 0, payload_bytes = 0;
  for (size_t b = 0; b < objects.size(); ++b) {
    const std::vector<uint8_t>& obj = objects[b];
    encoded_bytes += obj.size();
    ParseOptions inspect;
    inspect.verify_checksum = false;
    payload_bytes += ParseBlockObject(obj, inspect)->geometry.payload_bytes;
    if (!c.emit_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(c.emit_dir, ec);
      char name[32];
      std::snprintf(name, sizeof(name), "/block-%05zu.kvb", b);
      s = WriteFileAtomic(c.emit_dir + name, obj);
      if (!s.ok()) return Fail(s);
    }
  }
  s = WriteFileAtomic(c.out, {reinterpret_cast<const uint8_t*>(output.data()), input_bytes});
  if (!s.ok()) return Fail(s);
  std::printf(
      "{\"codec\":\"%s\",\"layers\":%u,\"kv_heads\":%u,\"head_dim\":%u,\"tokens\":%llu,"
      "\"block_tokens\":%u,\"dtype\":\"%s\",\"blocks\":%zu,\"input_bytes\":%llu,"
      "\"encoded_bytes\":%llu,\"payload_bytes\":%llu,\"bits_per_element\":%.4f,"
      "\"payload_bits_per_element\":%.4f,\"compression_ratio\":%.4f,\"isa\":\"%s\","
      "\"threads\":%u,\"encode_seconds\":%.6f,\"decode_seconds\":%.6f}\n",
      c.spec.ToString().c_str(), c.layers, c.kv_heads, c.head_dim,
      static_cast<unsigned long long>(c.tokens), c.block_tokens,
      std::string(DTypeName(c.dtype)).c_str(), objects.size(),
      static_cast<unsigned long long>(input_bytes), static_cast<unsigned long long>(encoded_bytes),
      static_cast<unsigned long long>(payload_bytes), 8.0 * encoded_bytes / elements,
      8.0 * payload_bytes / elements, static_cast<double>(input_bytes) / encoded_bytes,
      kernels::CpuIsaName(options.isa), c.threads, encode_s, decode_s);
  return kExitOk;
}

}  // namespace kvault::cli
