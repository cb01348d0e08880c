// kvault codec roundtrip: encode a KV tensor file block by block, decode it, write it back. The
// file streams through a window of blocks, so memory stays bounded whatever its size.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "commands.h"
#include "kvault/common/block_key.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/file_io.h"
#include "kvault/kernels/numeric.h"
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
  uint64_t window_blocks = 0;  // blocks in memory at once; 0: what kWindowInputBytes holds
  std::string emit_dir, in, out;
};

// Input bytes per window when --window-blocks is not given: bounds the memory a roundtrip uses
// (a window's input, output and encoded objects) whatever the size of the file.
constexpr uint64_t kWindowInputBytes = uint64_t{16} << 20;

Result<RoundtripConfig> ParseConfig(const std::vector<std::string>& args) {
  KVAULT_ASSIGN_OR_RETURN(CliArgs a, CliArgs::Parse(args,
                                                    {"codec", "layers", "kv-heads", "head-dim",
                                                     "tokens", "block-tokens", "dtype", "threads",
                                                     "window-blocks", "emit-blocks"},
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
  KVAULT_ASSIGN_OR_RETURN(c.window_blocks, a.GetUint("window-blocks", 0, 1, uint64_t{1} << 31));
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

// The namespace of the CLI's blocks: one for the file's layout.
Result<Digest32> CliNamespaceDigest(const RoundtripConfig& c) {
  Namespace ns;
  ns.model_id = "kvault-cli-roundtrip";
  ns.num_layers = c.layers;
  ns.kv_heads = c.kv_heads;
  ns.head_dim = c.head_dim;
  ns.dtype = std::string(DTypeName(c.dtype));
  ns.block_tokens = c.block_tokens;
  return NamespaceDigest(ns);
}

// Keys of blocks [first_block, first_block + count), chained over token positions from `parent`
// (the namespace digest before block 0, then the key of the block before first_block).
void ChainKeys(const RoundtripConfig& c, uint64_t first_block, uint64_t count, Digest32& parent,
               std::vector<Digest32>& keys) {
  keys.clear();
  std::vector<uint32_t> positions;
  for (uint64_t b = first_block; b < first_block + count; ++b) {
    const uint64_t first = b * c.block_tokens;
    positions.clear();
    for (uint64_t t = first; t < std::min<uint64_t>(c.tokens, first + c.block_tokens); ++t) {
      positions.push_back(static_cast<uint32_t>(t));
    }
    parent = NextBlockKey(parent, positions);
    keys.push_back(parent);
  }
}

// A window of the tensor: tokens [first_token, first_token + tokens) of every layer, held as its
// own [L][2][tokens][H][D] tensor.
struct Window {
  uint64_t first_token = 0;
  uint32_t tokens = 0;
};

// Bytes of the file offset and of the buffer offset of (layer, kv) slice `lk` of a window.
uint64_t FileOffset(const RoundtripConfig& c, const Window& w, uint64_t lk) {
  return (lk * c.tokens + w.first_token) * c.kv_heads * c.head_dim * 2;
}
std::span<uint16_t> WindowSlice(const RoundtripConfig& c, const Window& w,
                                std::vector<uint16_t>& buffer, uint64_t lk) {
  const uint64_t elements = uint64_t{w.tokens} * c.kv_heads * c.head_dim;
  return {buffer.data() + lk * elements, elements};
}

Status ReadWindow(const RoundtripConfig& c, const Window& w, const FileReader& in,
                  std::vector<uint16_t>& buffer) {
  for (uint64_t lk = 0; lk < uint64_t{2} * c.layers; ++lk) {
    std::span<uint16_t> slice = WindowSlice(c, w, buffer, lk);
    KVAULT_RETURN_IF_ERROR(in.ReadAt(
        FileOffset(c, w, lk), {reinterpret_cast<uint8_t*>(slice.data()), slice.size_bytes()}));
  }
  return Status::Ok();
}

Status WriteWindow(const RoundtripConfig& c, const Window& w, std::vector<uint16_t>& buffer,
                   AtomicFileWriter& out) {
  for (uint64_t lk = 0; lk < uint64_t{2} * c.layers; ++lk) {
    std::span<const uint16_t> slice = WindowSlice(c, w, buffer, lk);
    KVAULT_RETURN_IF_ERROR(
        out.WriteAt(FileOffset(c, w, lk),
                    {reinterpret_cast<const uint8_t*>(slice.data()), slice.size_bytes()}));
  }
  return Status::Ok();
}

// The contiguous view of a window's buffer.
Status WindowView(const RoundtripConfig& c, const Window& w, std::vector<uint16_t>& buffer,
                  PagedKvView& view, PagedKvViewStorage& storage) {
  uint16_t* base = buffer.data();
  const int32_t page0 = 0;
  storage = PagedKvViewStorage();
  return kernels::MakePagedKvView(kernels::KvLayout::kContiguous, c.dtype, c.layers, c.kv_heads,
                                  c.head_dim, w.tokens, 1, {&base, 1}, {&page0, 1}, view, storage);
}

uint64_t CountNonFinite(std::span<const uint16_t> values, DType dtype) {
  uint64_t n = 0;
  for (uint16_t v : values) n += kernels::IsNonFinite16(v, dtype) ? 1 : 0;
  return n;
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
        "         [--window-blocks N] [--emit-blocks DIR] IN OUT\n"
        "Encodes the [L][2][T][H][D] tensor in IN block by block with SPEC, decodes it into\n"
        "OUT and prints one JSON line. See `kvault --help` and docs/codecs.md.");
    return kExitOk;
  }
  Result<RoundtripConfig> parsed = ParseConfig(args);
  if (!parsed.ok()) return Fail(parsed.status());
  const RoundtripConfig& c = *parsed;
  const uint64_t row = uint64_t{c.kv_heads} * c.head_dim;  // elements per token of a (layer, kv)
  const uint64_t elements = uint64_t{c.layers} * 2 * c.tokens * row;
  const uint64_t input_bytes = elements * 2;

  // Spec and shape first (e.g. rot with a non-power-of-two head_dim), before touching the file.
  PagedKvView shape_view;
  shape_view.dtype = c.dtype;
  shape_view.num_layers = c.layers;
  shape_view.kv_heads = c.kv_heads;
  shape_view.head_dim = c.head_dim;
  Result<Digest32> ns_digest = CliNamespaceDigest(c);
  if (!ns_digest.ok()) return Fail(ns_digest.status());
  Result<BlockDescriptor> first = kernels::SequenceBlockDescriptor(
      shape_view, c.tokens, c.spec, c.block_tokens, 0, *ns_digest, Digest32{});
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
  Result<std::unique_ptr<FileReader>> in = FileReader::Open(c.in);
  if (!in.ok()) return Fail(in.status());
  Result<std::unique_ptr<AtomicFileWriter>> out = AtomicFileWriter::Create(c.out);
  if (!out.ok()) return Fail(OutputError(out.status()));

  kernels::SequenceCodecOptions options;
  options.block_tokens = c.block_tokens;
  options.threads = c.threads;
  // Blocks per window: what fits kWindowInputBytes, and at least one per thread.
  const uint64_t blocks = kernels::BlockCount(c.tokens, c.block_tokens);
  const uint64_t block_bytes = uint64_t{c.layers} * 2 * c.block_tokens * row * 2;
  options.max_blocks = c.window_blocks > 0
                           ? c.window_blocks
                           : std::max<uint64_t>(c.threads, kWindowInputBytes / block_bytes);
  options.max_blocks = std::clamp<uint64_t>(options.max_blocks, 1, blocks);
  const uint64_t window_tokens =
      std::min<uint64_t>(c.tokens, options.max_blocks * uint64_t{c.block_tokens});
  std::vector<uint16_t> input(uint64_t{c.layers} * 2 * window_tokens * row);
  std::vector<uint16_t> output(input.size(), 0);
  std::vector<std::vector<uint8_t>> objects;
  std::vector<Digest32> keys;
  Digest32 parent = *ns_digest;
  double encode_s = 0, decode_s = 0;
  uint64_t encoded_bytes = 0, payload_bytes = 0, nonfinite = 0;
  for (options.first_block = 0; options.first_block < blocks;
       options.first_block += options.max_blocks) {
    const uint64_t count = kernels::WindowBlockCount(c.tokens, options);
    Window w;
    w.first_token = options.first_block * c.block_tokens;
    w.tokens = static_cast<uint32_t>(
        std::min<uint64_t>(c.tokens, (options.first_block + count) * c.block_tokens) -
        w.first_token);
    PagedKvView in_view, out_view;
    PagedKvViewStorage in_storage, out_storage;
    Status s = ReadWindow(c, w, **in, input);
    if (s.ok()) s = WindowView(c, w, input, in_view, in_storage);
    if (s.ok()) s = WindowView(c, w, output, out_view, out_storage);
    if (!s.ok()) return Fail(s);
    nonfinite += CountNonFinite({input.data(), uint64_t{c.layers} * 2 * w.tokens * row}, c.dtype);
    ChainKeys(c, options.first_block, count, parent, keys);

    auto t0 = std::chrono::steady_clock::now();
    s = kernels::EncodeSequenceCpu(in_view, c.tokens, c.spec, *ns_digest, keys, options, objects);
    encode_s += SecondsSince(t0);
    if (!s.ok()) return Fail(s);
    t0 = std::chrono::steady_clock::now();
    s = kernels::DecodeSequenceCpu(objects, keys, out_view, c.tokens, options);
    decode_s += SecondsSince(t0);
    if (!s.ok()) return Fail(s);

    for (size_t i = 0; i < objects.size(); ++i) {
      const std::vector<uint8_t>& obj = objects[i];
      encoded_bytes += obj.size();
      ParseOptions inspect;
      inspect.verify_checksum = false;
      payload_bytes += ParseBlockObject(obj, inspect)->geometry.payload_bytes;
      if (!c.emit_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(c.emit_dir, ec);
        char name[40];
        std::snprintf(name, sizeof(name), "/block-%05llu.kvb",
                      static_cast<unsigned long long>(options.first_block + i));
        s = WriteFileAtomic(c.emit_dir + name, obj);
        if (!s.ok()) return Fail(OutputError(s));
      }
    }
    s = WriteWindow(c, w, output, **out);
    if (!s.ok()) return Fail(OutputError(s));
  }
  const Status committed = (*out)->Commit();
  if (!committed.ok()) return Fail(OutputError(committed));
  if (nonfinite > 0) {
    std::fprintf(stderr,
                 "kvault codec roundtrip: warning: %llu input elements are NaN or Inf; they "
                 "propagate through the codecs (docs/codecs.md 3.5)\n",
                 static_cast<unsigned long long>(nonfinite));
  }
  std::printf(
      "{\"codec\":\"%s\",\"layers\":%u,\"kv_heads\":%u,\"head_dim\":%u,\"tokens\":%llu,"
      "\"block_tokens\":%u,\"dtype\":\"%s\",\"blocks\":%llu,\"input_bytes\":%llu,"
      "\"encoded_bytes\":%llu,\"payload_bytes\":%llu,\"bits_per_element\":%.4f,"
      "\"payload_bits_per_element\":%.4f,\"compression_ratio\":%.4f,\"nonfinite_inputs\":%llu,"
      "\"isa\":\"%s\",\"threads\":%u,\"window_blocks\":%llu,\"encode_seconds\":%.6f,"
      "\"decode_seconds\":%.6f}\n",
      c.spec.ToString().c_str(), c.layers, c.kv_heads, c.head_dim,
      static_cast<unsigned long long>(c.tokens), c.block_tokens,
      std::string(DTypeName(c.dtype)).c_str(), static_cast<unsigned long long>(blocks),
      static_cast<unsigned long long>(input_bytes), static_cast<unsigned long long>(encoded_bytes),
      static_cast<unsigned long long>(payload_bytes), 8.0 * encoded_bytes / elements,
      8.0 * payload_bytes / elements, static_cast<double>(input_bytes) / encoded_bytes,
      static_cast<unsigned long long>(nonfinite), kernels::CpuIsaName(options.isa), c.threads,
      static_cast<unsigned long long>(options.max_blocks), encode_s, decode_s);
  return kExitOk;
}

}  // namespace kvault::cli
