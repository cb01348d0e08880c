#include "kvault/transport/ucx/peer_trust.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

namespace kvault::transport {
namespace {

// The transports of this kind, and what each alias stands for among them.
constexpr std::array<std::string_view, 5> kLocal = {"posix", "sysv", "xpmem", "knem", "cma"};

std::vector<std::string_view> Expand(std::string_view name) {
  // UCX's aliases: sm and shm are every shared-memory transport (cma and knem included), mm the
  // memory-mapping ones.
  if (name == "all" || name == "sm" || name == "shm") return {kLocal.begin(), kLocal.end()};
  if (name == "mm") return {"posix", "sysv", "xpmem"};
  if (std::find(kLocal.begin(), kLocal.end(), name) != kLocal.end()) return {name};
  return {};
}

}  // namespace

bool ReachesLocalPeersThroughSharedMemory(std::string_view ucx_tls) {
  const bool negated = !ucx_tls.empty() && ucx_tls.front() == '^';
  if (negated) ucx_tls.remove_prefix(1);
  if (ucx_tls.empty()) return true;  // UCX's default: every transport
  std::vector<std::string_view> named;
  while (!ucx_tls.empty()) {
    const size_t comma = std::min(ucx_tls.find(','), ucx_tls.size());
    for (std::string_view t : Expand(ucx_tls.substr(0, comma))) named.push_back(t);
    ucx_tls.remove_prefix(std::min(comma + 1, ucx_tls.size()));
  }
  if (!negated) return !named.empty();
  // "^..." keeps every transport it does not name.
  return std::any_of(kLocal.begin(), kLocal.end(), [&](std::string_view t) {
    return std::find(named.begin(), named.end(), t) == named.end();
  });
}

}  // namespace kvault::transport
