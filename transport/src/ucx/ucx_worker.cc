#include "kvault/transport/ucx/ucx_worker.h"

#include <ucp/api/ucp.h>

#include <utility>

#include "ucx/envelope.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {
namespace {

ucs_thread_mode_t ToUcs(UcxThreadMode mode) {
  switch (mode) {
    case UcxThreadMode::kSingle:
      return UCS_THREAD_MODE_SINGLE;
    case UcxThreadMode::kSerialized:
      return UCS_THREAD_MODE_SERIALIZED;
    case UcxThreadMode::kMulti:
      return UCS_THREAD_MODE_MULTI;
  }
  return UCS_THREAD_MODE_MULTI;
}

Result<std::vector<uint8_t>> SealedAddress(ucp_worker_h worker) {
  ucp_address_t* address = nullptr;
  size_t length = 0;
  KVAULT_RETURN_IF_ERROR(
      UcsToStatus(ucp_worker_get_address(worker, &address, &length), "ucp_worker_get_address"));
  Result<std::vector<uint8_t>> sealed =
      Seal(EnvelopeKind::kWorkerAddress,
           std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(address), length));
  ucp_worker_release_address(worker, address);
  return sealed;
}

}  // namespace

Result<UcxWorker> UcxWorker::Create(const UcxContext& context, UcxThreadMode mode) {
  if (context.get() == nullptr) return Status::InvalidArgument("UcxWorker: empty context");
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = ToUcs(mode);
  ucp_worker_h worker = nullptr;
  KVAULT_RETURN_IF_ERROR(
      UcsToStatus(ucp_worker_create(context.get(), &params, &worker), "ucp_worker_create"));

  int fd = -1;
  Status status = UcsToStatus(ucp_worker_get_efd(worker, &fd), "ucp_worker_get_efd");
  Result<std::vector<uint8_t>> address = SealedAddress(worker);
  if (status.ok() && !address.ok()) status = address.status();
  if (!status.ok()) {
    ucp_worker_destroy(worker);
    return status;
  }
  return UcxWorker(worker, fd, std::move(address).value());
}

UcxWorker::UcxWorker(ucp_worker* worker, int event_fd, std::vector<uint8_t> address)
    : worker_(worker), event_fd_(event_fd), address_(std::move(address)) {}

UcxWorker::UcxWorker(UcxWorker&& other) noexcept
    : worker_(std::exchange(other.worker_, nullptr)),
      event_fd_(std::exchange(other.event_fd_, -1)),
      address_(std::move(other.address_)) {}

UcxWorker& UcxWorker::operator=(UcxWorker&& other) noexcept {
  if (this != &other) {
    if (worker_ != nullptr) ucp_worker_destroy(worker_);
    worker_ = std::exchange(other.worker_, nullptr);
    event_fd_ = std::exchange(other.event_fd_, -1);
    address_ = std::move(other.address_);
  }
  return *this;
}

UcxWorker::~UcxWorker() {
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
}

unsigned UcxWorker::Progress() { return ucp_worker_progress(worker_); }

Status UcxWorker::Flush(std::chrono::milliseconds timeout) {
  struct Outcome {
    bool done = false;
    ucs_status_t status = UCS_OK;
  } outcome;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.user_data = &outcome;
  param.cb.send = [](void*, ucs_status_t status, void* user_data) {
    auto* o = static_cast<Outcome*>(user_data);
    o->status = status;
    o->done = true;
  };
  const ucs_status_ptr_t request = ucp_worker_flush_nbx(worker_, &param);
  if (request == nullptr) return Status::Ok();  // nothing was outstanding
  if (UCS_PTR_IS_ERR(request)) {
    return UcsToStatus(UCS_PTR_STATUS(request), "ucp_worker_flush_nbx");
  }
  if (!ProgressUntil([&] { return outcome.done; }, timeout)) {
    ucp_request_cancel(worker_, request);
    ProgressUntil([&] { return outcome.done; }, std::chrono::milliseconds(100));
  }
  ucp_request_free(request);
  if (!outcome.done) return Status::Unavailable("worker flush did not finish in time");
  return UcsToStatus(outcome.status, "ucp_worker_flush_nbx");
}

Result<bool> UcxWorker::Arm() {
  const ucs_status_t s = ucp_worker_arm(worker_);
  if (s == UCS_OK) return true;
  if (s == UCS_ERR_BUSY) return false;
  return UcsToStatus(s, "ucp_worker_arm");
}

Status UcxWorker::Signal() { return UcsToStatus(ucp_worker_signal(worker_), "ucp_worker_signal"); }

}  // namespace kvault::transport
