#include "nvme/db_options.h"

#include <algorithm>
#include <thread>
#include <utility>

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include "nvme/db_layout.h"

namespace kvault::storage::nvme {
namespace {

// The size index holds ~40 bytes per block; its memtable flushes with the data (atomic flush),
// so it rarely fills. Kept small so that it costs little memory.
constexpr uint64_t kSizesWriteBufferBytes = 4ull << 20;

rocksdb::BlockBasedTableOptions TableOptions(std::shared_ptr<rocksdb::Cache> cache) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = std::move(cache);
  // Point lookups of absent keys (misses, erase of what is gone) skip the table files.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.format_version = 5;
  return table;
}

}  // namespace

DbOptions MakeDbOptions(const NvmeTierOptions& options,
                        std::shared_ptr<rocksdb::EventListener> listener) {
  DbOptions out;
  rocksdb::DBOptions& db = out.db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  // With the WAL off, the two column families must reach disk together or not at all.
  db.atomic_flush = true;
  db.max_background_jobs = std::max(2, options.background_jobs);
  db.use_direct_reads = options.use_direct_reads;
  // Preallocation would make a file claim space it never fills; on a nearly full disk that turns
  // into an early ENOSPC.
  db.allow_fallocate = false;
  db.keep_log_file_num = 4;
  db.max_log_file_size = 16ull << 20;
  db.listeners.push_back(std::move(listener));

  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);

  rocksdb::ColumnFamilyOptions data;
  data.compression = rocksdb::kNoCompression;  // block objects are quantized: incompressible
  data.write_buffer_size = options.write_buffer_bytes;
  data.max_write_buffer_number = std::max(2, options.max_write_buffers);
  data.table_factory.reset(rocksdb::NewBlockBasedTableFactory(TableOptions(cache)));
  if (options.value_layout == NvmeValueLayout::kBlobFiles) {
    data.enable_blob_files = true;
    data.min_blob_size = 0;  // every block object goes to a blob file
    data.blob_file_size = options.blob_file_bytes;
    data.blob_compression_type = rocksdb::kNoCompression;
    data.enable_blob_garbage_collection = true;
    data.blob_garbage_collection_age_cutoff = options.blob_gc_age_cutoff;
  }

  rocksdb::ColumnFamilyOptions sizes;
  sizes.compression = rocksdb::kNoCompression;
  sizes.write_buffer_size = std::min(kSizesWriteBufferBytes, options.write_buffer_bytes);
  sizes.max_write_buffer_number = data.max_write_buffer_number;
  sizes.table_factory.reset(rocksdb::NewBlockBasedTableFactory(TableOptions(cache)));

  out.column_families.emplace_back(rocksdb::kDefaultColumnFamilyName, std::move(data));
  out.column_families.emplace_back(kSizesColumnFamily, std::move(sizes));

  out.write.disableWAL = !options.use_wal;
  // A block object is read once per load and then lives in the host tier: caching it in the
  // block cache would only evict the index blocks.
  out.read_objects.fill_cache = false;
  return out;
}

}  // namespace kvault::storage::nvme
