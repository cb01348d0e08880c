// ControlServer::Impl (control_server_impl.h): the io loops, and the per-address count of
// connections not authenticated yet.

#include "control/control_server_impl.h"

#include <algorithm>
#include <exception>

#include "kvault/common/log.h"

namespace kvault::server {

IoLoop* ControlServer::Impl::PickLoop() {
  std::lock_guard lock(loops_mu);
  IoLoop* best = nullptr;
  for (const auto& loop : loops) {
    if (best == nullptr || loop->connections.load() < best->connections.load()) best = loop.get();
  }
  if ((best == nullptr || best->connections.load() > 0) &&
      loops.size() < std::max<uint32_t>(1, options.threads)) {
    if (IoLoop* fresh = StartLoop()) best = fresh;
  }
  if (best != nullptr) best->connections.fetch_add(1);
  return best;
}

IoLoop* ControlServer::Impl::StartLoop() {
  try {
    IoLoop* loop = loops.emplace_back(std::make_unique<IoLoop>()).get();
    try {
      loop->thread = std::thread([this, &io = loop->io] {
        auto idle = asio::make_work_guard(io);  // a loop without connections keeps running
        RunLoop(io);
      });
    } catch (...) {
      loops.pop_back();
      throw;
    }
    return loop;
  } catch (const std::exception& e) {
    KVAULT_LOG(LogLevel::kWarn, "control",
               std::string("cannot start an io thread (") + e.what() + "); " +
                   (loops.empty() ? std::string("no io thread to serve the connection")
                                  : "sharing one of the " + std::to_string(loops.size())));
    return nullptr;
  }
}

void ControlServer::Impl::RunLoop(asio::io_context& io) {
  if (options.busy_poll.count() == 0) {
    io.run();
    return;
  }
  Clock::time_point last_work = Clock::now();
  while (!io.stopped()) {
    const bool polling = Clock::now() - last_work < options.busy_poll &&
                         BusyPollPays(connections.load(std::memory_order_relaxed), usable_cores);
    if (polling ? io.poll() > 0 : io.run_one() > 0) last_work = Clock::now();
  }
}

void ControlServer::Impl::StopLoops() {
  accept_loop.stop();
  if (accept_thread.joinable()) accept_thread.join();
  std::lock_guard lock(loops_mu);
  for (auto& loop : loops) loop->io.stop();
  for (auto& loop : loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
  loops.clear();
}

bool ControlServer::Impl::AddUnauthenticated(const std::string& address) {
  std::lock_guard lock(unauthenticated_mu);
  uint32_t& count = unauthenticated[address];
  if (count >= options.max_unauthenticated_per_peer) return false;
  ++count;
  return true;
}

void ControlServer::Impl::RemoveUnauthenticated(const std::string& address) {
  std::lock_guard lock(unauthenticated_mu);
  auto it = unauthenticated.find(address);
  if (it == unauthenticated.end()) return;
  if (--it->second == 0) unauthenticated.erase(it);
}

void ControlServer::Impl::Reject(RejectReason reason, std::string_view peer,
                                 std::string_view detail) {
  if (metrics != nullptr) metrics->CountRejected(reason);
  KVAULT_LOG(LogLevel::kWarn, "control",
             std::string(peer) + ": refused (" + std::string(RejectReasonName(reason)) +
                 "): " + std::string(detail));
}

}  // namespace kvault::server
