#include "kvault/transport/ucx/ucx_context.h"

#include <ucp/api/ucp.h>

#include <string>
#include <utility>

#include "ucx/ucx_status.h"

namespace kvault::transport {
namespace {

// True unless `transports` leaves every shared-memory transport out: a list that names none of
// them, or an exclusion list ("^...") that excludes them all (setting an option for a transport
// that is not opened makes UCX warn "invalid configuration" on every worker).
bool MayUseSharedMemory(const std::string& transports) {
  if (transports.empty()) return true;
  const bool exclusion = transports[0] == '^';
  const std::string list = exclusion ? transports.substr(1) : transports;
  bool names_shm = false;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const std::string token = list.substr(start, end - start);
    // "all" and the aliases cover every shared-memory transport; posix and sysv are two of them.
    for (const char* shm : {"all", "sm", "shm", "mm"}) {
      if (token == shm) return !exclusion;
    }
    if (token == "posix" || token == "sysv") names_shm = true;
    start = end + 1;
  }
  // An exclusion of only some of them (posix, say) keeps the others.
  return exclusion || names_shm;
}

}  // namespace

Result<UcxContext> UcxContext::Create(const UcxContextOptions& options) {
  ucp_config_t* config = nullptr;
  KVAULT_RETURN_IF_ERROR(
      UcsToStatus(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read"));
  if (!options.transports.empty()) {
    const ucs_status_t s = ucp_config_modify(config, "TLS", options.transports.c_str());
    if (s != UCS_OK) {
      ucp_config_release(config);
      return Status::InvalidArgument("UCX transports \"" + options.transports +
                                     "\" rejected: " + ucs_status_string(s));
    }
  }

  // Endpoints use the PEER error mode (a dead peer must give an error, not a hang). UCX 1.13's
  // shared-memory transports support it (liveness checks on the peer process) but only expose it
  // when asked; without this, "posix,cma" could not reach any peer.
  if (MayUseSharedMemory(options.transports)) {
    const ucs_status_t s = ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
    if (s != UCS_OK) {
      ucp_config_release(config);
      return UcsToStatus(s, "ucp_config_modify MM_ERROR_HANDLING");
    }
  }

  if (options.keepalive_interval.count() > 0) {
    const std::string interval = std::to_string(options.keepalive_interval.count()) + "ms";
    const ucs_status_t s = ucp_config_modify(config, "KEEPALIVE_INTERVAL", interval.c_str());
    if (s != UCS_OK) {
      ucp_config_release(config);
      return UcsToStatus(s, "ucp_config_modify KEEPALIVE_INTERVAL");
    }
  }

  ucp_params_t params{};
  params.field_mask =
      UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  // AM: the worker proofs a server sends to a client's worker (worker_proof.h).
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = options.thread_safe ? 1 : 0;
  params.name = options.name.c_str();

  ucp_context_h context = nullptr;
  const ucs_status_t s = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (s != UCS_OK) {
    Status status = UcsToStatus(s, "ucp_init");
    if (!options.transports.empty()) {
      status = status.WithContext("transports \"" + options.transports + "\"");
    }
    // UCX says "no such device" when a named transport is absent: report it as unavailable.
    if (status.code() == StatusCode::kInternal || status.code() == StatusCode::kNotFound) {
      status = Status::Unavailable(status.message());
    }
    return status;
  }
  return UcxContext(context, options.transports);
}

UcxContext::UcxContext(ucp_context* context, std::string transports)
    : context_(context), transports_(std::move(transports)) {}

UcxContext::UcxContext(UcxContext&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)), transports_(std::move(other.transports_)) {}

UcxContext& UcxContext::operator=(UcxContext&& other) noexcept {
  if (this != &other) {
    if (context_ != nullptr) ucp_cleanup(context_);
    context_ = std::exchange(other.context_, nullptr);
    transports_ = std::move(other.transports_);
  }
  return *this;
}

UcxContext::~UcxContext() {
  if (context_ != nullptr) ucp_cleanup(context_);
}

}  // namespace kvault::transport
