#include "config/daemon_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/derived_options.h"
#include "config/value_parsers.h"
#include "kvault/storage/host_tier.h"
#include "kvault/transport/messages.h"

namespace kvault::server {
namespace {

// An input file the daemon will read at start: check now so the error names the key.
Status CheckReadableFile(std::string_view key, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::InvalidArgument(std::string(key) + ": cannot use '" + path +
                                   "': " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(std::string(key) + ": '" + path + "' is not a regular file");
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return Status::InvalidArgument(std::string(key) + ": cannot read '" + path +
                                   "': " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateDaemonConfig(const DaemonConfig& c) {
  if (c.auth.tenants_file.empty() && !IsLoopbackHost(c.control.host)) {
    return Status::InvalidArgument(
        "control.host is " + c.control.host +
        ", which is not a loopback address: without auth.tenants_file kvaultd serves one default "
        "tenant with no token, so it binds only to 127.0.0.1, ::1 or localhost. Set "
        "auth.tenants_file to require tokens (docs/config.md).");
  }
  if (!c.auth.tenants_file.empty()) {
    KVAULT_RETURN_IF_ERROR(CheckReadableFile("auth.tenants_file", c.auth.tenants_file));
  }
  if (c.tls.cert_file.empty() != c.tls.key_file.empty()) {
    return Status::InvalidArgument(
        "tls.cert_file and tls.key_file go together: set both to enable TLS, or neither");
  }
  if (!c.tls.cert_file.empty()) {
    KVAULT_RETURN_IF_ERROR(CheckReadableFile("tls.cert_file", c.tls.cert_file));
    KVAULT_RETURN_IF_ERROR(CheckReadableFile("tls.key_file", c.tls.key_file));
  }
  if (c.control.port != 0 && c.control.port == c.http.port) {
    return Status::InvalidArgument("control.port and http.port are both " +
                                   std::to_string(c.control.port) + "; they need their own ports");
  }
  if (c.storage.nvme_capacity_bytes > 0 && c.data_dir.empty()) {
    return Status::InvalidArgument(
        "data_dir is empty but the nvme tier needs a directory (or set "
        "storage.nvme_capacity to 0)");
  }
  if (c.storage.low_watermark > c.storage.high_watermark) {
    return Status::InvalidArgument(
        "storage.low_watermark (" + FormatRatio(c.storage.low_watermark) +
        ") is above storage.high_watermark (" + FormatRatio(c.storage.high_watermark) + ")");
  }
  if (c.storage.land_on_gpu && c.storage.gpu_capacity_bytes == 0) {
    return Status::InvalidArgument(
        "storage.land_on_gpu needs a gpu tier (storage.gpu_capacity > 0)");
  }
  if (c.storage.land_on_gpu && c.storage.mover_threads == 0) {
    return Status::InvalidArgument(
        "storage.land_on_gpu needs storage.mover_threads > 0 (a mover carries new blocks to the "
        "gpu tier)");
  }
  if (c.storage.gpu_ipc_export && c.storage.gpu_capacity_bytes == 0) {
    return Status::InvalidArgument(
        "storage.gpu_ipc_export needs a gpu tier to export (storage.gpu_capacity > 0)");
  }
  if (c.leases.default_ttl > c.leases.max_ttl) {
    return Status::InvalidArgument("leases.default_ttl (" + FormatDuration(c.leases.default_ttl) +
                                   ") is longer than leases.max_ttl (" +
                                   FormatDuration(c.leases.max_ttl) + ")");
  }
  const uint64_t block = c.limits.max_block_bytes;
  // The host arena holds an object in its size class, up to 12.5% larger.
  if (storage::HostTierClassBytes(block) > c.storage.host_capacity_bytes) {
    return Status::InvalidArgument("limits.max_block_bytes (" + FormatSize(block) + ", held in " +
                                   FormatSize(storage::HostTierClassBytes(block)) +
                                   " of the host arena) is larger than storage.host_capacity (" +
                                   FormatSize(c.storage.host_capacity_bytes) + ")");
  }
  if (c.storage.nvme_capacity_bytes != 0 && block > c.storage.nvme_capacity_bytes) {
    return Status::InvalidArgument("limits.max_block_bytes (" + FormatSize(block) +
                                   ") is larger than storage.nvme_capacity (" +
                                   FormatSize(c.storage.nvme_capacity_bytes) + ")");
  }
  if (block > c.limits.max_inflight_bytes_per_client) {
    return Status::InvalidArgument("limits.max_block_bytes (" + FormatSize(block) +
                                   ") is larger than limits.max_inflight_bytes_per_client (" +
                                   FormatSize(c.limits.max_inflight_bytes_per_client) +
                                   "): no block could ever be moved");
  }
  // A Hello must fit in a frame, or clients with long UCX worker addresses could not say hello.
  const uint64_t hello = transport::MaxBodyBeforeAuth(ProtocolLimitsFor(c));
  if (c.limits.max_frame_bytes < hello) {
    return Status::InvalidArgument("limits.max_frame_bytes (" +
                                   FormatSize(c.limits.max_frame_bytes) +
                                   ") is shorter than the longest Hello (" + std::to_string(hello) +
                                   " bytes): a client with a long UCX worker address could not "
                                   "connect");
  }
  // A full batch of 32-byte keys must fit in one frame, or the key limit can never be reached.
  if (uint64_t{c.limits.max_keys_per_request} * 32 > c.limits.max_frame_bytes) {
    return Status::InvalidArgument("limits.max_keys_per_request (" +
                                   std::to_string(c.limits.max_keys_per_request) +
                                   " keys of 32 bytes) does not fit in limits.max_frame_bytes (" +
                                   FormatSize(c.limits.max_frame_bytes) + ")");
  }
  return Status::Ok();
}

}  // namespace kvault::server
