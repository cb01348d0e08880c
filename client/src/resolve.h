#pragma once
// Name resolution with a deadline, for the client's connects.
//
// getaddrinfo cannot be cancelled: glibc's resolver waits out its own timeouts (5 s per name
// server and attempt, per search domain) when DNS is slow or unreachable. Asio's resolver runs it
// on a thread that destroying the io_context joins, so a client reconnecting to a name whose DNS
// had gone away waited that long on the caller's thread, past the call's deadline. ResolveBy
// runs the lookup on a detached thread of its own and stops waiting at the deadline; that thread
// ends when getaddrinfo returns and frees what it holds. An address literal is converted on the
// calling thread, without a thread or the network. While DNS hangs, each reconnect starts one
// such thread (reconnect_backoff bounds how often); a process must not unload libkvault while
// one may still run.
//
// Thread-safety: may be called from any thread.

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/handles.h"

namespace kvault::client_internal {

struct ResolvedAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
};

// The TCP addresses of `host` (a name, or an IPv4 or IPv6 address literal without brackets) at
// `port`, in getaddrinfo's order: sockaddr_in or sockaddr_in6 only. Unavailable when the name does
// not resolve, or when it has not resolved by `deadline` (the lookup goes on in the background and
// its answer is dropped), or when no thread can be started for it.
Result<std::vector<ResolvedAddress>> ResolveBy(const std::string& host, uint16_t port,
                                               Deadline deadline);

// How a name is looked up: getaddrinfo's return code, the addresses in `out` (LookUpName is
// getaddrinfo for TCP). The seam for tests of a lookup slower than the deadline.
using NameLookup =
    std::function<int(const std::string& host, uint16_t port, std::vector<ResolvedAddress>* out)>;
int LookUpName(const std::string& host, uint16_t port, std::vector<ResolvedAddress>* out);
// ResolveBy with `lookup` for names (address literals are still converted here).
Result<std::vector<ResolvedAddress>> ResolveBy(const std::string& host, uint16_t port,
                                               Deadline deadline, NameLookup lookup);

}  // namespace kvault::client_internal
