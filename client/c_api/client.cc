// The C ABI of kvault::Client (kvault.h "Client", "Registered memory", "Lookup and leases"):
// connect, memory, lookup, leases, delete, ping.

#include <functional>

#include "internal.h"

namespace kvault::c_api {
namespace {

// The ClientConfig a kvault_config describes. InvalidArgument for what ClientConfig::Validate
// cannot see: a wrong struct_size, a null server. (Validate refuses the rest, timeouts over a
// year included.)
Result<ClientConfig> ToClientConfig(const kvault_config& c) {
  KVAULT_RETURN_IF_ERROR(
      CheckStructSize("kvault_connect", "config", c.struct_size, sizeof(kvault_config)));
  if (c.server == nullptr) return Null("kvault_connect", "config->server");
  ClientConfig config;
  config.server = c.server;
  config.tenant = Str(c.tenant);
  config.token = Str(c.token);
  config.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);
  config.request_timeout = std::chrono::milliseconds(c.request_timeout_ms);
  config.stall_timeout = std::chrono::milliseconds(c.stall_timeout_ms);
  config.reconnect_backoff = std::chrono::milliseconds(c.reconnect_backoff_ms);
  config.data_plane = c.data_plane != 0;
  config.ucx_transports = Str(c.ucx_transports);
  config.client_name = Str(c.client_name);
  config.tls = c.tls != 0;
  config.tls_ca_file = Str(c.tls_ca_file);
  config.tls_server_name = Str(c.tls_server_name);
  config.registered_staging_bytes = c.registered_staging_bytes;
  return config;
}

Status Register(const char* function, kvault_client* client, kvault_region** region,
                const std::function<Result<MemoryRegion>(Client&)>& make) {
  if (region == nullptr) return Null(function, "region");
  *region = nullptr;
  if (client == nullptr) return Null(function, "client");
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion made, make(*client->client));
  *region = NewHandle<kvault_region>(std::move(made));
  return Status::Ok();
}

}  // namespace
}  // namespace kvault::c_api

using kvault::Status;
using namespace kvault::c_api;  // NOLINT(google-build-using-namespace): this file's own helpers

extern "C" {

void kvault_config_init(kvault_config* config) noexcept {
  if (config == nullptr) return;
  const kvault::ClientConfig defaults;
  *config = kvault_config{};
  config->struct_size = sizeof(kvault_config);
  config->connect_timeout_ms = defaults.connect_timeout.count();
  config->request_timeout_ms = defaults.request_timeout.count();
  config->stall_timeout_ms = defaults.stall_timeout.count();
  config->reconnect_backoff_ms = defaults.reconnect_backoff.count();
  config->data_plane = defaults.data_plane ? 1 : 0;
  config->client_name = "libkvault";
  config->tls = defaults.tls ? 1 : 0;
  config->registered_staging_bytes = defaults.registered_staging_bytes;
}

kvault_status kvault_connect(const kvault_config* config, kvault_client** client) noexcept {
  return Guard("kvault_connect", [&]() -> Status {
    if (client == nullptr) return Null("kvault_connect", "client");
    *client = nullptr;
    if (config == nullptr) return Null("kvault_connect", "config");
    KVAULT_ASSIGN_OR_RETURN(kvault::ClientConfig cpp, ToClientConfig(*config));
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<kvault::Client> connected,
                            kvault::Client::Connect(cpp));
    *client = NewHandle<kvault_client>(std::move(connected));
    return Status::Ok();
  });
}

void kvault_close(kvault_client* client) noexcept { DeleteHandle(client); }

int kvault_connected(const kvault_client* client) noexcept {
  return GuardValue(0, [&] { return client != nullptr && client->client->connected() ? 1 : 0; });
}

kvault_status kvault_ping(kvault_client* client, int64_t timeout_ms, uint64_t* rtt_ns) noexcept {
  return Guard("kvault_ping", [&]() -> Status {
    if (client == nullptr) return Null("kvault_ping", "client");
    KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                            RequestDeadline("kvault_ping", timeout_ms));
    KVAULT_ASSIGN_OR_RETURN(std::chrono::nanoseconds rtt, client->client->Ping(deadline));
    if (rtt_ns != nullptr) *rtt_ns = static_cast<uint64_t>(rtt.count());
    return Status::Ok();
  });
}

kvault_status kvault_register_memory(kvault_client* client, void* ptr, size_t len,
                                     kvault_region** region) noexcept {
  return Guard("kvault_register_memory", [&]() -> Status {
    return Register("kvault_register_memory", client, region,
                    [&](kvault::Client& c) { return c.RegisterMemory(ptr, len); });
  });
}

kvault_status kvault_allocate_memory(kvault_client* client, size_t len,
                                     kvault_region** region) noexcept {
  return Guard("kvault_allocate_memory", [&]() -> Status {
    return Register("kvault_allocate_memory", client, region,
                    [&](kvault::Client& c) { return c.AllocateMemory(len); });
  });
}

uint8_t* kvault_region_data(const kvault_region* region) noexcept {
  return region != nullptr ? region->region.data() : nullptr;
}

size_t kvault_region_size(const kvault_region* region) noexcept {
  return region != nullptr ? region->region.size() : 0;
}

void kvault_region_free(kvault_region* region) noexcept { DeleteHandle(region); }

kvault_status kvault_lookup_prefix(kvault_client* client, const kvault_key* keys, size_t num_keys,
                                   int64_t lease_ttl_ms, int64_t timeout_ms, uint32_t* leading_hits,
                                   uint8_t* tiers, kvault_lease* lease) noexcept {
  // A failure is a full miss: the outputs say so before anything can fail.
  // (A count past kMaxRequestKeys is refused before `tiers` is touched.)
  if (leading_hits != nullptr) *leading_hits = 0;
  if (tiers != nullptr && num_keys > 0 && num_keys <= kMaxRequestKeys) {
    std::memset(tiers, KVAULT_TIER_NONE, num_keys);
  }
  if (lease != nullptr) *lease = kvault_lease{};
  return Guard("kvault_lookup_prefix", [&]() -> Status {
    constexpr const char* kFn = "kvault_lookup_prefix";
    if (client == nullptr) return Null(kFn, "client");
    if (keys == nullptr && num_keys > 0) return Null(kFn, "keys");
    if (leading_hits == nullptr) return Null(kFn, "leading_hits");
    KVAULT_RETURN_IF_ERROR(CheckCount(kFn, "num_keys", num_keys, kMaxRequestKeys));
    if (lease_ttl_ms < 0 || lease_ttl_ms > kMaxTimeoutMs) {
      return Status::InvalidArgument("kvault_lookup_prefix: lease_ttl_ms " +
                                     std::to_string(lease_ttl_ms) + " is negative or over a year");
    }
    KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                            RequestDeadline(kFn, timeout_ms));
    kvault::LookupOptions options;
    options.want_lease = lease != nullptr;
    options.lease_ttl = std::chrono::milliseconds(lease_ttl_ms);
    options.deadline = deadline;
    const std::vector<kvault::BlockKey> cpp_keys = CopyKeys(keys, num_keys);
    kvault::LookupResult hit = client->client->LookupPrefix(cpp_keys, options);
    if (!hit.status.ok()) return hit.status;
    *leading_hits = hit.leading_hits;
    if (tiers != nullptr) {
      for (size_t i = 0; i < num_keys && i < hit.tiers.size(); ++i) {
        tiers[i] = static_cast<uint8_t>(hit.tiers[i]);
      }
    }
    if (lease != nullptr) *lease = ToC(hit.lease);
    return Status::Ok();
  });
}

kvault_status kvault_release_lease(kvault_client* client, const kvault_lease* lease,
                                   int64_t timeout_ms) noexcept {
  return Guard("kvault_release_lease", [&]() -> Status {
    if (client == nullptr) return Null("kvault_release_lease", "client");
    if (lease == nullptr) return Null("kvault_release_lease", "lease");
    KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                            RequestDeadline("kvault_release_lease", timeout_ms));
    return client->client->ReleaseLease(FromC(*lease), deadline);
  });
}

kvault_status kvault_delete(kvault_client* client, const kvault_key* keys, size_t num_keys,
                            int64_t timeout_ms, kvault_status* key_status) noexcept {
  return Guard("kvault_delete", [&]() -> Status {
    if (client == nullptr) return Null("kvault_delete", "client");
    if (keys == nullptr && num_keys > 0) return Null("kvault_delete", "keys");
    KVAULT_RETURN_IF_ERROR(CheckCount("kvault_delete", "num_keys", num_keys, kMaxRequestKeys));
    KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                            RequestDeadline("kvault_delete", timeout_ms));
    KVAULT_ASSIGN_OR_RETURN(std::vector<Status> statuses,
                            client->client->Delete(CopyKeys(keys, num_keys), deadline));
    if (key_status != nullptr) {
      for (size_t i = 0; i < num_keys && i < statuses.size(); ++i) {
        key_status[i] = static_cast<kvault_status>(statuses[i].code());
      }
    }
    return Status::Ok();
  });
}

}  // extern "C"
