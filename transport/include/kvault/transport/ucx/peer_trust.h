#pragma once
// Whether a UCX transport list (UCX_TLS syntax: comma-separated names, the whole list optionally
// negated by one leading '^'; empty = every transport) lets peers on this host reach the process
// through shared memory or CMA (posix, sysv, xpmem, knem, cma, and the aliases sm, shm, mm, all).
// UCX 1.13 trusts such peers: the bytes of their worker addresses, remote keys and shared-memory
// queues decide what it maps, reads and writes here (transport/ucx.md, "Peers UCX trusts").
// A daemon serving tenants it does not trust asks this to warn. Pure; thread-safe.

#include <string_view>

namespace kvault::transport {

bool ReachesLocalPeersThroughSharedMemory(std::string_view ucx_tls);

}  // namespace kvault::transport
