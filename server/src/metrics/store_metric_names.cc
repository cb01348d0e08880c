#include "metrics/store_metric_names.h"

#include <array>

namespace kvault::server {
namespace {

struct Special {
  bool per_tier;
  std::string_view counter;  // the storage name
  std::string_view name;     // the Prometheus name
  std::string_view help;
  std::string_view label_name;  // an extra constant label, or empty
  std::string_view label_value;
};

// Storage names that get a name of their own instead of the rule's.
constexpr std::array<Special, 7> kSpecial = {{
    {false, "commits_total", "kvault_store_stored_blocks_total",
     "Blocks written into the store (committed writes).", "", ""},
    {false, "committed_bytes_total", "kvault_store_stored_bytes_total",
     "Bytes of block objects written into the store.", "", ""},
    {false, "pins_total", "kvault_store_loaded_blocks_total",
     "Blocks read out of the store for loads (pins that got their bytes).", "", ""},
    {false, "pinned_bytes_total", "kvault_store_loaded_bytes_total",
     "Bytes of block objects read out of the store for loads (pins).", "", ""},
    {false, "rejected_corrupt_writes_total", "kvault_store_rejected_writes_total",
     "Writes refused, by reason: corrupt (the block failed verification at commit) or "
     "no_space (nothing evictable when room was reserved).",
     "reason", "corrupt"},
    {false, "rejected_no_space_total", "kvault_store_rejected_writes_total",
     "Writes refused, by reason: corrupt (the block failed verification at commit) or "
     "no_space (nothing evictable when room was reserved).",
     "reason", "no_space"},
    {true, "checksum_failures_total", "kvault_checksum_failures_total",
     "Stored blocks that failed their checksum or carried another key when read (twice) or "
     "scanned; they are deleted and served as misses.",
     "", ""},
}};

struct Help {
  std::string_view counter;
  std::string_view help;
};

// Descriptions of the names that map by rule; the rest get a generic description.
constexpr Help kHelp[] = {
    {"lookups_total", "Lookup calls served by the store."},
    {"lookup_keys_total", "Keys asked for by lookups."},
    {"hit_blocks_total", "Looked-up keys that were present."},
    {"miss_blocks_total", "Looked-up keys that were absent."},
    {"aborted_reservations_total", "Writes reserved and then abandoned."},
    {"admission_rejects_total", "Blocks the eviction policy declined to admit to a full tier."},
    {"declined_writes_total",
     "Committed blocks no tier kept: declined by the host policy, then refused by the colder "
     "tier (full, out of disk or failing) or with no colder tier. The writer is told OK: a "
     "cache may decline."},
    {"deletes_total", "Blocks deleted on request."},
    {"leases_granted_total", "Leases granted by lookups."},
    {"leases_expired_total", "Leases that ran out their TTL."},
    {"leases_released_total", "Leases released by their holder."},
    {"move_failures_total", "Demotions or promotions that failed and left the block in place."},
    {"promotions_dropped_total", "Promotions dropped because the mover queue was full."},
    {"read_failures_total", "Block reads from a tier that failed (damaged, lost or I/O error)."},
    {"indexed_blocks", "Blocks in the store's index, all tiers."},
    {"active_leases", "Leases currently held."},
    {"queued_promotions", "Promotions waiting for a mover thread."},
    {"evictions_total", "Blocks evicted from the tier (dropped, not demoted)."},
    {"demotions_total", "Blocks moved from the tier to the next colder one."},
    {"promotions_total", "Blocks moved into the tier from a colder one."},
    {"capacity_bytes", "Configured capacity of the tier."},
    {"used_bytes", "Bytes of block objects held by the tier."},
    {"reserved_bytes", "Bytes the tier's allocator holds, including writes in progress."},
    {"blocks", "Blocks held by the tier."},
    {"fragmentation_ratio",
     "Fraction of the tier's free bytes outside its largest free range (0 = one range)."},
    {"allocation_failures_total", "Allocations the tier could not satisfy."},
    {"puts_total", "Blocks written to the tier."},
    {"reads_total", "Blocks read from the tier."},
    {"erases_total", "Blocks erased from the tier."},
    {"writes_rejected_capacity_total", "Writes the tier refused for lack of capacity."},
    {"writes_rejected_disk_full_total", "Writes the tier refused because the disk was full."},
    {"disk_full", "1 while the tier's disk is full and writes to it are stopped, else 0."},
    {"disk_full_events_total", "Times the tier's disk became full."},
    {"write_errors_total", "Tier writes that failed with an I/O error."},
    {"read_errors_total", "Tier reads that failed with an I/O error."},
    {"disk_full_recoveries_total", "Times the tier resumed writes after its disk was full."},
    {"hardware_crc32c", "1 when the tier's CRC32C runs on the CPU's instruction, else 0."},
    {"blob_gc_active", "1 while the tier lets RocksDB relocate blobs to collect garbage, else 0."},
    {"blob_gc_switches_total", "Times the tier turned its blob garbage collection on or off."},
    {"free_ranges", "Separate free ranges in the tier's memory."},
    {"largest_free_bytes", "Largest contiguous free range of the tier."},
    {"copied_in_bytes_total", "Bytes copied into the tier's device memory."},
    {"copied_out_bytes_total", "Bytes copied out of the tier's device memory."},
    {"ipc_exports_total", "Blocks exported to co-located workers through CUDA IPC."},
};

std::string Sanitized(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) c = '_';
  }
  return out;
}

}  // namespace

StoreMetricName MapStoreMetric(std::string_view tier, std::string_view counter_name) {
  const bool per_tier = !tier.empty();
  for (const Special& s : kSpecial) {
    if (s.per_tier != per_tier || s.counter != counter_name) continue;
    StoreMetricName out{std::string(s.name), std::string(s.help), {}};
    if (!s.label_name.empty()) out.labels.emplace_back(s.label_name, s.label_value);
    return out;
  }
  StoreMetricName out;
  out.name = (per_tier ? "kvault_tier_" : "kvault_store_") + Sanitized(counter_name);
  for (const Help& h : kHelp) {
    if (h.counter == counter_name) out.help = std::string(h.help);
  }
  if (out.help.empty()) {
    out.help = std::string(per_tier ? "Tier" : "Store") + " figure '" + Sanitized(counter_name) +
               "' reported by the storage module.";
  }
  return out;
}

}  // namespace kvault::server
