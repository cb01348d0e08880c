// kvaultd's configuration values: the syntax of sizes, durations, booleans, ratios and hosts, and
// the YAML file scan that refuses content after the first document.
#include <gtest/gtest.h>

#include <chrono>

#include "config/value_parsers.h"
#include "config/yaml_file.h"

namespace kvault::server {
namespace {

using std::chrono::milliseconds;

TEST(ValueParsersTest, Sizes) {
  EXPECT_EQ(*ParseSize("0"), 0u);
  EXPECT_EQ(*ParseSize("1000000"), 1000000u);
  EXPECT_EQ(*ParseSize("4096B"), 4096u);
  EXPECT_EQ(*ParseSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseSize("512MiB"), 512u << 20);
  EXPECT_EQ(*ParseSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseSize("3TiB"), 3ull << 40);
  EXPECT_EQ(*ParseSize("500KB"), 500000u);
  EXPECT_EQ(*ParseSize("500kB"), 500000u);
  EXPECT_EQ(*ParseSize("10MB"), 10000000u);
  EXPECT_EQ(*ParseSize("1GB"), 1000000000u);
  EXPECT_EQ(*ParseSize("1TB"), 1000000000000u);
  for (const char* bad : {"", "GiB", "1.5GiB", "-1", "+1", "1 GiB", "1gib", "1G", "1Gi", "1GiBs",
                          "0x10", "18446744073709551616", "16777216TiB"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
  EXPECT_EQ(*ParseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(FormatSize(0), "0");
  EXPECT_EQ(FormatSize(1ull << 30), "1GiB");
  EXPECT_EQ(FormatSize(1536ull << 20), "1536MiB");
  EXPECT_EQ(FormatSize(1000000), "1000000");
  EXPECT_EQ(FormatSize(3ull << 40), "3TiB");
}

// yaml-cpp's LoadAll loops forever on ",:" (found by fuzz_config); ParseYaml must not use it.
TEST(YamlFileTest, ShortGarbageEndsWithAnAnswer) {
  for (const char* text : {",:", "---\n,:\n", ",:\n---\n"}) {
    (void)ParseYaml(text, "garbage.yaml");  // any answer; the test is that there is one
  }
  EXPECT_EQ(LineAfterTheFirstDocument(""), 0);
  EXPECT_EQ(LineAfterTheFirstDocument("a: 1\n---"), 0);
  EXPECT_EQ(LineAfterTheFirstDocument("a: 1\n---\nb: 2"), 3);
  EXPECT_EQ(LineAfterTheFirstDocument("a: 1\n----\n"), 0);  // not a marker: content
  // A byte order mark (Windows editors write one) before a comment, then the document.
  EXPECT_EQ(LineAfterTheFirstDocument("\xEF\xBB\xBF# kvaultd\n---\ncontrol:\n  port: 1\n"), 0);
  EXPECT_EQ(LineAfterTheFirstDocument("\xEF\xBB\xBF"
                                      "a: 1\n---\nb: 2\n"),
            3);
}

TEST(ValueParsersTest, DurationsBoolsRatiosHosts) {
  EXPECT_EQ(*ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(*ParseDuration("30s"), milliseconds(30000));
  EXPECT_EQ(*ParseDuration("10m"), milliseconds(600000));
  EXPECT_EQ(*ParseDuration("2h"), milliseconds(7200000));
  EXPECT_EQ(*ParseDuration("0"), milliseconds(0));
  for (const char* bad : {"", "10", "1.5s", "s", "10 s", "10sec", "-1s", "99999999999999999h"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
  EXPECT_EQ(FormatDuration(milliseconds(600000)), "10m");
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(milliseconds(0)), "0s");

  EXPECT_TRUE(*ParseBool("true"));
  EXPECT_FALSE(*ParseBool("false"));
  for (const char* bad : {"yes", "on", "1", "True", ""}) EXPECT_FALSE(ParseBool(bad).ok()) << bad;

  EXPECT_DOUBLE_EQ(*ParseRatio("0.9"), 0.9);
  EXPECT_DOUBLE_EQ(*ParseRatio("1"), 1.0);
  for (double ratio : {0.95, 0.0001, 1e-9, 1.0, 0.1 + 0.2}) {
    ASSERT_TRUE(ParseRatio(FormatRatio(ratio)).ok()) << FormatRatio(ratio);
    EXPECT_EQ(*ParseRatio(FormatRatio(ratio)), ratio) << FormatRatio(ratio);
  }
  EXPECT_EQ(FormatRatio(0.95), "0.95");
  EXPECT_EQ(FormatRatio(0.0001), "0.0001");
  for (const char* bad : {"0", "1.01", "", "nan", " 0.5", "0x1p-1", "-0.5"}) {
    EXPECT_FALSE(ParseRatio(bad).ok()) << bad;
  }

  for (const char* host : {"127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1", "localhost"}) {
    EXPECT_TRUE(IsBindHost(host)) << host;
  }
  for (const char* host : {"", "example.com", "127.0.0.256", "1.2.3"}) {
    EXPECT_FALSE(IsBindHost(host)) << host;
  }
  for (const char* host : {"127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "localhost"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "x"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

}  // namespace
}  // namespace kvault::server
