// ResolveBy: address literals are converted on the calling thread, names resolve through a thread
// of their own, a name that does not resolve is Unavailable, and the caller never waits past its
// deadline for a lookup (Asio's resolver thread, joined when a failed connection went, held a
// reconnecting caller for as long as DNS took).
#include "resolve.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <chrono>

namespace kvault::client_internal {
namespace {

using std::chrono::steady_clock;

uint16_t PortOf(const ResolvedAddress& a) {
  if (a.address.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a.address)->sin_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.address)->sin6_port);
}

TEST(ResolveBy, AddressLiteralsNeedNoLookup) {
  // A deadline already passed: a literal is still converted.
  const auto past = steady_clock::now() - std::chrono::seconds(1);
  Result<std::vector<ResolvedAddress>> v4 = ResolveBy("127.0.0.1", 7400, past);
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ((*v4)[0].address.ss_family, AF_INET);
  EXPECT_EQ((*v4)[0].length, sizeof(sockaddr_in));
  EXPECT_EQ(PortOf((*v4)[0]), 7400);
  Result<std::vector<ResolvedAddress>> v6 = ResolveBy("::1", 65535, past);
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  ASSERT_EQ(v6->size(), 1u);
  EXPECT_EQ((*v6)[0].address.ss_family, AF_INET6);
  EXPECT_EQ(PortOf((*v6)[0]), 65535);
}

TEST(ResolveBy, ANameResolvesOrIsRefusedWithAReason) {
  const auto soon = steady_clock::now() + std::chrono::seconds(10);
  Result<std::vector<ResolvedAddress>> local = ResolveBy("localhost", 7400, soon);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  ASSERT_FALSE(local->empty());
  for (const ResolvedAddress& a : *local) EXPECT_EQ(PortOf(a), 7400);
  // A malformed name is refused by getaddrinfo itself.
  Result<std::vector<ResolvedAddress>> bad = ResolveBy("", 7400, soon);
  EXPECT_EQ(bad.status().code(), StatusCode::kUnavailable);
}

// However long the system's resolver takes for a name (here: one no name server knows, on a
// machine whose name servers may not even answer), the caller is back by its deadline.
TEST(ResolveBy, TheCallerNeverWaitsPastItsDeadline) {
  const auto start = steady_clock::now();
  Result<std::vector<ResolvedAddress>> r =
      ResolveBy("kvault-no-such-host.invalid", 7400, start + std::chrono::milliseconds(200));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(2)) << r.status().ToString();
}

}  // namespace
}  // namespace kvault::client_internal
