#include "kvault/storage/nvme_tier.h"

#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

#include "kvault/common/block_format.h"
#include "kvault/common/log.h"
#include "nvme/blob_gc.h"
#include "nvme/crc32c_override.h"
#include "nvme/nvme_tier_impl.h"
#include "nvme/reserve_file.h"
#include "nvme/rocksdb_status.h"

namespace kvault::storage {
namespace {

constexpr char kReserveFileName[] = "kvault-nvme-reserve";

template <size_t N>
rocksdb::Slice AsSlice(const std::array<char, N>& key) {
  return {key.data(), key.size()};
}

// Verifies a stored value as a block object stored under `key`.
Status VerifyObject(const ScopedKey& key, const rocksdb::Slice& value) {
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(value.data()), value.size());
  ParseOptions parse;
  parse.verify_checksum = true;
  parse.expected_key = &key.key;
  return ParseBlockObject(bytes, parse).status();
}

}  // namespace

// Turns RocksDB's background errors into the tier's disk-full state, and keeps recovery from a
// full disk in the tier's hands: RocksDB's own would refuse DB::Resume() while it polls.
class NvmeTier::Impl::Listener final : public rocksdb::EventListener {
 public:
  void Attach(Impl* impl) { impl_.store(impl, std::memory_order_release); }

  void MarkBlobGcCheckDue() {
    Impl* impl = impl_.load(std::memory_order_acquire);
    if (impl != nullptr) impl->blob_gc_check_due_.store(true, std::memory_order_release);
  }

  void OnBackgroundError(rocksdb::BackgroundErrorReason /*reason*/,
                         rocksdb::Status* bg_error) override {
    Impl* impl = impl_.load(std::memory_order_acquire);
    if (impl != nullptr && bg_error != nullptr && nvme::IsDiskFull(*bg_error)) {
      impl->EnterDiskFull(bg_error->ToString(), /*rocksdb_out_of_space=*/true);
    }
  }

  // The garbage in the blob files changes only when a flush or compaction finishes.
  void OnFlushCompleted(rocksdb::DB* /*db*/, const rocksdb::FlushJobInfo& /*info*/) override {
    MarkBlobGcCheckDue();
  }
  void OnCompactionCompleted(rocksdb::DB* /*db*/,
                             const rocksdb::CompactionJobInfo& /*info*/) override {
    MarkBlobGcCheckDue();
  }

  // Only a full disk is the tier's to recover (the recovery thread calls DB::Resume()); RocksDB's
  // own recovery handles anything else it offers. In RocksDB 7.8 nothing else reaches this hook:
  // a retryable IO error gets RocksDB's automatic resume without asking, and another IO error in
  // a flush (EIO) is fatal, which neither recovery nor Resume() lifts (only reopening does).
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    if (nvme::IsDiskFull(bg_error)) *auto_recovery = false;
  }

 private:
  std::atomic<Impl*> impl_{nullptr};
};

NvmeTier::Impl::Impl(const NvmeTierOptions& options)
    : options_(options),
      listener_(std::make_shared<Listener>()),
      reserve_((std::filesystem::path(options.directory) / kReserveFileName).string(),
               options.reserve_bytes) {
  db_options_ = nvme::MakeDbOptions(options_, listener_);
}

Result<std::unique_ptr<NvmeTier::Impl>> NvmeTier::Impl::Open(const NvmeTierOptions& options) {
  if (options.directory.empty()) return Status::InvalidArgument("nvme tier: directory is empty");
  if (options.capacity_bytes == 0) return Status::InvalidArgument("nvme tier: capacity is 0");
  if (!(options.blob_gc_age_cutoff >= 0.0 && options.blob_gc_age_cutoff <= 1.0)) {
    return Status::InvalidArgument("nvme tier: blob_gc_age_cutoff must be in [0, 1]");
  }
  if (!(options.blob_gc_min_garbage >= 0.0 && options.blob_gc_min_garbage <= 1.0)) {
    return Status::InvalidArgument("nvme tier: blob_gc_min_garbage must be in [0, 1]");
  }
  std::error_code ec;
  std::filesystem::create_directories(options.directory, ec);
  if (ec) {
    return Status::IoError("nvme tier: create directory " + options.directory + ": " +
                           ec.message());
  }
  // Before RocksDB computes its first checksum: its CRC32C on this CPU's instruction.
  nvme::EnableHardwareCrc32c();
  NvmeTierOptions effective = options;
  // tmpfs (before Linux 6.6) and some overlay filesystems refuse O_DIRECT: read and write
  // through the page cache there rather than fail every read and flush.
  if ((effective.use_direct_reads || effective.use_direct_writes) &&
      !nvme::SupportsDirectIo(options.directory)) {
    effective.use_direct_reads = false;
    effective.use_direct_writes = false;
  }
  std::unique_ptr<Impl> impl(new Impl(effective));
  impl->blob_gc_active_.store(effective.value_layout == NvmeValueLayout::kBlobFiles &&
                              effective.blob_gc_min_garbage <= 0);
  impl->listener_->Attach(impl.get());
  rocksdb::DB* db = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(impl->db_options_.db, options.directory, &db);
  if (!rs.ok()) return nvme::FromRocksDb(rs, "nvme tier: open " + options.directory);
  impl->db_.reset(db);
  KVAULT_RETURN_IF_ERROR(impl->ScanSizes(nullptr));
  impl->UpdateBlobGc();  // a directory reopened with garbage in its oldest files collects it
  // The recovery thread, which owns the reserve from here on, has not started yet.
  Status held = impl->reserve_.Hold();
  if (held.code() == StatusCode::kUnavailable) {
    impl->EnterDiskFull(held.message(), false);  // no room even for the reserve: start full
  } else if (!held.ok()) {
    return held;
  }
  KVAULT_RETURN_IF_ERROR(impl->StartRecoveryThread());
  return impl;
}

NvmeTier::Impl::~Impl() {
  StopRecoveryThread();  // before anything closes: it may be in the middle of a recovery
  if (db_ != nullptr) {
    // With the WAL off, what the memtables hold survives only through this flush; erasures
    // still pending go in first.
    if (!disk_full()) {
      (void)ApplyPendingErases().ok();  // when it fails, the erased blocks come back on reopen
      if (db_->Flush(rocksdb::FlushOptions()).ok()) WaitForFlushes();
    }
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  listener_->Attach(nullptr);
}

void NvmeTier::Impl::WaitUntilZero(std::initializer_list<const std::string*> properties,
                                   const std::atomic<bool>* cancel) {
  for (int i = 0; i < 5000; ++i) {
    if (cancel != nullptr && cancel->load(std::memory_order_acquire)) return;
    bool idle = true;
    for (const std::string* name : properties) {
      uint64_t value = 0;
      if (!db_->GetIntProperty(*name, &value)) return;
      idle = idle && value == 0;
    }
    if (idle) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void NvmeTier::Impl::WaitForFlushes() {
  // RocksDB 7.8 can return from a waiting Flush() before the flush is installed once it has
  // recovered from ENOSPC; closing then would drop the flush. Wait for it, boundedly.
  using P = rocksdb::DB::Properties;
  WaitUntilZero({&P::kMemTableFlushPending, &P::kNumRunningFlushes, &P::kNumImmutableMemTable});
}

void NvmeTier::Impl::UpdateBlobGc() {
  if (options_.value_layout != NvmeValueLayout::kBlobFiles || options_.blob_gc_min_garbage <= 0 ||
      !blob_gc_check_due_.load(std::memory_order_acquire)) {
    return;
  }
  std::unique_lock<std::mutex> lock(blob_gc_mu_, std::try_to_lock);
  if (!lock.owns_lock() || !blob_gc_check_due_.exchange(false, std::memory_order_acq_rel)) return;
  rocksdb::ColumnFamilyMetaData meta;
  db_->GetColumnFamilyMetaData(&meta);
  std::sort(meta.blob_files.begin(), meta.blob_files.end(),
            [](const rocksdb::BlobMetaData& a, const rocksdb::BlobMetaData& b) {
              return a.blob_file_number < b.blob_file_number;
            });
  std::vector<nvme::BlobFileGarbage> files;
  files.reserve(meta.blob_files.size());
  for (const rocksdb::BlobMetaData& blob : meta.blob_files) {
    files.push_back({blob.total_blob_bytes, blob.garbage_blob_bytes});
  }
  const bool active = blob_gc_active_.load(std::memory_order_relaxed);
  const bool pays =
      nvme::BlobGcPays(files, options_.blob_gc_age_cutoff, options_.blob_gc_min_garbage, active);
  if (pays == active) return;
  rocksdb::Status rs =
      db_->SetOptions({{"enable_blob_garbage_collection", pays ? "true" : "false"}});
  if (!rs.ok()) {  // the OPTIONS file could not be written (a full disk): decide again later
    blob_gc_check_due_.store(true, std::memory_order_release);
    return;
  }
  blob_gc_active_.store(pays, std::memory_order_relaxed);
  blob_gc_switches_.fetch_add(1, std::memory_order_relaxed);
}

void NvmeTier::Impl::WaitForBackgroundJobs() {
  using P = rocksdb::DB::Properties;
  WaitUntilZero({&P::kNumRunningFlushes, &P::kNumRunningCompactions}, &stopping_);
}

std::mutex& NvmeTier::Impl::StripeFor(const ScopedKey& key) {
  return stripes_[ScopedKeyHash()(key) % kStripes];
}

TierUsage NvmeTier::Impl::Usage() const {
  TierUsage usage;
  usage.capacity_bytes = options_.capacity_bytes;
  usage.used_bytes = used_bytes_.load(std::memory_order_relaxed);
  usage.reserved_bytes = usage.used_bytes;
  usage.blocks = blocks_.load(std::memory_order_relaxed);
  return usage;
}

Result<std::optional<uint32_t>> NvmeTier::Impl::StoredSize(const ScopedKey& key,
                                                           const rocksdb::ReadOptions& read) {
  std::string value;
  rocksdb::Status rs =
      db_->Get(read, db_->DefaultColumnFamily(), AsSlice(nvme::EncodeSizeKey(key)), &value);
  if (rs.IsNotFound()) return std::optional<uint32_t>();
  if (!rs.ok()) return nvme::FromRocksDb(rs, "nvme tier: size lookup");
  std::optional<uint32_t> size = nvme::DecodeSize(value);
  if (!size) return Status::Corruption("nvme tier: malformed size entry");
  return size;
}

Result<TierSlot> NvmeTier::Impl::Put(const ScopedKey& key, std::span<const uint8_t> object) {
  if (object.size() > UINT32_MAX) {
    return Status::InvalidArgument("nvme tier: block object of 4 GiB or more");
  }
  if (key.tenant == nvme::kReservedTenant) {
    return Status::InvalidArgument("nvme tier: tenant 4294967295 is reserved");
  }
  UpdateBlobGc();
  // Only the recovery thread leaves the full state: a Put never waits for a recovery.
  if (disk_full()) {
    rejected_disk_full_.fetch_add(1, std::memory_order_relaxed);
    return DiskFullStatus();
  }
  if (pending_count_.load(std::memory_order_acquire) > 0) {
    // Erasures that could not be written when they were made (EraseLocked): a writer may wait
    // for them. When they fail they stay pending, and the write below meets the same trouble.
    (void)ApplyPendingErases().ok();
  }
  const uint32_t size = static_cast<uint32_t>(object.size());
  if (Status room = CheckFreeSpace(size); !room.ok()) {
    rejected_disk_full_.fetch_add(1, std::memory_order_relaxed);
    return room;
  }
  std::lock_guard<std::mutex> stripe(StripeFor(key));

  // What this key already holds is replaced, so only the difference counts against the cap. A
  // pending erasure already gave its bytes back; a malformed size entry is overwritten.
  uint32_t old_size = 0;
  bool replaces = false;
  if (pending_count_.load(std::memory_order_acquire) == 0 || !IsPendingErase(key)) {
    Result<std::optional<uint32_t>> stored = StoredSize(key, db_options_.read_sizes);
    if (!stored.ok() && stored.status().code() != StatusCode::kCorruption) {
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      return stored.status();
    }
    if (stored.ok() && stored->has_value()) {
      old_size = **stored;
      replaces = true;
    }
  }
  uint64_t used = used_bytes_.load(std::memory_order_relaxed);
  do {
    if (used - old_size + size > options_.capacity_bytes) {
      rejected_capacity_.fetch_add(1, std::memory_order_relaxed);
      return Status::ResourceExhausted("nvme tier: capacity reached (" + std::to_string(used) +
                                       " of " + std::to_string(options_.capacity_bytes) +
                                       " bytes used, block is " + std::to_string(size) + ")");
    }
  } while (
      !used_bytes_.compare_exchange_weak(used, used - old_size + size, std::memory_order_relaxed));

  rocksdb::WriteBatch batch;
  const nvme::SizeValue size_value = nvme::EncodeSize(size);
  rocksdb::Status rs =
      batch.Put(AsSlice(nvme::EncodeBlockKey(key)),
                rocksdb::Slice(reinterpret_cast<const char*>(object.data()), object.size()));
  if (rs.ok()) rs = batch.Put(AsSlice(nvme::EncodeSizeKey(key)), AsSlice(size_value));
  if (rs.ok()) rs = db_->Write(WriteOptions(), &batch);
  if (!rs.ok()) {
    used_bytes_.fetch_add(old_size, std::memory_order_relaxed);  // undo the reservation
    used_bytes_.fetch_sub(size, std::memory_order_relaxed);
    // A write stalled behind a flush that hit ENOSPC fails as Incomplete; the listener has
    // already marked the tier full by then.
    if (nvme::IsDiskFull(rs) || disk_full()) {
      EnterDiskFull(rs.ToString(), /*rocksdb_out_of_space=*/true);
      rejected_disk_full_.fetch_add(1, std::memory_order_relaxed);
      return DiskFullStatus();
    }
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    return nvme::FromRocksDb(rs, "nvme tier: put");
  }
  DropPendingErase(key);
  if (!replaces) blocks_.fetch_add(1, std::memory_order_relaxed);
  puts_.fetch_add(1, std::memory_order_relaxed);
  return TierSlot{0};
}

Status NvmeTier::Impl::Read(const ScopedKey& key, uint32_t object_bytes, std::span<uint8_t> out) {
  if (out.size() != object_bytes) {
    return Status::InvalidArgument("nvme tier: read buffer is " + std::to_string(out.size()) +
                                   " bytes, object is " + std::to_string(object_bytes));
  }
  reads_.fetch_add(1, std::memory_order_relaxed);
  if (pending_count_.load(std::memory_order_acquire) > 0 && IsPendingErase(key)) {
    return Status::NotFound("nvme tier: block not found");
  }
  rocksdb::PinnableSlice value;
  rocksdb::Status rs = db_->Get(db_options_.read_objects, db_->DefaultColumnFamily(),
                                AsSlice(nvme::EncodeBlockKey(key)), &value);
  if (rs.IsNotFound()) return Status::NotFound("nvme tier: block not found");
  // RocksDB checks its own checksums over table and blob files: damage it finds is treated like
  // damage the block's checksum finds.
  Status verdict = rs.IsCorruption() ? nvme::FromRocksDb(rs, "rocksdb") : Status::Ok();
  if (!rs.ok() && !rs.IsCorruption()) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    return nvme::FromRocksDb(rs, "nvme tier: read");
  }
  if (verdict.ok()) verdict = VerifyObject(key, value);
  if (!verdict.ok()) {
    value.Reset();
    return RereadOrDrop(key, object_bytes, out, verdict);
  }
  return CopyOut(value, object_bytes, out);
}

Status NvmeTier::Impl::RereadOrDrop(const ScopedKey& key, uint32_t object_bytes,
                                    std::span<uint8_t> out, const Status& first) {
  std::lock_guard<std::mutex> stripe(StripeFor(key));
  // Erased meanwhile (the erasure may still be on its way to RocksDB): gone for callers.
  if (pending_count_.load(std::memory_order_acquire) > 0 && IsPendingErase(key)) {
    return Status::NotFound("nvme tier: block not found");
  }
  rocksdb::PinnableSlice value;
  rocksdb::Status rs = db_->Get(db_options_.read_objects, db_->DefaultColumnFamily(),
                                AsSlice(nvme::EncodeBlockKey(key)), &value);
  if (rs.ok() && VerifyObject(key, value).ok()) {
    KVAULT_LOG(LogLevel::kWarn, "nvme",
               "a stored block failed verification once and verified when read again (kept): " +
                   first.message());
    return CopyOut(value, object_bytes, out);
  }
  if (rs.IsNotFound()) return Status::NotFound("nvme tier: block not found");
  if (!rs.ok() && !rs.IsCorruption()) {  // cannot tell: left as it is, the next read retries
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    return nvme::FromRocksDb(rs, "nvme tier: read again after a failed verification");
  }
  // Counted only here, where the block is lost: one that verifies when read again is kept.
  checksum_failures_.fetch_add(1, std::memory_order_relaxed);
  EraseLocked(key, object_bytes, SizeLookup::kMayReadDisk);  // not under the BlockStore's mutex
  KVAULT_LOG(
      LogLevel::kError, "nvme",
      "a stored block failed verification and was deleted (served as a miss): " + first.message());
  return Status::Corruption("nvme tier: stored block failed verification, deleted: " +
                            first.message());
}

Status NvmeTier::Impl::CopyOut(const rocksdb::PinnableSlice& value, uint32_t object_bytes,
                               std::span<uint8_t> out) {
  // A valid object of another size means the caller's index disagrees with the tier, not that
  // the block is damaged: keep it.
  if (value.size() != object_bytes) {
    return Status::InvalidArgument("nvme tier: stored object is " + std::to_string(value.size()) +
                                   " bytes, caller expected " + std::to_string(object_bytes));
  }
  std::memcpy(out.data(), value.data(), value.size());
  return Status::Ok();
}

void NvmeTier::Impl::Erase(const ScopedKey& key, uint32_t object_bytes) {
  // The BlockStore calls this under its index mutex: no disk reads, no waits.
  std::unique_lock<std::mutex> stripe(StripeFor(key), std::try_to_lock);
  if (stripe.owns_lock()) {
    EraseLocked(key, object_bytes, SizeLookup::kInMemory);
    return;
  }
  // Never waits for the stripe: a Put holds it through RocksDB's write stalls. The erasure is
  // recorded, and its size given back now (a Get needs no stripe), as EraseLocked does: a caller
  // that evicts until the tier is under a mark must see the room. (The BlockStore never erases a
  // key while it puts the same key.)
  if (const std::optional<uint32_t> size = SizeToErase(key, object_bytes, SizeLookup::kInMemory)) {
    DeferErase(key);
    CountErased(*size);
  }
}

std::optional<uint32_t> NvmeTier::Impl::SizeToErase(const ScopedKey& key, uint32_t object_bytes,
                                                    SizeLookup lookup) {
  if (pending_count_.load(std::memory_order_acquire) > 0 && IsPendingErase(key)) {
    return std::nullopt;
  }
  Result<std::optional<uint32_t>> stored =
      StoredSize(key, lookup == SizeLookup::kInMemory ? db_options_.read_sizes_in_memory
                                                      : db_options_.read_sizes);
  // Both entries change in one batch, so a block without a size entry has no object either.
  if (stored.ok()) return *stored;
  // On disk only (a table block not cached), or unreadable: the size the caller stored.
  return object_bytes;
}

void NvmeTier::Impl::EraseLocked(const ScopedKey& key, uint32_t object_bytes, SizeLookup lookup) {
  const std::optional<uint32_t> erased = SizeToErase(key, object_bytes, lookup);
  if (!erased) return;
  const uint32_t size = *erased;
  rocksdb::WriteBatch batch;
  rocksdb::Status rs = AddErasure(key, batch);
  // A write that would wait for a flush (RocksDB's write stall) fails at once instead.
  rocksdb::WriteOptions no_wait = WriteOptions();
  no_wait.no_slowdown = true;
  if (rs.ok()) rs = db_->Write(no_wait, &batch);
  if (!rs.ok()) {
    if (nvme::IsDiskFull(rs)) EnterDiskFull(rs.ToString(), /*rocksdb_out_of_space=*/true);
    DeferErase(key);
  }
  CountErased(size);
}

rocksdb::Status NvmeTier::Impl::AddErasure(const ScopedKey& key, rocksdb::WriteBatch& batch) {
  rocksdb::Status rs = batch.Delete(AsSlice(nvme::EncodeBlockKey(key)));
  if (rs.ok()) rs = batch.Delete(AsSlice(nvme::EncodeSizeKey(key)));
  return rs;
}

void NvmeTier::Impl::CountErased(uint32_t size) {
  used_bytes_.fetch_sub(size, std::memory_order_relaxed);
  blocks_.fetch_sub(1, std::memory_order_relaxed);
  erases_.fetch_add(1, std::memory_order_relaxed);
  erased_bytes_.fetch_add(size, std::memory_order_release);
  if (disk_full()) WakeRecoveryAfterErasures();
}

Status NvmeTier::Impl::ScanSizes(const RecoverFn* found) {
  uint64_t used = 0;
  uint64_t blocks = 0;
  std::vector<std::string> malformed;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(db_options_.read_sizes));
  // Size entries sort after every block entry: the scan never touches block bytes.
  for (it->Seek(rocksdb::Slice(nvme::kSizeKeyPrefix.data(), nvme::kSizeKeyPrefix.size()));
       it->Valid(); it->Next()) {
    std::optional<ScopedKey> key = nvme::DecodeSizeKey(it->key().ToStringView());
    std::optional<uint32_t> size = nvme::DecodeSize(it->value().ToStringView());
    if (!key || !size) {
      malformed.push_back(it->key().ToString());
      continue;
    }
    if (found != nullptr) (*found)(*key, TierSlot{0}, *size);
    used += *size;
    ++blocks;
  }
  if (!it->status().ok()) return nvme::FromRocksDb(it->status(), "nvme tier: scan sizes");
  it.reset();
  if (!malformed.empty()) {
    // Only damage outside the block objects can produce these. A well-formed key with a bad
    // size loses its block too: without a size the block is not in the accounting.
    rocksdb::WriteBatch batch;
    for (const std::string& size_key : malformed) {
      batch.Delete(size_key).PermitUncheckedError();
      std::optional<ScopedKey> key = nvme::DecodeSizeKey(size_key);
      if (key) batch.Delete(AsSlice(nvme::EncodeBlockKey(*key))).PermitUncheckedError();
    }
    db_->Write(WriteOptions(), &batch).PermitUncheckedError();
    checksum_failures_.fetch_add(malformed.size(), std::memory_order_relaxed);
    KVAULT_LOG(LogLevel::kError, "nvme",
               std::to_string(malformed.size()) +
                   " damaged size entries found on start; their blocks were deleted");
  }
  if (found != nullptr) {
    KVAULT_LOG(LogLevel::kInfo, "nvme",
               "recovered " + std::to_string(blocks) + " blocks (" + std::to_string(used >> 20) +
                   " MiB) from " + options_.directory);
  }
  used_bytes_.store(used, std::memory_order_relaxed);
  blocks_.store(blocks, std::memory_order_relaxed);
  return Status::Ok();
}

Status NvmeTier::Impl::Recover(const RecoverFn& found) { return ScanSizes(&found); }

void NvmeTier::Impl::VisitCounters(CounterVisitor& visitor) const {
  constexpr std::string_view kTier = "nvme";
  auto counter = [&](std::string_view name, const std::atomic<uint64_t>& value) {
    visitor.Counter(kTier, name, value.load(std::memory_order_relaxed));
  };
  counter("puts_total", puts_);
  counter("reads_total", reads_);
  counter("erases_total", erases_);
  counter("checksum_failures_total", checksum_failures_);
  counter("writes_rejected_capacity_total", rejected_capacity_);
  counter("writes_rejected_disk_full_total", rejected_disk_full_);
  counter("disk_full_events_total", disk_full_events_);
  counter("disk_full_recoveries_total", disk_full_recoveries_);
  counter("write_errors_total", write_errors_);
  counter("read_errors_total", read_errors_);
  counter("blob_gc_switches_total", blob_gc_switches_);
  const TierUsage usage = Usage();
  visitor.Gauge(kTier, "used_bytes", static_cast<double>(usage.used_bytes));
  visitor.Gauge(kTier, "capacity_bytes", static_cast<double>(usage.capacity_bytes));
  visitor.Gauge(kTier, "blocks", static_cast<double>(usage.blocks));
  visitor.Gauge(kTier, "disk_full", disk_full() ? 1.0 : 0.0);
  visitor.Gauge(kTier, "hardware_crc32c", nvme::HardwareCrc32cActive() ? 1.0 : 0.0);
  visitor.Gauge(kTier, "blob_gc_active", blob_gc_active_.load(std::memory_order_relaxed) ? 1 : 0);
}

// The public class forwards to Impl.

NvmeTier::NvmeTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NvmeTier::~NvmeTier() = default;

Result<std::unique_ptr<NvmeTier>> NvmeTier::Open(const NvmeTierOptions& options) {
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Open(options));
  return std::unique_ptr<NvmeTier>(new NvmeTier(std::move(impl)));
}

TierUsage NvmeTier::Usage() const { return impl_->Usage(); }

Result<TierSlot> NvmeTier::Put(const ScopedKey& key, std::span<const uint8_t> object) {
  return impl_->Put(key, object);
}

Status NvmeTier::Read(const ScopedKey& key, TierSlot /*slot*/, uint32_t object_bytes,
                      std::span<uint8_t> out) {
  return impl_->Read(key, object_bytes, out);
}

void NvmeTier::Erase(const ScopedKey& key, TierSlot /*slot*/, uint32_t object_bytes) {
  impl_->Erase(key, object_bytes);
}

Status NvmeTier::Recover(const RecoverFn& found) { return impl_->Recover(found); }

void NvmeTier::VisitCounters(CounterVisitor& visitor) const { impl_->VisitCounters(visitor); }

bool NvmeTier::disk_full() const { return impl_->disk_full(); }

}  // namespace kvault::storage
