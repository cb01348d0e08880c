// ReachesLocalPeersThroughSharedMemory on UCX_TLS lists: which ones let local peers reach the
// process through shared memory or CMA (kvaultd warns when it serves tenants with such a list).

#include "kvault/transport/ucx/peer_trust.h"

#include <gtest/gtest.h>

namespace kvault::transport {
namespace {

TEST(PeerTrustTest, ListsWithASharedMemoryOrCmaTransportReachLocalPeers) {
  for (const char* tls : {"", "all", "sm", "shm", "mm", "posix", "sysv", "cma", "tcp,cma",
                          "posix,cma", "tcp,shm", "^tcp", "^mm", "^posix,sysv"}) {
    EXPECT_TRUE(ReachesLocalPeersThroughSharedMemory(tls)) << "'" << tls << "'";
  }
}

TEST(PeerTrustTest, ListsWithoutThemDoNot) {
  for (const char* tls : {"tcp", "tcp,self", "rc,ud", "^sm", "^shm", "^all",
                          "^posix,sysv,cma,xpmem,knem", "^mm,cma,knem"}) {
    EXPECT_FALSE(ReachesLocalPeersThroughSharedMemory(tls)) << "'" << tls << "'";
  }
}

}  // namespace
}  // namespace kvault::transport
