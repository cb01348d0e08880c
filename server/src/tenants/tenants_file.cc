#include "tenants/tenants_file.h"

#include <sys/stat.h>

#include <cstdio>
#include <set>
#include <utility>

#include "config/value_parsers.h"
#include "config/yaml_file.h"
#include "kvault/common/log.h"
#include "kvault/storage/nvme_tier.h"

namespace kvault::server {
namespace {

constexpr size_t kMaxTenantNameBytes = 64;
constexpr std::string_view kTenantIdContext = "kvault-tenant-id-v1";

std::string Where(std::string_view source, const YAML::Node& node) {
  const int line = YamlLine(node);
  return line > 0 ? std::string(source) + ":" + std::to_string(line) : std::string(source);
}

Status CheckName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTenantNameBytes) {
    return Status::InvalidArgument("name must be 1 to 64 characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return Status::InvalidArgument("name may use only letters, digits, '.', '_' and '-'");
  }
  return Status::Ok();
}

// One `- name: ...` entry. `index` is 1-based, for entries whose name is missing or bad.
Result<TenantSpec> ParseEntry(const YAML::Node& entry, size_t index, std::string_view source) {
  TenantSpec spec;
  spec.where = Where(source, entry);
  std::string label = "tenant #" + std::to_string(index);
  auto fail = [&](const std::string& where, std::string_view what) {
    return Status::InvalidArgument(where + ": " + label + ": " + std::string(what));
  };
  if (!entry.IsMap()) {
    return fail(spec.where, "expected a map with name, token_sha256 and quota_bytes, got " +
                                std::string(YamlKindName(entry)));
  }
  // The name first, so every later error can say which tenant it is about.
  if (const YAML::Node name = entry["name"]; name.IsDefined() && name.IsScalar()) {
    if (Status s = CheckName(name.Scalar()); !s.ok()) return fail(Where(source, name), s.message());
    spec.name = name.Scalar();
    label = "tenant '" + spec.name + "'";
  }
  std::set<std::string> seen;
  bool has_hash = false, has_quota = false;
  for (const auto& field : entry) {
    const std::string where = Where(source, field.first);
    if (!field.first.IsScalar()) return fail(where, "a key must be a plain name");
    const std::string key = field.first.Scalar();
    if (!seen.insert(key).second) return fail(where, key + " given twice");
    const YAML::Node& value = field.second;
    if (key != "name" && key != "token_sha256" && key != "quota_bytes" && key != "id" &&
        key != "store_stats") {
      return fail(where, "unknown key " + key +
                             " (expected name, token_sha256, quota_bytes, id, store_stats)");
    }
    if (!value.IsScalar()) {
      return fail(where, key + ": expected a value, got " + std::string(YamlKindName(value)));
    }
    const std::string& text = value.Scalar();
    if (key == "token_sha256") {
      Result<AuthDigest> hash = ParseDigestHex(text);
      if (!hash.ok()) return fail(where, "token_sha256: " + hash.status().message());
      if (*hash == TokenHash("")) {
        return fail(where, "token_sha256 is the hash of an empty token; tokens cannot be empty");
      }
      spec.token_sha256 = *hash;
      has_hash = true;
    } else if (key == "quota_bytes") {
      Result<uint64_t> quota = ParseSize(text);
      if (!quota.ok()) return fail(where, "quota_bytes: " + quota.status().message());
      spec.quota_bytes = *quota;
      has_quota = true;
    } else if (key == "id") {
      Result<uint64_t> id = ParseBoundedUint(text, 1, UINT32_MAX);
      if (!id.ok()) {
        return fail(where, "id: " + id.status().message() + " (0 is the default tenant's)");
      }
      if (*id == storage::kNvmeReservedTenant) {
        return fail(where, "id: " + std::to_string(*id) +
                               " is reserved (the nvme tier cannot store blocks of " +
                               "that tenant); use 1.." +
                               std::to_string(storage::kNvmeReservedTenant - 1));
      }
      spec.id = static_cast<storage::TenantId>(*id);
    } else if (key == "store_stats") {
      Result<bool> on = ParseBool(text);
      if (!on.ok()) return fail(where, "store_stats: " + on.status().message());
      spec.store_stats = *on;
    }
  }
  if (spec.name.empty()) {
    return fail(spec.where, entry["name"] ? "name: expected a value, got " +
                                                std::string(YamlKindName(entry["name"]))
                                          : std::string("missing name"));
  }
  if (!has_hash) {
    return fail(spec.where, "missing token_sha256 (printf %s \"$TOKEN\" | sha256sum)");
  }
  if (!has_quota) return fail(spec.where, "missing quota_bytes (0 = no quota)");
  return spec;
}

Result<std::vector<TenantSpec>> ParseTenants(const YAML::Node& root, std::string_view source) {
  if (!root.IsMap()) {
    return Status::InvalidArgument(std::string(source) +
                                   ": expected a map with a tenants list, got " +
                                   std::string(YamlKindName(root)));
  }
  bool seen = false;
  for (const auto& entry : root) {
    if (!entry.first.IsScalar() || entry.first.Scalar() != "tenants") {
      return Status::InvalidArgument(Where(source, entry.first) +
                                     ": unknown key (the file holds only a tenants list)");
    }
    // yaml-cpp keeps both copies of a repeated key and root["tenants"] reads the first: a second
    // list would be dropped without a word.
    if (std::exchange(seen, true)) {
      return Status::InvalidArgument(Where(source, entry.first) + ": tenants: given twice");
    }
  }
  const YAML::Node list = root["tenants"];
  if (!list.IsDefined() || !list.IsSequence()) {
    return Status::InvalidArgument(
        std::string(source) + ": tenants: expected a list of tenants, got " +
        std::string(list.IsDefined() ? YamlKindName(list) : std::string_view("nothing")));
  }
  if (list.size() == 0) {
    return Status::InvalidArgument(std::string(source) +
                                   ": tenants: the list is empty, so no client could connect");
  }
  std::vector<TenantSpec> specs;
  specs.reserve(list.size());
  size_t index = 0;
  for (const YAML::Node& entry : list) {
    KVAULT_ASSIGN_OR_RETURN(TenantSpec spec, ParseEntry(entry, ++index, source));
    specs.push_back(std::move(spec));
  }
  return specs;
}

// Warns when group or others may read or write the file: its hashes are enough to log in as its
// tenants (docs/config.md, "treat the tenants file as a secret"). Names the file and its mode,
// nothing of its contents.
void WarnIfShared(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return;  // ReadYamlFile reports the error
  if ((st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) == 0) return;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  KVAULT_LOG(LogLevel::kWarn, "auth",
             "auth.tenants_file " + LogSafe(path, 256) + " has mode " + mode +
                 ": other users may read or change it, and its token hashes are enough to log in "
                 "as its tenants; make it mode 0600, owned by the daemon's user");
}

}  // namespace

Result<std::vector<TenantSpec>> ParseTenantsYaml(const std::string& text, std::string_view source) {
  KVAULT_ASSIGN_OR_RETURN(const YAML::Node root, ParseYaml(text, source));
  // The walk avoids the yaml-cpp calls that throw; this is the backstop that keeps any exception
  // inside this module.
  try {
    return ParseTenants(root, source);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(std::string(source) + ": " + e.msg);
  }
}

Result<std::vector<TenantSpec>> LoadTenantsFile(const std::string& path) {
  Result<std::string> text = ReadYamlFile(path);
  if (!text.ok()) return text.status().WithContext("auth.tenants_file");
  WarnIfShared(path);
  return ParseTenantsYaml(*text, path);
}

storage::TenantId DerivedTenantId(std::string_view name) {
  std::string message(kTenantIdContext);
  message.append(name);
  const AuthDigest digest = TokenHash(message);  // plain SHA-256 of the message
  const storage::TenantId id = static_cast<storage::TenantId>(digest[0]) |
                               static_cast<storage::TenantId>(digest[1]) << 8 |
                               static_cast<storage::TenantId>(digest[2]) << 16 |
                               static_cast<storage::TenantId>(digest[3]) << 24;
  if (id == 0) return 1;
  // Only names that hash here move: every other tenant keeps the id it stored blocks under.
  if (id == storage::kNvmeReservedTenant) return storage::kNvmeReservedTenant - 1;
  return id;
}

}  // namespace kvault::server
