// Service::OnGpuExport (service.h): CUDA IPC descriptions of leased gpu-tier blocks for a client
// on this host (docs/block_messages.md §4.3, GpuExport). Nothing moves here: the client maps the
// pool and copies the bytes itself, so the lease, not a pin, is what keeps them in place meanwhile.

#include <optional>
#include <string>
#include <string_view>

#include "core/service.h"
#include "metrics/metrics.h"

namespace kvault::server {
namespace {

using transport::Message;
using transport::WireStatus;

transport::GpuExportEntry ToWire(const kernels::GpuIpcExport& block) {
  transport::GpuExportEntry e;
  e.status = WireStatus::kOk;
  static_assert(sizeof(e.pool_handle) == sizeof(block.pool_handle));
  static_assert(sizeof(e.device_uuid) == sizeof(block.device_uuid));
  e.pool_handle = block.pool_handle;
  e.device_uuid = block.device_uuid;
  e.pool_bytes = block.pool_bytes;
  e.offset = block.offset;
  e.length = block.length;
  return e;
}

}  // namespace

Message Service::OnGpuExport(Session& session, const transport::GpuExport& request) {
  transport::GpuExportReply reply;
  // The whole request fails the same way: one status per key, the reason once.
  const auto every_key = [&](WireStatus status, std::string_view why) -> Message {
    reply.entries.assign(request.keys.size(), transport::GpuExportEntry{status});
    reply.message = ReplyText(why);
    return reply;
  };
  // As with ReleaseLease, another session's lease is treated as unknown: a client cannot learn
  // whether a lease id exists elsewhere, let alone use it.
  if (!session.leases.contains(request.lease_id)) {
    return every_key(WireStatus::kLeaseExpired,
                     "lease " + std::to_string(request.lease_id) +
                         " is not a live lease of this session (released, expired or unknown)");
  }
  if (!options_.gpu_ipc_export) {
    if (metrics_ != nullptr) metrics_->CountRejected(RejectReason::kUnsupported);
    return every_key(WireStatus::kUnsupported,
                     "this daemon does not export its gpu tier (storage.gpu_ipc_export is off)");
  }
  const storage::TenantId tenant = session.tenant->id;
  reply.entries.reserve(request.keys.size());
  for (const BlockKey& key : request.keys) {
    Result<std::optional<kernels::GpuIpcExport>> exported =
        store_.ExportGpu(tenant, key, request.lease_id);
    if (exported.ok()) {
      reply.entries.push_back(exported->has_value()
                                  ? ToWire(**exported)
                                  : transport::GpuExportEntry{WireStatus::kNotFound});
      continue;
    }
    // The store's only NotFound is a lease that expired since the Lookup.
    const Status& failed = exported.status();
    const bool expired = failed.code() == StatusCode::kNotFound;
    reply.entries.push_back(transport::GpuExportEntry{
        expired ? WireStatus::kLeaseExpired : transport::ToWireStatus(failed.code())});
    if (reply.message.empty()) {
      reply.message =
          ReplyText(expired ? "lease " + std::to_string(request.lease_id) + " has expired"
                            : failed.message());
    }
  }
  return reply;
}

}  // namespace kvault::server
