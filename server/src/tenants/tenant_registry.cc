#include "tenants/tenant_registry.h"

#include <map>

#include "kvault/storage/nvme_tier.h"

namespace kvault::server {

TenantRegistry TenantRegistry::SingleTenant() {
  TenantRegistry r;
  r.single_tenant_ = true;
  r.tenants_.push_back(Tenant{std::string(kDefaultTenantName), kDefaultTenantId, std::nullopt, 0,
                              /*store_stats=*/true});
  return r;
}

Result<TenantRegistry> TenantRegistry::Create(std::vector<TenantSpec> specs) {
  if (specs.empty())
    return Status::InvalidArgument("tenants: no tenants, so no client could connect");
  std::map<std::string, const TenantSpec*> by_name;
  std::map<storage::TenantId, const TenantSpec*> by_id;
  std::map<AuthDigest, const TenantSpec*> by_hash;
  for (const TenantSpec& spec : specs) {
    if (auto [it, fresh] = by_name.emplace(spec.name, &spec); !fresh) {
      return Status::InvalidArgument(spec.where + ": tenant '" + spec.name +
                                     "' is already defined at " + it->second->where);
    }
    const storage::TenantId id = spec.id ? *spec.id : DerivedTenantId(spec.name);
    if (id == kDefaultTenantId) {
      return Status::InvalidArgument(spec.where + ": tenant '" + spec.name +
                                     "': id 0 is reserved for the default tenant");
    }
    if (id == storage::kNvmeReservedTenant) {
      return Status::InvalidArgument(spec.where + ": tenant '" + spec.name + "': id " +
                                     std::to_string(id) +
                                     " is reserved (the nvme tier cannot store blocks of that "
                                     "tenant)");
    }
    if (auto [it, fresh] = by_id.emplace(id, &spec); !fresh) {
      return Status::InvalidArgument(spec.where + ": tenant '" + spec.name + "' has the same id " +
                                     std::to_string(id) + " as tenant '" + it->second->name +
                                     "' (" + it->second->where +
                                     "); give one of them an explicit id");
    }
    if (auto [it, fresh] = by_hash.emplace(spec.token_sha256, &spec); !fresh) {
      return Status::InvalidArgument(spec.where + ": tenant '" + spec.name +
                                     "' has the same token as tenant '" + it->second->name +
                                     "'; every tenant needs its own token");
    }
  }
  TenantRegistry r;
  r.tenants_.reserve(specs.size());
  for (TenantSpec& spec : specs) {
    const storage::TenantId id = spec.id ? *spec.id : DerivedTenantId(spec.name);
    r.tenants_.push_back(
        Tenant{std::move(spec.name), id, spec.token_sha256, spec.quota_bytes, spec.store_stats});
  }
  return r;
}

Result<TenantRegistry> TenantRegistry::Load(const std::string& tenants_file) {
  if (tenants_file.empty()) return SingleTenant();
  KVAULT_ASSIGN_OR_RETURN(std::vector<TenantSpec> specs, LoadTenantsFile(tenants_file));
  return Create(std::move(specs));
}

const Tenant* TenantRegistry::Find(std::string_view name) const {
  for (const Tenant& t : tenants_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const Tenant* TenantRegistry::FindById(storage::TenantId id) const {
  for (const Tenant& t : tenants_) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

const Tenant* TenantRegistry::Authenticate(std::string_view name, std::span<const uint8_t> nonce,
                                           std::span<const uint8_t> proof) const {
  if (single_tenant_) return &tenants_.front();
  const Tenant* tenant = Find(name);
  // An unknown name is checked against a fixed key and refused whatever the result, so it costs
  // what a known name does.
  static const AuthDigest kNoTenantKey = TokenHash("kvault: no such tenant");
  const AuthDigest& key = tenant != nullptr ? *tenant->token_hash : kNoTenantKey;
  const bool ok = VerifyAuthProof(key, nonce, proof);
  return ok && tenant != nullptr ? tenant : nullptr;
}

}  // namespace kvault::server
