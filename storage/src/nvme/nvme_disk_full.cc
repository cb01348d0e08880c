// The nvme tier's disk-full state machine (docs/storage.md, "Disk full").
//
//   writable --(ENOSPC from a write, or from a background flush)--> full
//   full: Put -> Unavailable; Read works; Erase works (deferred while RocksDB refuses writes)
//   full --(a Put after an Erase, or after full_retry_interval)--> recovery attempt:
//       DB::Resume() (retries the failed flush, using the released reserve), apply deferred
//       erasures, flush, compact the block column family so that erased blocks free their
//       space, then hold the reserve again. Success -> writable; failure -> still full.

#include <string>
#include <vector>

#include <rocksdb/write_batch.h>

#include "nvme/nvme_tier_impl.h"
#include "nvme/rocksdb_status.h"

namespace kvault::storage {

void NvmeTier::Impl::EnterDiskFull(const std::string& reason) {
  std::lock_guard<std::mutex> lock(full_mu_);
  full_reason_ = reason;
  if (!full_.exchange(true, std::memory_order_acq_rel)) {
    disk_full_events_.fetch_add(1, std::memory_order_relaxed);
    last_attempt_ = std::chrono::steady_clock::now();
    erases_at_last_attempt_ = erases_while_full_.load(std::memory_order_acquire);
  }
  // The reserve exists for this moment: its space lets the recovery flush and compact.
  reserve_.Release();
}

Status NvmeTier::Impl::DiskFullStatus() {
  std::lock_guard<std::mutex> lock(full_mu_);
  return Status::Unavailable("nvme tier full: " + full_reason_);
}

bool NvmeTier::Impl::IsPendingErase(const ScopedKey& key) {
  std::lock_guard<std::mutex> lock(full_mu_);
  return pending_erases_.count(key) > 0;
}

bool NvmeTier::Impl::TryLeaveDiskFull() {
  std::unique_lock<std::mutex> recovery(recovery_mu_, std::try_to_lock);
  if (!recovery.owns_lock()) return false;  // another Put is recovering; this one is refused
  if (!disk_full()) return true;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    const auto now = std::chrono::steady_clock::now();
    const uint64_t erases = erases_while_full_.load(std::memory_order_acquire);
    if (erases == erases_at_last_attempt_ && now - last_attempt_ < options_.full_retry_interval) {
      return false;
    }
    last_attempt_ = now;
    erases_at_last_attempt_ = erases;
  }
  Status recovered = RecoverFromDiskFull();
  std::lock_guard<std::mutex> lock(full_mu_);
  if (!recovered.ok()) {
    full_reason_ = recovered.message();
    return false;
  }
  full_.store(false, std::memory_order_release);
  disk_full_recoveries_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

Status NvmeTier::Impl::RecoverFromDiskFull() {
  // Writable again once the flush that failed succeeds; a no-op when RocksDB holds no error.
  rocksdb::Status rs = db_->Resume();
  if (!rs.ok()) return nvme::FromRocksDb(rs, "resume");
  KVAULT_RETURN_IF_ERROR(ApplyPendingErases());
  rs = db_->Flush(rocksdb::FlushOptions(), {data_cf_, sizes_cf_});
  if (!rs.ok()) return nvme::FromRocksDb(rs, "flush");
  // Erasures free disk space only when compaction drops what they cover: with blob files this
  // rewrites just the small tables of references and deletes blob files that hold no live block.
  rocksdb::CompactRangeOptions compact;
  compact.exclusive_manual_compaction = false;
  rs = db_->CompactRange(compact, data_cf_, nullptr, nullptr);
  if (!rs.ok()) return nvme::FromRocksDb(rs, "compact");
  std::lock_guard<std::mutex> lock(full_mu_);
  return reserve_.Hold();
}

Status NvmeTier::Impl::ApplyPendingErases() {
  if (pending_count_.load(std::memory_order_acquire) == 0) return Status::Ok();
  // All stripes, so that no Erase or Read of these keys interleaves (lock order: stripes in
  // ascending index, then full_mu_).
  std::vector<std::unique_lock<std::mutex>> stripes;
  stripes.reserve(kStripes);
  for (std::mutex& stripe : stripes_) stripes.emplace_back(stripe);
  std::vector<ScopedKey> keys;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    keys.reserve(pending_erases_.size());
    for (const auto& [key, size] : pending_erases_) keys.push_back(key);
  }
  rocksdb::WriteBatch batch;
  for (const ScopedKey& key : keys) {
    const nvme::DbKey db_key = nvme::EncodeDbKey(key);
    const rocksdb::Slice slice(db_key.data(), db_key.size());
    rocksdb::Status rs = batch.Delete(data_cf_, slice);
    if (rs.ok()) rs = batch.Delete(sizes_cf_, slice);
    if (!rs.ok()) return nvme::FromRocksDb(rs, "erase");
  }
  rocksdb::Status rs = db_->Write(WriteOptions(), &batch);
  if (!rs.ok()) return nvme::FromRocksDb(rs, "apply erasures");
  std::lock_guard<std::mutex> lock(full_mu_);
  for (const ScopedKey& key : keys) pending_erases_.erase(key);
  pending_count_.store(pending_erases_.size(), std::memory_order_release);
  return Status::Ok();
}

}  // namespace kvault::storage
