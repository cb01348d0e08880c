#pragma once
// NvmeTier::Impl: the RocksDB-backed nvme tier. nvme_tier.cc holds the block operations and
// nvme_disk_full.cc the disk-full state machine (docs/storage_nvme.md, "Disk full").
//
// Thread-safe. Lock order: stripes_ (ascending index when several), then full_mu_; blob_gc_mu_ is
// taken alone, with no other lock held. No lock but stripes_ and blob_gc_mu_ is held across a
// RocksDB call or file I/O, so RocksDB's background threads (which call the listener, which takes
// full_mu_) never wait on us, nor does Erase, which the BlockStore calls under its own mutex.
//
// Threads: one of the tier's own, the recovery thread (nvme_disk_full.cc), started by Open and
// stopped and joined first thing in the destructor. It alone attempts recovery from a full disk
// and alone touches reserve_ once started; it sleeps on recovery_wake_ (with full_mu_) and takes
// no lock across its RocksDB calls but the stripes ApplyPendingErases takes.

#include <rocksdb/db.h>
#include <rocksdb/listener.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/storage/nvme_tier.h"
#include "nvme/db_layout.h"
#include "nvme/db_options.h"
#include "nvme/reserve_file.h"

namespace kvault::storage {

class NvmeTier::Impl {
 public:
  // Opens the database and rebuilds the byte accounting from the size entries.
  static Result<std::unique_ptr<Impl>> Open(const NvmeTierOptions& options);
  ~Impl();

  TierUsage Usage() const;
  Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object);
  Status Read(const ScopedKey& key, uint32_t object_bytes, std::span<uint8_t> out);
  // `object_bytes`: the size the caller stored the block with (NvmeTier::Erase).
  void Erase(const ScopedKey& key, uint32_t object_bytes);
  Status Recover(const RecoverFn& found);
  void VisitCounters(CounterVisitor& visitor) const;
  bool disk_full() const { return full_.load(std::memory_order_acquire); }
  // For tests: holds the lock stripe of `key` as a Put does through a stalled write.
  std::unique_lock<std::mutex> HoldStripeForTesting(const ScopedKey& key) {
    return std::unique_lock<std::mutex>(StripeFor(key));
  }

  // Enters the disk-full state (idempotent): writes stop, and the recovery thread is woken to
  // retry full_retry_interval later. `rocksdb_out_of_space`: RocksDB itself hit ENOSPC (and
  // refuses writes until DB::Resume), so the recovery thread releases the reserve file first
  // thing (after an attempt under way, which ENOSPC cuts short) to give the recovery room. Called
  // from Put, Erase and RocksDB's background-error listener; waits for nothing but full_mu_.
  void EnterDiskFull(const std::string& reason, bool rocksdb_out_of_space);
  // For tests: recovery attempts the recovery thread has started so far.
  uint64_t RecoveryAttemptsForTesting() const {
    return recovery_attempts_.load(std::memory_order_acquire);
  }

 private:
  class Listener;
  static constexpr size_t kStripes = 64;

  explicit Impl(const NvmeTierOptions& options);

  std::mutex& StripeFor(const ScopedKey& key);
  // Waits (at most ~5 s) until each of the integer properties reads 0, or until `cancel` (when
  // set) reads true.
  void WaitUntilZero(std::initializer_list<const std::string*> properties,
                     const std::atomic<bool>* cancel = nullptr);
  // Waits (at most ~5 s) until no flush is pending or running.
  void WaitForFlushes();
  // Waits (at most ~5 s, less when the tier is closing) until no flush or compaction runs. A job
  // deletes the files it made obsolete before it stops counting as running, while a waiting
  // CompactRange() can return before that: free space is measured after this.
  void WaitForBackgroundJobs();
  rocksdb::WriteOptions WriteOptions() const { return db_options_.write; }
  // Turns RocksDB's blob GC on or off (nvme::BlobGcPays) when a flush or compaction has finished
  // since the last decision. Called at open and at the start of Put, with no lock held; not from
  // Erase, which the BlockStore calls under its own mutex (the decision reads RocksDB's metadata
  // and may write an OPTIONS file). A caller that finds another deciding goes on without waiting.
  void UpdateBlobGc();

  // The stored object size of `key` from its size entry: nullopt when absent. With
  // db_options_.read_sizes_in_memory, Unavailable (RocksDB's Incomplete) where the entry would
  // have to be read from disk.
  Result<std::optional<uint32_t>> StoredSize(const ScopedKey& key,
                                             const rocksdb::ReadOptions& read);
  // Walks the size entries: rebuilds used_bytes_ and blocks_, reports each block to `found` when
  // set, drops malformed entries.
  Status ScanSizes(const RecoverFn* found);
  // Whether SizeToErase may read the disk: not under the BlockStore's index mutex (Erase).
  enum class SizeLookup : uint8_t { kInMemory, kMayReadDisk };
  // Deletes `key` and returns its bytes (SizeToErase) to the capacity. Caller holds the key's
  // stripe.
  void EraseLocked(const ScopedKey& key, uint32_t object_bytes, SizeLookup lookup);
  // The bytes an erasure of `key` gives back; nullopt when there is nothing to erase: no such
  // block, or its erasure already pending. The size entry's value where it can be read (with
  // kInMemory, only from memtables and the block cache), otherwise `object_bytes`, the caller's
  // record of what it stored. Never nullopt because a read failed, so that every erasure,
  // pending or not, is counted once, when it is made.
  std::optional<uint32_t> SizeToErase(const ScopedKey& key, uint32_t object_bytes,
                                      SizeLookup lookup);
  // Adds the deletes of `key`'s block and size entries to `batch`.
  static rocksdb::Status AddErasure(const ScopedKey& key, rocksdb::WriteBatch& batch);
  // Takes an erased block of `size` bytes off used_bytes_ and blocks_ and counts the erasure;
  // while the tier is full, wakes the recovery thread when that makes a retry due.
  void CountErased(uint32_t size);
  // Called when a read of `key` failed verification (`first` says why): reads it again under the
  // stripe. A copy that verifies now (the first read met a passing fault, or a good copy replaced
  // the block meanwhile) goes to `out` (OK; InvalidArgument when it is not `object_bytes` long);
  // a block still bad is erased (Corruption: "deleted"); one gone meanwhile is NotFound; a read
  // that fails otherwise leaves the block (that error: the next read tries again).
  Status RereadOrDrop(const ScopedKey& key, uint32_t object_bytes, std::span<uint8_t> out,
                      const Status& first);
  // Copies a verified object into `out`; InvalidArgument when it is not `object_bytes` long (the
  // caller's index disagrees with the tier: the block is kept).
  static Status CopyOut(const rocksdb::PinnableSlice& value, uint32_t object_bytes,
                        std::span<uint8_t> out);

  // Erasures not yet written to RocksDB (nvme_pending_erases.cc). The block is gone for callers
  // from the moment Erase returns: reads miss it, a Put replaces it. Its bytes and block were
  // taken off used_bytes_ and blocks_ when the erasure was recorded.
  bool IsPendingErase(const ScopedKey& key);
  // Records an erasure of `key` to be written later; a no-op when one is pending already.
  void DeferErase(const ScopedKey& key);
  // Forgets the pending erasure of `key` (a Put replaced the block). Caller holds its stripe.
  void DropPendingErase(const ScopedKey& key);

  // Disk-full state machine (nvme_disk_full.cc).
  // Free space on the filesystem less the bytes memtables hold (they will need it when flushed).
  Result<uint64_t> RoomForWrites();
  // Refuses a write of `bytes` (entering the full state) when it would leave less than
  // min_free_bytes of room.
  Status CheckFreeSpace(uint64_t bytes);
  // Starts the recovery thread (Open, once the database is open). Internal when the system
  // refuses a thread.
  Status StartRecoveryThread();
  // Stops the recovery thread and joins it (the destructor, before the database closes): a
  // recovery under way has its compaction cancelled and waits no longer for background jobs.
  void StopRecoveryThread();
  // The recovery thread's body: sleeps until the tier is full and a retry is due (RetryDue),
  // attempts recovery with no lock held, and leaves the full state when it succeeds.
  void RecoveryLoop();
  // Whether a recovery attempt is due now: write_buffer_bytes erased since the last attempt, or
  // full_retry_interval passed. When not, `wake` is when it will be. Caller holds full_mu_.
  bool RetryDue(std::chrono::steady_clock::time_point now, uint64_t erased,
                std::chrono::steady_clock::time_point& wake) const;
  // Wakes the recovery thread when erasures made a retry due (CountErased, while full).
  void WakeRecoveryAfterErasures();
  // One recovery attempt, on the recovery thread; compacts when erasures happened since the last
  // compaction (`erased` is erased_bytes_ when the attempt began).
  Status RecoverFromDiskFull(uint64_t erased);
  // Writes the pending erasures (nvme_pending_erases.cc): from disk-full recovery, and from Put,
  // a writer that may wait. Takes every stripe.
  Status ApplyPendingErases();
  Status DiskFullStatus();

  const NvmeTierOptions options_;
  nvme::DbOptions db_options_;
  std::shared_ptr<Listener> listener_;
  std::unique_ptr<rocksdb::DB> db_;

  std::array<std::mutex, kStripes> stripes_;
  std::atomic<uint64_t> used_bytes_{0};
  std::atomic<uint64_t> blocks_{0};

  std::atomic<uint64_t> puts_{0}, reads_{0}, erases_{0}, checksum_failures_{0};
  std::atomic<uint64_t> rejected_capacity_{0}, rejected_disk_full_{0};
  std::atomic<uint64_t> disk_full_events_{0}, disk_full_recoveries_{0};
  std::atomic<uint64_t> write_errors_{0}, read_errors_{0};

  // Blob GC switch (UpdateBlobGc). The listener sets check_due after every flush and compaction.
  std::mutex blob_gc_mu_;
  std::atomic<bool> blob_gc_check_due_{true};
  std::atomic<bool> blob_gc_active_{false};
  std::atomic<uint64_t> blob_gc_switches_{0};

  // Disk-full state. full_ is read without the lock on every Put.
  std::atomic<bool> full_{false};
  std::atomic<uint64_t> erased_bytes_{0};   // monotonic: bytes of all erasures so far
  std::atomic<uint64_t> pending_count_{0};  // pending_erases_.size(), read without the lock
  // Set (under full_mu_) when the tier closes: stops the recovery thread and cancels its
  // compaction (CompactRangeOptions::canceled).
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> recovery_attempts_{0};
  mutable std::mutex full_mu_;  // guards what follows, up to the recovery thread's own state
  std::condition_variable recovery_wake_;
  std::string full_reason_;
  std::chrono::steady_clock::time_point last_attempt_;
  uint64_t erased_at_attempt_ = 0;  // erased_bytes_ at the last recovery attempt
  uint64_t full_entries_ = 0;       // EnterDiskFull calls so far: one during an attempt voids it
  bool release_reserve_ = false;    // RocksDB hit ENOSPC: the recovery thread releases reserve_
  // Blocks erased while their stripe was busy, or while RocksDB refused or would have stalled
  // the write: gone for callers, counted as erased, deleted by the next Put or on recovery.
  std::unordered_set<ScopedKey, ScopedKeyHash> pending_erases_;

  // The recovery thread's own: touched by Open before it starts, the thread, and the destructor
  // after it stops.
  std::thread recovery_thread_;
  uint64_t erased_at_compaction_ = 0;  // erased_bytes_ when recovery last compacted
  nvme::ReserveFile reserve_;
};

}  // namespace kvault::storage
