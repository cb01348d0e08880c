#include "kvault/storage/gpu_tier.h"

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gpu/cuda_status.h"
#include "alloc/extent_allocator.h"

namespace kvault::storage {
namespace {

using gpu_internal::CudaStatus;

constexpr uint64_t kMinAlignment = 256;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
constexpr uint32_t kMaxCopyStreams = 64;

// Checked before any CUDA call, so bad options are reported the same with or without a device.
Status ValidateOptions(const GpuTierOptions& o) {
  if (o.device < 0) return Status::InvalidArgument("gpu tier: negative device ordinal");
  const uint64_t a = o.alignment_bytes;
  if (a < kMinAlignment || a > kMaxAlignment || (a & (a - 1)) != 0) {
    return Status::InvalidArgument(
        "gpu tier: alignment_bytes must be a power of two in [256, 1 GiB]");
  }
  if (o.capacity_bytes < a) {
    return Status::InvalidArgument("gpu tier: capacity_bytes is smaller than alignment_bytes");
  }
  if (o.copy_streams < 1 || o.copy_streams > kMaxCopyStreams) {
    return Status::InvalidArgument("gpu tier: copy_streams must be in [1, 64]");
  }
  return Status::Ok();
}

// Owns the pool allocation.
class DevicePool {
 public:
  DevicePool(int device, void* base) : device_(device), base_(base) {}
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;
  ~DevicePool() {
    if (base_ == nullptr) return;
    cudaSetDevice(device_);  // cudaFree needs the allocation's device current on this thread
    cudaFree(base_);
  }
  uint8_t* base() const { return static_cast<uint8_t*>(base_); }

 private:
  int device_;
  void* base_;
};

// Owns the copy streams.
class StreamSet {
 public:
  explicit StreamSet(int device) : device_(device) {}
  StreamSet(const StreamSet&) = delete;
  StreamSet& operator=(const StreamSet&) = delete;
  ~StreamSet() {
    if (streams_.empty()) return;
    cudaSetDevice(device_);
    for (cudaStream_t s : streams_) cudaStreamDestroy(s);
  }
  Status Add() {
    cudaStream_t s = nullptr;
    // Non-blocking: the tier's copies never wait for unrelated work on the legacy default stream.
    KVAULT_RETURN_IF_ERROR(
        CudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
    streams_.push_back(s);
    return Status::Ok();
  }
  cudaStream_t at(size_t i) const { return streams_[i % streams_.size()]; }

 private:
  int device_;
  std::vector<cudaStream_t> streams_;
};

}  // namespace

class GpuTier::Impl {
 public:
  Impl(int device, uint64_t capacity, uint64_t alignment, void* pool)
      : device_(device),
        capacity_(capacity),
        pool_(device, pool),
        streams_(device),
        allocator_(capacity, ExtentAllocator::Rounding{alignment, /*size_classes=*/false}) {}

  // Synchronous copy on one of the tier's streams, from any thread. With unified addressing
  // cudaMemcpyDefault lets the driver tell host (pageable or pinned) from device memory.
  Status Copy(void* dst, const void* src, size_t bytes, const char* what) {
    KVAULT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
    const cudaStream_t stream = streams_.at(next_stream_.fetch_add(1, std::memory_order_relaxed));
    KVAULT_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream), what));
    return CudaStatus(cudaStreamSynchronize(stream), what);
  }

  struct Block {
    ScopedKey key;
    uint32_t bytes = 0;
  };

  // The committed block of `key` at `slot`: NotFound when there is none, InvalidArgument when its
  // size is not `object_bytes`. Requires mu_.
  Result<Block> FindLocked(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) const {
    auto it = blocks_.find(slot);
    if (it == blocks_.end() || !(it->second.key == key)) {
      return Status::NotFound("gpu tier: no such block at this slot");
    }
    if (it->second.bytes != object_bytes) {
      return Status::InvalidArgument("gpu tier: block holds " + std::to_string(it->second.bytes) +
                                     " bytes, not " + std::to_string(object_bytes));
    }
    return it->second;
  }

  const int device_;
  const uint64_t capacity_;
  DevicePool pool_;
  StreamSet streams_;
  std::atomic<uint32_t> next_stream_{0};
  std::array<uint8_t, kernels::kGpuIpcHandleBytes> ipc_handle_{};
  std::array<uint8_t, kernels::kGpuUuidBytes> uuid_{};
  Status ipc_status_;  // why the pool cannot be exported, OK when it can; set once in Create

  mutable std::mutex mu_;
  ExtentAllocator allocator_;                   // guarded by mu_; includes Puts in flight
  std::unordered_map<TierSlot, Block> blocks_;  // guarded by mu_; committed blocks only
  uint64_t used_bytes_ = 0;                     // guarded by mu_

  std::atomic<uint64_t> puts_{0}, allocation_failures_{0}, reads_{0}, erases_{0};
  std::atomic<uint64_t> copied_in_{0}, copied_out_{0};
  mutable std::atomic<uint64_t> ipc_exports_{0};
};

Result<std::unique_ptr<GpuTier>> GpuTier::Create(const GpuTierOptions& options) {
  KVAULT_RETURN_IF_ERROR(ValidateOptions(options));

  int count = 0;
  const cudaError_t count_err = cudaGetDeviceCount(&count);
  if (count_err != cudaSuccess || count == 0) {
    cudaGetLastError();  // not sticky, but leave the thread's error state clean
    if (count_err == cudaSuccess) return Status::Unavailable("gpu tier: no CUDA device");
    return Status::Unavailable("gpu tier: no CUDA device: " +
                               CudaStatus(count_err, "cudaGetDeviceCount").message());
  }
  if (options.device >= count) {
    return Status::InvalidArgument("gpu tier: device " + std::to_string(options.device) +
                                   " requested, " + std::to_string(count) + " visible");
  }
  KVAULT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "gpu tier: cudaSetDevice"));

  const uint64_t capacity = options.capacity_bytes & ~(options.alignment_bytes - 1);
  void* base = nullptr;
  const cudaError_t malloc_err = cudaMalloc(&base, capacity);
  if (malloc_err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky; clear it for the next call
    return CudaStatus(
        malloc_err, "gpu tier: cudaMalloc of " + std::to_string(capacity) + " bytes for the pool");
  }
  // From here the pool is owned by impl and freed on every return.
  auto impl = std::make_unique<Impl>(options.device, capacity, options.alignment_bytes, base);
  for (uint32_t i = 0; i < options.copy_streams; ++i) {
    KVAULT_RETURN_IF_ERROR(impl->streams_.Add().WithContext("gpu tier"));
  }

  cudaDeviceProp prop{};
  KVAULT_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, options.device),
                                    "gpu tier: cudaGetDeviceProperties"));
  static_assert(sizeof(prop.uuid) == kernels::kGpuUuidBytes);
  std::memcpy(impl->uuid_.data(), &prop.uuid, kernels::kGpuUuidBytes);

  // A platform without CUDA IPC still gets a working tier; only ExportIpc reports why not.
  cudaIpcMemHandle_t handle{};
  static_assert(sizeof(handle) == kernels::kGpuIpcHandleBytes);
  const cudaError_t ipc_err = cudaIpcGetMemHandle(&handle, base);
  if (ipc_err == cudaSuccess) {
    std::memcpy(impl->ipc_handle_.data(), &handle, kernels::kGpuIpcHandleBytes);
  } else {
    cudaGetLastError();
    impl->ipc_status_ =
        Status::Unsupported(CudaStatus(ipc_err, "gpu tier: cudaIpcGetMemHandle").message());
  }
  return std::unique_ptr<GpuTier>(new GpuTier(std::move(impl)));
}

GpuTier::GpuTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuTier::~GpuTier() = default;

int GpuTier::device() const { return impl_->device_; }
uint64_t GpuTier::capacity_bytes() const { return impl_->capacity_; }

TierUsage GpuTier::Usage() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  TierUsage u;
  u.capacity_bytes = impl_->capacity_;
  u.used_bytes = impl_->used_bytes_;
  u.reserved_bytes = impl_->allocator_.allocated_bytes();
  u.blocks = impl_->blocks_.size();
  return u;
}

Result<TierSlot> GpuTier::Put(const ScopedKey& key, std::span<const uint8_t> object) {
  if (object.empty()) return Status::InvalidArgument("gpu tier: empty object");
  if (object.size() > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("gpu tier: object over 4 GiB - 1");
  }
  const auto bytes = static_cast<uint32_t>(object.size());
  uint64_t offset = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    const std::optional<uint64_t> got = impl_->allocator_.Allocate(bytes);
    if (!got) {
      impl_->allocation_failures_.fetch_add(1, std::memory_order_relaxed);
      return Status::ResourceExhausted(
          "gpu tier: no free range for " + std::to_string(bytes) + " bytes (free " +
          std::to_string(impl_->allocator_.free_bytes()) + ", largest free range " +
          std::to_string(impl_->allocator_.largest_free_extent()) + ")");
    }
    offset = *got;
  }
  // The range is reserved but not yet in blocks_, so no Read, Erase or export can see it while
  // the copy runs without the lock.
  const Status copied = impl_->Copy(impl_->pool_.base() + offset, object.data(), bytes,
                                    "gpu tier put: cudaMemcpyAsync");
  std::lock_guard<std::mutex> lock(impl_->mu_);
  if (!copied.ok()) {
    impl_->allocator_.Free(offset, bytes);
    return copied;
  }
  impl_->blocks_.emplace(offset, Impl::Block{key, bytes});
  impl_->used_bytes_ += bytes;
  impl_->puts_.fetch_add(1, std::memory_order_relaxed);
  impl_->copied_in_.fetch_add(bytes, std::memory_order_relaxed);
  return TierSlot{offset};
}

Status GpuTier::Read(const ScopedKey& key, TierSlot slot, uint32_t object_bytes,
                     std::span<uint8_t> out) {
  if (out.size() != object_bytes) {
    return Status::InvalidArgument("gpu tier read: output span is " + std::to_string(out.size()) +
                                   " bytes, the object " + std::to_string(object_bytes));
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    KVAULT_RETURN_IF_ERROR(impl_->FindLocked(key, slot, object_bytes).status());
  }
  // The caller keeps the block from being erased while this Read runs (Tier's contract).
  KVAULT_RETURN_IF_ERROR(impl_->Copy(out.data(), impl_->pool_.base() + slot, object_bytes,
                                     "gpu tier read: cudaMemcpyAsync"));
  impl_->reads_.fetch_add(1, std::memory_order_relaxed);
  impl_->copied_out_.fetch_add(object_bytes, std::memory_order_relaxed);
  return Status::Ok();
}

void GpuTier::Erase(const ScopedKey& key, TierSlot slot, uint32_t /*object_bytes*/) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->blocks_.find(slot);
  if (it == impl_->blocks_.end() || !(it->second.key == key)) return;
  impl_->used_bytes_ -= it->second.bytes;
  impl_->allocator_.Free(slot, it->second.bytes);
  impl_->blocks_.erase(it);
  impl_->erases_.fetch_add(1, std::memory_order_relaxed);
}

void GpuTier::VisitCounters(CounterVisitor& visitor) const {
  constexpr std::string_view kTier = "gpu";
  uint64_t used = 0, reserved = 0, blocks = 0, free_ranges = 0, largest_free = 0;
  double fragmentation = 0.0;
  {
    // A snapshot, so the visitor runs without the lock (it may call back into the tier).
    std::lock_guard<std::mutex> lock(impl_->mu_);
    const ExtentAllocator& a = impl_->allocator_;
    used = impl_->used_bytes_;
    reserved = a.allocated_bytes();
    blocks = impl_->blocks_.size();
    free_ranges = a.free_extents();
    largest_free = a.largest_free_extent();
    fragmentation = a.fragmentation();
  }
  visitor.Gauge(kTier, "capacity_bytes", static_cast<double>(impl_->capacity_));
  visitor.Gauge(kTier, "used_bytes", static_cast<double>(used));
  visitor.Gauge(kTier, "reserved_bytes", static_cast<double>(reserved));
  visitor.Gauge(kTier, "blocks", static_cast<double>(blocks));
  visitor.Gauge(kTier, "free_ranges", static_cast<double>(free_ranges));
  visitor.Gauge(kTier, "largest_free_bytes", static_cast<double>(largest_free));
  visitor.Gauge(kTier, "fragmentation_ratio", fragmentation);
  auto load = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  visitor.Counter(kTier, "puts_total", load(impl_->puts_));
  visitor.Counter(kTier, "allocation_failures_total", load(impl_->allocation_failures_));
  visitor.Counter(kTier, "reads_total", load(impl_->reads_));
  visitor.Counter(kTier, "erases_total", load(impl_->erases_));
  visitor.Counter(kTier, "copied_in_bytes_total", load(impl_->copied_in_));
  visitor.Counter(kTier, "copied_out_bytes_total", load(impl_->copied_out_));
  visitor.Counter(kTier, "ipc_exports_total", load(impl_->ipc_exports_));
}

Result<kernels::GpuIpcExport> GpuTier::ExportIpc(const ScopedKey& key, TierSlot slot,
                                        uint32_t object_bytes) const {
  if (!impl_->ipc_status_.ok()) return impl_->ipc_status_;
  {
    std::lock_guard<std::mutex> lock(impl_->mu_);
    KVAULT_RETURN_IF_ERROR(impl_->FindLocked(key, slot, object_bytes).status());
  }
  kernels::GpuIpcExport e;
  e.pool_handle = impl_->ipc_handle_;
  e.device_uuid = impl_->uuid_;
  e.pool_bytes = impl_->capacity_;
  e.offset = slot;
  e.length = object_bytes;
  impl_->ipc_exports_.fetch_add(1, std::memory_order_relaxed);
  return e;
}

}  // namespace kvault::storage
