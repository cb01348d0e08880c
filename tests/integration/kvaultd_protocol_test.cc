// kvaultd as a process, spoken to with raw frames: the ready line, --help and bad usage, the
// handshake, bad input of every kind closing only its own connection, slow clients, the
// connection limit, tenants, /metrics through promtool, SIGTERM.

#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/common/auth.h"
#include "kvault/transport/messages.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;
using transport::WireStatus;

class KvaultdProtocolTest : public BinaryTest {
 protected:
  KvaultdProtocolTest() : BinaryTest("kvaultd") {}

  // The ErrorReply status of the next message, or nullopt when it is something else.
  static std::optional<WireStatus> ErrorStatus(RawConnection& c) {
    auto m = c.ReadMessage(5s);
    if (!m || !std::holds_alternative<transport::ErrorReply>(m->first)) return std::nullopt;
    return std::get<transport::ErrorReply>(m->first).status;
  }
};

TEST_F(KvaultdProtocolTest, HelpDocumentsOptionsAndBadFlagsExitTwo) {
  BinaryRun help = Run("--help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* key : {"control", "http", "data_dir", "host_capacity", "nvme_capacity",
                          "tenants_file", "io_timeout", "drain_timeout", "max_connections"}) {
    EXPECT_NE(help.out.find(key), std::string::npos) << key;
  }
  BinaryRun bad = Run("--no-such-flag 1");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("no-such-flag"), std::string::npos) << bad.err;
  // One pointer to --help, whether the message carries it or not.
  for (const char* args : {"--no-such-flag 1", "--control-port 99999"}) {
    const BinaryRun r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    const size_t first = r.err.find("--help");
    EXPECT_NE(first, std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(r.err.find("--help", first + 1), std::string::npos) << args << ": " << r.err;
  }
}

TEST_F(KvaultdProtocolTest, StartsOnLoopbackWithDefaultsAndStopsOnSigterm) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.ready_line() << d.Stderr();
  EXPECT_NE(d.ready_line().find("control=127.0.0.1:"), std::string::npos);
  EXPECT_NE(d.ready_line().find("tiers=host,nvme"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir_ / "kvault-data" / "nvme"));
  RawConnection c(d.control_port());
  EXPECT_TRUE(c.Ping());
  EXPECT_TRUE(c.Login());
  EXPECT_EQ(d.Terminate(), 0) << d.Stderr();
}

TEST_F(KvaultdProtocolTest, DefaultTenantRefusesNonLoopbackBind) {
  BinaryRun r = Run("--control.host 0.0.0.0 --control.port 0 --http.port 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.err + r.out).find("loopback"), std::string::npos) << r.err;
}

TEST_F(KvaultdProtocolTest, BlockRequestsBeforeAuthGetUnauthenticated) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection c(d.control_port());
  transport::Lookup lookup;
  lookup.keys.push_back(BlockKey{});
  ASSERT_TRUE(c.SendMessage(lookup, 5));
  EXPECT_EQ(ErrorStatus(c), WireStatus::kUnauthenticated);
  // Positive control: after the handshake the same request is answered.
  ASSERT_TRUE(c.Login());
  ASSERT_TRUE(c.SendMessage(lookup, 6));
  auto reply = c.ReadMessage();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(std::holds_alternative<transport::LookupReply>(reply->first));
  EXPECT_EQ(std::get<transport::LookupReply>(reply->first).leading_hits, 0u);
}

// Before it authenticates, a connection may send nothing longer than the longest Hello: a frame
// announcing more is refused from its header, before the daemon buffers a byte of its body (a
// connection without a token cannot make it hold max_body_bytes). Positive controls: the longest
// Hello is read, and after authentication a frame of the same length is served.
TEST_F(KvaultdProtocolTest, AFrameLongerThanAHelloBeforeAuthIsRefusedUnread) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  transport::Lookup lookup;  // 4096 keys: 128 KiB, far past any Hello
  lookup.keys.assign(4096, BlockKey{});
  const std::vector<uint8_t> frame = *transport::EncodeFrame(lookup, 11);
  ASSERT_GT(frame.size() - transport::kFrameHeaderBytes,
            transport::MaxBodyBeforeAuth(transport::ProtocolLimits{}));
  {
    RawConnection c(d.control_port());
    c.Send(std::span(frame).first(transport::kFrameHeaderBytes));  // the header alone
    EXPECT_EQ(ErrorStatus(c), WireStatus::kOutOfRange);
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  EXPECT_NE(d.Stderr().find("before authentication"), std::string::npos) << d.Stderr();
  {
    RawConnection c(d.control_port());
    transport::Hello hello;
    hello.tenant.assign(transport::ProtocolLimits{}.max_string_bytes, 't');
    hello.client_name.assign(transport::ProtocolLimits{}.max_string_bytes, 'c');
    hello.worker_address.assign(transport::ProtocolLimits{}.max_worker_address_bytes, 0x5A);
    ASSERT_TRUE(c.SendMessage(hello, 12));
    auto reply = c.ReadMessage();
    ASSERT_TRUE(reply);
    EXPECT_TRUE(std::holds_alternative<transport::HelloReply>(reply->first))
        << "the longest Hello was refused";
  }
  RawConnection c(d.control_port());
  ASSERT_TRUE(c.Login());
  ASSERT_TRUE(c.Send(frame));
  auto reply = c.ReadMessage();
  ASSERT_TRUE(reply);
  ASSERT_TRUE(std::holds_alternative<transport::LookupReply>(reply->first));
  EXPECT_EQ(std::get<transport::LookupReply>(reply->first).leading_hits, 0u);
}

TEST_F(KvaultdProtocolTest, BadInputClosesOnlyItsOwnConnection) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection good(d.control_port());
  ASSERT_TRUE(good.Login());

  std::vector<uint8_t> valid = *transport::EncodeFrame(transport::Ping{1}, 3);
  // Random bytes.
  {
    RawConnection c(d.control_port());
    std::mt19937 rng(1);
    std::vector<uint8_t> junk(200);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    c.Send(junk);
    EXPECT_TRUE(ErrorStatus(c).has_value());
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  // Wrong version.
  {
    RawConnection c(d.control_port());
    std::vector<uint8_t> f = valid;
    f[4] = 9;  // version, little-endian u16 after the magic
    c.Send(f);
    EXPECT_EQ(ErrorStatus(c), WireStatus::kUnsupportedVersion);
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  // Unknown type.
  {
    RawConnection c(d.control_port());
    std::vector<uint8_t> f = valid;
    f[6] = 0x7E;
    f[7] = 0x01;
    c.Send(f);
    EXPECT_TRUE(ErrorStatus(c).has_value());
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  // Oversized body length: refused from the header alone, nothing allocated.
  {
    RawConnection c(d.control_port());
    std::vector<uint8_t> f = valid;
    f[20] = 0xFF;
    f[21] = 0xFF;
    f[22] = 0xFF;
    f[23] = 0x7F;
    c.Send(std::span(f).first(transport::kFrameHeaderBytes));
    EXPECT_TRUE(ErrorStatus(c).has_value());
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  // A lookup whose key count says more than its body holds.
  {
    RawConnection c(d.control_port());
    ASSERT_TRUE(c.Login());
    transport::Lookup lookup;
    lookup.keys.assign(2, BlockKey{});
    std::vector<uint8_t> f = *transport::EncodeFrame(lookup, 8);
    f.resize(f.size() - 10);
    const uint32_t body = static_cast<uint32_t>(f.size() - transport::kFrameHeaderBytes);
    std::memcpy(f.data() + 20, &body, 4);
    c.Send(f);
    EXPECT_TRUE(ErrorStatus(c).has_value());
    EXPECT_TRUE(c.ClosedWithin(5s));
  }
  // Truncated frame, then the client goes away.
  {
    RawConnection c(d.control_port());
    c.Send(std::span(valid).first(10));
  }
  // The well-behaved client was served throughout.
  EXPECT_TRUE(good.Ping(1234));
  RawConnection after(d.control_port());
  EXPECT_TRUE(after.Login());
}

// Frames back to back in one segment, a body larger than the daemon's read-ahead buffer among
// them, and a frame split across two sends: every request is answered, in order, with its id.
TEST_F(KvaultdProtocolTest, PipelinedAndSplitFramesAreAnsweredInOrder) {
  DaemonProcess d(dir_, {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection c(d.control_port());
  ASSERT_TRUE(c.Login());
  transport::Lookup lookup;
  lookup.keys.resize(1000);  // 32 KB of keys: past the 16 KiB read-ahead
  for (size_t i = 0; i < lookup.keys.size(); ++i) lookup.keys[i].fill(static_cast<uint8_t>(i));
  std::vector<uint8_t> burst;
  auto append = [&burst](const std::vector<uint8_t>& frame) {
    burst.insert(burst.end(), frame.begin(), frame.end());
  };
  for (uint64_t id = 100; id < 120; ++id) append(*transport::EncodeFrame(transport::Ping{id}, id));
  append(*transport::EncodeFrame(lookup, 120));
  for (uint64_t id = 121; id < 124; ++id) append(*transport::EncodeFrame(transport::Ping{id}, id));
  ASSERT_TRUE(c.Send(burst));
  for (uint64_t id = 100; id < 124; ++id) {
    auto reply = c.ReadMessage();
    ASSERT_TRUE(reply.has_value()) << "no reply for request " << id;
    EXPECT_EQ(reply->second, id);
    if (id == 120) {
      ASSERT_TRUE(std::holds_alternative<transport::LookupReply>(reply->first));
      EXPECT_EQ(std::get<transport::LookupReply>(reply->first).leading_hits, 0u);
      EXPECT_EQ(std::get<transport::LookupReply>(reply->first).tiers.size(), 1000u);
    } else {
      ASSERT_TRUE(std::holds_alternative<transport::Pong>(reply->first));
      EXPECT_EQ(std::get<transport::Pong>(reply->first).payload, id);
    }
  }
  // One frame in two parts, the second 100 ms later (well within limits.io_timeout).
  const std::vector<uint8_t> ping = *transport::EncodeFrame(transport::Ping{7}, 200);
  ASSERT_TRUE(c.Send(std::span(ping).first(10)));
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(c.Send(std::span(ping).subspan(10)));
  auto reply = c.ReadMessage();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->second, 200u);
  EXPECT_TRUE(std::holds_alternative<transport::Pong>(reply->first));
}

TEST_F(KvaultdProtocolTest, ByteASecondClientIsCutOffWhileOthersAreServed) {
  DaemonProcess d(dir_, {"--limits.io_timeout", "1s"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection slow(d.control_port());
  RawConnection good(d.control_port());
  ASSERT_TRUE(good.Login());
  std::vector<uint8_t> frame = *transport::EncodeFrame(transport::Ping{1}, 3);
  const auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (size_t i = 0; i < frame.size() && !cut; ++i) {
    slow.Send(std::span(frame).subspan(i, 1));
    EXPECT_TRUE(good.Ping(i + 10));  // served in between
    cut = slow.ClosedWithin(1s);
  }
  EXPECT_TRUE(cut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
}

TEST_F(KvaultdProtocolTest, ConnectionsOverTheLimitAreRefused) {
  DaemonProcess d(dir_, {"--limits.max_connections", "2"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  auto a = std::make_unique<RawConnection>(d.control_port());
  RawConnection b(d.control_port());
  ASSERT_TRUE(a->Ping());
  ASSERT_TRUE(b.Ping());
  RawConnection c(d.control_port());
  EXPECT_TRUE(c.ClosedWithin(5s));
  // Positive control: once one closes, a new connection is served. The daemon frees the slot
  // when it sees the close; until then a new connection is refused like c, so retry (10 s at
  // most) instead of guessing how long that takes.
  a.reset();
  EXPECT_TRUE(Eventually(
      [&] {
        RawConnection e(d.control_port());
        return e.Ping();
      },
      10s));
}

TEST_F(KvaultdProtocolTest, TenantsNeedTheirTokenAndAreScoped) {
  const std::string hash_a = HexEncode(TokenHash("secret-a"));
  const std::string hash_b = HexEncode(TokenHash("secret-b"));
  {
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: team-a\n    token_sha256: " << hash_a
      << "\n    quota_bytes: 0\n  - name: team-b\n    token_sha256: " << hash_b
      << "\n    quota_bytes: 0\n";
  }
  fs::permissions(dir_ / "tenants.yaml", fs::perms::owner_read | fs::perms::owner_write);
  DaemonProcess d(dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string()});
  ASSERT_TRUE(d.ok()) << d.ready_line() << d.Stderr();
  EXPECT_NE(d.ready_line().find("tenants=2"), std::string::npos);
  RawConnection wrong(d.control_port());
  EXPECT_FALSE(wrong.Login("team-a", "secret-b"));
  RawConnection none(d.control_port());
  EXPECT_FALSE(none.Login("", ""));
  RawConnection right(d.control_port());
  EXPECT_TRUE(right.Login("team-a", "secret-a"));
  // The daemon never prints tokens or hashes.
  EXPECT_EQ(d.Stderr().find(hash_a), std::string::npos);
  EXPECT_EQ(d.ready_line().find(hash_a), std::string::npos);
}

// UCX trusts peers it reaches through shared memory or CMA, so a daemon serving tenants warns when
// its transports are set to allow those; unset (^shm then) or tcp it does not (and still serves
// a tenant).
TEST_F(KvaultdProtocolTest, ServingTenantsOverSharedMemoryIsWarnedAbout) {
  const std::string hash_a = HexEncode(TokenHash("secret-a"));
  {
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: team-a\n    token_sha256: " << hash_a << "\n    quota_bytes: 0\n";
  }
  fs::permissions(dir_ / "tenants.yaml", fs::perms::owner_read | fs::perms::owner_write);
  const std::string warning =
      "lets clients on this host reach the data plane through shared memory";
  for (const char* transports : {"", "posix,cma", "tcp"}) {
    SCOPED_TRACE(std::string("transports '") + transports + "'");
    std::string log;
    {
      DaemonProcess d(dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string(),
                             "--ucx.transports", transports, "--storage.nvme_capacity", "0"});
      ASSERT_TRUE(d.ok()) << d.Stderr();
      RawConnection right(d.control_port());
      EXPECT_TRUE(right.Login("team-a", "secret-a"));
      EXPECT_EQ(d.Terminate(), 0);
      log = d.Stderr();
    }
    // Unset, the tenants' daemon leaves shared memory out of UCX (^shm; local clients move
    // data through process memory): nothing to warn about.
    EXPECT_EQ(log.find(warning) != std::string::npos, std::string(transports) == "posix,cma")
        << log;
  }
  // Without a tenants file (one trusted tenant) there is nothing to warn about.
  DaemonProcess single(dir_, {"--storage.nvme_capacity", "0"});
  ASSERT_TRUE(single.ok()) << single.Stderr();
  EXPECT_EQ(single.Terminate(), 0);
  EXPECT_EQ(single.Stderr().find(warning), std::string::npos) << single.Stderr();
}

// log_level decides what reaches stderr: refusals, failed logins and connections are logged at
// debug (and warn), none of it at error; tokens and their hashes never appear at any level.
TEST_F(KvaultdProtocolTest, LogLinesFollowTheLevelAndNeverCarrySecrets) {
  const std::string hash_a = HexEncode(TokenHash("secret-a"));
  {
    std::ofstream f(dir_ / "tenants.yaml");
    f << "tenants:\n  - name: team-a\n    token_sha256: " << hash_a << "\n    quota_bytes: 0\n";
  }
  fs::permissions(dir_ / "tenants.yaml", fs::perms::owner_read | fs::perms::owner_write);
  for (const std::string level : {"debug", "error"}) {
    SCOPED_TRACE("log level " + level);
    std::string log;
    {
      DaemonProcess d(dir_, {"--auth.tenants_file", (dir_ / "tenants.yaml").string(), "--log-level",
                             level, "--storage.nvme_capacity", "0"});
      ASSERT_TRUE(d.ok()) << d.Stderr();
      RawConnection wrong(d.control_port());
      EXPECT_FALSE(wrong.Login("team-a", "secret-b"));
      {
        RawConnection junk(d.control_port());
        junk.Send(std::vector<uint8_t>(64, 0x5a));
        EXPECT_TRUE(junk.ClosedWithin(5s));
      }
      RawConnection right(d.control_port());
      EXPECT_TRUE(right.Login("team-a", "secret-a"));
      EXPECT_EQ(d.Terminate(), 0);
      log = d.Stderr();
    }
    if (level == "debug") {
      for (const char* line :
           {" info kvaultd: serving: tiers host",
            " debug control: 127.0.0.1:", "connected (session ", " warn auth: session ",
            "authentication failed for tenant 'team-a'", " warn control: 127.0.0.1:",
            "refused (malformed): frame header: ", " debug auth: session ",
            "authenticated as tenant 'team-a'", " info kvaultd: SIGTERM received, draining",
            " info kvaultd: stopped"}) {
        EXPECT_NE(log.find(line), std::string::npos) << line << "\n" << log;
      }
    } else {
      for (const char* absent : {" debug ", " info ", " warn "}) {
        EXPECT_EQ(log.find(absent), std::string::npos) << absent << "\n" << log;
      }
    }
    for (const std::string& secret : {std::string("secret-a"), std::string("secret-b"), hash_a}) {
      EXPECT_EQ(log.find(secret), std::string::npos) << secret;
    }
  }
}

TEST_F(KvaultdProtocolTest, HttpEndpointsAndMetricsPassPromtool) {
  DaemonProcess d(dir_, {});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection c(d.control_port());
  ASSERT_TRUE(c.Login());
  ASSERT_TRUE(c.Ping());
  EXPECT_NE(HttpGet(d.http_port(), "/healthz").find("200"), std::string::npos);
  EXPECT_NE(HttpGet(d.http_port(), "/readyz").find("200"), std::string::npos);
  const std::string metrics = HttpGet(d.http_port(), "/metrics");
  ASSERT_NE(metrics.find("200 OK"), std::string::npos);
  const std::string body = metrics.substr(metrics.find("\r\n\r\n") + 4);
  for (const char* name :
       {"kvault_connections", "kvault_request_duration_seconds", "kvault_rejected_requests_total",
        "kvault_tier_capacity_bytes", "kvault_client_memory_faults_total"}) {
    EXPECT_NE(body.find(name), std::string::npos) << name;
  }
  {
    std::ofstream f(dir_ / "metrics.txt");
    f << body;
  }
  if (std::system("command -v promtool >/dev/null") != 0) GTEST_SKIP() << "promtool not installed";
  const std::string cmd = "promtool check metrics < '" + (dir_ / "metrics.txt").string() + "' > '" +
                          (dir_ / "promtool.out").string() + "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << Slurp(dir_ / "promtool.out");
}

}  // namespace
}  // namespace kvault::testing
