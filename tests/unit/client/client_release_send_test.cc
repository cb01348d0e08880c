// A region's ReleaseMemory whose send fails: the failure fails the connection on the releasing
// thread, which completes the other pending requests there; one of them may hold the last
// reference to another region, whose release then runs re-entrantly on the same thread. That
// must neither deadlock nor reach the dead connection.
//
// The failing send is injected by interposing send(2) in this test binary: only on a thread
// that asks for it, so the fake daemon and the client's io thread are unaffected.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include "fake_server.h"
#include "kvault/client.h"

namespace {
thread_local bool fail_sends_here = false;
}  // namespace

// Every send(2) of the process comes here first.
extern "C" ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if (fail_sends_here) {
    errno = ECONNRESET;
    return -1;
  }
  return static_cast<ssize_t>(::syscall(SYS_sendto, fd, buf, n, flags, nullptr, 0));
}

namespace kvault {
namespace {

using std::chrono::milliseconds;
using testing::FakeServer;

TEST(ClientReleaseSend, FailedReleaseThatReleasesAnotherRegionDoesNotDeadlock) {
  FakeServer server(FakeServer::Mode::kIgnoreRequests);
  ClientConfig c;
  c.server = server.address();
  c.connect_timeout = milliseconds(2000);
  c.request_timeout = milliseconds(300);
  Result<std::unique_ptr<Client>> client = Client::Connect(c);
  if (!client.ok() && client.status().message().find("UCX") != std::string::npos &&
      client.status().message().find("worker proof") == std::string::npos) {
    GTEST_SKIP() << "UCX unavailable: " << client.status().ToString();
  }
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  Result<MemoryRegion> first = (*client)->AllocateMemory(16 * 1024);
  Result<MemoryRegion> second = (*client)->AllocateMemory(16 * 1024);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  BlockKey key{};
  key.fill(7);
  // Unanswered: the request's settled callback holds the last reference to `second`.
  const std::vector<std::span<const uint8_t>> sources = {second->bytes().first(256)};
  StoreHandle pending =
      (*client)->Store({&key, 1}, sources, {.deadline = Clock::now() + milliseconds(10'000)});
  { MemoryRegion dropped = std::move(*second); }
  ASSERT_FALSE(pending.Poll());

  // Dropping `first` sends its release on this thread; the send fails.
  std::promise<void> released;
  std::thread releaser([&] {
    fail_sends_here = true;
    { MemoryRegion dropped = std::move(*first); }
    fail_sends_here = false;
    released.set_value();
  });
  if (released.get_future().wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "releasing a region deadlocked on a failed send";
    std::fflush(nullptr);
    std::_Exit(1);  // the stuck thread cannot be joined
  }
  releaser.join();

  EXPECT_TRUE(pending.Poll());
  EXPECT_EQ(pending.Wait().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(pending.WaitSettled(Clock::now() + milliseconds(2000)));
  EXPECT_FALSE((*client)->connected());
}

}  // namespace
}  // namespace kvault
