// ClientConfig::Validate and ParseHostPort (client_config.h).

#include "kvault/client_config.h"

#include <charconv>
#include <string>

namespace kvault {
namespace {

// InvalidArgument naming `field` when `value` is over kMaxClientTimeout.
Status CheckAtMostAYear(std::string_view field, std::chrono::milliseconds value) {
  if (value <= kMaxClientTimeout) return Status::Ok();
  return Status::InvalidArgument("client config: " + std::string(field) + " of " +
                                 std::to_string(value.count()) + " ms is over a year (" +
                                 std::to_string(kMaxClientTimeout.count()) + " ms)");
}

}  // namespace

Result<HostPort> ParseHostPort(std::string_view text) {
  HostPort out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument("server address '" + std::string(text) +
                                     "': expected [IPv6]:PORT");
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::InvalidArgument("server address '" + std::string(text) +
                                     "': expected HOST:PORT");
    }
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return Status::InvalidArgument("server address '" + std::string(text) +
                                     "': write an IPv6 host in brackets, [::1]:PORT");
    }
  }
  if (out.host.empty()) {
    return Status::InvalidArgument("server address '" + std::string(text) + "': empty host");
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return Status::InvalidArgument("server address '" + std::string(text) +
                                   "': port must be a number in 1..65535");
  }
  out.port = static_cast<uint16_t>(value);
  return out;
}

Status ClientConfig::Validate() const {
  if (server.empty()) return Status::InvalidArgument("client config: server is required");
  Result<HostPort> address = ParseHostPort(server);
  if (!address.ok()) return address.status().WithContext("client config");
  if (connect_timeout.count() <= 0) {
    return Status::InvalidArgument("client config: connect_timeout must be positive");
  }
  if (request_timeout.count() <= 0) {
    return Status::InvalidArgument("client config: request_timeout must be positive");
  }
  if (stall_timeout.count() < 0) {
    return Status::InvalidArgument("client config: stall_timeout must be 0 (never) or positive");
  }
  if (reconnect_backoff.count() < 0) {
    return Status::InvalidArgument("client config: reconnect_backoff must not be negative");
  }
  KVAULT_RETURN_IF_ERROR(CheckAtMostAYear("connect_timeout", connect_timeout));
  KVAULT_RETURN_IF_ERROR(CheckAtMostAYear("request_timeout", request_timeout));
  KVAULT_RETURN_IF_ERROR(CheckAtMostAYear("stall_timeout", stall_timeout));
  KVAULT_RETURN_IF_ERROR(CheckAtMostAYear("reconnect_backoff", reconnect_backoff));
  // The protocol's default string limit, under which Hello is encoded (docs/protocol.md §3).
  constexpr size_t kMaxName = 256;
  if (tenant.size() > kMaxName) {
    return Status::InvalidArgument("client config: tenant is over 256 bytes");
  }
  if (client_name.size() > kMaxName) {
    return Status::InvalidArgument("client config: client_name is over 256 bytes");
  }
  // A pool no machine could allocate would only turn staging off, silently, on first use.
  constexpr uint64_t kMaxStagingBytes = uint64_t{1} << 40;
  if (registered_staging_bytes > kMaxStagingBytes) {
    return Status::InvalidArgument("client config: registered_staging_bytes " +
                                   std::to_string(registered_staging_bytes) +
                                   " is over 1 TiB (0 turns staging off)");
  }
  if (!tls && (!tls_ca_file.empty() || !tls_server_name.empty())) {
    return Status::InvalidArgument(
        "client config: tls_ca_file and tls_server_name need tls = true");
  }
  return Status::Ok();
}

}  // namespace kvault
