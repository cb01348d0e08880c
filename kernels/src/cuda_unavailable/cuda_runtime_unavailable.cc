// The CUDA runtime services of a build without nvcc (cuda_runtime.h): every factory and call
// says so; nothing is ever allocated.
#include "kvault/kernels/cuda_runtime.h"

namespace kvault::kernels {
namespace {
Status NoCuda() { return Status::Unsupported("this kvault build has no CUDA support"); }
}  // namespace

DeviceBuffer::DeviceBuffer(DeviceBuffer&&) noexcept = default;
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept = default;
DeviceBuffer::~DeviceBuffer() = default;
Result<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda(); }

HostPinning::HostPinning(HostPinning&&) noexcept = default;
HostPinning& HostPinning::operator=(HostPinning&&) noexcept = default;
HostPinning::~HostPinning() = default;
Result<HostPinning> HostPinning::Pin(void*, size_t) { return NoCuda(); }

CudaStream::CudaStream(CudaStream&&) noexcept = default;
CudaStream& CudaStream::operator=(CudaStream&&) noexcept = default;
CudaStream::~CudaStream() = default;
Result<CudaStream> CudaStream::Create() { return NoCuda(); }
Status CudaStream::Synchronize() const { return NoCuda(); }

CudaEvent::CudaEvent(CudaEvent&&) noexcept = default;
CudaEvent& CudaEvent::operator=(CudaEvent&&) noexcept = default;
CudaEvent::~CudaEvent() = default;
Result<CudaEvent> CudaEvent::Create() { return NoCuda(); }
Status CudaEvent::Record(void*) const { return NoCuda(); }
Status CudaEvent::Synchronize() const { return NoCuda(); }
Status CudaEvent::MakeStreamWait(void*) const { return NoCuda(); }

Status CopyAsync(void*, const void*, size_t, void*) { return NoCuda(); }
Status CopySync(void*, const void*, size_t) { return NoCuda(); }
Result<int> CurrentDevice() { return NoCuda(); }
Status SetDevice(int) { return NoCuda(); }
Result<bool> IsDevicePointer(const void*) { return NoCuda(); }

}  // namespace kvault::kernels
