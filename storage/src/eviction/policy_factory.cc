// EvictionPolicyNames and MakeEvictionPolicy: the one table of built-in policies.

#include <array>
#include <string>

#include "eviction/policies.h"
#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {
namespace {

struct PolicyEntry {
  std::string_view name;
  std::unique_ptr<EvictionPolicy> (*make)();
};

// The default first (BlockStoreOptions::policy; the nvme tier defaults to "lru").
constexpr std::array kPolicies = {
    PolicyEntry{"prefix", &MakePrefixPolicy},
    PolicyEntry{"lru", &MakeLruPolicy},
};

}  // namespace

std::vector<std::string> EvictionPolicyNames() {
  std::vector<std::string> names;
  names.reserve(kPolicies.size());
  for (const PolicyEntry& p : kPolicies) names.emplace_back(p.name);
  return names;
}

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name) {
  for (const PolicyEntry& p : kPolicies) {
    if (p.name == name) return p.make();
  }
  std::string accepted;
  for (const PolicyEntry& p : kPolicies) {
    if (!accepted.empty()) accepted += ", ";
    accepted += p.name;
  }
  return Status::InvalidArgument("unknown eviction policy '" + std::string(name) +
                                 "' (accepted: " + accepted + ")");
}

}  // namespace kvault::storage
