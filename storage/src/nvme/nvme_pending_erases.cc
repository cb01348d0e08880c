// Erasures the nvme tier records instead of writing at once. Erase never waits: the BlockStore
// calls it under its index mutex, and a RocksDB write can stall behind a flush for hundreds of
// milliseconds (a Put holds its key's stripe through that stall). So Erase defers when its stripe
// is busy or RocksDB would stall or refuses the write (a full disk); the block is gone for
// callers at once (reads miss it), its bytes are back in the capacity at once, and the next Put,
// or disk-full recovery, writes the deletes.
#include <rocksdb/write_batch.h>

#include <vector>

#include "nvme/nvme_tier_impl.h"
#include "nvme/rocksdb_status.h"

namespace kvault::storage {

bool NvmeTier::Impl::IsPendingErase(const ScopedKey& key) {
  std::lock_guard<std::mutex> lock(full_mu_);
  return pending_erases_.contains(key);
}

void NvmeTier::Impl::DeferErase(const ScopedKey& key) {
  std::lock_guard<std::mutex> lock(full_mu_);
  if (pending_erases_.insert(key).second) pending_count_.fetch_add(1, std::memory_order_release);
}

void NvmeTier::Impl::DropPendingErase(const ScopedKey& key) {
  if (pending_count_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard<std::mutex> lock(full_mu_);
  if (pending_erases_.erase(key) > 0) pending_count_.fetch_sub(1, std::memory_order_release);
}

Status NvmeTier::Impl::ApplyPendingErases() {
  if (pending_count_.load(std::memory_order_acquire) == 0) return Status::Ok();
  // All stripes, so that no Put, Erase or Read of these keys interleaves (lock order: stripes in
  // ascending index, then full_mu_).
  std::vector<std::unique_lock<std::mutex>> stripes;
  stripes.reserve(kStripes);
  for (std::mutex& stripe : stripes_) stripes.emplace_back(stripe);
  std::vector<ScopedKey> pending;
  {
    std::lock_guard<std::mutex> lock(full_mu_);
    pending.assign(pending_erases_.begin(), pending_erases_.end());
  }
  // Every pending erasure was counted when it was recorded (SizeToErase never leaves one
  // uncounted): writing it changes no accounting.
  rocksdb::WriteBatch batch;
  for (const ScopedKey& key : pending) {
    if (rocksdb::Status rs = AddErasure(key, batch); !rs.ok()) {
      return nvme::FromRocksDb(rs, "erase");
    }
  }
  rocksdb::Status rs = db_->Write(WriteOptions(), &batch);
  if (!rs.ok()) return nvme::FromRocksDb(rs, "apply erasures");
  std::lock_guard<std::mutex> lock(full_mu_);
  for (const ScopedKey& key : pending) pending_erases_.erase(key);
  pending_count_.store(pending_erases_.size(), std::memory_order_release);
  return Status::Ok();
}

}  // namespace kvault::storage
