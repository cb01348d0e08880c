// Client against a fake daemon on loopback: handshake, deadlines, and every way a connection can
// go wrong (refused, silent, closed mid-request, garbage, stalled, wrong reply id). No data plane.
#include <gtest/gtest.h>

#include <thread>

#include "fake_server.h"
#include "kvault/client.h"

namespace kvault {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;

ClientConfig ConfigFor(const std::string& address) {
  ClientConfig c;
  c.server = address;
  c.data_plane = false;
  c.connect_timeout = milliseconds(1000);
  c.request_timeout = milliseconds(1000);
  c.reconnect_backoff = milliseconds(0);
  c.client_name = "connection-test";
  return c;
}

std::vector<BlockKey> Keys(size_t n) {
  std::vector<BlockKey> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i].fill(static_cast<uint8_t>(i + 1));
  return keys;
}

milliseconds Since(Deadline t0) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
}

bool Contains(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

TEST(ClientConnection, HandshakeAnnouncesTenantAndNameAndProvesTheToken) {
  FakeServer server(FakeServer::Mode::kServe, "s3cret");
  ClientConfig c = ConfigFor(server.address());
  c.tenant = "team-a";
  c.token = "s3cret";
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->connected());
  EXPECT_EQ((*client)->session_id(), 101u);
  const transport::Hello hello = server.last_hello();
  EXPECT_EQ(hello.tenant, "team-a");
  EXPECT_EQ(hello.client_name, "connection-test");
  EXPECT_TRUE(hello.worker_address.empty());  // no data plane
}

TEST(ClientConnection, WrongTokenIsRefusedWithUnauthenticated) {
  FakeServer server(FakeServer::Mode::kServe, "s3cret");
  ClientConfig c = ConfigFor(server.address());
  c.token = "guess";
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(client.status(), "unauthenticated")) << client.status().ToString();
}

TEST(ClientConnection, UnusedPortIsRefusedQuickly) {
  ClientConfig c = ConfigFor("127.0.0.1:" + std::to_string(testing::UnusedPort()));
  const Deadline t0 = Clock::now();
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(client.status(), "cannot connect")) << client.status().ToString();
  EXPECT_LT(Since(t0), milliseconds(1000));
}

TEST(ClientConnection, SilentDaemonFailsConnectWithinTheConnectTimeout) {
  FakeServer server(FakeServer::Mode::kSilent);
  ClientConfig c = ConfigFor(server.address());
  c.connect_timeout = milliseconds(200);
  const Deadline t0 = Clock::now();
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(client.status(), "deadline exceeded")) << client.status().ToString();
  EXPECT_TRUE(Contains(client.status(), "hello")) << client.status().ToString();
  EXPECT_GE(Since(t0), milliseconds(190));
  EXPECT_LT(Since(t0), milliseconds(2000));  // bounded by the deadline, not a hang
}

TEST(ClientConnection, ServedRequestsReturnTheirReplies) {
  FakeServer server(FakeServer::Mode::kServe);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Client& cl = **client;

  Result<std::chrono::nanoseconds> rtt = cl.Ping();
  ASSERT_TRUE(rtt.ok()) << rtt.status().ToString();
  EXPECT_GT(rtt->count(), 0);

  const std::vector<BlockKey> keys = Keys(4);
  LookupResult hit = cl.LookupPrefix(keys, {.want_lease = true, .deadline = std::nullopt});
  ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
  EXPECT_EQ(hit.leading_hits, 2u);
  ASSERT_EQ(hit.tiers.size(), 4u);
  EXPECT_EQ(hit.tiers[0], Tier::kHost);
  EXPECT_EQ(hit.tiers[3], Tier::kNone);
  EXPECT_EQ(hit.lease.id, 99u);
  EXPECT_EQ(hit.lease.session, cl.session_id());
  EXPECT_GT(hit.lease.expiry, Clock::now());
  EXPECT_TRUE(cl.ReleaseLease(hit.lease).ok());

  Result<std::vector<Status>> deleted = cl.Delete(keys);
  ASSERT_TRUE(deleted.ok());
  ASSERT_EQ(deleted->size(), 4u);
  EXPECT_EQ((*deleted)[0].code(), StatusCode::kNotFound);

  Result<std::vector<ServerStat>> stats = cl.Stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->size(), 3u);
  EXPECT_EQ((*stats)[0].name, "host.used_bytes");
  EXPECT_EQ((*stats)[0].AsDouble(), 1024.0);
  EXPECT_EQ((*stats)[2].AsDouble(), 0.5);

  // No data plane: block transfers are refused up front.
  StoreHandle store = cl.Store({}, {});
  EXPECT_EQ(store.Wait().code(), StatusCode::kUnsupported);
}

TEST(ClientConnection, PipelinedCallsFromManyThreadsAllComplete) {
  FakeServer server(FakeServer::Mode::kServe);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if ((*client)->Ping().ok() && (*client)->LookupPrefix(Keys(3)).status.ok()) ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST(ClientConnection, SilentDaemonTurnsALookupIntoAMissWithinItsDeadline) {
  FakeServer server(FakeServer::Mode::kIgnoreRequests);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const Deadline t0 = Clock::now();
  LookupResult r = (*client)->LookupPrefix(Keys(3), {.deadline = t0 + milliseconds(150)});
  const milliseconds took = Since(t0);
  EXPECT_EQ(r.leading_hits, 0u);
  EXPECT_TRUE(r.tiers.empty());
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(r.status, "deadline exceeded")) << r.status.ToString();
  EXPECT_GE(took, milliseconds(145));
  EXPECT_LT(took, milliseconds(2000));  // bounded by the deadline, not a hang
  // The connection itself is still up: only the request gave up.
  EXPECT_TRUE((*client)->connected());
}

// Requests share one deadline timer: a short deadline sent after a long one must still end on
// time, and the long one must not end early. The deadlines are far apart (0.1 s and 5 s) so that
// a thread the machine descheduled for a while cannot blur them.
TEST(ClientConnection, EachPendingRequestEndsAtItsOwnDeadline) {
  FakeServer server(FakeServer::Mode::kIgnoreRequests);
  ClientConfig c = ConfigFor(server.address());
  c.stall_timeout = milliseconds(60'000);
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  constexpr milliseconds kLong(5000);
  constexpr milliseconds kShort(100);
  const Deadline t0 = Clock::now();
  milliseconds long_took{};
  std::thread long_call([&] {
    LookupResult r = (*client)->LookupPrefix(Keys(1), {.deadline = t0 + kLong});
    long_took = Since(t0);
    EXPECT_TRUE(Contains(r.status, "deadline exceeded")) << r.status.ToString();
  });
  // The long request is pending once the daemon has it.
  while (server.requests(transport::MessageType::kLookup) < 1 && Since(t0) < milliseconds(4000)) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(server.requests(transport::MessageType::kLookup), 1);
  const Deadline t1 = Clock::now();
  LookupResult r = (*client)->LookupPrefix(Keys(2), {.deadline = t1 + kShort});
  const milliseconds short_took = Since(t1);
  const milliseconds short_ended = Since(t0);
  long_call.join();
  EXPECT_TRUE(Contains(r.status, "deadline exceeded")) << r.status.ToString();
  EXPECT_GE(short_took, kShort - milliseconds(5));
  // Its own deadline, not the earlier call's: the short call ended well before the long one's.
  EXPECT_LT(short_ended, kLong - milliseconds(1000));
  EXPECT_GE(long_took, kLong - milliseconds(5));
  EXPECT_LT(long_took, kLong + milliseconds(10'000));  // bounded, not a hang
  EXPECT_TRUE((*client)->connected());
}

TEST(ClientConnection, DaemonClosingMidRequestFailsItAtOnce) {
  auto server = std::make_unique<FakeServer>(FakeServer::Mode::kCloseOnRequest);
  ClientConfig c = ConfigFor(server->address());
  c.request_timeout = milliseconds(5000);
  c.reconnect_backoff = milliseconds(10'000);
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const Deadline t0 = Clock::now();
  LookupResult r = (*client)->LookupPrefix(Keys(2));
  EXPECT_LT(Since(t0), milliseconds(1000));  // not the 5 s deadline
  EXPECT_EQ(r.leading_hits, 0u);
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(r.status, "closed the connection")) << r.status.ToString();
  EXPECT_FALSE((*client)->connected());

  // The daemon is gone: the reconnect right after the loss is refused, and within the backoff
  // later calls fail at once without touching the network.
  server.reset();
  Result<std::chrono::nanoseconds> first = (*client)->Ping();
  EXPECT_TRUE(Contains(first.status(), "cannot connect")) << first.status().ToString();
  const Deadline t1 = Clock::now();
  Result<std::chrono::nanoseconds> ping = (*client)->Ping();
  EXPECT_EQ(ping.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(ping.status(), "next reconnect attempt")) << ping.status().ToString();
  EXPECT_LT(Since(t1), milliseconds(1000));
}

TEST(ClientConnection, GarbageFromTheDaemonFailsTheConnectionCleanly) {
  FakeServer server(FakeServer::Mode::kGarbage);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  LookupResult r = (*client)->LookupPrefix(Keys(2));
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(r.status, "undecodable frame")) << r.status.ToString();
  EXPECT_TRUE(Contains(r.status, "bad magic")) << r.status.ToString();
  EXPECT_FALSE((*client)->connected());
}

TEST(ClientConnection, ReplyToAnUnknownRequestIdFailsTheConnection) {
  FakeServer server(FakeServer::Mode::kWrongId);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Result<std::chrono::nanoseconds> ping = (*client)->Ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_TRUE(Contains(ping.status(), "unknown request id")) << ping.status().ToString();
  EXPECT_FALSE((*client)->connected());
}

TEST(ClientConnection, StalledDaemonIsDroppedAfterTheStallTimeout) {
  FakeServer server(FakeServer::Mode::kIgnoreRequests);
  ClientConfig c = ConfigFor(server.address());
  c.stall_timeout = milliseconds(2000);
  // Every other timer far off, so that only the stall timeout can drop the connection in time.
  c.request_timeout = milliseconds(60'000);
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const Deadline t0 = Clock::now();
  LookupResult r = (*client)->LookupPrefix(Keys(1), {.deadline = t0 + milliseconds(50)});
  EXPECT_EQ(r.status.code(), StatusCode::kUnavailable);
  // Only the request gave up: the connection stays up until the stall timeout, 2 s on.
  EXPECT_TRUE((*client)->connected());
  // Dropped about 2 s after t0; the bound only tells "dropped" from "never dropped".
  while ((*client)->connected() && Since(t0) < milliseconds(20'000)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_FALSE((*client)->connected());
}

TEST(ClientConnection, ReconnectsAfterALossAndVoidsTheOldSessionsLease) {
  FakeServer server(FakeServer::Mode::kCloseAfterOne);
  Result<std::unique_ptr<Client>> client = Client::Connect(ConfigFor(server.address()));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  Client& cl = **client;
  const uint64_t first_session = cl.session_id();
  LookupResult hit =
      cl.LookupPrefix(Keys(2), {.want_lease = true, .deadline = std::nullopt});  // served
  ASSERT_TRUE(hit.status.ok()) << hit.status.ToString();
  EXPECT_FALSE(cl.Ping().ok());                        // the fake closes on the second request
  Result<std::chrono::nanoseconds> again = cl.Ping();  // reconnects (backoff 0), then served
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(server.connections(), 2);
  EXPECT_NE(cl.session_id(), first_session);
  const Status released = cl.ReleaseLease(hit.lease);
  EXPECT_EQ(released.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(released, "lease_expired")) << released.ToString();
}

}  // namespace
}  // namespace kvault
