// ReleaseChannel: a release made while no connection is attached reaches the next one only when
// kept (all of them, in order, unless dropped) (a region handed over as a file, which a new session
// gets again while it connects: the daemon must forget it if it died meanwhile); an ordinary one is
// dropped, since a new session starts with nothing cached. Against a fake daemon that records the
// ReleaseMemory requests.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "client_core.h"
#include "fake_server.h"

namespace kvault::client_internal {
namespace {

using testing::FakeServer;

std::shared_ptr<Connection> Connect(const FakeServer& server) {
  Result<HostPort> address = ParseHostPort(server.address());
  EXPECT_TRUE(address.ok());
  Result<std::shared_ptr<Connection>> conn =
      Connection::Open(*address, Clock::now() + std::chrono::seconds(5), std::chrono::seconds(5));
  EXPECT_TRUE(conn.ok()) << conn.status().ToString();
  return conn.ok() ? *conn : nullptr;
}

// The keys the server has received once it has `n` (or 5 s passed).
std::vector<std::vector<uint8_t>> ReleasedKeys(const FakeServer& server, size_t n) {
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (server.released_keys().size() < n && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return server.released_keys();
}

TEST(ReleaseChannelTest, AKeptReleaseReachesTheNextConnectionAndAnOrdinaryOneDoesNot) {
  FakeServer server(FakeServer::Mode::kServe);
  ReleaseChannel channel(std::chrono::milliseconds(1000));
  const std::vector<uint8_t> ordinary = {1, 2, 3};
  const std::vector<uint8_t> region = {4, 5, 6};
  channel.Send(ordinary);               // detached: dropped
  channel.Send(region, /*keep=*/true);  // detached: kept for the next connection
  std::shared_ptr<Connection> conn = Connect(server);
  ASSERT_NE(conn, nullptr);
  channel.Attach(conn.get());
  EXPECT_EQ(ReleasedKeys(server, 1), std::vector<std::vector<uint8_t>>{region});
  // Positive control: attached, an ordinary release goes at once; the kept one went only once.
  channel.Send(ordinary);
  EXPECT_EQ(ReleasedKeys(server, 2), (std::vector<std::vector<uint8_t>>{region, ordinary}));
  channel.Detach();
  channel.Attach(conn.get());
  // Attach sends whatever was kept before it returns, and Send queues after that on the same
  // connection: once a marker sent now has arrived, a second copy of the kept release would have
  // arrived before it.
  const std::vector<uint8_t> marker = {7, 8, 9};
  channel.Send(marker);
  EXPECT_EQ(ReleasedKeys(server, 3), (std::vector<std::vector<uint8_t>>{region, ordinary, marker}));
  channel.Detach();
}

// Every kept release reaches the next connection, in order; DropKept (a new session before it
// gets the live regions) forgets them.
TEST(ReleaseChannelTest, KeptReleasesAllGoInOrderUnlessDropped) {
  FakeServer server(FakeServer::Mode::kServe);
  ReleaseChannel channel(std::chrono::milliseconds(1000));
  channel.Send({9}, /*keep=*/true);
  channel.DropKept();
  constexpr size_t kKept = 300;
  for (size_t i = 0; i < kKept; ++i) {
    channel.Send({static_cast<uint8_t>(i), static_cast<uint8_t>(i >> 8)}, /*keep=*/true);
  }
  std::shared_ptr<Connection> conn = Connect(server);
  ASSERT_NE(conn, nullptr);
  channel.Attach(conn.get());
  const std::vector<std::vector<uint8_t>> got = ReleasedKeys(server, kKept);
  ASSERT_EQ(got.size(), kKept);
  for (size_t i = 0; i < kKept; ++i) {
    EXPECT_EQ(got[i], (std::vector<uint8_t>{static_cast<uint8_t>(i), static_cast<uint8_t>(i >> 8)}))
        << i;
  }
  channel.Detach();
}

}  // namespace
}  // namespace kvault::client_internal
