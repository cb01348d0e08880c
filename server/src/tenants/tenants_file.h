#pragma once
// The tenants file of kvaultd (docs/config.md): which tenants may connect, the SHA-256 of each
// one's token, and each one's storage quota.
//
//   tenants:
//     - name: team-a            # 1-64 of [A-Za-z0-9._-]
//       token_sha256: 9f86...   # 64 hex digits: printf %s "$TOKEN" | sha256sum
//       quota_bytes: 100GiB     # 0 = no quota
//       id: 17                  # optional, 1..4294967294; default DerivedTenantId(name)
//       store_stats: true       # optional, default false: Stats shows the store-wide counters
//
// Parsing checks each entry on its own; TenantRegistry::Create checks the entries against each
// other (duplicate names, ids, tokens). Errors name the file, line, tenant and field, never a hash
// or a token. Pure functions apart from reading the file; thread-safe.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/common/result.h"
#include "kvault/storage/scoped_key.h"

namespace kvault::server {

struct TenantSpec {
  std::string name;
  std::optional<storage::TenantId> id;  // nullopt: DerivedTenantId(name)
  AuthDigest token_sha256{};
  uint64_t quota_bytes = 0;  // 0 = no quota
  // Stats shows it the store-wide counters and tier usage, which reflect every tenant's activity
  // (an operator's tenant); otherwise only its own usage and the daemon's state.
  bool store_stats = false;
  std::string where;  // "<file>:<line>" of the entry, for errors
};

// Parses a tenants document. InvalidArgument for bad YAML, a missing or empty `tenants` list, an
// unknown key, a missing name / token_sha256 / quota_bytes, a bad name, a hash that is not 64 hex
// digits or is the hash of the empty token, a bad quota or id (0 is reserved for the default
// tenant, 4294967295 for the nvme tier: storage::kNvmeReservedTenant). `source` names the
// document in errors.
Result<std::vector<TenantSpec>> ParseTenantsYaml(const std::string& text, std::string_view source);

// ReadYamlFile + ParseTenantsYaml. Logs one warning (naming the file and its mode only) when
// group or others may read or write the file, which should be mode 0600.
Result<std::vector<TenantSpec>> LoadTenantsFile(const std::string& path);

// The storage id of a tenant without an explicit id: the first 4 bytes (little-endian) of
// SHA-256("kvault-tenant-id-v1" || name), never 0 (the default tenant's; 1 instead) nor
// 4294967295 (storage::kNvmeReservedTenant; 4294967294 instead). Stable across restarts and
// reorderings of the file, so blocks persisted in the nvme tier stay with the tenant that wrote
// them.
storage::TenantId DerivedTenantId(std::string_view name);

}  // namespace kvault::server
