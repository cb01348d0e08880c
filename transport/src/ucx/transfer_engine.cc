#include "kvault/transport/ucx/transfer_engine.h"

#include <atomic>
#include <condition_variable>
#include <functional>
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
  std::optional<ControlConnection> connection;
  std::optional<WorkerProof> proof;
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

// What a batch run by TransferEngine::Run reports to the thread waiting for it: the GETs that
// landed, which of them it has handed to the caller, and the final statuses.
struct RunState {
  explicit RunState(size_t n) : landed(n, 0) {}

  // Under `lock`: hands the caller, in index order, each GET that landed; skips those that will
  // never land (the batch is done without them); stops at the first still moving. `arrived`
  // runs with the lock released.
  void DeliverLanded(std::unique_lock<std::mutex>& lock,
                     const std::function<void(size_t)>& arrived) {
    while (next < landed.size()) {
      if (landed[next] != 0) {
        const size_t i = next++;
        lock.unlock();
        arrived(i);
        lock.lock();
      } else if (done) {
        ++next;  // failed
      } else {
        return;
      }
    }
  }
  bool AllDelivered() const { return next >= landed.size(); }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint8_t> landed;  // per transfer: its bytes are in place
  size_t next = 0;              // first transfer not yet handed to the caller
  bool done = false;
  std::vector<Status> statuses;
};

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
            worker_, [this] { return UcxWorker::Create(context_, UcxThreadMode::kSerialized); },
            options.cancel_grace, options.mapped_residency),
        spin_(options.spin_before_sleep) {}

  ~Impl() {
    if (loop_) loop_->Stop();
    FailQueued();  // commands that raced with the stop
    regions_.Clear();
  }

  Status Start() {
    ProgressLoop::Hooks hooks;
    hooks.work = [this] { return Work(); };
    hooks.next_wakeup = [this] { return core_.NextWakeup(); };
    hooks.on_stop = [this] {
      stopped_ = true;
      FailQueued();
      core_.Shutdown();
      open_endpoints_.store(0);
      cached_keys_.store(0);
    };
    KVAULT_ASSIGN_OR_RETURN(loop_, ProgressLoop::Start(worker_, std::move(hooks), spin_));
    return Status::Ok();
  }

  // TransferEngine::Run: drives the worker on this thread until `queued` is done or stalls (or
  // leaves a batch of several GETs with `arrived` to the progress thread), then waits, running
  // `arrived` (if set) for landed GETs in index order, outside the worker lock.
  std::vector<Status> Drive(QueuedBatch queued, const std::function<void(size_t)>& arrived) {
    const size_t n = queued.batch.transfers.size();
    auto run = std::make_shared<RunState>(n);
    if (arrived) {
      queued.batch.on_arrival = [run](size_t i) {
        {
          std::lock_guard<std::mutex> lock(run->mu);
          run->landed[i] = 1;
        }
        run->cv.notify_one();
      };
    }
    queued.done = [run](std::vector<Status> statuses) {
      {
        std::lock_guard<std::mutex> lock(run->mu);
        run->statuses = std::move(statuses);
        run->done = true;
      }
      run->cv.notify_one();
    };
    if (arrived && n > 1 && queued.batch.copy_mapped) {
      // A copier only pays where the GETs are mapped here; elsewhere UCX moves them, on the
      // progress thread (below), and the copier is never called.
      Result<bool> mapped = MapsFirstGet(queued.batch);
      if (!mapped.ok()) return std::vector<Status>(n, mapped.status());
      if (!*mapped) queued.batch.copy_mapped = nullptr;
    }
    if (arrived && n > 1 && !queued.batch.copy_mapped) {
      // Several GETs for a caller with work to do on each: the progress thread moves the next
      // ones while this thread works on those that landed (with shared memory a driving thread
      // would copy them all before its first `arrived`).
      Push(std::move(queued));
    } else if (!DriveUntilDoneOrStalled(std::move(queued), *run)) {
      return std::vector<Status>(n, Status::Unavailable("transfer engine shutting down"));
    }
    std::unique_lock<std::mutex> lock(run->mu);
    if (arrived) {
      while (!run->AllDelivered()) {
        run->cv.wait(lock, [&] { return run->done || run->landed[run->next] != 0; });
        run->DeliverLanded(lock, arrived);
      }
    }
    run->cv.wait(lock, [&] { return run->done; });
    return std::move(run->statuses);
  }

  // Whether the first GET of `batch` is mapped here (EngineCore::MapsFirstGet), asked with the
  // worker taken. Unavailable when the engine has stopped.
  Result<bool> MapsFirstGet(const TransferBatch& batch) {
    ProgressLoop::Driving driving = loop_->TakeOver();
    if (stopped_) return Status::Unavailable("transfer engine shutting down");
    (void)Work();  // a ForgetRemoteKey queued before counts
    return core_.MapsFirstGet(batch);
  }

  // Takes the worker, runs what was queued before (a ForgetRemoteKey goes first), posts `queued`
  // and progresses until it is done or no event came for spin_ (then the progress thread goes
  // on with it). The worker stays taken throughout: a batch here has at most one arrival, or
  // GETs that the copier moved (they have none), so no delivery is needed before the end. False
  // when the engine has stopped (nothing was posted).
  bool DriveUntilDoneOrStalled(QueuedBatch queued, RunState& run) {
    bool leftover = false;
    {
      ProgressLoop::Driving driving = loop_->TakeOver();
      if (stopped_) return false;  // on_stop takes the worker too: it cannot run meanwhile
      (void)Work();
      core_.StartBatch(std::move(queued));
      auto last_event = ProgressLoop::Clock::now();
      for (;;) {
        bool busy = core_.Poll();
        while (worker_.Progress() != 0) busy = true;
        if (busy) (void)core_.Poll();  // deliver what that progress completed
        {
          std::lock_guard<std::mutex> lock(run.mu);
          if (run.done) break;
        }
        const auto now = ProgressLoop::Clock::now();
        if (busy) {
          last_event = now;
        } else if (now - last_event >= spin_) {
          break;  // stalled: leave it to the progress thread
        }
      }
      PublishStats();
      leftover = !core_.Idle() || QueueNonEmpty();
    }
    if (leftover) loop_->Wake();
    return true;
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
  EngineCore core_;  // under the worker lock (ProgressLoop::TakeOver)
  std::unique_ptr<ProgressLoop> loop_;
  std::atomic<size_t> open_endpoints_{0};
  std::atomic<uint64_t> worker_restarts_{0};
  std::atomic<size_t> cached_keys_{0};

 private:
  bool QueueNonEmpty() {
    std::lock_guard<std::mutex> lock(mu_);
    return !queue_.empty();
  }

  void PublishStats() {
    open_endpoints_.store(core_.open_endpoints(), std::memory_order_relaxed);
    worker_restarts_.store(core_.worker_restarts(), std::memory_order_relaxed);
    cached_keys_.store(core_.cached_keys(), std::memory_order_relaxed);
  }

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
        c->result.set_value(core_.AddPeer(std::move(c->address), c->connection, c->proof));
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
    if (did) PublishStats();
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

  const std::chrono::microseconds spin_;
  bool stopped_ = false;  // under the worker lock: on_stop ran, nothing drives the worker any more
  std::mutex mu_;
  std::vector<Command> queue_;  // guarded by mu_
};

Result<std::unique_ptr<TransferEngine>> TransferEngine::Create(
    const TransferEngineOptions& options) {
  UcxContextOptions context_options = options.context;
  context_options.thread_safe = true;  // memory is registered from callers' threads
  KVAULT_ASSIGN_OR_RETURN(UcxContext context, UcxContext::Create(context_options));
  // Serialized: the progress thread and callers of Run take turns (ProgressLoop::TakeOver).
  KVAULT_ASSIGN_OR_RETURN(UcxWorker worker, UcxWorker::Create(context, UcxThreadMode::kSerialized));
  auto impl = std::make_unique<Impl>(std::move(context), std::move(worker), options);
  KVAULT_RETURN_IF_ERROR(impl->Start());
  return std::unique_ptr<TransferEngine>(new TransferEngine(std::move(impl)));
}

TransferEngine::TransferEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TransferEngine::~TransferEngine() = default;

Result<RegionId> TransferEngine::RegisterMemory(void* address, size_t length) {
  return impl_->regions_.Add(impl_->context_, address, length);
}

Status TransferEngine::UnregisterMemory(RegionId region) { return impl_->regions_.Remove(region); }

Result<PeerId> TransferEngine::Connect(std::span<const uint8_t> peer_address,
                                       std::optional<ControlConnection> connection,
                                       std::optional<WorkerProof> proof) {
  ConnectCommand command;
  command.address.assign(peer_address.begin(), peer_address.end());
  command.connection = connection;
  command.proof = proof;
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

namespace {

QueuedBatch Queue(const RegionTable& regions, TransferBatch batch, TransferCallback done) {
  QueuedBatch queued;
  queued.local_memh.reserve(batch.transfers.size());
  for (const Transfer& t : batch.transfers) {
    queued.local_memh.push_back(regions.Find(t.local, t.length));
  }
  queued.batch = std::move(batch);
  queued.done = std::move(done);
  return queued;
}

}  // namespace

void TransferEngine::Submit(TransferBatch batch, TransferCallback done) {
  impl_->Push(Queue(impl_->regions_, std::move(batch), std::move(done)));
}

std::vector<Status> TransferEngine::Run(TransferBatch batch,
                                        const std::function<void(size_t)>& arrived) {
  return impl_->Drive(Queue(impl_->regions_, std::move(batch), {}), arrived);
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
