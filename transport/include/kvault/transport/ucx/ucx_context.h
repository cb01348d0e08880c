#pragma once
// UcxContext: RAII owner of a UCP context (ucp_init / ucp_cleanup) with the features the data
// plane needs: RMA (one-sided GET/PUT) and wakeup (so progress threads can sleep on an fd).
//
// Destruction order: every UcxWorker, UcxMemory (and through the workers every UcxEndpoint and
// UcxRemoteKey) made from a context must be destroyed before the context.
//
// Thread-safety: with `thread_safe` (the default) the context may be used from several threads
// at once (memory registration, remote-key packing, one worker per thread); otherwise it is
// thread-compatible. Movable, not copyable; a moved-from context is empty and may only be
// destroyed or assigned to.
//
// No UCX header is included: UCX types appear only as incomplete forward declarations.

#include <chrono>
#include <string>

#include "kvault/common/result.h"

struct ucp_context;

namespace kvault::transport {

struct UcxContextOptions {
  // Transports UCX may use, in UCX_TLS syntax: "tcp", "posix,cma", "posix,cma,tcp", "sm", ...
  // Pinning one lets tests and benchmarks measure a single path. Empty (the default): whatever
  // UCX chooses (the UCX_TLS environment variable if set, else every transport available).
  std::string transports;
  // Name shown in UCX diagnostics. Default "kvault".
  std::string name = "kvault";
  // How often UCX checks that the peers of this context's endpoints are alive; a dead peer's
  // endpoint fails within about two intervals. It matters where nothing else notices a death: a
  // server reading a client's UCX-allocated shared segment (UcxAgent::AllocateMemory) keeps
  // succeeding until the check runs. Shorter: faster detection, one small message per endpoint
  // per interval. Zero: UCX's default (20 s in 1.13). Default 1 s.
  std::chrono::milliseconds keepalive_interval{1000};
  // Make the context safe to share between threads (UCP mt_workers_shared). Costs a lock on
  // registration paths; needed when memory is registered on one thread while another progresses
  // a worker. Default true.
  bool thread_safe = true;
};

class UcxContext {
 public:
  // Unavailable when UCX cannot start (e.g. none of `transports` exists on this machine) and
  // InvalidArgument when `transports` is rejected by UCX's configuration parser.
  static Result<UcxContext> Create(const UcxContextOptions& options);

  UcxContext(UcxContext&& other) noexcept;
  UcxContext& operator=(UcxContext&& other) noexcept;
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;
  ~UcxContext();

  // The raw handle, for the other wrappers of this module. Null only when moved from.
  ucp_context* get() const { return context_; }
  // The transports this context was asked for ("" when UCX chose).
  const std::string& transports() const { return transports_; }

 private:
  UcxContext(ucp_context* context, std::string transports);

  ucp_context* context_ = nullptr;
  std::string transports_;
};

}  // namespace kvault::transport
