// DeferredCloser: what it is given gets closed, off the caller's thread; a close that does not
// return (here a TCP socket lingering over unsent data, as a file system that never answers a
// close would) holds up only the later closes of the same user, shows in pending(), and does
// not hold up the destructor past its bound.
#include "control/deferred_closer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

namespace kvault::server {
namespace {

// Waits up to 10 s for `done`.
template <typename F>
bool Eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A connected loopback TCP socket whose close waits `linger` for data the peer never reads.
// *peer keeps the other end open (and unread).
UniqueFd LingeringSocket(int linger_seconds, UniqueFd* listener, UniqueFd* peer) {
  *listener = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  EXPECT_EQ(bind(listener->get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(listener->get(), 1), 0);
  EXPECT_EQ(getsockname(listener->get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int small = 4096;
  setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  *peer = UniqueFd(accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  setsockopt(peer->get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  fcntl(client.get(), F_SETFL, O_NONBLOCK);
  std::vector<char> bytes(65536);
  while (write(client.get(), bytes.data(), bytes.size()) > 0) {
  }
  const linger wait{1, linger_seconds};
  setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &wait, sizeof wait);
  return client;
}

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

TEST(DeferredCloserTest, ClosesWhatItIsGiven) {
  DeferredCloser closer;
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  UniqueFd write_end(fds[1]);
  closer.Close(UniqueFd(fds[0]), 7);
  closer.Close(UniqueFd(), 7);  // nothing to close
  EXPECT_TRUE(Eventually([&] { return closer.pending() == 0 && !IsOpen(fds[0]); }));
  EXPECT_EQ(closer.pending_of(7), 0u);
  EXPECT_TRUE(IsOpen(fds[1]));  // positive control: what it was not given stays open
}

TEST(DeferredCloserTest, AStuckCloseHoldsUpOnlyThatUsersLaterCloses) {
  UniqueFd listener, peer;
  UniqueFd lingering = LingeringSocket(30, &listener, &peer);
  auto closer = std::make_unique<DeferredCloser>();
  const auto start = std::chrono::steady_clock::now();
  closer->Close(std::move(lingering), 1);
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  int more[2];
  ASSERT_EQ(pipe2(more, O_CLOEXEC), 0);
  UniqueFd more_write(more[1]);
  closer->Close(UniqueFd(more[0]), 1);  // behind user 1's stuck close
  closer->Close(UniqueFd(fds[0]), 2);
  closer->Close(UniqueFd(fds[1]), 2);
  // The caller went on at once; another user's descriptors are closed meanwhile (positive
  // control), while user 1's second one waits behind its first.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(Eventually([&] { return !IsOpen(fds[0]) && !IsOpen(fds[1]); }));
  EXPECT_TRUE(Eventually([&] { return closer->pending_of(2) == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(IsOpen(more[0]));
  EXPECT_EQ(closer->pending(), 2u);
  EXPECT_EQ(closer->pending_of(1), 2u);  // counted per user, the one being closed included
  closer.reset();  // gives up on the stuck thread after its bound
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

}  // namespace
}  // namespace kvault::server
