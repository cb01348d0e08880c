#include "nvme/db_options.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "nvme/info_log.h"
#include "nvme/page_aligned_file_system.h"

namespace kvault::storage::nvme {
namespace {

constexpr uint64_t kInfoLogBytes = 16ull << 20;

}  // namespace

DbOptions MakeDbOptions(const NvmeTierOptions& options,
                        std::shared_ptr<rocksdb::EventListener> listener) {
  DbOptions out;
  rocksdb::Options& db = out.db;
  out.env = NewPageAlignedWritesEnv();
  db.env = out.env.get();
  db.create_if_missing = true;
  db.max_background_jobs = std::max(2, options.background_jobs);
  db.use_direct_reads = options.use_direct_reads;
  db.use_direct_io_for_flush_and_compaction = options.use_direct_writes;
  // Preallocation makes a file claim space it never fills: on a nearly full disk that becomes
  // an early ENOSPC.
  db.allow_fallocate = false;
  db.info_log = std::make_shared<InfoLog>(
      (std::filesystem::path(options.directory) / "LOG").string(), kInfoLogBytes);
  db.listeners.push_back(std::move(listener));

  db.compression = rocksdb::kNoCompression;  // block objects are quantized: incompressible
  db.write_buffer_size = options.write_buffer_bytes;
  db.max_write_buffer_number = std::max(2, options.max_write_buffers);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  // Point lookups of absent keys (misses, erasing what is gone) skip the table files.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.format_version = 5;
  // XXH3 is several times faster than CRC32C where RocksDB's CRC32C is not hardware-accelerated
  // (Debian's build), and as strong for detecting damage.
  table.checksum = rocksdb::kXXH3;
  db.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (options.value_layout == NvmeValueLayout::kBlobFiles) {
    db.enable_blob_files = true;
    // Block objects go to blob files; size entries (4 bytes) stay in the tables.
    db.min_blob_size = 64;
    db.blob_file_size = options.blob_file_bytes;
    db.blob_compression_type = rocksdb::kNoCompression;
    // With a garbage threshold the tier turns GC on only while the oldest files hold garbage
    // (NvmeTier::Impl::UpdateBlobGc); while it is on, RocksDB also compacts those files on its
    // own once their garbage passes the same threshold.
    db.enable_blob_garbage_collection = options.blob_gc_min_garbage <= 0;
    db.blob_garbage_collection_age_cutoff = options.blob_gc_age_cutoff;
    if (options.blob_gc_min_garbage > 0) {
      db.blob_garbage_collection_force_threshold = options.blob_gc_min_garbage;
    }
  }

  out.write.disableWAL = !options.use_wal;
  // Every object read is verified end to end by the tier (XXH3 over the whole object, key
  // included), so RocksDB's own checksums on that path only repeat the work (CRC32C over every
  // blob, in software in Debian's build). Whatever damage they would catch, in a table block or a
  // blob, yields bytes that fail the tier's check; so does a damaged blob reference that points at
  // another block, whose key differs. Scans of size entries keep RocksDB's checks.
  out.read_objects.verify_checksums = false;
  // With blob files the tables hold only small blob references: caching them saves a read per
  // Get. Inline block objects stay out of the block cache: a block is read once per load and
  // then lives in the host tier, so caching it would only push out index and filter blocks.
  out.read_objects.fill_cache = options.value_layout == NvmeValueLayout::kBlobFiles;
  out.read_sizes_in_memory.read_tier = rocksdb::kBlockCacheTier;
  return out;
}

}  // namespace kvault::storage::nvme
