#pragma once
// Translates NvmeTierOptions into RocksDB options (docs/storage.md, "Options"). Pure: thread-safe.

#include <memory>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>

#include "kvault/storage/nvme_tier.h"

namespace kvault::storage::nvme {

struct DbOptions {
  rocksdb::DBOptions db;
  // In order: "default" (block objects), "sizes" (object sizes).
  std::vector<rocksdb::ColumnFamilyDescriptor> column_families;
  rocksdb::WriteOptions write;
  rocksdb::ReadOptions read_objects;  // block object reads: bypass the block cache
  rocksdb::ReadOptions read_sizes;    // size-index reads and scans
};

// `listener` is added to the database's listeners (the tier's disk-full hook).
DbOptions MakeDbOptions(const NvmeTierOptions& options,
                        std::shared_ptr<rocksdb::EventListener> listener);

}  // namespace kvault::storage::nvme
