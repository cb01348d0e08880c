// kvaultd's limits on connections that have not authenticated (docs/daemon.md, "Limits and
// deadlines"): the handshake deadline closes sockets that never authenticate while authenticated
// clients are served, and the per-address cap refuses one host's extra unauthenticated socket
// while authenticated clients and other hosts still get in. Both with a real kvaultd process.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "binary_run.h"
#include "daemon_process.h"
#include "kvault/transport/messages.h"
#include "raw_connection.h"

namespace kvault::testing {
namespace {

using namespace std::chrono_literals;

class KvaultdHandshakeLimitsTest : public BinaryTest {
 protected:
  KvaultdHandshakeLimitsTest() : BinaryTest("kvaultd") {}

  // kvault_rejected_requests_total{reason="<reason>"} from /metrics; -1 when absent.
  static double Rejected(const DaemonProcess& d, const std::string& reason) {
    return MetricValue(d.http_port(), "kvault_rejected_requests_total{reason=\"" + reason + "\"}")
        .value_or(-1);
  }

  // A connection to `port` that logged in within 10 s, reconnecting while the daemon refuses it:
  // a connection the daemon closed (or saw closed) leaves its counts a moment later, on its io
  // thread. Null when none got in.
  static std::unique_ptr<RawConnection> LoginWithin10s(uint16_t port) {
    std::unique_ptr<RawConnection> c;
    const bool in = Eventually(
        [&] {
          c = std::make_unique<RawConnection>(port);
          return c->Login();
        },
        10s);
    return in ? std::move(c) : nullptr;
  }
};

// Without the deadline, max_connections sockets that never send a byte would keep every client out
// for limits.idle_timeout (10 minutes by default).
TEST_F(KvaultdHandshakeLimitsTest, SilentSocketsAreClosedAtTheHandshakeDeadline) {
  DaemonProcess d(dir_, {"--limits.max_connections", "4", "--limits.handshake_timeout", "2s"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  RawConnection good(d.control_port());
  ASSERT_TRUE(good.Login());
  // Three more fill the table: two say nothing, one says hello and stops there. Their deadlines
  // run from their accept, which is after `opened`.
  const auto opened = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(std::make_unique<RawConnection>(d.control_port()));
  ASSERT_TRUE(idle[0]->SendMessage(transport::Hello{}, 1));
  auto hello = idle[0]->ReadMessage(5s);
  ASSERT_TRUE(hello && std::holds_alternative<transport::HelloReply>(hello->first));
  // The table is full: a fifth is refused at once (long before the deadline).
  RawConnection extra(d.control_port());
  EXPECT_TRUE(extra.ClosedWithin(1s));
  for (auto& c : idle) EXPECT_TRUE(c->ClosedWithin(10s));
  EXPECT_GE(std::chrono::steady_clock::now() - opened, 1500ms) << "closed before the deadline";
  // The authenticated connection stays, and a new client gets in now that the slots are free.
  EXPECT_TRUE(good.Ping());
  std::unique_ptr<RawConnection> late = LoginWithin10s(d.control_port());
  ASSERT_NE(late, nullptr) << "the closed connections never left the count\n" << d.Stderr();
  EXPECT_TRUE(late->Ping());
  EXPECT_NE(d.Stderr().find("not authenticated within limits.handshake_timeout"), std::string::npos)
      << d.Stderr();
  EXPECT_GE(Rejected(d, "timeout"), 3);
}

TEST_F(KvaultdHandshakeLimitsTest, OneAddressCannotHoldMoreUnauthenticatedSockets) {
  DaemonProcess d(
      dir_, {"--limits.max_unauthenticated_per_peer", "2", "--limits.handshake_timeout", "1m"});
  ASSERT_TRUE(d.ok()) << d.Stderr();
  // Authenticated connections do not count against their address.
  RawConnection good(d.control_port());
  ASSERT_TRUE(good.Login());
  auto silent = std::make_unique<RawConnection>(d.control_port());
  RawConnection silent2(d.control_port());
  RawConnection extra(d.control_port());
  EXPECT_TRUE(extra.ClosedWithin(2s));
  EXPECT_FALSE(silent->ClosedWithin(200ms));
  EXPECT_FALSE(silent2.ClosedWithin(200ms));
  EXPECT_EQ(Rejected(d, "too_many_connections"), 1);
  EXPECT_NE(d.Stderr().find("limits.max_unauthenticated_per_peer (2)"), std::string::npos)
      << d.Stderr();
  // Positive controls: the authenticated client is served, another host gets in, and once one of
  // the silent sockets goes, this address may start a handshake again.
  EXPECT_TRUE(good.Ping());
  RawConnection other_host(d.control_port(), "127.0.0.2");
  ASSERT_TRUE(other_host.connected());
  EXPECT_TRUE(other_host.Login());
  EXPECT_TRUE(other_host.Ping());
  silent.reset();
  std::unique_ptr<RawConnection> again = LoginWithin10s(d.control_port());
  ASSERT_NE(again, nullptr) << "the closed socket never left its address's count\n" << d.Stderr();
  EXPECT_TRUE(again->Ping());
}

}  // namespace
}  // namespace kvault::testing
