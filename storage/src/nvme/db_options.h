#pragma once
// Translates NvmeTierOptions into RocksDB options (docs/storage_nvme.md, "Options").
// Pure: thread-safe.

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
  // Size-entry reads that must not touch the disk (Erase, under the BlockStore's index mutex):
  // memtables and block cache only; RocksDB answers Incomplete where it would have to read.
  rocksdb::ReadOptions read_sizes_in_memory;
};

// `listener` is added to the database's listeners (the tier's disk-full hook).
DbOptions MakeDbOptions(const NvmeTierOptions& options,
                        std::shared_ptr<rocksdb::EventListener> listener);

}  // namespace kvault::storage::nvme
