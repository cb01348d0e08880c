#include "kvault/kernels/gpu_ipc.h"

#include <cuda_runtime.h>

#include <array>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cuda_status.cuh"

namespace kvault::kernels {

using cuda_detail::CudaStatus;

class GpuIpcImporter::Impl {
 public:
  struct Pool {
    int device = 0;
    uint8_t* base = nullptr;
    uint64_t bytes = 0;
  };
  struct Mapped {
    int device = 0;
    uint8_t* ptr = nullptr;
  };

  explicit Impl(std::vector<std::array<uint8_t, kGpuUuidBytes>> uuids) : uuids_(std::move(uuids)) {}
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    for (auto& [handle, pool] : pools_) {
      cudaSetDevice(pool.device);
      cudaIpcCloseMemHandle(pool.base);
    }
  }

  Result<Mapped> Map(const GpuIpcExport& block) {
    if (block.length == 0) return Status::InvalidArgument("gpu ipc: empty block");
    if (block.offset > block.pool_bytes || block.length > block.pool_bytes - block.offset) {
      return Status::InvalidArgument("gpu ipc: block [" + std::to_string(block.offset) + ", +" +
                                     std::to_string(block.length) + ") is outside the pool of " +
                                     std::to_string(block.pool_bytes) + " bytes");
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pools_.find(block.pool_handle);
    if (it == pools_.end()) {
      KVAULT_ASSIGN_OR_RETURN(Pool pool, Open(block));
      it = pools_.emplace(block.pool_handle, pool).first;
    } else if (it->second.bytes != block.pool_bytes) {
      return Status::InvalidArgument("gpu ipc: pool size " + std::to_string(block.pool_bytes) +
                                     " differs from the " + std::to_string(it->second.bytes) +
                                     " bytes this pool was opened with");
    }
    return Mapped{it->second.device, it->second.base + block.offset};
  }

  size_t open_pools() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pools_.size();
  }

  Result<int> LocalDevice(const GpuIpcExport& block) const {
    for (size_t i = 0; i < uuids_.size(); ++i) {
      if (uuids_[i] == block.device_uuid) return static_cast<int>(i);
    }
    return Status::Unavailable("gpu ipc: the exporting GPU is not visible to this process");
  }

 private:
  // Opens the pool on the local device with the exporter's UUID. Requires mu_.
  Result<Pool> Open(const GpuIpcExport& block) {
    KVAULT_ASSIGN_OR_RETURN(const int device, LocalDevice(block));
    KVAULT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "gpu ipc: cudaSetDevice"));
    cudaIpcMemHandle_t handle;
    static_assert(sizeof(handle) == kGpuIpcHandleBytes);
    std::memcpy(&handle, block.pool_handle.data(), kGpuIpcHandleBytes);
    void* base = nullptr;
    const cudaError_t err = cudaIpcOpenMemHandle(&base, handle, cudaIpcMemLazyEnablePeerAccess);
    if (err != cudaSuccess) {
      cudaGetLastError();  // a refused handle leaves the context usable; clear the error
      return CudaStatus(err, "gpu ipc: cudaIpcOpenMemHandle");
    }
    return Pool{device, static_cast<uint8_t*>(base), block.pool_bytes};
  }

  const std::vector<std::array<uint8_t, kGpuUuidBytes>> uuids_;  // by local device ordinal
  mutable std::mutex mu_;
  std::map<std::array<uint8_t, kGpuIpcHandleBytes>, Pool> pools_;  // guarded by mu_
};

Result<std::unique_ptr<GpuIpcImporter>> GpuIpcImporter::Create() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    if (err == cudaSuccess) return Status::Unavailable("gpu ipc: no CUDA device");
    return Status::Unavailable("gpu ipc: no CUDA device: " +
                               CudaStatus(err, "cudaGetDeviceCount").message());
  }
  std::vector<std::array<uint8_t, kGpuUuidBytes>> uuids(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    KVAULT_RETURN_IF_ERROR(
        CudaStatus(cudaGetDeviceProperties(&prop, i), "gpu ipc: cudaGetDeviceProperties"));
    static_assert(sizeof(prop.uuid) == kGpuUuidBytes);
    std::memcpy(uuids[i].data(), &prop.uuid, kGpuUuidBytes);
  }
  return std::unique_ptr<GpuIpcImporter>(
      new GpuIpcImporter(std::make_unique<Impl>(std::move(uuids))));
}

GpuIpcImporter::GpuIpcImporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuIpcImporter::~GpuIpcImporter() = default;

Result<const void*> GpuIpcImporter::Map(const GpuIpcExport& block) {
  KVAULT_ASSIGN_OR_RETURN(Impl::Mapped mapped, impl_->Map(block));
  return static_cast<const void*>(mapped.ptr);
}

Status GpuIpcImporter::CopyToHost(const GpuIpcExport& block, std::span<uint8_t> out) {
  if (out.size() != block.length) {
    return Status::InvalidArgument("gpu ipc: output span is " + std::to_string(out.size()) +
                                   " bytes, the block " + std::to_string(block.length));
  }
  KVAULT_ASSIGN_OR_RETURN(Impl::Mapped mapped, impl_->Map(block));
  KVAULT_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(mapped.device), "gpu ipc: cudaSetDevice"));
  return CudaStatus(cudaMemcpy(out.data(), mapped.ptr, block.length, cudaMemcpyDeviceToHost),
                    "gpu ipc: cudaMemcpy D2H");
}

Result<int> GpuIpcImporter::LocalDevice(const GpuIpcExport& block) const {
  return impl_->LocalDevice(block);
}

size_t GpuIpcImporter::open_pools() const { return impl_->open_pools(); }

}  // namespace kvault::kernels
