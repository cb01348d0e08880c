#pragma once
// The few CUDA runtime services the client's GPU pipelines need (DESIGN.md §9): device buffers,
// page-locking of host memory, streams, events and asynchronous copies. Host-only header: no CUDA
// types; streams and events are passed as `void*` (cudaStream_t, cudaEvent_t). In a build without
// CUDA every factory returns Unsupported and every call Unsupported, so code above compiles once.
// CUDA errors become Status through CudaErrorStatus (cuda_status.h).
//
// Thread-safety: the objects are thread-compatible; the free functions are thread-safe.

#include <cstddef>
#include <cstdint>

#include "kvault/common/result.h"

namespace kvault::kernels {

// Device memory from cudaMalloc on the current device. Move-only; freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();
  // ResourceExhausted when the device is out of memory; Unavailable without a device.
  static Result<DeviceBuffer> Allocate(size_t bytes);
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Page-locks caller-owned host memory [ptr, ptr + bytes) for asynchronous copies
// (cudaHostRegister, portable to every device). Move-only; unlocks on destruction. The memory
// must outlive the pinning.
class HostPinning {
 public:
  HostPinning() = default;
  HostPinning(HostPinning&& other) noexcept;
  HostPinning& operator=(HostPinning&& other) noexcept;
  ~HostPinning();
  static Result<HostPinning> Pin(void* ptr, size_t bytes);

 private:
  void* ptr_ = nullptr;
};

// A non-blocking stream of its own. Move-only.
class CudaStream {
 public:
  CudaStream() = default;
  CudaStream(CudaStream&& other) noexcept;
  CudaStream& operator=(CudaStream&& other) noexcept;
  ~CudaStream();
  static Result<CudaStream> Create();
  void* handle() const { return stream_; }
  Status Synchronize() const;

 private:
  void* stream_ = nullptr;
};

// An event without timing. Move-only.
class CudaEvent {
 public:
  CudaEvent() = default;
  CudaEvent(CudaEvent&& other) noexcept;
  CudaEvent& operator=(CudaEvent&& other) noexcept;
  ~CudaEvent();
  static Result<CudaEvent> Create();
  void* handle() const { return event_; }
  // Records the event on `stream` (nullptr: the legacy default stream).
  Status Record(void* stream) const;
  // Blocks the calling thread until the recorded work is done.
  Status Synchronize() const;
  // Makes `stream` wait for the recorded work without blocking the host.
  Status MakeStreamWait(void* stream) const;

 private:
  void* event_ = nullptr;
};

// cudaMemcpyAsync with the direction inferred from the pointers (unified addressing).
Status CopyAsync(void* dst, const void* src, size_t bytes, void* stream);
// cudaMemcpy (synchronous), for small tables.
Status CopySync(void* dst, const void* src, size_t bytes);
// The calling thread's current device, and setting it (a thread that did not choose one uses
// device 0).
Result<int> CurrentDevice();
Status SetDevice(int device);
// True when `ptr` is device (or managed) memory of the current context. False for host memory,
// including pinned host memory. Unsupported without CUDA.
Result<bool> IsDevicePointer(const void* ptr);

}  // namespace kvault::kernels
