#pragma once
// The one place where RocksDB's status becomes a kvault Status (STYLE.md: one file per foreign
// error model). Pure functions: thread-safe.

#include <rocksdb/status.h>

#include <string_view>

#include "kvault/common/status.h"

namespace kvault::storage::nvme {

// True when `s` says the disk (or RocksDB's space limit) is full, whether it comes from the
// write itself or from the background error a failed flush left behind.
bool IsDiskFull(const rocksdb::Status& s);

// Maps `s` to a kvault Status whose message is "<context>: <rocksdb message>". OK stays OK.
//   NotFound -> NotFound; Corruption -> Corruption; InvalidArgument -> InvalidArgument;
//   NotSupported -> Unsupported; IOError: disk full -> Unavailable, other -> IoError;
//   Busy, TryAgain, TimedOut, Incomplete, Aborted, ShutdownInProgress -> Unavailable;
//   MemoryLimit -> ResourceExhausted; anything else -> Internal.
Status FromRocksDb(const rocksdb::Status& s, std::string_view context);

}  // namespace kvault::storage::nvme
