// ResolveBy: address literals are converted on the calling thread, names resolve through a thread
// of their own, a name that does not resolve is Unavailable, and the caller never waits past its
// deadline for a lookup (Asio's resolver thread, joined when a failed connection went, held a
// reconnecting caller for as long as DNS took).
#include "resolve.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

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

// A lookup slower than the deadline (a name server that does not answer): the caller is back at
// the deadline with "timed out", while the lookup finishes on its own thread. Positive control:
// the same slow lookup with time enough gives its address.
TEST(ResolveBy, ALookupSlowerThanTheDeadlineTimesOut) {
  const NameLookup slow = [](const std::string& host, uint16_t port,
                             std::vector<ResolvedAddress>* out) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return LookUpName(host == "slow.example" ? "127.0.0.1" : host, port, out);
  };
  const auto start = steady_clock::now();
  Result<std::vector<ResolvedAddress>> late =
      ResolveBy("slow.example", 7400, start + std::chrono::milliseconds(50), slow);
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(late.status().message().find("timed out"), std::string::npos)
      << late.status().ToString();
  EXPECT_LT(steady_clock::now() - start, std::chrono::milliseconds(450))
      << "the caller waited for the lookup";
  Result<std::vector<ResolvedAddress>> in_time =
      ResolveBy("slow.example", 7400, steady_clock::now() + std::chrono::seconds(30), slow);
  ASSERT_TRUE(in_time.ok()) << in_time.status().ToString();
  EXPECT_EQ(PortOf(in_time->at(0)), 7400);
}

}  // namespace
}  // namespace kvault::client_internal
