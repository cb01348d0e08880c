#pragma once
// NvmeTier: the `nvme` tier, block objects in a RocksDB database in one directory (DESIGN.md §7).
// docs/storage_nvme.md ("nvme tier") documents the on-disk layout, the measured tuning, durability,
// disk-full behaviour and recovery; this header is the contract.
//
// RocksDB is private to this tier: nothing of it appears here. A build without RocksDB still has
// this class; Open then returns Unsupported.
//
// Thread-safety: thread-safe (the Tier contract). Calls on distinct keys run in parallel; calls on
// one key are serialised by a striped lock so that the byte accounting stays exact. The tier owns
// one thread of its own, which recovers from a full disk (see Put); no call waits for it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kvault/common/result.h"
#include "kvault/storage/scoped_key.h"
#include "kvault/storage/tier.h"

namespace kvault::storage {

// The tenant whose blocks the nvme tier cannot store: its database keys would sort among the
// tier's size entries (docs/storage_nvme.md, "Layout"), so Put refuses it. Whatever assigns tenant
// ids (the daemon's tenants file) never hands it out.
inline constexpr TenantId kNvmeReservedTenant = 0xFFFFFFFF;

// Where the tier keeps the value bytes of a block.
enum class NvmeValueLayout : uint8_t {
  // RocksDB integrated BlobDB: values go to blob files, the LSM holds only small references, so
  // compaction never rewrites block bytes and a blob file whose blocks were all erased is dropped
  // whole. Measured best here (docs/storage_nvme.md).
  kBlobFiles = 0,
  // Values inline in SST files: every compaction rewrites the block bytes it touches, and space
  // held by erased blocks returns only when compaction reaches them.
  kInline = 1,
};

struct NvmeTierOptions {
  // Directory of the RocksDB database; created when missing. One tier per directory (RocksDB
  // locks it). Required.
  std::string directory;

  // Cap on the bytes of block objects held (the sum of object sizes, not the files on disk). A Put
  // that would pass it is refused with ResourceExhausted. The directory needs headroom beyond it:
  // file overhead, space not yet reclaimed from erased blocks (with blob files, 1.1-1.6x the
  // live bytes measured under churn, the upper end on tiers only a few blob files large:
  // docs/storage_nvme.md, "Blob GC"), min_free_bytes and reserve_bytes. Required, > 0.
  uint64_t capacity_bytes = 0;

  // Default kBlobFiles: see NvmeValueLayout.
  NvmeValueLayout value_layout = NvmeValueLayout::kBlobFiles;

  // Target size of one blob file (kBlobFiles). Default 256 MiB. Larger files mean fewer files and
  // less metadata; smaller ones free erased space in finer steps and make GC rewrites cheaper.
  uint64_t blob_file_bytes = 256ull << 20;

  // Fraction of the oldest blob files whose live blocks compaction relocates so that their
  // garbage can be dropped (kBlobFiles). Default 0.25. Higher reclaims erased space sooner and
  // bounds space amplification tighter, at the cost of rewriting more live bytes.
  double blob_gc_age_cutoff = 0.25;

  // GC runs only while the blob files it would relocate (the oldest blob_gc_age_cutoff of them)
  // hold at least this fraction of garbage, erased or replaced blocks that compactions have
  // found, and stops again below half of it (kBlobFiles). Default 0.05. Without such garbage a
  // relocation frees nothing: it only rewrites live blocks (a bulk load followed by a reopen
  // rewrote 192 MiB of 1 GiB). The switch lags the garbage by about one compaction, which a
  // tier only a few blob files large sees as more space (docs/storage_nvme.md, "Blob GC"). 0: GC
  // always runs, RocksDB's own behaviour.
  double blob_gc_min_garbage = 0.05;

  // Size of one memtable. Default 64 MiB. Writes land here first; with the WAL off, what sits in
  // memtables when the process dies is lost (the tier is a cache: lost blocks are misses).
  // Larger batches writes into bigger files; smaller bounds the loss and the memory held.
  uint64_t write_buffer_bytes = 64ull << 20;

  // Memtables per column family, the one being filled included. Default 3. More lets writes
  // continue while earlier memtables flush (fewer write stalls) at the cost of memory and of
  // more data lost on a crash (up to write_buffer_bytes x max_write_buffers).
  int max_write_buffers = 3;

  // Write-ahead log. Default false: a block survives a process crash once its memtable has been
  // flushed, and a clean close flushes everything. true also keeps blocks written since the last
  // flush across a process crash (not a machine crash: the log is not synced), at the cost of
  // writing every byte twice.
  bool use_wal = false;

  // O_DIRECT for reads of table and blob files. Default true: the host tier is the RAM cache
  // above this one, so the page cache would hold a second copy of what it evicted, and buffered
  // random reads of blob files pay for kernel readahead (several MiB per read where
  // read_ahead_kb is large). false lets the page cache keep recently read blocks, which helps
  // only when the host tier is small next to free RAM. Where the filesystem refuses O_DIRECT
  // (tmpfs before Linux 6.6), the tier reads through the page cache whatever this says.
  bool use_direct_reads = true;

  // O_DIRECT for the files flushes and compactions write (table and blob files). Default true:
  // buffered, every flushed block is first copied into the page cache and written back later,
  // and that copy took a third of the CPU time of sustained 1 MiB puts (docs/storage_nvme.md); the
  // written blocks are not read back soon (the host tier holds what is hot), so caching them
  // only displaces other pages. Where the filesystem refuses O_DIRECT the tier writes through the
  // page cache whatever this says.
  bool use_direct_writes = true;

  // RocksDB block cache for the LSM's index, filter and data blocks (not for block values).
  // Default 32 MiB.
  uint64_t block_cache_bytes = 32ull << 20;

  // Threads for RocksDB flushes and compactions. Default 4.
  int background_jobs = 4;

  // Free space the tier leaves on the filesystem: a Put is refused as disk full when the free
  // space, less what the memtables hold and the block itself, would drop below it. RocksDB then
  // never runs out of space for its own flushes, compactions and blob GC, and never enters its
  // read-only error state. Default 256 MiB; 0 writes until the filesystem reports ENOSPC.
  uint64_t min_free_bytes = 256ull << 20;

  // Bytes held in a reserve file in the directory and released when RocksDB reports ENOSPC
  // (something else filled the disk, or min_free_bytes is 0), so that the tier can still flush
  // its memtables, apply erasures and compact its way back without outside help. Default 256 MiB,
  // which covers the default memtables (write_buffer_bytes x max_write_buffers = 192 MiB); 0: no
  // reserve (recovery from ENOSPC then needs space freed from outside).
  uint64_t reserve_bytes = 256ull << 20;

  // While the tier is full, its recovery thread retries recovery (the space check, and a
  // compaction when blocks were erased) this often, and at once after erasures of
  // write_buffer_bytes or more. Default 1 s. Shorter notices returned space sooner and spends more
  // statvfs calls and RocksDB resumes; taken as at least 1 ms.
  std::chrono::milliseconds full_retry_interval{1000};
};

class NvmeTier final : public Tier {
 public:
  // Opens (or creates) the database in options.directory. InvalidArgument for a missing directory
  // or zero capacity, IoError or Corruption when RocksDB cannot open the directory, Unsupported
  // in a build without RocksDB. Call Recover() next: until then the tier counts nothing as held.
  static Result<std::unique_ptr<NvmeTier>> Open(const NvmeTierOptions& options);

  // Stops the recovery thread (a recovery under way has its compaction cancelled), flushes
  // memtables (so a clean close loses nothing; not while the disk is full) and closes the
  // database.
  ~NvmeTier() override;
  NvmeTier(const NvmeTier&) = delete;
  NvmeTier& operator=(const NvmeTier&) = delete;

  TierKind kind() const override { return TierKind::kNvme; }
  // used_bytes is the sum of object sizes held; reserved_bytes equals it (RocksDB's on-disk
  // overhead is not attributed to blocks).
  TierUsage Usage() const override;

  // Stores a copy of `object` under `key` (replacing an earlier object under that key). Returns
  // slot 0. ResourceExhausted when it would pass capacity_bytes; Unavailable ("nvme tier full:
  // ...") while the disk is full (free space below min_free_bytes, or ENOSPC from RocksDB),
  // counted in writes_rejected_disk_full_total and returned at once: a Put never runs recovery.
  // The tier's recovery thread retries recovery (see full_retry_interval) and lifts the state by
  // itself once space returns; InvalidArgument for an object of 4 GiB or more or for
  // kNvmeReservedTenant; IoError for another write failure. On error nothing new is stored.
  Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object) override;

  // Reads the object into `out` and verifies it with ParseBlockObject (checksum and key).
  // NotFound when absent; Corruption when the stored bytes fail verification (read again once
  // first): the block is then deleted and checksum_failures_total counts it. InvalidArgument when
  // out.size() != object_bytes, or when a stored object that verifies is not object_bytes long:
  // the caller's index disagrees with the tier, the block is not damaged and is kept. IoError when
  // RocksDB fails to read. Works while the disk is full.
  Status Read(const ScopedKey& key, TierSlot slot, uint32_t object_bytes,
              std::span<uint8_t> out) override;

  // Deletes the block: from then on reads miss it, and its bytes are back in the capacity. Never
  // waits and never reads the disk (the BlockStore calls it under its index mutex): when another
  // call holds the key's lock stripe, or RocksDB would stall the write behind a flush or refuses
  // it (a full disk), the deletion is recorded and written by the next Put or when the tier
  // recovers from a full disk. The bytes given back are the stored size where RocksDB has it in
  // memory (memtables, block cache), otherwise object_bytes, which must be the size the block was
  // stored with (the BlockStore's index holds it). Erasing a key the tier does not hold changes
  // nothing where RocksDB can tell so from memory (its bloom filters usually can); callers erase
  // only what they stored.
  void Erase(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) override;

  // Reports every block in the database (slot 0 and its object size) from the size entries,
  // without reading block bytes, and rebuilds used_bytes. A malformed size entry (damage outside
  // the block objects) is deleted with its block and counted in checksum_failures_total. IoError
  // or Corruption when RocksDB cannot iterate.
  Status Recover(const RecoverFn& found) override;

  // Counters (tier "nvme"): puts_total, reads_total, erases_total, checksum_failures_total,
  // writes_rejected_capacity_total, writes_rejected_disk_full_total, disk_full_events_total,
  // disk_full_recoveries_total, write_errors_total, read_errors_total. Gauges: used_bytes,
  // capacity_bytes, blocks, disk_full (0 or 1).
  void VisitCounters(CounterVisitor& visitor) const override;

  // True while writes are refused because the disk is full. The recovery thread turns it false
  // once space returns.
  bool disk_full() const;

  // The implementation (storage/src/nvme/nvme_tier_impl.h), opaque here; the tier's own tests
  // drive it directly.
  class Impl;

 private:
  explicit NvmeTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::storage
