#pragma once
// When the nvme tier lets RocksDB's blob garbage collection run (docs/storage_nvme.md, "Blob GC").
//
// RocksDB's GC relocates the live blobs of the oldest blob files at every compaction that meets
// them, whether or not those files hold any garbage: after a bulk load with no erasures, the
// first compaction rewrote 192 MiB of live blocks. The tier turns GC on only while the files GC
// would relocate hold enough garbage for the rewrite to free space. Pure: thread-safe.

#include <cstdint>
#include <span>

namespace kvault::storage::nvme {

// One blob file as RocksDB's metadata describes it.
struct BlobFileGarbage {
  uint64_t total_bytes = 0;    // bytes of blobs the file was written with
  uint64_t garbage_bytes = 0;  // of those, bytes compactions have found erased or overwritten
};

// Whether GC should run, given the blob files oldest first. The files GC would relocate are the
// oldest floor(age_cutoff x count), as RocksDB counts them; GC runs while their garbage is at
// least `min_garbage` of their bytes, and once running (`active`) until it falls below half of
// that, so that a ratio near the threshold does not switch it on and off at every compaction.
// `min_garbage` 0: always (RocksDB's own behaviour).
bool BlobGcPays(std::span<const BlobFileGarbage> oldest_first, double age_cutoff,
                double min_garbage, bool active);

}  // namespace kvault::storage::nvme
