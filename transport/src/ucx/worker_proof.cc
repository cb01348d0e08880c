// Worker proofs (worker_proof.h).

#include "kvault/transport/ucx/worker_proof.h"

#include <ucp/api/ucp.h>

#include <algorithm>
#include <cstring>

#include "kvault/common/little_endian.h"
#include "kvault/transport/ucx/transfer.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {
namespace {

using Token = std::array<uint8_t, 32>;

ucs_status_t OnProof(void* arg, const void* /*header*/, size_t /*header_length*/, void* data,
                     size_t length, const ucp_am_recv_param_t* param) {
  // 40 bytes always arrive eagerly; a rendezvous announcement is not a proof and is dropped.
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    static_cast<WorkerProofMailbox*>(arg)->Deliver(
        std::span(static_cast<const uint8_t*>(data), length));
  }
  return UCS_OK;  // the data is not kept past the callback
}

void SendDone(void* request, ucs_status_t /*status*/, void* user_data) {
  delete static_cast<std::array<uint8_t, kWorkerProofBytes>*>(user_data);
  ucp_request_free(request);
}

}  // namespace

std::array<uint8_t, kWorkerProofBytes> EncodeWorkerProof(const WorkerProof& proof) {
  std::array<uint8_t, kWorkerProofBytes> out{};
  StoreLe64(out.data(), proof.session_id);
  std::memcpy(out.data() + 8, proof.token.data(), proof.token.size());
  return out;
}

std::optional<WorkerProof> DecodeWorkerProof(std::span<const uint8_t> bytes) {
  if (bytes.size() != kWorkerProofBytes) return std::nullopt;
  WorkerProof proof;
  proof.session_id = LoadLe64(bytes.data());
  std::memcpy(proof.token.data(), bytes.data() + 8, proof.token.size());
  return proof;
}

Status SendWorkerProof(const UcxEndpoint& endpoint, const WorkerProof& proof) {
  // The bytes must live until the send completes, which may be after this returns.
  auto* bytes = new std::array<uint8_t, kWorkerProofBytes>(EncodeWorkerProof(proof));
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_AM_SEND_FLAG_EAGER;
  param.cb.send = SendDone;
  param.user_data = bytes;
  const ucs_status_ptr_t request = ucp_am_send_nbx(endpoint.get(), kWorkerProofAmId, nullptr, 0,
                                                   bytes->data(), bytes->size(), &param);
  if (UCS_PTR_IS_PTR(request)) return Status::Ok();  // SendDone frees the bytes
  delete bytes;
  return UcsToStatus(UCS_PTR_STATUS(request), "ucp_am_send_nbx (worker proof)");
}

Result<std::unique_ptr<WorkerProofMailbox>> WorkerProofMailbox::Attach(UcxWorker& worker) {
  std::unique_ptr<WorkerProofMailbox> mailbox(new WorkerProofMailbox(worker));
  ucp_am_handler_param_t param{};
  param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                     UCP_AM_HANDLER_PARAM_FIELD_ARG;
  param.id = kWorkerProofAmId;
  param.cb = OnProof;
  param.arg = mailbox.get();
  KVAULT_RETURN_IF_ERROR(UcsToStatus(ucp_worker_set_am_recv_handler(worker.get(), &param),
                                     "ucp_worker_set_am_recv_handler"));
  return mailbox;
}

WorkerProofMailbox::~WorkerProofMailbox() {
  ucp_am_handler_param_t param{};
  param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                     UCP_AM_HANDLER_PARAM_FIELD_ARG;
  param.id = kWorkerProofAmId;
  param.cb = nullptr;
  param.arg = nullptr;
  (void)ucp_worker_set_am_recv_handler(worker_.get(), &param);
}

void WorkerProofMailbox::Deliver(std::span<const uint8_t> data) {
  const std::optional<WorkerProof> proof = DecodeWorkerProof(data);
  if (!proof) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (proofs_.size() == kKeptProofs) proofs_.pop_front();
    proofs_.push_back(*proof);
  }
  arrived_.notify_all();
}

void WorkerProofMailbox::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  proofs_.clear();
}

std::optional<Token> WorkerProofMailbox::TakeLocked(uint64_t session_id) {
  auto it = std::find_if(proofs_.begin(), proofs_.end(),
                         [&](const WorkerProof& p) { return p.session_id == session_id; });
  if (it == proofs_.end()) return std::nullopt;
  const Token token = it->token;
  proofs_.erase(it);
  return token;
}

std::optional<Token> WorkerProofMailbox::Take(uint64_t session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  return TakeLocked(session_id);
}

Result<Token> WorkerProofMailbox::Wait(uint64_t session_id, Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (std::optional<Token> token = TakeLocked(session_id)) return *token;
    if (arrived_.wait_until(lock, deadline) == std::cv_status::timeout &&
        Clock::now() >= deadline) {
      return Status::Unavailable(
          std::string(kDeadlineExceededPrefix) + ": no worker proof arrived for session " +
          std::to_string(session_id) + " (the server's endpoint did not reach this UCX worker)");
    }
  }
}

}  // namespace kvault::transport
