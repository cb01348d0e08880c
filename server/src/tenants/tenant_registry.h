#pragma once
// TenantRegistry: the tenants kvaultd serves, by name and by storage id (DESIGN.md §4, §8, §14).
// A connection's tenant comes only from its authenticated hello; storage keys are scoped by the
// tenant's id, so two tenants never see each other's blocks.
//
//   Multi-tenant mode (auth.tenants_file set): tenants from the file; a hello must name one and
//   prove its token (kvault/common/auth.h).
//   Single-tenant mode (no file): one tenant "default" with id 0 and no token; every hello is that
//   tenant. The config refuses this mode on a non-loopback control address.
//
// Holds token hashes (credentials for this protocol), so it prints none of them: there is no
// ToString, and no error or log line built here contains a hash.
// Thread-safety: immutable after Create; all const methods may be called concurrently.

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/auth.h"
#include "kvault/common/result.h"
#include "kvault/storage/scoped_key.h"
#include "tenants/tenants_file.h"

namespace kvault::server {

struct Tenant {
  std::string name;
  storage::TenantId id = 0;
  // SHA-256 of the token; nullopt only for the default tenant of single-tenant mode.
  std::optional<AuthDigest> token_hash;
  uint64_t quota_bytes = 0;  // 0 = no quota
  // Stats shows it the store-wide counters and tier usage (TenantSpec::store_stats); always for
  // the default tenant of single-tenant mode.
  bool store_stats = false;
};

class TenantRegistry {
 public:
  static constexpr std::string_view kDefaultTenantName = "default";
  static constexpr storage::TenantId kDefaultTenantId = 0;

  // Single-tenant mode.
  static TenantRegistry SingleTenant();

  // Multi-tenant mode over `specs` (at least one). InvalidArgument naming the entries for a
  // duplicate name, a duplicate id (explicit, or derived ids that collide: give one an explicit
  // id), a reserved id (0, storage::kNvmeReservedTenant), or two tenants with the same token.
  static Result<TenantRegistry> Create(std::vector<TenantSpec> specs);

  // The registry for config key auth.tenants_file: SingleTenant() when `tenants_file` is empty,
  // else LoadTenantsFile + Create.
  static Result<TenantRegistry> Load(const std::string& tenants_file);

  bool single_tenant() const { return single_tenant_; }
  size_t size() const { return tenants_.size(); }
  const std::vector<Tenant>& tenants() const { return tenants_; }

  // nullptr when absent. The pointers stay valid as long as the registry.
  const Tenant* Find(std::string_view name) const;
  const Tenant* FindById(storage::TenantId id) const;

  // Checks a hello: `proof` must be AuthProof(token hash of tenant `name`, nonce) for the nonce
  // the server issued. Returns the tenant, or nullptr for an unknown name or a wrong proof alike
  // (the same work is done either way, so the answer does not reveal which tenants exist). In
  // single-tenant mode returns the default tenant for any hello.
  const Tenant* Authenticate(std::string_view name, std::span<const uint8_t> nonce,
                             std::span<const uint8_t> proof) const;

 private:
  TenantRegistry() = default;
  bool single_tenant_ = false;
  std::vector<Tenant> tenants_;
};

}  // namespace kvault::server
