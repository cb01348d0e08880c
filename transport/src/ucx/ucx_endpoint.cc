#include "kvault/transport/ucx/ucx_endpoint.h"

#include <ucp/api/ucp.h>

#include <utility>

#include "ucx/envelope.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {

struct UcxEndpointState {
  UcxEndpoint::ErrorHandler on_error;
  bool closing = false;  // set by StartClose: later UCX errors are expected and not reported
};

namespace {

void OnEndpointError(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* state = static_cast<UcxEndpointState*>(arg);
  if (state->closing || !state->on_error) return;
  state->on_error(UcsToStatus(status, "endpoint failed"));
}

constexpr std::chrono::milliseconds kDestructorCloseBound{1000};

}  // namespace

Result<UcxEndpoint> UcxEndpoint::Connect(UcxWorker& worker, std::span<const uint8_t> peer_address,
                                         ErrorHandler on_error) {
  if (worker.get() == nullptr) return Status::InvalidArgument("UcxEndpoint: empty worker");
  KVAULT_ASSIGN_OR_RETURN(std::span<const uint8_t> address,
                          Open(EnvelopeKind::kWorkerAddress, peer_address));
  auto state = std::make_unique<UcxEndpointState>();
  state->on_error = std::move(on_error);

  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &OnEndpointError;
  params.err_handler.arg = state.get();
  ucp_ep_h ep = nullptr;
  KVAULT_RETURN_IF_ERROR(UcsToStatus(ucp_ep_create(worker.get(), &params, &ep), "ucp_ep_create"));
  return UcxEndpoint(&worker, ep, std::move(state));
}

UcxEndpoint::UcxEndpoint(UcxWorker* worker, ucp_ep* ep, std::unique_ptr<UcxEndpointState> state)
    : worker_(worker), ep_(ep), state_(std::move(state)) {}

UcxEndpoint::UcxEndpoint(UcxEndpoint&& other) noexcept
    : worker_(std::exchange(other.worker_, nullptr)),
      ep_(std::exchange(other.ep_, nullptr)),
      state_(std::move(other.state_)) {}

UcxEndpoint& UcxEndpoint::operator=(UcxEndpoint&& other) noexcept {
  if (this != &other) {
    if (ep_ != nullptr) (void)StartClose(UcxCloseMode::kForce).Wait(kDestructorCloseBound);
    worker_ = std::exchange(other.worker_, nullptr);
    ep_ = std::exchange(other.ep_, nullptr);
    state_ = std::move(other.state_);
  }
  return *this;
}

UcxEndpoint::~UcxEndpoint() {
  if (ep_ != nullptr) (void)StartClose(UcxCloseMode::kForce).Wait(kDestructorCloseBound);
}

UcxPendingClose UcxEndpoint::StartClose(UcxCloseMode mode) {
  state_->closing = true;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = mode == UcxCloseMode::kForce ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t request = ucp_ep_close_nbx(std::exchange(ep_, nullptr), &param);
  UcxWorker* worker = std::exchange(worker_, nullptr);
  if (request == nullptr) return UcxPendingClose(worker, nullptr, std::move(state_), Status::Ok());
  if (UCS_PTR_IS_ERR(request)) {
    // The endpoint is released anyway; the status says how the peer was left.
    return UcxPendingClose(worker, nullptr, std::move(state_),
                           UcsToStatus(UCS_PTR_STATUS(request), "ucp_ep_close_nbx"));
  }
  return UcxPendingClose(worker, request, std::move(state_), Status::Ok());
}

Status UcxEndpoint::Close(UcxCloseMode mode, std::chrono::milliseconds timeout) {
  if (ep_ == nullptr) return Status::InvalidArgument("UcxEndpoint::Close: endpoint is empty");
  UcxPendingClose pending = StartClose(mode);
  return pending.Wait(timeout);
}

UcxPendingClose::UcxPendingClose(UcxWorker* worker, void* request,
                                 std::unique_ptr<UcxEndpointState> state, Status immediate)
    : worker_(worker), request_(request), state_(std::move(state)), status_(std::move(immediate)) {}

UcxPendingClose::UcxPendingClose(UcxPendingClose&& other) noexcept
    : worker_(std::exchange(other.worker_, nullptr)),
      request_(std::exchange(other.request_, nullptr)),
      state_(std::move(other.state_)),
      status_(std::move(other.status_)) {}

UcxPendingClose& UcxPendingClose::operator=(UcxPendingClose&& other) noexcept {
  if (this != &other) {
    Finish();
    worker_ = std::exchange(other.worker_, nullptr);
    request_ = std::exchange(other.request_, nullptr);
    state_ = std::move(other.state_);
    status_ = std::move(other.status_);
  }
  return *this;
}

UcxPendingClose::~UcxPendingClose() { Finish(); }

void UcxPendingClose::Finish() {
  if (request_ == nullptr) return;
  if (Wait(kDestructorCloseBound).ok() || request_ == nullptr) return;
  // UCX still holds the request: let it finish in the background and keep the state alive.
  ucp_request_free(request_);
  request_ = nullptr;
  (void)state_.release();
}

bool UcxPendingClose::Done() {
  if (request_ == nullptr) return true;
  const ucs_status_t s = ucp_request_check_status(request_);
  if (s == UCS_INPROGRESS) return false;
  ucp_request_free(request_);
  request_ = nullptr;
  status_ = UcsToStatus(s, "ucp_ep_close_nbx");
  return true;
}

Status UcxPendingClose::Wait(std::chrono::milliseconds timeout) {
  if (worker_ == nullptr || !worker_->ProgressUntil([this] { return Done(); }, timeout)) {
    if (request_ == nullptr) return status_;
    return Status::Unavailable("endpoint close did not finish in time");
  }
  return status_;
}

}  // namespace kvault::transport
