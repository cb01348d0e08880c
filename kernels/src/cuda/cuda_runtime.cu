// CUDA runtime services for the client's GPU pipelines (cuda_runtime.h).
#include <cuda_runtime.h>

#include <utility>

#include "cuda/cuda_status.cuh"
#include "kvault/kernels/cuda_runtime.h"

namespace kvault::kernels {

using cuda_detail::CudaStatus;

namespace {
cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }
cudaEvent_t AsEvent(void* event) { return static_cast<cudaEvent_t>(event); }
}  // namespace

// --- DeviceBuffer ---

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer buffer;
  void* p = nullptr;
  KVAULT_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc"));
  buffer.data_ = static_cast<uint8_t*>(p);
  buffer.size_ = bytes;
  return Result<DeviceBuffer>(std::move(buffer));  // explicit: nvcc does not move into Result
}

// --- HostPinning ---

HostPinning::HostPinning(HostPinning&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}

HostPinning& HostPinning::operator=(HostPinning&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaHostUnregister(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
  }
  return *this;
}

HostPinning::~HostPinning() {
  if (ptr_ != nullptr) cudaHostUnregister(ptr_);
}

Result<HostPinning> HostPinning::Pin(void* ptr, size_t bytes) {
  if (ptr == nullptr || bytes == 0) return Status::InvalidArgument("pinning: empty range");
  KVAULT_RETURN_IF_ERROR(
      CudaStatus(cudaHostRegister(ptr, bytes, cudaHostRegisterPortable), "cudaHostRegister"));
  HostPinning pinning;
  pinning.ptr_ = ptr;
  return Result<HostPinning>(std::move(pinning));  // explicit: nvcc does not move into Result
}

// --- CudaStream ---

CudaStream::CudaStream(CudaStream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)) {}

CudaStream& CudaStream::operator=(CudaStream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(AsStream(stream_));
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

CudaStream::~CudaStream() {
  if (stream_ != nullptr) cudaStreamDestroy(AsStream(stream_));
}

Result<CudaStream> CudaStream::Create() {
  cudaStream_t s = nullptr;
  KVAULT_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
  CudaStream stream;
  stream.stream_ = s;
  return Result<CudaStream>(std::move(stream));  // explicit: nvcc does not move into Result
}

Status CudaStream::Synchronize() const {
  return CudaStatus(cudaStreamSynchronize(AsStream(stream_)), "cudaStreamSynchronize");
}

// --- CudaEvent ---

CudaEvent::CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

CudaEvent& CudaEvent::operator=(CudaEvent&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) cudaEventDestroy(AsEvent(event_));
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

CudaEvent::~CudaEvent() {
  if (event_ != nullptr) cudaEventDestroy(AsEvent(event_));
}

Result<CudaEvent> CudaEvent::Create() {
  cudaEvent_t e = nullptr;
  KVAULT_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"));
  CudaEvent event;
  event.event_ = e;
  return Result<CudaEvent>(std::move(event));  // explicit: nvcc does not move into Result
}

Status CudaEvent::Record(void* stream) const {
  return CudaStatus(cudaEventRecord(AsEvent(event_), AsStream(stream)), "cudaEventRecord");
}

Status CudaEvent::Synchronize() const {
  return CudaStatus(cudaEventSynchronize(AsEvent(event_)), "cudaEventSynchronize");
}

Status CudaEvent::MakeStreamWait(void* stream) const {
  return CudaStatus(cudaStreamWaitEvent(AsStream(stream), AsEvent(event_), 0),
                    "cudaStreamWaitEvent");
}

// --- copies ---

Status CopyAsync(void* dst, const void* src, size_t bytes, void* stream) {
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, AsStream(stream)),
                    "cudaMemcpyAsync");
}

Status CopySync(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
}

Result<int> CurrentDevice() {
  int device = 0;
  KVAULT_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  return device;
}

Status SetDevice(int device) { return CudaStatus(cudaSetDevice(device), "cudaSetDevice"); }

Result<bool> IsDevicePointer(const void* ptr) {
  cudaPointerAttributes attributes{};
  const cudaError_t err = cudaPointerGetAttributes(&attributes, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the non-sticky error
    return CudaStatus(err, "cudaPointerGetAttributes");
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

}  // namespace kvault::kernels
