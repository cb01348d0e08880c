// The tenants file and the TenantRegistry: a good file, every error, stable ids, authentication.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <initializer_list>

#include "kvault/common/log.h"
#include "kvault/storage/nvme_tier.h"
#include "tenants/tenant_registry.h"
#include "tenants/tenants_file.h"

namespace kvault::server {
namespace {

namespace fs = std::filesystem;

// printf %s alpha-token | sha256sum; printf %s beta-token | sha256sum
const std::string kAlphaHash = "a336d9b1d8b8647875238537ca5087b0ea335afd2032936aecdffc3e4b13f720";
const std::string kBetaHash = "863d63c0bd3a94bfca84ed2063a7355a226faff82ca50b90158bf183aa1a9e61";

std::string Entry(const std::string& name, const std::string& hash, const std::string& quota,
                  const std::string& extra = "") {
  return "  - name: " + name + "\n    token_sha256: " + hash + "\n    quota_bytes: " + quota +
         "\n" + extra;
}

::testing::AssertionResult FailsMentioning(const Status& s,
                                           std::initializer_list<std::string_view> parts) {
  if (s.ok()) return ::testing::AssertionFailure() << "expected an error, got success";
  if (s.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "wrong code: " << s.ToString();
  }
  for (std::string_view part : parts) {
    if (s.message().find(part) == std::string::npos) {
      return ::testing::AssertionFailure() << "missing '" << part << "' in: " << s.message();
    }
  }
  // No error may carry a token hash (it is a credential).
  for (const std::string& hash : {kAlphaHash, kBetaHash}) {
    if (s.message().find(hash.substr(0, 16)) != std::string::npos) {
      return ::testing::AssertionFailure() << "error leaks a hash: " << s.message();
    }
  }
  return ::testing::AssertionSuccess();
}

Status ParseStatus(const std::string& yaml) {
  return ParseTenantsYaml(yaml, "tenants.yaml").status();
}

Status CreateStatus(const std::string& yaml) {
  auto specs = ParseTenantsYaml(yaml, "tenants.yaml");
  if (!specs.ok()) return specs.status();
  return TenantRegistry::Create(std::move(*specs)).status();
}

TEST(TenantsFileTest, LoadsAGoodFile) {
  const std::string yaml = "# two teams\ntenants:\n" + Entry("team-a", kAlphaHash, "100GiB") +
                           Entry("team.b_2", kBetaHash, "0", "    id: 42\n    store_stats: true\n");
  auto specs = ParseTenantsYaml(yaml, "tenants.yaml");
  ASSERT_TRUE(specs.ok()) << specs.status().ToString();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[0].name, "team-a");
  EXPECT_EQ((*specs)[0].quota_bytes, 100ull << 30);
  EXPECT_EQ((*specs)[0].token_sha256, TokenHash("alpha-token"));
  EXPECT_FALSE((*specs)[0].id.has_value());
  EXPECT_EQ((*specs)[0].where, "tenants.yaml:3");
  EXPECT_EQ((*specs)[1].id, 42u);
  EXPECT_EQ((*specs)[1].quota_bytes, 0u);
  EXPECT_FALSE((*specs)[0].store_stats) << "off unless asked for";
  EXPECT_TRUE((*specs)[1].store_stats);

  auto registry = TenantRegistry::Create(std::move(*specs));
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_FALSE(registry->single_tenant());
  EXPECT_EQ(registry->size(), 2u);
  const Tenant* a = registry->Find("team-a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->id, DerivedTenantId("team-a"));
  EXPECT_EQ(a->quota_bytes, 100ull << 30);
  ASSERT_TRUE(a->token_hash.has_value());
  EXPECT_EQ(registry->FindById(42)->name, "team.b_2");
  EXPECT_TRUE(registry->FindById(42)->store_stats);
  EXPECT_FALSE(a->store_stats);
  EXPECT_EQ(registry->Find("team-c"), nullptr);
  EXPECT_EQ(registry->FindById(0), nullptr);
}

TEST(TenantsFileTest, DerivedIdsAreStableNonZeroAndDistinct) {
  EXPECT_EQ(DerivedTenantId("team-a"), DerivedTenantId("team-a"));
  EXPECT_NE(DerivedTenantId("team-a"), DerivedTenantId("team-b"));
  EXPECT_NE(DerivedTenantId(""), 0u);
  // Reordering the file does not change who owns which id.
  auto one = TenantRegistry::Create(*ParseTenantsYaml(
      "tenants:\n" + Entry("a", kAlphaHash, "1GiB") + Entry("b", kBetaHash, "1GiB"), "x"));
  auto two = TenantRegistry::Create(*ParseTenantsYaml(
      "tenants:\n" + Entry("b", kBetaHash, "1GiB") + Entry("a", kAlphaHash, "1GiB"), "x"));
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ(one->Find("a")->id, two->Find("a")->id);
  EXPECT_EQ(one->Find("b")->id, two->Find("b")->id);
}

// The first 4 bytes (little-endian) of the hash DerivedTenantId starts from, before it avoids
// the reserved ids.
storage::TenantId RawDerivedId(const std::string& name) {
  const AuthDigest d = TokenHash("kvault-tenant-id-v1" + name);
  return static_cast<storage::TenantId>(d[0]) | static_cast<storage::TenantId>(d[1]) << 8 |
         static_cast<storage::TenantId>(d[2]) << 16 | static_cast<storage::TenantId>(d[3]) << 24;
}

// Tenant 4294967295 is the nvme tier's (its size entries sort under it): the file may not give it
// as an id, and no name derives it. 4294967294 is a tenant's like any other.
TEST(TenantsFileTest, TheNvmeTiersReservedIdIsRefusedAndNeverDerived) {
  ASSERT_EQ(storage::kNvmeReservedTenant, 4294967295u);
  const std::string head = "tenants:\n";
  EXPECT_TRUE(
      FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    id: 4294967295\n")),
                      {"tenants.yaml:5", "tenant 'a'", "id: 4294967295 is reserved", "nvme tier",
                       "1..4294967294"}));
  auto top = TenantRegistry::Create(
      *ParseTenantsYaml(head + Entry("a", kAlphaHash, "0", "    id: 4294967294\n"), "x"));
  ASSERT_TRUE(top.ok()) << top.status().ToString();  // positive control
  ASSERT_NE(top->FindById(4294967294u), nullptr);
  EXPECT_EQ(top->FindById(4294967294u)->name, "a");
  // Specs built without the parser meet the same check in Create.
  TenantSpec spec;
  spec.name = "a";
  spec.token_sha256 = TokenHash("alpha-token");
  spec.id = storage::kNvmeReservedTenant;
  spec.where = "x:2";
  EXPECT_TRUE(FailsMentioning(TenantRegistry::Create({spec}).status(),
                              {"x:2", "tenant 'a'", "4294967295", "reserved"}));

  // Names found by search whose hash starts with FF FF FF FF and with 00 00 00 00: they derive the
  // nearest id allowed. Every other name derives the hash itself, as before.
  const std::string all_ones = "q-27gu4nt", all_zeros = "q-0dzz8dr";
  ASSERT_EQ(RawDerivedId(all_ones), 0xFFFFFFFFu) << "the name no longer hits the edge";
  ASSERT_EQ(RawDerivedId(all_zeros), 0u) << "the name no longer hits the edge";
  EXPECT_EQ(DerivedTenantId(all_ones), 0xFFFFFFFEu);
  EXPECT_EQ(DerivedTenantId(all_zeros), 1u);
  EXPECT_EQ(DerivedTenantId("team-a"), RawDerivedId("team-a"));
  auto derived =
      TenantRegistry::Create(*ParseTenantsYaml(head + Entry(all_ones, kAlphaHash, "0"), "x"));
  ASSERT_TRUE(derived.ok()) << derived.status().ToString();
  EXPECT_EQ(derived->Find(all_ones)->id, 0xFFFFFFFEu);
}

TEST(TenantsFileTest, EveryErrorIsNamed) {
  const std::string head = "tenants:\n";
  EXPECT_TRUE(FailsMentioning(ParseStatus("- 1\n"), {"tenants.yaml", "tenants list"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus("users: []\n"), {"tenants.yaml:1", "unknown key"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus("tenants: 3\n"), {"tenants", "expected a list"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus("tenants: []\n"), {"empty"}));
  // A second tenants list is refused, not dropped (yaml-cpp would read only the first).
  EXPECT_TRUE(FailsMentioning(
      ParseStatus(head + Entry("a", kAlphaHash, "0") + head + Entry("b", kBetaHash, "0")),
      {"tenants.yaml:5", "tenants: given twice"}));
  EXPECT_TRUE(ParseStatus(head + Entry("a", kAlphaHash, "0") + Entry("b", kBetaHash, "0")).ok());
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + "  - just-a-name\n"),
                              {"tenants.yaml:2", "tenant #1", "expected a map"}));
  EXPECT_TRUE(FailsMentioning(
      ParseStatus(head + "  - token_sha256: " + kAlphaHash + "\n    quota_bytes: 0\n"),
      {"tenant #1", "missing name"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + "  - name: a\n    quota_bytes: 0\n"),
                              {"tenant 'a'", "missing token_sha256", "sha256sum"}));
  EXPECT_TRUE(
      FailsMentioning(ParseStatus(head + "  - name: a\n    token_sha256: " + kAlphaHash + "\n"),
                      {"tenant 'a'", "missing quota_bytes"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash.substr(2), "0")),
                              {"tenants.yaml:3", "tenant 'a'", "token_sha256", "64 hex"}));
  std::string bad_hex = kAlphaHash;
  bad_hex[7] = 'z';
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", bad_hex, "0")),
                              {"tenant 'a'", "token_sha256", "character 8"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", HexEncode(TokenHash("")), "0")),
                              {"tenant 'a'", "empty token"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "lots")),
                              {"tenants.yaml:4", "tenant 'a'", "quota_bytes", "byte size"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    id: 0\n")),
                              {"tenant 'a'", "id", "default tenant"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    id: x\n")),
                              {"tenant 'a'", "id"}));
  EXPECT_TRUE(
      FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    store_stats: maybe\n")),
                      {"tenants.yaml:5", "tenant 'a'", "store_stats"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    role: x\n")),
                              {"tenants.yaml:5", "tenant 'a'", "unknown key role"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", kAlphaHash, "0", "    name: b\n")),
                              {"name given twice"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("bad name", kAlphaHash, "0")),
                              {"tenant #1", "letters, digits"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry(std::string(65, 'x'), kAlphaHash, "0")),
                              {"tenant #1", "1 to 64"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus(head + Entry("a", "[1, 2]", "0")),
                              {"tenant 'a'", "token_sha256", "got a list"}));
  EXPECT_TRUE(FailsMentioning(ParseStatus("tenants: [\n"), {"tenants.yaml", "invalid YAML"}));

  // Checks across entries happen in TenantRegistry::Create.
  EXPECT_TRUE(
      FailsMentioning(CreateStatus(head + Entry("a", kAlphaHash, "0") + Entry("a", kBetaHash, "0")),
                      {"tenants.yaml:5", "tenant 'a'", "already defined at tenants.yaml:2"}));
  EXPECT_TRUE(FailsMentioning(CreateStatus(head + Entry("a", kAlphaHash, "0", "    id: 7\n") +
                                           Entry("b", kBetaHash, "0", "    id: 7\n")),
                              {"tenant 'b'", "same id 7", "tenant 'a'", "explicit id"}));
  EXPECT_TRUE(FailsMentioning(
      CreateStatus(head + Entry("a", kAlphaHash, "0") + Entry("b", kAlphaHash, "0")),
      {"tenant 'b'", "same token as tenant 'a'"}));
  EXPECT_TRUE(FailsMentioning(TenantRegistry::Create({}).status(), {"no tenants"}));
}

TEST(TenantsFileTest, LoadReadsTheFileOrFallsBackToSingleTenant) {
  const fs::path dir = fs::temp_directory_path() / ("kvault_tenants_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "tenants.yaml").string();
  std::ofstream(path) << "tenants:\n" << Entry("a", kAlphaHash, "1GiB");
  auto loaded = TenantRegistry::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->size(), 1u);

  auto missing = TenantRegistry::Load((dir / "absent.yaml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("auth.tenants_file"), std::string::npos);
  fs::remove_all(dir);

  auto single = TenantRegistry::Load("");
  ASSERT_TRUE(single.ok());
  EXPECT_TRUE(single->single_tenant());
  ASSERT_EQ(single->size(), 1u);
  EXPECT_EQ(single->tenants()[0].name, "default");
  EXPECT_EQ(single->tenants()[0].id, 0u);
  EXPECT_FALSE(single->tenants()[0].token_hash.has_value());
}

// The file's hashes act as credentials: a file others may read loads, with one warning that names
// the file and its mode and nothing of its contents; a 0600 file loads without one.
TEST(TenantsFileTest, AFileOthersMayReadIsLoadedWithAWarning) {
  const fs::path dir =
      fs::temp_directory_path() / ("kvault_tenants_mode_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "tenants.yaml").string();
  std::ofstream(path) << "tenants:\n" << Entry("a", kAlphaHash, "1GiB");
  const std::string log_path = (dir / "log").string();
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(log_fd, 0);
  SetLogFd(log_fd);
  const auto log_text = [&] {
    std::ifstream in(log_path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };

  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto shared = TenantRegistry::Load(path);
  const std::string warned = log_text();
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto private_file = TenantRegistry::Load(path);
  const std::string after = log_text();
  SetLogFd(2);
  ::close(log_fd);
  fs::remove_all(dir);

  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  EXPECT_NE(warned.find("has mode 0644"), std::string::npos) << warned;
  EXPECT_NE(warned.find(path), std::string::npos) << warned;
  EXPECT_EQ(warned.find(kAlphaHash.substr(0, 16)), std::string::npos) << warned;
  EXPECT_EQ(std::count(warned.begin(), warned.end(), '\n'), 1) << warned;
  ASSERT_TRUE(private_file.ok()) << private_file.status().ToString();
  EXPECT_EQ(after, warned) << "a 0600 file was warned about";
}

TEST(TenantsFileTest, ExampleFileLoads) {
  // CMake compiles this file by absolute path: the repository is four levels up.
  const fs::path example =
      fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path() /
      "deploy/config/tenants.yaml";
  if (!fs::exists(example)) GTEST_SKIP() << example << " not found from __FILE__";
  auto registry = TenantRegistry::Load(example.string());
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  EXPECT_EQ(registry->size(), 3u);
  EXPECT_EQ(registry->Find("batch-jobs")->id, 17u);
  EXPECT_TRUE(registry->Find("ops")->store_stats);
  EXPECT_FALSE(registry->Find("team-a")->store_stats);
}

TEST(TenantRegistryTest, AuthenticatesOnlyTheRightProof) {
  auto registry = TenantRegistry::Create(*ParseTenantsYaml(
      "tenants:\n" + Entry("a", kAlphaHash, "0") + Entry("b", kBetaHash, "0"), "x"));
  ASSERT_TRUE(registry.ok());
  const AuthNonce nonce = *NewAuthChallenge();
  const AuthDigest alpha_proof = AuthProof(TokenHash("alpha-token"), nonce);
  const Tenant* a = registry->Authenticate("a", nonce, alpha_proof);
  ASSERT_NE(a, nullptr);  // positive control
  EXPECT_EQ(a->name, "a");
  EXPECT_EQ(registry->Authenticate("b", nonce, alpha_proof), nullptr);  // another's token
  EXPECT_EQ(registry->Authenticate("c", nonce, alpha_proof), nullptr);  // unknown tenant
  EXPECT_EQ(registry->Authenticate("", nonce, alpha_proof), nullptr);   // default: none here
  const AuthNonce other = *NewAuthChallenge();
  EXPECT_EQ(registry->Authenticate("a", other, alpha_proof), nullptr);  // replay, new nonce
  EXPECT_EQ(registry->Authenticate("a", nonce, {}), nullptr);           // no proof
  // Single-tenant mode has no tokens: every hello is the default tenant.
  const TenantRegistry single = TenantRegistry::SingleTenant();
  const Tenant* d = single.Authenticate("", nonce, {});
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->id, TenantRegistry::kDefaultTenantId);
}

}  // namespace
}  // namespace kvault::server
