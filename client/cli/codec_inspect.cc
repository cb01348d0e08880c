// kvault codec inspect: print a block object's header in readable form.
#include <cstdio>
#include <string>

#include "commands.h"
#include "kvault/common/block_key.h"
#include "kvault/common/cli_args.h"
#include "kvault/common/file_io.h"
#include "kvault/kernels/codec_spec.h"

namespace kvault::cli {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "kvault codec inspect: %s\n", s.message().c_str());
  return ExitCodeFor(s);
}

}  // namespace

int CodecInspect(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::puts(
        "Usage: kvault codec inspect [--no-verify] FILE\n"
        "Prints a block object's header (docs/block_format.md). --no-verify skips the\n"
        "checksum check, to look at a damaged object. Exit codes: 0 ok, 2 bad input\n"
        "(a missing, corrupt or oversized FILE), 1 I/O failure (a FILE that cannot be read).");
    return kExitOk;
  }
  Result<CliArgs> a = CliArgs::Parse(args, {}, {"no-verify"});
  if (!a.ok()) return Fail(a.status());
  if (a->positional().size() != 1) {
    return Fail(Status::InvalidArgument("expected exactly one FILE"));
  }
  const std::string& path = a->positional()[0];
  Result<std::vector<uint8_t>> bytes = ReadWholeFile(path, kMaxBlockObjectBytes);
  if (!bytes.ok()) return Fail(bytes.status());
  ParseOptions options;
  options.verify_checksum = !a->Has("no-verify");
  Result<BlockView> view = ParseBlockObject(*bytes, options);
  if (!view.ok()) return Fail(view.status());
  const BlockDescriptor& d = view->descriptor;
  const BlockLayout& l = d.layout;
  const BlockGeometry& g = view->geometry;
  std::printf("file:            %s\n", path.c_str());
  std::printf("format:          kvault block object v%u\n", kBlockFormatVersion);
  std::printf("object bytes:    %llu (header %u, payload %llu)\n",
              static_cast<unsigned long long>(g.total_bytes()), g.header_bytes,
              static_cast<unsigned long long>(g.payload_bytes));
  std::printf("checksum:        xxh3-64 %016llx (%s)\n",
              static_cast<unsigned long long>(view->checksum),
              options.verify_checksum ? "verified" : "not verified");
  // Whole digests, to compare with a namespace or key chain (ToHex, docs/keys.md): the object
  // carries them already, and a tool's output is not a log (logs never hold keys).
  std::printf("namespace:       %s\n", ToHex(d.ns_digest).c_str());
  std::printf("key:             %s\n", ToHex(d.key).c_str());
  std::printf("layout:          %u layers x %u kv heads x %u head dim, %u tokens, %s\n",
              l.num_layers, l.kv_heads, l.head_dim, l.block_tokens,
              std::string(DTypeName(l.dtype)).c_str());
  std::printf("sink tokens:     %u\n", l.sink_tokens);
  std::printf("bits/element:    %.4f (payload)\n", BitsPerElement(g, l));
  std::printf("layers:\n  %-6s %-18s %-18s %12s %12s %12s\n", "layer", "K codec", "V codec",
              "offset", "K bytes", "V bytes");
  for (uint32_t i = 0; i < l.num_layers; ++i) {
    std::printf("  %-6u %-18s %-18s %12llu %12llu %12llu\n", i,
                kernels::SectionCodecToString(d.layers[i].k).c_str(),
                kernels::SectionCodecToString(d.layers[i].v).c_str(),
                static_cast<unsigned long long>(g.layer_offsets[i]),
                static_cast<unsigned long long>(g.k_sections[i].padded_bytes),
                static_cast<unsigned long long>(g.v_sections[i].padded_bytes));
  }
  return kExitOk;
}

}  // namespace kvault::cli
