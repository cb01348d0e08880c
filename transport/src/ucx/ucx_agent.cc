#include "kvault/transport/ucx/ucx_agent.h"

#include <utility>

#include "kvault/transport/ucx/ucx_worker.h"
#include "kvault/transport/ucx/worker_proof.h"
#include "ucx/progress_loop.h"

namespace kvault::transport {

class UcxAgent::Impl {
 public:
  Impl(UcxContext context, UcxWorker worker)
      : context_(std::move(context)), worker_(std::move(worker)) {}
  ~Impl() {
    if (loop_) loop_->Stop();
    loop_.reset();
    // This thread has the worker now. What UCX still owes peers goes out first (a daemon that
    // just connected may still wait for the answer to its connection request): destroying the
    // worker with that answer queued aborts the process in UCX 1.13 (transport/ucx.md,
    // "What UCX 1.13 does"). Bounded, as a peer may be gone.
    (void)worker_.Flush(std::chrono::milliseconds(1000));
    proofs_.reset();  // no thread progresses the worker any more
  }

  UcxContext context_;
  UcxWorker worker_;
  std::unique_ptr<WorkerProofMailbox> proofs_;  // attached before loop_ starts
  std::unique_ptr<ProgressLoop> loop_;          // the only user of worker_ once started
};

Result<std::unique_ptr<UcxAgent>> UcxAgent::Create(const UcxAgentOptions& options) {
  UcxContextOptions context_options = options.context;
  context_options.thread_safe = true;  // memory is registered from callers' threads
  KVAULT_ASSIGN_OR_RETURN(UcxContext context, UcxContext::Create(context_options));
  KVAULT_ASSIGN_OR_RETURN(UcxWorker worker, UcxWorker::Create(context, UcxThreadMode::kSingle));
  auto impl = std::make_unique<Impl>(std::move(context), std::move(worker));
  KVAULT_ASSIGN_OR_RETURN(impl->proofs_, WorkerProofMailbox::Attach(impl->worker_));
  // A target has no work of its own: the loop only progresses (and sleeps when idle).
  ProgressLoop::Hooks hooks;
  hooks.work = [] { return false; };
  hooks.next_wakeup = [] { return ProgressLoop::Clock::time_point::max(); };
  hooks.on_stop = [] {};
  KVAULT_ASSIGN_OR_RETURN(
      impl->loop_, ProgressLoop::Start(impl->worker_, std::move(hooks), options.spin_before_sleep));
  return std::unique_ptr<UcxAgent>(new UcxAgent(std::move(impl)));
}

UcxAgent::UcxAgent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

UcxAgent::~UcxAgent() = default;

const std::vector<uint8_t>& UcxAgent::worker_address() const { return impl_->worker_.address(); }

void UcxAgent::ForgetWorkerProofs() { impl_->proofs_->Clear(); }

Result<std::array<uint8_t, 32>> UcxAgent::AwaitWorkerProof(
    uint64_t session_id, std::chrono::steady_clock::time_point deadline) {
  return impl_->proofs_->Wait(session_id, deadline);
}

Result<RegisteredRegion> UcxAgent::RegisterMemory(void* address, size_t length) {
  KVAULT_ASSIGN_OR_RETURN(UcxMemory memory, UcxMemory::Map(impl_->context_, address, length));
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> key, memory.PackRemoteKey());
  return RegisteredRegion{std::move(memory), std::move(key)};
}

Result<RegisteredRegion> UcxAgent::AllocateMemory(size_t length) {
  KVAULT_ASSIGN_OR_RETURN(UcxMemory memory, UcxMemory::Allocate(impl_->context_, length));
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> key, memory.PackRemoteKey());
  return RegisteredRegion{std::move(memory), std::move(key)};
}

}  // namespace kvault::transport
