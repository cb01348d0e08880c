// ClientConfig::Validate and ParseHostPort.
#include "kvault/client_config.h"

#include <gtest/gtest.h>

namespace kvault {
namespace {

TEST(ClientParseHostPort, AcceptsNamesIpv4AndBracketedIpv6) {
  Result<HostPort> a = ParseHostPort("127.0.0.1:7480");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7480);
  Result<HostPort> b = ParseHostPort("kv-node-3:1");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "kv-node-3");
  EXPECT_EQ(b->port, 1);
  Result<HostPort> c = ParseHostPort("[::1]:65535");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 65535);
}

TEST(ClientParseHostPort, RefusesMalformedAddresses) {
  for (const char* bad : {"", "host", ":7480", "host:", "host:0", "host:65536", "host:12ab",
                          "host:-1", "::1:7480", "[::1]", "[::1]7480", "[]:1"}) {
    Result<HostPort> r = ParseHostPort(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

ClientConfig Valid() {
  ClientConfig c;
  c.server = "127.0.0.1:7480";
  return c;
}

TEST(ClientConfig, DefaultsWithAServerAreValid) { EXPECT_TRUE(Valid().Validate().ok()); }

TEST(ClientConfig, NamesTheBadField) {
  struct Case {
    void (*edit)(ClientConfig&);
    const char* field;
  };
  const Case cases[] = {
      {[](ClientConfig& c) { c.server.clear(); }, "server"},
      {[](ClientConfig& c) { c.server = "nohost"; }, "HOST:PORT"},
      {[](ClientConfig& c) { c.connect_timeout = std::chrono::milliseconds(0); },
       "connect_timeout"},
      {[](ClientConfig& c) { c.request_timeout = std::chrono::milliseconds(-1); },
       "request_timeout"},
      {[](ClientConfig& c) { c.stall_timeout = std::chrono::milliseconds(-1); }, "stall_timeout"},
      {[](ClientConfig& c) { c.reconnect_backoff = std::chrono::milliseconds(-5); },
       "reconnect_backoff"},
      {[](ClientConfig& c) { c.tenant = std::string(257, 't'); }, "tenant"},
      {[](ClientConfig& c) { c.client_name = std::string(300, 'n'); }, "client_name"},
      {[](ClientConfig& c) { c.registered_staging_bytes = (uint64_t{1} << 40) + 1; },
       "registered_staging_bytes"},
  };
  for (const Case& k : cases) {
    ClientConfig c = Valid();
    k.edit(c);
    const Status s = c.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << k.field;
    EXPECT_NE(s.message().find(k.field), std::string::npos) << s.ToString();
  }
}

TEST(ClientConfig, StagingMayBeOffOrUpToATebibyte) {
  ClientConfig c = Valid();
  c.registered_staging_bytes = 0;
  EXPECT_TRUE(c.Validate().ok());
  c.registered_staging_bytes = uint64_t{1} << 40;
  EXPECT_TRUE(c.Validate().ok());
}

// Every timeout (and the backoff) may be up to a year, kMaxClientTimeout, and no longer: past it
// the client's deadlines would near the clock's overflow (a huge connect_timeout used to wrap
// into an instant failure).
TEST(ClientConfig, TimeoutsMayBeUpToAYearAndNoLonger) {
  using std::chrono::milliseconds;
  milliseconds ClientConfig::*const fields[] = {
      &ClientConfig::connect_timeout, &ClientConfig::request_timeout, &ClientConfig::stall_timeout,
      &ClientConfig::reconnect_backoff};
  const char* const names[] = {"connect_timeout", "request_timeout", "stall_timeout",
                               "reconnect_backoff"};
  for (size_t i = 0; i < std::size(fields); ++i) {
    ClientConfig c = Valid();
    c.*fields[i] = kMaxClientTimeout;
    EXPECT_TRUE(c.Validate().ok()) << names[i] << ": " << c.Validate().ToString();
    for (milliseconds over : {kMaxClientTimeout + milliseconds(1), milliseconds(int64_t{1} << 62),
                              milliseconds::max()}) {
      c.*fields[i] = over;
      const Status s = c.Validate();
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << names[i] << " " << over.count();
      EXPECT_NE(s.message().find(names[i]), std::string::npos) << s.ToString();
      EXPECT_NE(s.message().find("over a year"), std::string::npos) << s.ToString();
    }
  }
}

TEST(ClientConfig, ZeroStallTimeoutMeansNever) {
  ClientConfig c = Valid();
  c.stall_timeout = std::chrono::milliseconds(0);
  EXPECT_TRUE(c.Validate().ok());
}

}  // namespace
}  // namespace kvault
