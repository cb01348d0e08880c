#pragma once
// The workload behind `kvault demo`: multi-turn chat conversations replayed through libkvault
// against a running kvaultd, with KV from the realistic generator (kv_generator.h).
//
// Each conversation is a seeded sequence of turns; turn t's prompt is the whole history plus new
// user tokens, and the model's reply follows it. Per turn the workload
//   1. chains block keys over the prompt's full blocks (block_key.h) and looks them up with a
//      lease (Client::LookupPrefix),
//   2. loads and decodes the leading hits (KvStore::LoadBlocks) and checks them byte for byte
//      against a local KvBlockCodec encode + decode of the same blocks, and against the raw
//      generator KV for the codec's accuracy,
//   3. "prefills" the rest and stores the full blocks of prompt + reply (KvStore::StoreBlocks),
//   4. releases the lease.
// Conversations run one after another, so memory stays at one conversation's KV (32 KiB per
// token per 8 layers).
//
// Not thread-safe: one RunDemo per Client at a time.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvault/client.h"
#include "kvault/common/result.h"

namespace kvault::cli {

struct DemoOptions {
  // Codec spec of the stored blocks (docs/codecs.md). Default "fp8".
  std::string codec = "fp8";
  // Conversations, replayed one after another. Default 8.
  uint32_t conversations = 8;
  // Turns per conversation; each adds user tokens and a reply. Default 6.
  uint32_t turns = 6;
  // Layers of the Llama-3-8B-like shard (the model has 32; fewer keep the demo fast). The shard
  // keeps 8 KV heads of head dim 128 in fp16. Default 8.
  uint32_t layers = 8;
  // Tokens per block. Default 16.
  uint32_t block_tokens = 16;
  // Seeds token ids, turn lengths and the KV generator. Default 1.
  uint64_t seed = 1;
  // Tokens a turn adds: user message in [user_min, user_max], reply in [reply_min, reply_max].
  uint32_t user_min = 32, user_max = 192;
  uint32_t reply_min = 64, reply_max = 256;
};

// Everything the demo measured. Bytes "raw" are the fp16 bytes of the same blocks.
struct DemoFigures {
  // Workload.
  uint64_t turns = 0;
  uint64_t tokens = 0;           // tokens of every conversation at its end
  uint64_t prompt_tokens = 0;    // summed over turns
  uint64_t hit_tokens = 0;       // prompt tokens served from the cache, summed over turns
  uint64_t raw_block_bytes = 0;  // fp16 bytes of one block
  double generate_seconds = 0;   // time spent in the KV generator (not part of any figure below)

  // Prefix hits: over every turn's lookup of its prompt's full blocks.
  uint64_t looked_up_blocks = 0;
  uint64_t hit_blocks = 0;
  uint64_t first_turn_hits = 0;  // hits on first turns (blocks left by an earlier run)

  // Stores: the blocks the daemon did not hold yet (each turn offers the whole chain; the daemon
  // answers OK for blocks it holds without moving their bytes).
  uint64_t new_blocks = 0;
  uint64_t new_bytes = 0;
  uint64_t offered_blocks = 0;
  uint64_t offered_bytes = 0;
  uint64_t failed_store_blocks = 0;

  // Loads of leading hits.
  uint64_t loaded_blocks = 0;
  uint64_t loaded_bytes = 0;
  uint64_t failed_load_blocks = 0;

  // Per-turn latencies in seconds: lookup; load (transfer + decode) of turns with hits; store
  // (encode + transfer) of turns with blocks to offer.
  std::vector<double> lookup_seconds;
  std::vector<double> load_seconds;
  std::vector<double> store_seconds;
  double load_total_seconds = 0;
  double store_total_seconds = 0;

  // Verification: loaded blocks whose decoded KV equals a local encode + decode, and those that
  // do not.
  uint64_t verified_blocks = 0;
  uint64_t mismatched_blocks = 0;

  // Codec accuracy (accuracy.h) of each conversation's last loaded prefix (it holds every block
  // the conversation loaded) against the generator's fp16 KV, averaged over conversations.
  uint32_t accuracy_samples = 0;
  double k_sqnr_db = 0;
  double v_sqnr_db = 0;
  double max_abs_err = 0;  // the largest over K and V and every sample
  double attn_kl_mean = 0;
  double out_rel_err_mean = 0;
  double top1_agreement = 0;

  // The first failure seen (a store or load key, or a mismatch), empty when none.
  std::string first_failure;
};

// Runs the workload against `client` (connected, with a data plane). `progress` (may be empty)
// gets one line per conversation. Errors: InvalidArgument (options, codec spec), Unavailable or
// IoError when the daemon fails a whole lookup or transfer (it died or timed out), the
// generator's errors. Per-block failures and mismatches are counted in the figures instead.
Result<DemoFigures> RunDemo(Client& client, const DemoOptions& options,
                            const std::function<void(const std::string&)>& progress);

// Nearest-rank percentile (p in [0, 100]) of `samples`; 0 when empty.
double Percentile(std::vector<double> samples, double p);

}  // namespace kvault::cli
