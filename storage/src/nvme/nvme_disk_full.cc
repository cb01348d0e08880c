// The nvme tier's disk-full state machine (docs/storage_nvme.md, "Disk full").
//
//   writable --(a Put would leave less than min_free_bytes of room)-------------> full
//   writable --(RocksDB reports ENOSPC: a write, or a background flush)---------> full, the
//               reserve file released, RocksDB read-only until DB::Resume()
//   full: Put -> Unavailable at once; Read works; Erase works (deferred while RocksDB refuses
//         writes)
//   full --(erasures of write_buffer_bytes, or full_retry_interval, since the last attempt)-->
//       recovery attempt, on the tier's recovery thread, never in a Put: DB::Resume() (a no-op
//       unless RocksDB holds an error), apply deferred erasures, and when blocks were erased
//       since the last compaction, flush and compact so that their space returns; hold the
//       reserve again; check the room. Success -> writable.
//
// The recovery thread is the tier's, started by Open and joined by the destructor. A recovery
// can take seconds (a full-range compaction, then a wait for background jobs): on that thread
// it delays no client write, no mover and no erasure (Erase runs under the BlockStore's mutex
// and takes full_mu_ at most, which the thread never holds across I/O).

#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "kvault/common/log.h"
#include "nvme/nvme_tier_impl.h"
#include "nvme/rocksdb_status.h"

namespace kvault::storage {

void NvmeTier::Impl::EnterDiskFull(const std::string& reason, bool rocksdb_out_of_space) {
  bool entered = false;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    full_reason_ = reason;
    ++full_entries_;
    if (!full_.exchange(true, std::memory_order_acq_rel)) {
      entered = true;
      disk_full_events_.fetch_add(1, std::memory_order_relaxed);
      last_attempt_ = std::chrono::steady_clock::now();
      erased_at_attempt_ = erased_bytes_.load(std::memory_order_acquire);
    }
    // The reserve exists for this moment: its space lets the recovery flush and compact.
    if (rocksdb_out_of_space) release_reserve_ = true;
  }
  if (entered || rocksdb_out_of_space) recovery_wake_.notify_one();
  if (entered) {
    KVAULT_LOG(LogLevel::kWarn, "nvme",
               "disk full: writes to the nvme tier stop, reads go on (" + reason + ")");
  }
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

Status NvmeTier::Impl::StartRecoveryThread() {
  try {
    recovery_thread_ = std::thread([this] { RecoveryLoop(); });
  } catch (const std::system_error& e) {
    return Status::Internal(std::string("nvme tier: cannot start the recovery thread: ") +
                            e.what());
  }
  return Status::Ok();
}

void NvmeTier::Impl::StopRecoveryThread() {
  if (!recovery_thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(full_mu_);  // so that the thread cannot miss the wake-up
    stopping_.store(true, std::memory_order_release);
  }
  recovery_wake_.notify_all();
  recovery_thread_.join();
}

bool NvmeTier::Impl::RetryDue(std::chrono::steady_clock::time_point now, uint64_t erased,
                              std::chrono::steady_clock::time_point& wake) const {
  if (erased - erased_at_attempt_ >= options_.write_buffer_bytes) return true;
  // At least 1 ms apart, so that a zero interval does not spin; at most a century, so that a huge
  // one does not overflow the clock's arithmetic.
  const std::chrono::steady_clock::duration interval = std::clamp<std::chrono::milliseconds>(
      options_.full_retry_interval, std::chrono::milliseconds(1), std::chrono::hours(876000));
  const std::chrono::steady_clock::duration since = now - last_attempt_;
  if (since >= interval) return true;
  wake =
      now + std::min<std::chrono::steady_clock::duration>(interval - since, std::chrono::hours(1));
  return false;
}

void NvmeTier::Impl::WakeRecoveryAfterErasures() {
  bool due = false;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    due = erased_bytes_.load(std::memory_order_acquire) - erased_at_attempt_ >=
          options_.write_buffer_bytes;
  }
  if (due) recovery_wake_.notify_one();
}

void NvmeTier::Impl::RecoveryLoop() {
  std::unique_lock<std::mutex> lock(full_mu_);
  while (!stopping_.load(std::memory_order_acquire)) {
    if (release_reserve_) {
      release_reserve_ = false;
      lock.unlock();
      reserve_.Release();
      lock.lock();
      continue;
    }
    if (!disk_full()) {
      recovery_wake_.wait(lock);
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    const uint64_t erased = erased_bytes_.load(std::memory_order_acquire);
    std::chrono::steady_clock::time_point wake;
    if (!RetryDue(now, erased, wake)) {
      recovery_wake_.wait_until(lock, wake);
      continue;
    }
    last_attempt_ = now;
    erased_at_attempt_ = erased;
    const uint64_t entries = full_entries_;
    recovery_attempts_.fetch_add(1, std::memory_order_release);
    lock.unlock();
    const Status recovered = RecoverFromDiskFull(erased);
    lock.lock();
    if (!recovered.ok()) {
      if (!stopping_.load(std::memory_order_acquire)) full_reason_ = recovered.message();
      continue;
    }
    // Entered again while this attempt ran (RocksDB's ENOSPC, say): that reason stands.
    if (full_entries_ != entries) continue;
    full_.store(false, std::memory_order_release);
    disk_full_recoveries_.fetch_add(1, std::memory_order_relaxed);
    lock.unlock();
    KVAULT_LOG(LogLevel::kInfo, "nvme", "space is back: writes to the nvme tier resume");
    lock.lock();
  }
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
    compaction.canceled = &stopping_;  // closing the tier need not wait for it
    // Space is what recovery needs: relocate from the oldest files whether or not the tier's
    // garbage threshold has turned GC on.
    compaction.blob_garbage_collection_policy = rocksdb::BlobGarbageCollectionPolicy::kForce;
    rs = db_->CompactRange(compaction, nullptr, nullptr);
    if (!rs.ok()) return nvme::FromRocksDb(rs, "compact");
    WaitForBackgroundJobs();  // their obsolete files deleted, so that statvfs sees the space
    erased_at_compaction_ = erased;
  }
  KVAULT_RETURN_IF_ERROR(reserve_.Hold());
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
