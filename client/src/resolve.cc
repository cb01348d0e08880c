// ResolveBy (resolve.h).

#include "resolve.h"

#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

namespace kvault::client_internal {
namespace {

// getaddrinfo for TCP with `flags` (no AI_ADDRCONFIG: on a host with only a loopback address it
// hides the loopback addresses too). Fills `out`, or returns getaddrinfo's error.
int Lookup(const std::string& host, uint16_t port, int flags, std::vector<ResolvedAddress>* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = flags;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (rc != 0) return rc;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const bool ip = (a->ai_family == AF_INET && a->ai_addrlen == sizeof(sockaddr_in)) ||
                    (a->ai_family == AF_INET6 && a->ai_addrlen == sizeof(sockaddr_in6));
    if (!ip) continue;  // only what a TCP endpoint holds
    ResolvedAddress r;
    std::memcpy(&r.address, a->ai_addr, a->ai_addrlen);
    r.length = a->ai_addrlen;
    out->push_back(r);
  }
  freeaddrinfo(found);
  return 0;
}

// `error`: errno as the thread that called getaddrinfo saw it (for EAI_SYSTEM).
Status NotResolved(const std::string& host, int rc, int error) {
  return Status::Unavailable("cannot resolve " + host + ": " +
                             (rc == EAI_SYSTEM ? std::strerror(error) : gai_strerror(rc)));
}

}  // namespace

int LookUpName(const std::string& host, uint16_t port, std::vector<ResolvedAddress>* out) {
  return Lookup(host, port, 0, out);
}

Result<std::vector<ResolvedAddress>> ResolveBy(const std::string& host, uint16_t port,
                                               Deadline deadline) {
  return ResolveBy(host, port, deadline, &LookUpName);
}

Result<std::vector<ResolvedAddress>> ResolveBy(const std::string& host, uint16_t port,
                                               Deadline deadline, NameLookup lookup) {
  std::vector<ResolvedAddress> literal;
  const int as_literal = Lookup(host, port, AI_NUMERICHOST, &literal);
  if (as_literal == 0) return literal;
  if (as_literal != EAI_NONAME) return NotResolved(host, as_literal, errno);

  // Shared with the lookup's thread, which may outlive this call.
  struct PendingLookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
    int error = 0;  // errno of the lookup's thread
    std::vector<ResolvedAddress> found;
  };
  auto state = std::make_shared<PendingLookup>();
  try {
    std::thread([state, host, port, lookup = std::move(lookup)] {
      std::vector<ResolvedAddress> found;
      const int rc = lookup(host, port, &found);
      const int error = errno;
      std::lock_guard lock(state->mu);
      state->rc = rc;
      state->error = error;
      state->found = std::move(found);
      state->done = true;
      state->cv.notify_all();
    }).detach();
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot resolve " + host + ": no thread for the lookup (" +
                               e.what() + ")");
  }
  std::unique_lock lock(state->mu);
  if (!state->cv.wait_until(lock, deadline, [&] { return state->done; })) {
    return Status::Unavailable("resolving " + host + " timed out (its name servers did not " +
                               "answer before the deadline)");
  }
  if (state->rc != 0) return NotResolved(host, state->rc, state->error);
  if (state->found.empty()) return Status::Unavailable("cannot resolve " + host + ": no address");
  return std::move(state->found);
}

}  // namespace kvault::client_internal
