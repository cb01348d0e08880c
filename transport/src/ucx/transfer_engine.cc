#include "kvault/transport/ucx/transfer_engine.h"

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <utility>
#include <variant>
#include <vector>

#include "ucx/engine_core.h"
#include "ucx/progress_loop.h"
#include "ucx/region_table.h"

namespace kvault::transport {
namespace {

struct ConnectCommand {
  std::vector<uint8_t> address;
  std::promise<Result<PeerId>> result;
};
struct DisconnectCommand {
  PeerId peer = 0;
  std::promise<Status> result;
};
struct ForgetKeyCommand {
  PeerId peer = 0;
  std::vector<uint8_t> remote_key;
};
using Command = std::variant<ConnectCommand, DisconnectCommand, ForgetKeyCommand, QueuedBatch>;

std::vector<Status> AllFailed(size_t n, const Status& status) {
  return std::vector<Status>(n, status);
}

}  // namespace

class TransferEngine::Impl {
 public:
  Impl(UcxContext context, UcxWorker worker, const TransferEngineOptions& options)
      : context_(std::move(context)),
        worker_(std::move(worker)),
        core_(
            worker_, [this] { return UcxWorker::Create(context_, UcxThreadMode::kSingle); },
            options.cancel_grace) {}

  ~Impl() {
    if (loop_) loop_->Stop();
    FailQueued();  // commands that raced with the stop
    regions_.Clear();
  }

  Status Start(std::chrono::microseconds spin) {
    ProgressLoop::Hooks hooks;
    hooks.work = [this] { return Work(); };
    hooks.next_wakeup = [this] { return core_.NextWakeup(); };
    hooks.on_stop = [this] {
      FailQueued();
      core_.Shutdown();
      open_endpoints_.store(0);
      cached_keys_.store(0);
    };
    KVAULT_ASSIGN_OR_RETURN(loop_, ProgressLoop::Start(worker_, std::move(hooks), spin));
    return Status::Ok();
  }

  void Push(Command command) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(command));
    }
    loop_->Wake();
  }

  UcxContext context_;
  UcxWorker worker_;
  RegionTable regions_;
  EngineCore core_;  // progress thread only
  std::unique_ptr<ProgressLoop> loop_;
  std::atomic<size_t> open_endpoints_{0};
  std::atomic<uint64_t> worker_restarts_{0};
  std::atomic<size_t> cached_keys_{0};

 private:
  // Swaps the queue into `out` (empty vectors do not allocate, so idle passes stay cheap).
  void TakeQueue(std::vector<Command>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    out.swap(queue_);
  }

  bool Work() {
    std::vector<Command> commands;
    TakeQueue(commands);
    for (Command& command : commands) {
      if (auto* c = std::get_if<ConnectCommand>(&command)) {
        c->result.set_value(core_.AddPeer(std::move(c->address)));
      } else if (auto* d = std::get_if<DisconnectCommand>(&command)) {
        auto promise = std::make_shared<std::promise<Status>>(std::move(d->result));
        core_.RemovePeer(d->peer, [promise](Status s) { promise->set_value(std::move(s)); });
      } else if (auto* f = std::get_if<ForgetKeyCommand>(&command)) {
        (void)core_.ForgetKey(f->peer, f->remote_key);
      } else {
        core_.StartBatch(std::move(std::get<QueuedBatch>(command)));
      }
    }
    const bool did = core_.Poll() || !commands.empty();
    if (did) {
      open_endpoints_.store(core_.open_endpoints(), std::memory_order_relaxed);
      worker_restarts_.store(core_.worker_restarts(), std::memory_order_relaxed);
      cached_keys_.store(core_.cached_keys(), std::memory_order_relaxed);
    }
    return did;
  }

  void FailQueued() {
    const Status stopping = Status::Unavailable("transfer engine shutting down");
    std::vector<Command> commands;
    TakeQueue(commands);
    for (Command& command : commands) {
      if (auto* c = std::get_if<ConnectCommand>(&command)) {
        c->result.set_value(stopping);
      } else if (auto* d = std::get_if<DisconnectCommand>(&command)) {
        d->result.set_value(stopping);
      } else if (std::holds_alternative<ForgetKeyCommand>(command)) {
        // Shutdown drops every key anyway.
      } else {
        auto& q = std::get<QueuedBatch>(command);
        if (q.done) q.done(AllFailed(q.batch.transfers.size(), stopping));
      }
    }
  }

  std::mutex mu_;
  std::vector<Command> queue_;  // guarded by mu_
};

Result<std::unique_ptr<TransferEngine>> TransferEngine::Create(
    const TransferEngineOptions& options) {
  UcxContextOptions context_options = options.context;
  context_options.thread_safe = true;  // memory is registered from callers' threads
  KVAULT_ASSIGN_OR_RETURN(UcxContext context, UcxContext::Create(context_options));
  KVAULT_ASSIGN_OR_RETURN(UcxWorker worker, UcxWorker::Create(context, UcxThreadMode::kSingle));
  auto impl = std::make_unique<Impl>(std::move(context), std::move(worker), options);
  KVAULT_RETURN_IF_ERROR(impl->Start(options.spin_before_sleep));
  return std::unique_ptr<TransferEngine>(new TransferEngine(std::move(impl)));
}

TransferEngine::TransferEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TransferEngine::~TransferEngine() = default;

Result<RegionId> TransferEngine::RegisterMemory(void* address, size_t length) {
  return impl_->regions_.Add(impl_->context_, address, length);
}

Status TransferEngine::UnregisterMemory(RegionId region) { return impl_->regions_.Remove(region); }

Result<PeerId> TransferEngine::Connect(std::span<const uint8_t> peer_address) {
  ConnectCommand command;
  command.address.assign(peer_address.begin(), peer_address.end());
  std::future<Result<PeerId>> result = command.result.get_future();
  impl_->Push(std::move(command));
  return result.get();
}

Status TransferEngine::Disconnect(PeerId peer) {
  DisconnectCommand command;
  command.peer = peer;
  std::future<Status> result = command.result.get_future();
  impl_->Push(std::move(command));
  return result.get();
}

void TransferEngine::Submit(TransferBatch batch, TransferCallback done) {
  QueuedBatch queued;
  queued.local_memh.reserve(batch.transfers.size());
  for (const Transfer& t : batch.transfers) {
    queued.local_memh.push_back(impl_->regions_.Find(t.local, t.length));
  }
  queued.batch = std::move(batch);
  queued.done = std::move(done);
  impl_->Push(std::move(queued));
}

std::future<std::vector<Status>> TransferEngine::Submit(TransferBatch batch) {
  auto promise = std::make_shared<std::promise<std::vector<Status>>>();
  std::future<std::vector<Status>> result = promise->get_future();
  Submit(std::move(batch),
         [promise](std::vector<Status> statuses) { promise->set_value(std::move(statuses)); });
  return result;
}

void TransferEngine::ForgetRemoteKey(PeerId peer, std::span<const uint8_t> remote_key) {
  impl_->Push(ForgetKeyCommand{peer, {remote_key.begin(), remote_key.end()}});
}

TransferEngineStats TransferEngine::Stats() const {
  return TransferEngineStats{impl_->open_endpoints_.load(std::memory_order_relaxed),
                             impl_->worker_restarts_.load(std::memory_order_relaxed),
                             impl_->cached_keys_.load(std::memory_order_relaxed)};
}

}  // namespace kvault::transport
