#pragma once
// Translates NvmeTierOptions into RocksDB options (docs/storage.md, "Options"). Pure: thread-safe.

#include <rocksdb/listener.h>
#include <rocksdb/options.h>

#include <memory>

#include "kvault/storage/nvme_tier.h"

namespace kvault::storage::nvme {

struct DbOptions {
  std::shared_ptr<rocksdb::Env> env;  // db.env points here: page-aligned direct writes
  rocksdb::Options db;
  rocksdb::WriteOptions write;
  rocksdb::ReadOptions read_objects;  // block object reads: bypass the block cache
  rocksdb::ReadOptions read_sizes;    // size-entry reads and scans
};

// `listener` is added to the database's listeners (the tier's disk-full hook).
DbOptions MakeDbOptions(const NvmeTierOptions& options,
                        std::shared_ptr<rocksdb::EventListener> listener);

}  // namespace kvault::storage::nvme
