#pragma once
// Tenants shared by the Service tests (service_test.cc, service_gpu_export_test.cc).

#include <vector>

#include "kvault/common/auth.h"
#include "tenants/tenants_file.h"

namespace kvault::server::testing {

// Two tenants, "team-a" with token "token-a" and "team-b" with token "token-b".
inline std::vector<TenantSpec> TwoTenants() {
  TenantSpec a;
  a.name = "team-a";
  a.token_sha256 = TokenHash("token-a");
  a.store_stats = true;  // the operator's tenant
  TenantSpec b;
  b.name = "team-b";
  b.token_sha256 = TokenHash("token-b");
  return {a, b};
}

}  // namespace kvault::server::testing
