// CUDA IPC import in a build without CUDA (gpu_ipc.h): Create reports Unsupported, so no
// GpuIpcImporter is ever constructed; the members exist so that code using them links.

#include <utility>

#include "kvault/kernels/gpu_ipc.h"

namespace kvault::kernels {
namespace {

Status NoCuda() { return Status::Unsupported("this kvault build has no CUDA support"); }

}  // namespace

class GpuIpcImporter::Impl {};

Result<std::unique_ptr<GpuIpcImporter>> GpuIpcImporter::Create() { return NoCuda(); }

GpuIpcImporter::GpuIpcImporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuIpcImporter::~GpuIpcImporter() = default;

Result<const void*> GpuIpcImporter::Map(const GpuIpcExport& /*block*/) { return NoCuda(); }

Status GpuIpcImporter::CopyToHost(const GpuIpcExport& /*block*/, std::span<uint8_t> /*out*/) {
  return NoCuda();
}

Result<int> GpuIpcImporter::LocalDevice(const GpuIpcExport& /*block*/) const { return NoCuda(); }

size_t GpuIpcImporter::open_pools() const { return 0; }

}  // namespace kvault::kernels
