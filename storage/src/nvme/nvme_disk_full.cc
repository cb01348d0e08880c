// The nvme tier's disk-full state machine (docs/storage.md, "Disk full").
//
//   writable --(a Put would leave less than min_free_bytes of room)-------------> full
//   writable --(RocksDB reports ENOSPC: a write, or a background flush)---------> full, the
//               reserve file released, RocksDB read-only until DB::Resume()
//   full: Put -> Unavailable; Read works; Erase works (deferred while RocksDB refuses writes)
//   full --(a Put after erasures of write_buffer_bytes, or after full_retry_interval)-->
//       recovery attempt: DB::Resume() (a no-op unless RocksDB holds an error), apply deferred
//       erasures, and when blocks were erased since the last compaction, flush and compact so
//       that their space returns; hold the reserve again; check the room. Success -> writable.

#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "kvault/common/log.h"
#include "nvme/nvme_tier_impl.h"
#include "nvme/rocksdb_status.h"

namespace kvault::storage {

void NvmeTier::Impl::EnterDiskFull(const std::string& reason, bool rocksdb_out_of_space) {
  std::lock_guard<std::mutex> lock(full_mu_);
  full_reason_ = reason;
  if (!full_.exchange(true, std::memory_order_acq_rel)) {
    disk_full_events_.fetch_add(1, std::memory_order_relaxed);
    KVAULT_LOG(LogLevel::kWarn, "nvme",
               "disk full: writes to the nvme tier stop, reads go on (" + reason + ")");
    last_attempt_ = std::chrono::steady_clock::now();
    erased_at_attempt_ = erased_bytes_.load(std::memory_order_acquire);
  }
  // The reserve exists for this moment: its space lets the recovery flush and compact.
  if (rocksdb_out_of_space) reserve_.Release();
}

Status NvmeTier::Impl::DiskFullStatus() {
  std::lock_guard<std::mutex> lock(full_mu_);
  return Status::Unavailable("nvme tier full: " + full_reason_);
}

Result<uint64_t> NvmeTier::Impl::RoomForWrites() {
  struct statvfs fs;
  if (::statvfs(options_.directory.c_str(), &fs) != 0) {
    return Status::IoError("nvme tier: statvfs " + options_.directory + ": " +
                           std::strerror(errno));
  }
  const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  uint64_t memtables = 0;
  if (!db_->GetIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtables)) {
    memtables = options_.write_buffer_bytes * options_.max_write_buffers;
  }
  return free_bytes > memtables ? free_bytes - memtables : 0;
}

Status NvmeTier::Impl::CheckFreeSpace(uint64_t bytes) {
  if (options_.min_free_bytes == 0) return Status::Ok();
  Result<uint64_t> room = RoomForWrites();
  if (!room.ok()) return Status::Ok();  // cannot tell: let RocksDB's own ENOSPC decide
  if (*room >= options_.min_free_bytes + bytes) return Status::Ok();
  EnterDiskFull("free space (less memtables) " + std::to_string(*room) + " bytes, below " +
                    "min_free_bytes " + std::to_string(options_.min_free_bytes) + " plus the block",
                /*rocksdb_out_of_space=*/false);
  return DiskFullStatus();
}

bool NvmeTier::Impl::TryLeaveDiskFull() {
  std::unique_lock<std::mutex> recovery(recovery_mu_, std::try_to_lock);
  if (!recovery.owns_lock()) return false;  // another Put is recovering; this one is refused
  if (!disk_full()) return true;
  const uint64_t erased = erased_bytes_.load(std::memory_order_acquire);
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (erased - erased_at_attempt_ < options_.write_buffer_bytes &&
        now - last_attempt_ < options_.full_retry_interval) {
      return false;
    }
    last_attempt_ = now;
    erased_at_attempt_ = erased;
  }
  Status recovered = RecoverFromDiskFull(erased);
  std::lock_guard<std::mutex> lock(full_mu_);
  if (!recovered.ok()) {
    full_reason_ = recovered.message();
    return false;
  }
  full_.store(false, std::memory_order_release);
  disk_full_recoveries_.fetch_add(1, std::memory_order_relaxed);
  KVAULT_LOG(LogLevel::kInfo, "nvme", "space is back: writes to the nvme tier resume");
  return true;
}

Status NvmeTier::Impl::RecoverFromDiskFull(uint64_t erased) {
  // Writable again once the flush that failed succeeds; a no-op when RocksDB holds no error.
  rocksdb::Status rs = db_->Resume();
  if (!rs.ok()) return nvme::FromRocksDb(rs, "resume");
  KVAULT_RETURN_IF_ERROR(ApplyPendingErases());
  if (erased != erased_at_compaction_) {
    // Erasures free disk space only when compaction drops what they cover: with blob files
    // this rewrites the small tables of references and deletes blob files that hold no live
    // block (blob GC, forced below, relocates the live blocks of the oldest files).
    rs = db_->Flush(rocksdb::FlushOptions());
    if (!rs.ok()) return nvme::FromRocksDb(rs, "flush");
    rocksdb::CompactRangeOptions compaction;
    compaction.exclusive_manual_compaction = false;
    // Space is what recovery needs: relocate from the oldest files whether or not the tier's
    // garbage threshold has turned GC on.
    compaction.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
    rs = db_->CompactRange(compaction, nullptr, nullptr);
    if (!rs.ok()) return nvme::FromRocksDb(rs, "compact");
    WaitForBackgroundJobs();  // their obsolete files deleted, so that statvfs sees the space
    erased_at_compaction_ = erased;
  }
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    KVAULT_RETURN_IF_ERROR(reserve_.Hold());
  }
  if (options_.min_free_bytes == 0) return Status::Ok();
  KVAULT_ASSIGN_OR_RETURN(uint64_t room, RoomForWrites());
  // A memtable's worth above the floor, so that the tier does not flap at its edge.
  const uint64_t needed = options_.min_free_bytes + options_.write_buffer_bytes;
  if (room < needed) {
    return Status::Unavailable("free space (less memtables) " + std::to_string(room) +
                               " bytes, writes resume at " + std::to_string(needed));
  }
  return Status::Ok();
}

}  // namespace kvault::storage
