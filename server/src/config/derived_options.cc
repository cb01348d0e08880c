#include "config/derived_options.h"

#include <filesystem>

namespace kvault::server {

storage::BlockStoreOptions StoreOptionsFor(const DaemonConfig& config) {
  const StorageConfig& s = config.storage;
  storage::BlockStoreOptions out;
  out.policy = s.policy;
  out.nvme_policy = s.nvme_policy;
  out.land_on_gpu = s.land_on_gpu;
  out.promote_on_hit = s.promote_on_hit;
  out.high_watermark = s.high_watermark;
  out.low_watermark = s.low_watermark;
  out.mover_threads = static_cast<int>(s.mover_threads);
  // The option table bounds max_block_bytes to what a u32 holds.
  out.max_object_bytes = static_cast<uint32_t>(config.limits.max_block_bytes);
  out.max_lease_ttl = config.leases.max_ttl;
  return out;
}

transport::ProtocolLimits ProtocolLimitsFor(const DaemonConfig& config) {
  transport::ProtocolLimits out;
  // The option table bounds these to the protocol's floors and ceilings.
  out.max_body_bytes = static_cast<uint32_t>(config.limits.max_frame_bytes);
  out.max_keys_per_batch = config.limits.max_keys_per_request;
  out.max_block_object_bytes = config.limits.max_block_bytes;
  return out;
}

DataPlaneChoice ChooseDataPlanes(const DaemonConfig& config) {
  DataPlaneChoice choice;
  const std::string& mode = config.data_plane.process_memory;
  const bool automatic = mode == "auto" && !config.auth.tenants_file.empty();
  choice.process_memory = mode == "on" || automatic;
  choice.ucx_transports = config.ucx.transports;
  if (automatic && choice.ucx_transports.empty()) choice.ucx_transports = "^shm";
  if (choice.process_memory && !config.data_plane.memory_socket.empty()) {
    const std::filesystem::path socket(config.data_plane.memory_socket);
    std::error_code ec;
    const std::filesystem::path absolute = std::filesystem::absolute(socket, ec);
    choice.memory_socket = (ec ? socket : absolute).lexically_normal().string();
  }
  return choice;
}

}  // namespace kvault::server
