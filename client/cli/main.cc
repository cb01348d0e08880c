// kvault: the command-line tool. `kvault --help` lists the commands.
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "commands.h"
#include "demo.h"

namespace {

constexpr const char* kUsage = R"(kvault: tools for the kvault KV-cache store

Usage:
  kvault codec roundtrip --codec SPEC --layers L --kv-heads H --head-dim D --tokens T
                         --block-tokens B [--dtype f16|bf16] [--threads N]
                         [--window-blocks N] [--emit-blocks DIR] IN OUT
      Reads a little-endian tensor [L][2][T][H][D] (per layer K then V) from IN, cuts it into
      blocks of B tokens (block 0 starts the sequence; a partial last block is encoded too),
      encodes each block into a block object with SPEC, decodes it, writes the same shape and
      dtype to OUT, and prints one JSON line (input_bytes, encoded_bytes, bits_per_element,
      nonfinite_inputs, ...; docs/client.md). The file streams through N blocks at a time
      (default: 16 MiB of input, at least one block per thread). --emit-blocks DIR also writes
      each block object to DIR/block-NNNNN.kvb.
  kvault codec inspect [--no-verify] FILE
      Prints a block object's header in readable form. --no-verify skips the checksum check
      (to look at a damaged object).
  kvault status --server HOST:PORT [--tenant T --token-file F] [--timeout-ms N]
                [--tls] [--tls-ca-file PEM]
      Prints a daemon's health (ping round trip), its tiers (used and capacity bytes, blocks)
      and key counters. Exit code 1 with one line on stderr when it is unreachable or refuses.
  kvault stats --server HOST:PORT [--json] [--tenant T --token-file F] [--timeout-ms N]
               [--tls] [--tls-ca-file PEM]
      Prints every counter and gauge of the daemon's Stats reply ('name value', or one JSON
      object with --json).
  kvault demo --server HOST:PORT [--codec SPEC] [--conversations N] [--turns N] [--layers N]
              [--block-tokens N] [--seed N] [--json FILE]
      Replays multi-turn chat conversations (KV from the realistic generator) through libkvault
      against a running kvaultd: looks up each prompt's key chain, loads and verifies the cached
      prefix byte for byte, stores the new blocks; prints the prefix hit ratio, bytes saved by
      quantization, latency, throughput and codec accuracy (docs/client.md "The demo").
  kvault --help | codec --help | status --help | stats --help | demo --help

Codec specs (docs/codecs.md): raw, fp8, int8, int4, int2, with options g=N, rot, sink=N, K/V
splits (k=int4,v=int2) and layer ranges (k=int4,v=int2;layers=0-1:int8).
Exit codes: 0 success; 2 bad usage or bad input, including an input file that does not exist;
1 an I/O failure (an input that cannot be read, an output that cannot be written, a full disk),
too little memory, an internal failure, or (status, stats, demo) a daemon that is unreachable or
refuses, or (demo) a loaded block that does not verify.
)";

// Runs the command in `args` (argv without the program name); returns the exit code.
int Run(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? kvault::cli::kExitUsage : kvault::cli::kExitOk;
  }
  if (args[0] == "codec") {
    if (args.size() < 2 || args[1] == "--help" || args[1] == "-h") {
      std::fputs(kUsage, args.size() < 2 ? stderr : stdout);
      return args.size() < 2 ? kvault::cli::kExitUsage : kvault::cli::kExitOk;
    }
    std::vector<std::string> rest(args.begin() + 2, args.end());
    if (args[1] == "roundtrip") return kvault::cli::CodecRoundtrip(rest);
    if (args[1] == "inspect") return kvault::cli::CodecInspect(rest);
    std::fprintf(stderr, "kvault codec: unknown subcommand '%s' (try kvault --help)\n",
                 args[1].c_str());
    return kvault::cli::kExitUsage;
  }
  if (args[0] == "status" || args[0] == "stats") {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    return args[0] == "status" ? kvault::cli::ServerStatus(rest) : kvault::cli::ServerStats(rest);
  }
  if (args[0] == "demo") {
    return kvault::cli::Demo(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  std::fprintf(stderr, "kvault: unknown command '%s' (try kvault --help)\n", args[0].c_str());
  return kvault::cli::kExitUsage;
}

}  // namespace

// Commands report failures as Status; an exception that still escapes one (an allocation the
// memory limit refuses, a thread that cannot start) ends the run with one line, not an abort.
int main(int argc, char** argv) {
  try {
    return Run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::bad_alloc&) {
    std::fputs("kvault: out of memory (a smaller input, or more memory, is needed)\n", stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvault: internal error: %s\n", e.what());
  }
  return kvault::cli::kExitFailure;
}
