// kvaultd's configuration: defaults, YAML, flags, their precedence, every error path and --help
// (the value syntax and the YAML file scan: config_values_test.cc).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "config/config_loader.h"
#include "config/derived_options.h"
#include "config/options.h"
#include "config/value_parsers.h"

namespace kvault::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvault_config_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // Loads `yaml` (through --config) plus `flags`; returns the status message on failure.
  Result<DaemonInvocation> Load(const std::string& yaml, std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"--config", Write("kvaultd.yaml", yaml)});
    return LoadDaemonConfig(flags);
  }

  static std::string ErrorOf(const Result<DaemonInvocation>& r) {
    return r.ok() ? std::string("(ok)") : r.status().message();
  }

  fs::path dir_;
};

// Passes when `r` failed with InvalidArgument and a message containing every one of `parts`.
template <typename T>
::testing::AssertionResult FailsMentioning(const Result<T>& r,
                                           std::initializer_list<std::string_view> parts) {
  if (r.ok()) return ::testing::AssertionFailure() << "expected an error, got success";
  if (r.status().code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "wrong code: " << r.status().ToString();
  }
  for (std::string_view part : parts) {
    if (r.status().message().find(part) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "missing '" << part << "' in: " << r.status().message();
    }
  }
  return ::testing::AssertionSuccess();
}

TEST_F(ConfigTest, DefaultsAreTheDocumentedOnes) {
  auto r = LoadDaemonConfig({});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, DaemonAction::kRun);
  const DaemonConfig& c = r->config;
  EXPECT_EQ(c.control.host, "127.0.0.1");
  EXPECT_EQ(c.control.port, 7400);
  EXPECT_EQ(c.http.host, "127.0.0.1");
  EXPECT_EQ(c.http.port, 7401);
  EXPECT_EQ(c.data_dir, "./kvault-data");
  EXPECT_EQ(c.storage.host_capacity_bytes, 1 * kGiB);
  EXPECT_EQ(c.storage.nvme_capacity_bytes, 8 * kGiB);
  EXPECT_EQ(c.storage.gpu_capacity_bytes, 0u);
  EXPECT_EQ(c.storage.policy, "prefix");
  EXPECT_EQ(c.storage.nvme_policy, "lru");
  EXPECT_TRUE(c.storage.promote_on_hit);
  EXPECT_EQ(c.leases.default_ttl, std::chrono::seconds(30));
  EXPECT_EQ(c.leases.max_ttl, std::chrono::minutes(10));
  EXPECT_TRUE(c.auth.tenants_file.empty());
  EXPECT_TRUE(c.tls.cert_file.empty());
  EXPECT_EQ(c.limits.max_block_bytes, 64 * kMiB);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_TRUE(ValidateDaemonConfig(c).ok());
}

TEST_F(ConfigTest, YamlThenFlagsOverrideInOrder) {
  const std::string yaml = R"(
control:
  port: 9000
  threads: 3
http:
  port: 9001
storage:
  host_capacity: 512MiB
  nvme_capacity: 0
  promote_on_hit: false
  policy: lru
leases:
  default_ttl: 5s
limits:
  io_timeout: 250ms
log_level: debug
)";
  auto r = Load(yaml, {"--control-port", "0", "--storage.host_capacity=2GiB",
                       "--storage-promote-on-hit", "--log-level", "warn"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const DaemonConfig& c = r->config;
  EXPECT_EQ(c.control.port, 0);                        // flag beats file
  EXPECT_EQ(c.control_threads, 3u);                    // file beats default
  EXPECT_EQ(c.http.port, 9001);                        // file
  EXPECT_EQ(c.storage.host_capacity_bytes, 2 * kGiB);  // dotted flag beats file
  EXPECT_EQ(c.storage.nvme_capacity_bytes, 0u);
  EXPECT_TRUE(c.storage.promote_on_hit);  // bare bool flag = true, beats file's false
  EXPECT_EQ(c.storage.policy, "lru");
  EXPECT_EQ(c.leases.default_ttl, milliseconds(5000));
  EXPECT_EQ(c.limits.io_timeout, milliseconds(250));
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.data_dir, "./kvault-data");  // untouched: default
  EXPECT_EQ(r->config_file, (dir_ / "kvaultd.yaml").string());
}

// data_plane.process_memory takes auto, on or off and refuses anything else, naming the choices;
// ChooseDataPlanes turns auto into process memory with a tenants file, where an unset
// ucx.transports becomes ^shm, and leaves a set list alone.
TEST_F(ConfigTest, ProcessMemoryChoiceAndWhatItPicks) {
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--data-plane-process-memory", "yes"}),
                              {"--data-plane-process-memory", "auto", "off"}));
  EXPECT_TRUE(FailsMentioning(Load("data_plane:\n  process_memory: 1\n"),
                              {"data_plane.process_memory", "auto"}));
  auto choose = [](const std::string& mode, const std::string& tenants,
                   const std::string& transports) {
    DaemonConfig c;
    c.data_plane.process_memory = mode;
    c.auth.tenants_file = tenants;
    c.ucx.transports = transports;
    return ChooseDataPlanes(c);
  };
  for (const char* mode : {"auto", "on", "off"}) {
    auto r = LoadDaemonConfig({"--data-plane-process-memory", mode});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->config.data_plane.process_memory, mode);
  }
  DataPlaneChoice c = choose("auto", "t.yaml", "");
  EXPECT_TRUE(c.process_memory);
  EXPECT_EQ(c.ucx_transports, "^shm");
  c = choose("auto", "t.yaml", "posix,cma");
  EXPECT_TRUE(c.process_memory);
  EXPECT_EQ(c.ucx_transports, "posix,cma");
  c = choose("auto", "", "");  // no tenants: UCX as configured, no process memory
  EXPECT_FALSE(c.process_memory);
  EXPECT_EQ(c.ucx_transports, "");
  c = choose("on", "", "");
  EXPECT_TRUE(c.process_memory);
  EXPECT_EQ(c.ucx_transports, "");
  c = choose("off", "t.yaml", "");
  EXPECT_FALSE(c.process_memory);
  EXPECT_EQ(c.ucx_transports, "");
}

TEST_F(ConfigTest, BoolFlagTakesAnExplicitValue) {
  auto r = LoadDaemonConfig({"--storage-promote-on-hit", "false", "--storage-land-on-gpu=false"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->config.storage.promote_on_hit);
  EXPECT_FALSE(r->config.storage.land_on_gpu);
}

TEST_F(ConfigTest, EveryOptionIsSettableByYamlAndByFlagWithItsOwnValue) {
  // Writing each option's default back through YAML and through its flag must round-trip:
  // proves every row's type, accessor and bounds agree with the struct.
  const DaemonConfig defaults;
  for (const OptionDescriptor& option : DaemonOptions()) {
    const std::string value = OptionValueText(option, defaults);
    DaemonConfig c;
    EXPECT_TRUE(SetOption(option, value, c).ok()) << option.key << " = " << value;
    EXPECT_EQ(OptionValueText(option, c), value) << option.key;
  }
  DaemonConfig printed;
  Status yaml = ApplyConfigYaml(FormatConfigYaml(defaults), "printed", printed);
  EXPECT_TRUE(yaml.ok()) << yaml.ToString();
}

TEST_F(ConfigTest, EveryCountOptionRefusesGarbageAndValuesOutsideItsBounds) {
  // Positive control first: the bounds themselves are accepted.
  for (const OptionDescriptor& option : DaemonOptions()) {
    if (option.type != OptionType::kCount) continue;
    DaemonConfig c;
    EXPECT_TRUE(SetOption(option, std::to_string(option.min), c).ok()) << option.key;
    EXPECT_TRUE(SetOption(option, std::to_string(option.max), c).ok()) << option.key;
    for (const std::string& bad : {std::string("abc"), std::string(""), std::string("1.5"),
                                   std::string("-1"), std::to_string(option.max + 1)}) {
      DaemonConfig untouched;
      const Status s = SetOption(option, bad, untouched);
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << option.key << " = '" << bad << "'";
      EXPECT_NE(s.message().find("integer"), std::string::npos) << s.ToString();
      EXPECT_EQ(OptionValueText(option, untouched), OptionValueText(option, DaemonConfig{}))
          << option.key << ": a refused value must not be stored";
    }
    if (option.min > 0) {
      DaemonConfig c2;
      EXPECT_FALSE(SetOption(option, std::to_string(option.min - 1), c2).ok()) << option.key;
    }
  }
  // The error names the flag as it was given.
  auto r = LoadDaemonConfig({"--control-busy-poll-us", "100001"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--control-busy-poll-us"), std::string::npos)
      << r.status().ToString();
}

TEST_F(ConfigTest, EverySizeOptionRefusesGarbageAndValuesOutsideItsBounds) {
  for (const OptionDescriptor& option : DaemonOptions()) {
    if (option.type != OptionType::kSize) continue;
    DaemonConfig c;  // positive control: the bounds themselves are accepted
    EXPECT_TRUE(SetOption(option, std::to_string(option.min), c).ok()) << option.key;
    EXPECT_TRUE(SetOption(option, std::to_string(option.max), c).ok()) << option.key;
    std::vector<std::string> bad = {"lots", "", "-1", "12XB", std::to_string(option.max + 1)};
    if (option.min > 0) bad.push_back(std::to_string(option.min - 1));
    for (const std::string& value : bad) {
      DaemonConfig untouched;
      const Status s = SetOption(option, value, untouched);
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << option.key << " = '" << value << "'";
      EXPECT_NE(s.message().find("size"), std::string::npos) << s.ToString();
      EXPECT_EQ(OptionValueText(option, untouched), OptionValueText(option, DaemonConfig{}))
          << option.key << ": a refused value must not be stored";
    }
  }
}

TEST_F(ConfigTest, PrintConfigRoundTrips) {
  DaemonConfig changed;
  changed.control.host = "::1";
  changed.http.host = "0.0.0.0";
  changed.storage.host_capacity_bytes = 3 * kGiB + 5;
  changed.storage.low_watermark = 0.0001;  // printed "0.0001", not the shortest form "1e-04"
  changed.leases.default_ttl = milliseconds(1500);
  changed.ucx.transports = "shm,tcp";
  changed.data_dir = "/var/lib/kvault \"quoted\"";
  DaemonConfig back;
  ASSERT_TRUE(ApplyConfigYaml(FormatConfigYaml(changed), "printed", back).ok())
      << FormatConfigYaml(changed);
  for (const OptionDescriptor& option : DaemonOptions()) {
    EXPECT_EQ(OptionValueText(option, back), OptionValueText(option, changed)) << option.key;
  }
  auto r = LoadDaemonConfig({"--print-config"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action, DaemonAction::kPrintConfig);
}

TEST_F(ConfigTest, DerivedModuleOptionsFollowTheConfig) {
  auto r = LoadDaemonConfig({"--storage-policy", "lru", "--storage-promote-on-hit=false",
                             "--storage-mover-threads", "3", "--limits-max-block-bytes", "8MiB",
                             "--leases-max-ttl", "2m", "--limits-max-frame-bytes", "1MiB",
                             "--limits-max-keys-per-request", "100"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const storage::BlockStoreOptions store = StoreOptionsFor(r->config);
  EXPECT_EQ(store.policy, "lru");
  EXPECT_EQ(store.nvme_policy, "lru");
  EXPECT_FALSE(store.promote_on_hit);
  EXPECT_EQ(store.mover_threads, 3);
  EXPECT_EQ(store.max_object_bytes, 8u << 20);
  EXPECT_EQ(store.max_lease_ttl, std::chrono::minutes(2));
  EXPECT_DOUBLE_EQ(store.high_watermark, 0.95);
  const transport::ProtocolLimits limits = ProtocolLimitsFor(r->config);
  EXPECT_EQ(limits.max_body_bytes, 1u << 20);
  EXPECT_EQ(limits.max_keys_per_batch, 100u);
  EXPECT_EQ(limits.max_block_object_bytes, 8u << 20);
  EXPECT_TRUE(limits.Validate().ok());
  // The table's bounds are the protocol's: the extremes the loader accepts validate there too.
  for (const auto& [frame, keys, block] :
       {std::tuple{"1KiB", "1", "1KiB"}, std::tuple{"64MiB", "1048576", "4294967295"}}) {
    DaemonConfig c;
    ASSERT_TRUE(SetOption(*FindOption("limits.max_frame_bytes"), frame, c).ok());
    ASSERT_TRUE(SetOption(*FindOption("limits.max_keys_per_request"), keys, c).ok());
    ASSERT_TRUE(SetOption(*FindOption("limits.max_block_bytes"), block, c).ok());
    EXPECT_TRUE(ProtocolLimitsFor(c).Validate().ok()) << frame << " " << keys << " " << block;
  }
  DaemonConfig over;
  EXPECT_FALSE(SetOption(*FindOption("limits.max_frame_bytes"), "65MiB", over).ok());
}

TEST_F(ConfigTest, FlagNamesAreUniqueAndFoundBothWays) {
  std::set<std::string> flags;
  for (const OptionDescriptor& option : DaemonOptions()) {
    EXPECT_TRUE(flags.insert(FlagName(option)).second) << FlagName(option);
    EXPECT_EQ(FindOption(option.key), &option);
    EXPECT_EQ(FindOption(FlagName(option)), &option);
  }
  EXPECT_EQ(FindOption("control-prot"), nullptr);
}

TEST_F(ConfigTest, HelpDocumentsEveryOptionWithItsDefault) {
  auto r = LoadDaemonConfig({"--control-port", "bogus", "--help"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();  // --help wins over a bad flag
  EXPECT_EQ(r->action, DaemonAction::kHelp);
  EXPECT_EQ(LoadDaemonConfig({"-h"})->action, DaemonAction::kHelp);

  const std::string help = DaemonHelpText("kvaultd");
  // Descriptions wrap: compare against the text with every run of whitespace made one space.
  std::string flat;
  for (char ch : help) {
    const bool space = ch == ' ' || ch == '\n';
    if (!space || flat.empty() || flat.back() != ' ') flat += space ? ' ' : ch;
  }
  const DaemonConfig defaults;
  for (const OptionDescriptor& option : DaemonOptions()) {
    EXPECT_NE(help.find("--" + FlagName(option) + " "), std::string::npos) << option.key;
    EXPECT_NE(flat.find("[YAML " + std::string(option.key) + ";"), std::string::npos) << option.key;
    const std::string def = OptionValueText(option, defaults);
    if (!def.empty()) {
      EXPECT_NE(flat.find("YAML " + std::string(option.key) + "; default " + def + "]"),
                std::string::npos)
          << option.key;
    }
  }
  for (const char* general : {"--config FILE", "--print-config", "--help"}) {
    EXPECT_NE(help.find(general), std::string::npos) << general;
  }
  for (std::string_view line : {std::string_view(help)}) {
    size_t start = 0;
    while (start < line.size()) {
      size_t end = line.find('\n', start);
      if (end == std::string_view::npos) end = line.size();
      EXPECT_LE(end - start, 100u) << line.substr(start, end - start);
      start = end + 1;
    }
  }
}

TEST_F(ConfigTest, YamlErrorsNameTheKeyAndLine) {
  EXPECT_TRUE(FailsMentioning(Load("control:\n  prot: 1\n"),
                              {"kvaultd.yaml:2", "control.prot", "unknown key"}));
  EXPECT_TRUE(FailsMentioning(Load("bogus: 1\n"), {"kvaultd.yaml:1", "bogus", "unknown key"}));
  // worker_threads was removed (control.threads is the io thread count): refused, not ignored.
  EXPECT_TRUE(FailsMentioning(Load("worker_threads: 4\n"),
                              {"kvaultd.yaml:1", "worker_threads", "unknown key"}));
  EXPECT_TRUE(Load("control:\n  threads: 4\n").ok());  // positive control
  EXPECT_TRUE(
      FailsMentioning(Load("control:\n  port: 70000\n"), {":2", "control.port", "0..65535"}));
  EXPECT_TRUE(
      FailsMentioning(Load("control:\n  port: [1, 2]\n"), {":2", "control.port", "got a list"}));
  EXPECT_TRUE(FailsMentioning(Load("control:\n  port:\n"), {":2", "control.port", "got nothing"}));
  EXPECT_TRUE(FailsMentioning(Load("control: 7400\n"), {":1", "control", "expected a map"}));
  EXPECT_TRUE(FailsMentioning(Load("\n\nstorage:\n  host_capacity: lots\n"),
                              {":4", "storage.host_capacity", "byte size"}));
  EXPECT_TRUE(FailsMentioning(Load("storage:\n  promote_on_hit: yes\n"),
                              {"storage.promote_on_hit", "true or false"}));
  EXPECT_TRUE(
      FailsMentioning(Load("storage:\n  policy: fifo\n"), {"storage.policy", "fifo", "prefix"}));
  EXPECT_TRUE(FailsMentioning(Load("storage:\n  high_watermark: 1.5\n"),
                              {"storage.high_watermark", "(0, 1]"}));
  EXPECT_TRUE(FailsMentioning(Load("leases:\n  max_ttl: 10\n"), {"leases.max_ttl", "duration"}));
  EXPECT_TRUE(
      FailsMentioning(Load("control:\n  host: example.com\n"), {"control.host", "IP address"}));
  EXPECT_TRUE(FailsMentioning(Load("ucx:\n  transports: \"shm;tcp\"\n"), {"ucx.transports"}));
  EXPECT_TRUE(FailsMentioning(Load("control:\n  port: 1\n  port: 2\n"),
                              {":3", "control.port", "given twice"}));
  EXPECT_TRUE(FailsMentioning(Load("- 1\n- 2\n"), {"top level", "got a list"}));
  EXPECT_TRUE(FailsMentioning(Load("control: {port: 1\n"), {"kvaultd.yaml", "invalid YAML"}));
  EXPECT_TRUE(
      FailsMentioning(Load("limits:\n  max_block_bytes: 8GiB\n"), {"limits.max_block_bytes"}));
  EXPECT_TRUE(
      FailsMentioning(Load("limits:\n  max_frame_bytes: 512\n"), {"limits.max_frame_bytes"}));
  // Paths take an empty value: `cert_file:` means none.
  auto empty_ok = Load("tls:\n  cert_file:\n  key_file: \"\"\n");
  EXPECT_TRUE(empty_ok.ok()) << ErrorOf(empty_ok);
  // An empty file is all defaults.
  auto empty_file = Load("");
  EXPECT_TRUE(empty_file.ok()) << ErrorOf(empty_file);
  // A section whose keys are all commented out changes nothing.
  auto empty_section = Load("tls:\n  # cert_file: a.pem\ncontrol:\n  port: 7500\n");
  ASSERT_TRUE(empty_section.ok()) << ErrorOf(empty_section);
  EXPECT_EQ(empty_section->config.control.port, 7500);
  // Content after the first document is refused, not dropped unread (YAML::Load reads only the
  // first document).
  for (const auto& [two, line] : std::vector<std::pair<std::string, std::string>>{
           {"control:\n  port: 7500\n---\nstorage:\n  policy: lru\n", ":4"},
           {"control:\n  port: 7500\n...\n# end\n\nstorage:\n  policy: lru\n", ":6"},
           {"---\n---\ncontrol:\n  port: 7500\n", ":3"},
           {"control:\n  port: 7500\n--- {storage: {policy: lru}}\n", ":3"},
           {"control:\n  port: 7500\n---\n{{{\n", ":4"}}) {
    EXPECT_TRUE(
        FailsMentioning(Load(two), {"kvaultd.yaml" + line, "after the first YAML document"}))
        << two;
  }
  // Positive controls: one document, with its markers, comments and a directive around it, and
  // "---" inside a value or indented in a block scalar.
  for (const char* one :
       {"---\ncontrol:\n  port: 7500\n...\n", "%YAML 1.2\n--- # kvaultd\ncontrol:\n  port: 7500\n",
        "control:\n  port: 7500\n...\n# trailing comment\n\n...\n",
        "control:\n  port: 7500\ndata_dir: \"---\"\n",
        "control:\n  port: 7500\ndata_dir: |\n  ---\n"}) {
    auto loaded = Load(one);
    ASSERT_TRUE(loaded.ok()) << one << ": " << ErrorOf(loaded);
    EXPECT_EQ(loaded->config.control.port, 7500) << one;
  }
}

// ucx.transports is UCX_TLS syntax: one '^' may negate the whole list, before its first name only
// (UCX reads it nowhere else).
TEST_F(ConfigTest, UcxTransportsTakeOneLeadingCaretForTheWholeList) {
  for (const char* good : {"", "shm", "shm,tcp", "rc_mlx5,sm", "^tcp", "^tcp,cma"}) {
    auto r = LoadDaemonConfig({"--ucx-transports", good});
    ASSERT_TRUE(r.ok()) << good << ": " << r.status().ToString();
    EXPECT_EQ(r->config.ucx.transports, good);
  }
  for (const char* caret : {"shm,^tcp", "^tcp,^cma", "^^tcp", "tcp^", "sh^m"}) {
    EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--ucx-transports", caret}),
                                {"--ucx-transports", "'^'", "whole list", caret}))
        << caret;
  }
  for (const char* bad : {"^", "^,tcp", "tcp,", ",tcp", "shm;tcp", "SHM", "tcp:aux"}) {
    EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--ucx-transports", bad}),
                                {"--ucx-transports", "transport names", bad}))
        << bad;
  }
  // The same check in a config file.
  EXPECT_TRUE(FailsMentioning(Load("ucx:\n  transports: \"shm,^tcp\"\n"),
                              {"kvaultd.yaml:2", "ucx.transports", "'^'"}));
  auto negated = Load("ucx:\n  transports: \"^tcp,cma\"\n");
  ASSERT_TRUE(negated.ok()) << ErrorOf(negated);
  EXPECT_EQ(negated->config.ucx.transports, "^tcp,cma");
}

TEST_F(ConfigTest, MissingConfigFileIsNotFound) {
  auto r = LoadDaemonConfig({"--config", (dir_ / "absent.yaml").string()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("absent.yaml"), std::string::npos);
  auto dir = LoadDaemonConfig({"--config", dir_.string()});
  EXPECT_EQ(dir.status().code(), StatusCode::kIoError);
}

TEST_F(ConfigTest, FlagErrorsNameTheFlag) {
  EXPECT_TRUE(
      FailsMentioning(LoadDaemonConfig({"--control-prot", "1"}), {"--control-prot", "unknown"}));
  EXPECT_TRUE(
      FailsMentioning(LoadDaemonConfig({"--control-port"}), {"--control-port", "needs a value"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--control-port", "--http-port", "1"}),
                              {"--control-port", "needs a value"}));
  EXPECT_TRUE(
      FailsMentioning(LoadDaemonConfig({"--control-port", "x"}), {"--control-port", "'x'"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--control-port", "1", "--control.port", "2"}),
                              {"control.port", "given twice"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"stray"}), {"stray", "unexpected argument"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--config"}), {"--config"}));
  EXPECT_TRUE(
      FailsMentioning(LoadDaemonConfig({"--config", "a", "--config", "b"}), {"--config", "twice"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--print-config=1"}), {"--print-config"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-nvme-capacity", "-1"}),
                              {"--storage-nvme-capacity"}));
}

TEST_F(ConfigTest, ValidationNamesTheKeys) {
  // The default single-tenant mode refuses a non-loopback control address...
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--control-host", "0.0.0.0"}),
                              {"control.host", "loopback", "auth.tenants_file"}));
  // ...but takes one with a tenants file, and any loopback form without.
  const std::string tenants = Write("tenants.yaml", "tenants: []\n");
  EXPECT_TRUE(LoadDaemonConfig({"--control-host", "0.0.0.0", "--auth-tenants-file", tenants}).ok());
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
    EXPECT_TRUE(LoadDaemonConfig({"--control-host", host}).ok()) << host;
  }
  // The http endpoint serves no tenant data: any address.
  EXPECT_TRUE(LoadDaemonConfig({"--http-host", "0.0.0.0"}).ok());

  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--auth-tenants-file", (dir_ / "none").string()}),
                              {"auth.tenants_file"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--tls-cert-file", tenants}),
                              {"tls.cert_file", "tls.key_file"}));
  EXPECT_TRUE(FailsMentioning(
      LoadDaemonConfig({"--tls-cert-file", tenants, "--tls-key-file", (dir_ / "no").string()}),
      {"tls.key_file"}));
  EXPECT_TRUE(LoadDaemonConfig({"--tls-cert-file", tenants, "--tls-key-file", tenants}).ok());
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--control-port", "7000", "--http-port", "7000"}),
                              {"control.port", "http.port"}));
  EXPECT_TRUE(LoadDaemonConfig({"--control-port", "0", "--http-port", "0"}).ok());
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-low-watermark", "0.99"}),
                              {"storage.low_watermark", "storage.high_watermark"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-land-on-gpu"}),
                              {"storage.land_on_gpu", "storage.gpu_capacity"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-gpu-ipc-export"}),
                              {"storage.gpu_ipc_export", "storage.gpu_capacity"}));
  EXPECT_TRUE(
      LoadDaemonConfig({"--storage-gpu-ipc-export", "--storage-gpu-capacity", "64MiB"}).ok());
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-land-on-gpu", "--storage-gpu-capacity",
                                                "64MiB", "--storage-mover-threads", "0"}),
                              {"storage.land_on_gpu", "storage.mover_threads"}));
  EXPECT_TRUE(LoadDaemonConfig({"--storage-land-on-gpu", "--storage-gpu-capacity", "64MiB"}).ok());
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--leases-default-ttl", "11m"}),
                              {"leases.default_ttl", "leases.max_ttl"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-host-capacity", "32MiB"}),
                              {"limits.max_block_bytes", "storage.host_capacity"}));
  // The host arena holds a block in its size class: 1,100,000 bytes take 1,179,648.
  EXPECT_TRUE(FailsMentioning(
      LoadDaemonConfig({"--storage-host-capacity", "1100000", "--limits-max-block-bytes", "1100000",
                        "--storage-nvme-capacity", "0"}),
      {"limits.max_block_bytes", "storage.host_capacity"}));
  EXPECT_TRUE(LoadDaemonConfig({"--storage-host-capacity", "1179648", "--limits-max-block-bytes",
                                "1100000", "--storage-nvme-capacity", "0"})
                  .ok());
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--storage-nvme-capacity", "32MiB"}),
                              {"limits.max_block_bytes", "storage.nvme_capacity"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--limits-max-inflight-bytes-per-client", "1MiB"}),
                              {"limits.max_block_bytes", "limits.max_inflight_bytes_per_client"}));
  EXPECT_TRUE(FailsMentioning(LoadDaemonConfig({"--limits-max-frame-bytes", "64KiB",
                                                "--limits-max-keys-per-request", "4096"}),
                              {"limits.max_keys_per_request", "limits.max_frame_bytes"}));
  // Every Hello must fit in a frame: 8,714 bytes at the defaults (docs/protocol.md §3).
  EXPECT_TRUE(FailsMentioning(
      LoadDaemonConfig({"--limits-max-frame-bytes", "2KiB", "--limits-max-keys-per-request", "64"}),
      {"limits.max_frame_bytes", "Hello"}));
  EXPECT_TRUE(
      LoadDaemonConfig({"--limits-max-frame-bytes", "9KiB", "--limits-max-keys-per-request", "64"})
          .ok());
  EXPECT_TRUE(FailsMentioning(
      LoadDaemonConfig({"--data-dir", "", "--storage-nvme-capacity", "1GiB"}), {"data_dir"}));
  EXPECT_TRUE(LoadDaemonConfig({"--data-dir", "", "--storage-nvme-capacity", "0"}).ok());
}

// The repository, found from this file's path (CMake compiles it by absolute path).
fs::path RepoFile(const std::string& relative) {
  return fs::path(__FILE__).parent_path().parent_path().parent_path().parent_path() / relative;
}

TEST(ConfigDocsTest, ExampleConfigLoadsAndShowsTheDefaults) {
  const fs::path example = RepoFile("deploy/config/kvaultd.yaml");
  if (!fs::exists(example)) GTEST_SKIP() << example << " not found from __FILE__";
  auto r = LoadDaemonConfig({"--config", example.string()});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const DaemonConfig defaults;
  std::ifstream in(example);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const OptionDescriptor& option : DaemonOptions()) {
    EXPECT_EQ(OptionValueText(option, r->config), OptionValueText(option, defaults))
        << option.key << " in the example differs from the default";
    const std::string_view leaf = option.key.substr(option.key.rfind('.') + 1);
    EXPECT_NE(text.find(std::string(leaf) + ":"), std::string::npos) << option.key;
  }
}

TEST(ConfigDocsTest, DocsDescribeEveryOption) {
  const fs::path doc = RepoFile("docs/config.md");
  if (!fs::exists(doc)) GTEST_SKIP() << doc << " not found from __FILE__";
  std::ifstream in(doc);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const DaemonConfig defaults;
  for (const OptionDescriptor& option : DaemonOptions()) {
    const std::string row = "| `" + std::string(option.key) + "` | `--" + FlagName(option) + "` |";
    const size_t at = text.find(row);
    ASSERT_NE(at, std::string::npos) << option.key << " has no row in docs/config.md";
    const std::string line = text.substr(at, text.find('\n', at) - at);
    const std::string def = OptionValueText(option, defaults);
    EXPECT_NE(line.find(def.empty() ? "empty" : "`" + def + "`"), std::string::npos)
        << option.key << ": docs/config.md does not show the default " << def;
  }
}

}  // namespace
}  // namespace kvault::server
