// ProcessDataMover (process_data_mover.h).

#include "core/process_data_mover.h"

#include <unistd.h>

#include <chrono>
#include <string>
#include <utility>

#include "kvault/common/log.h"
#include "kvault/transport/ucx/ucx_remote_key.h"

namespace kvault::server {

Result<transport::PeerId> ProcessDataMover::Connect(
    std::span<const uint8_t>, const std::optional<transport::ControlConnection>&,
    const transport::WorkerProof&) {
  return Status::Unsupported(
      "the process-memory data plane connects by handed-over memory, not by UCX "
      "worker address");
}

Status ProcessDataMover::RegionCounts::Take(uint32_t uid) {
  std::lock_guard lock(mu_);
  if (all_ >= kMaxRegionsInAll) {
    return Status::ResourceExhausted("kvaultd holds " + std::to_string(kMaxRegionsInAll) +
                                     " regions of its sessions already");
  }
  size_t& mine = by_user_[uid];
  if (mine >= kMaxRegionsPerUser) {
    return Status::ResourceExhausted("kvaultd holds " + std::to_string(kMaxRegionsPerUser) +
                                     " regions of this user's sessions already (its share)");
  }
  ++mine;
  ++all_;
  return Status::Ok();
}

void ProcessDataMover::RegionCounts::Release(uint32_t uid, size_t n) {
  if (n == 0) return;
  std::lock_guard lock(mu_);
  all_ -= n;
  auto it = by_user_.find(uid);
  if (it != by_user_.end() && (it->second -= n) == 0) by_user_.erase(it);
}

Result<transport::PeerId> ProcessDataMover::AttachProcess(transport::ProcessMemory memory,
                                                          uint32_t uid) {
  const transport::PeerId peer = kPeerBit | next_.fetch_add(1);
  std::shared_ptr<Peer> entry =
      releases_.Share(std::make_unique<Peer>(std::move(memory), uid, &region_counts_));
  std::lock_guard lock(mu_);
  peers_.emplace(peer, std::move(entry));
  return peer;
}

Status ProcessDataMover::AttachRegion(transport::PeerId peer, uint64_t base,
                                      transport::RegionFile file) {
  std::shared_ptr<Peer> client = Find(peer);
  if (client == nullptr) {
    return Status::NotFound("peer " + std::to_string(peer) + " is not an attached process");
  }
  const uint64_t length = file.length();
  if (base == 0 || base + length < base) {
    return Status::InvalidArgument("the region is not a range of addresses");
  }
  // Descriptors of regions that went are still open until releases_ closes them.
  if (releases_.pending() >= kMaxRegionsInAll) {
    return Status::ResourceExhausted("kvaultd is still closing " +
                                     std::to_string(releases_.pending()) +
                                     " regions of sessions that went");
  }
  std::lock_guard lock(client->regions_mu);
  if (client->disconnected.load()) {  // set before Disconnect takes the regions under this lock
    return Status::NotFound("peer " + std::to_string(peer) + " was disconnected");
  }
  for (const auto& r : client->regions) {
    if (base < r->base + r->file.length() && r->base < base + length) {
      return Status::InvalidArgument("the region overlaps one the session attached already");
    }
  }
  if (client->regions.size() >= kMaxRegions) {
    return Status::ResourceExhausted("the session has " + std::to_string(kMaxRegions) +
                                     " regions attached already");
  }
  KVAULT_RETURN_IF_ERROR(region_counts_.Take(client->uid));
  // Unmapped (hugetlbfs, a file sealed against writes), the region is still copied with pread.
  if (residency_ != nullptr) (void)file.MapShared(residency_);
  client->regions.push_back(
      releases_.Share(std::make_unique<const Region>(Region{base, std::move(file)})));
  return Status::Ok();
}

void ProcessDataMover::ForgetRemoteKey(transport::PeerId peer,
                                       std::span<const uint8_t> remote_key) {
  const Result<transport::RemoteKeyRange> range = transport::RemoteKeyRegion(remote_key);
  std::shared_ptr<Peer> client = range.ok() ? Find(peer) : nullptr;
  if (client == nullptr) return;
  TakeRegions(*client, [&](const Region& r) {
    return r.base == range->base && r.file.length() == range->length;
  });
}

std::shared_ptr<const ProcessDataMover::Region> ProcessDataMover::RegionOf(Peer& peer,
                                                                           uint64_t address,
                                                                           uint64_t length) {
  std::lock_guard lock(peer.regions_mu);
  for (const auto& r : peer.regions) {
    if (address >= r->base && length <= r->file.length() &&
        address - r->base <= r->file.length() - length) {
      return r;
    }
  }
  return nullptr;
}

void ProcessDataMover::Disconnect(transport::PeerId peer) {
  std::shared_ptr<Peer> gone;
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    gone = std::move(it->second);
    peers_.erase(it);
  }
  gone->disconnected.store(true);  // a batch still running fails its remaining transfers
  // Its slots count no more from now on; its files (a region's last close frees the region's
  // pages) close on releases_ as the references here (and of copies still running) go.
  std::vector<std::shared_ptr<const Region>> regions;
  {
    std::lock_guard lock(gone->regions_mu);
    regions.swap(gone->regions);
  }
  region_counts_.Release(gone->uid, regions.size());
}

std::shared_ptr<ProcessDataMover::Peer> ProcessDataMover::Find(transport::PeerId peer) const {
  std::lock_guard lock(mu_);
  auto it = peers_.find(peer);
  return it == peers_.end() ? nullptr : it->second;
}

std::vector<Status> ProcessDataMover::Run(transport::TransferBatch batch) {
  return RunInOrder(std::move(batch), [](size_t) {});
}

std::vector<Status> ProcessDataMover::RunInOrder(transport::TransferBatch batch,
                                                 const std::function<void(size_t)>& arrived) {
  const size_t n = batch.transfers.size();
  if (n == 0) return {};
  if (batch.deadline == std::chrono::steady_clock::time_point{}) {
    return std::vector<Status>(n, Status::InvalidArgument("transfer batch has no deadline"));
  }
  // Every transfer of a batch names one client (a request's); others fail alone.
  const transport::PeerId peer = batch.transfers[0].peer;
  std::shared_ptr<Peer> client = Find(peer);
  if (client == nullptr) {
    return std::vector<Status>(
        n, Status::Unavailable("peer " + std::to_string(peer) + " is not connected"));
  }
  std::vector<Status> statuses(n);
  for (size_t i = 0; i < n; ++i) {
    const transport::Transfer& t = batch.transfers[i];
    if (t.peer != peer) {
      statuses[i] = Status::InvalidArgument("a transfer batch names more than one peer");
      continue;
    }
    if (client->disconnected.load()) {
      statuses[i] = Status::Unavailable("peer " + std::to_string(peer) + " was disconnected");
      continue;
    }
    if (std::chrono::steady_clock::now() >= batch.deadline) {
      statuses[i] = Status::Unavailable(std::string(transport::kDeadlineExceededPrefix) +
                                        ": transfer not started before the batch's deadline");
      continue;
    }
    bool handed_over = false;
    statuses[i] = Copy(*client, t, batch.copy_mapped, i, &handed_over);
    // What copy_mapped moved, its copier saw.
    if (statuses[i].ok() && t.op == transport::TransferOp::kGet && !handed_over) arrived(i);
  }
  return statuses;
}

void ProcessDataMover::TakeRegions(Peer& peer, const std::function<bool(const Region&)>& which) {
  std::vector<std::shared_ptr<const Region>> gone;
  {
    std::lock_guard lock(peer.regions_mu);
    for (auto it = peer.regions.begin(); it != peer.regions.end();) {
      if (which(**it)) {
        gone.push_back(std::move(*it));
        it = peer.regions.erase(it);
      } else {
        ++it;
      }
    }
  }
  region_counts_.Release(peer.uid, gone.size());
}

Status ProcessDataMover::Copy(Peer& peer, const transport::Transfer& t,
                              const CopyMappedFn& copy_mapped, size_t index, bool* handed_over) {
  // Held until the copy ends, so that a ForgetRemoteKey meanwhile does not close the file.
  std::shared_ptr<const Region> region = RegionOf(peer, t.remote_address, t.length);
  // Whole transfers through the region's mapping or its file, however they are split.
  transport::RegionFile::Via via = transport::RegionFile::Via::kFile;
  if (region != nullptr) via = region->file.Route(t.remote_address - region->base, t.length);
  // Only a read through the file allocates nothing where the client punched a hole.
  if (region != nullptr &&
      (t.op == transport::TransferOp::kPut || via == transport::RegionFile::Via::kMapping) &&
      !region->file.Allocated()) {
    // The client punched holes into it: writes there, and reads through the mapping, would
    // allocate pages charged to kvaultd. From now on the process's memory file (its page faults
    // are the client's) moves them.
    KVAULT_LOG(LogLevel::kInfo, "memory",
               peer.memory.name() +
                   ": a memory region with holes is copied through the "
                   "process's memory file from now on");
    TakeRegions(peer, [&](const Region& r) { return &r == region.get(); });
    region = nullptr;
  }
  if (region != nullptr) region_copies_.fetch_add(1, std::memory_order_relaxed);
  if (region != nullptr && t.op == transport::TransferOp::kGet && copy_mapped) {
    const uint64_t offset = t.remote_address - region->base;
    const std::span<const uint8_t> mapped = region->file.MappedBytes(offset, t.length);
    if (!mapped.empty()) {
      // The batch's copier moves it (a Store's hashes each piece as it lands), the way Route gave.
      transport::MappedRemote remote{mapped};
      if (via == transport::RegionFile::Via::kFile) {
        remote.file = region->file.descriptor();
        remote.file_offset = offset;
      }
      *handed_over = true;
      const Status copied = copy_mapped(index, remote);
      if (remote.file < 0) region->file.Touched(offset, t.length);  // counted once copied
      return copied;
    }
  }
  auto part = [&](uint64_t at, uint64_t length) {
    uint8_t* local = static_cast<uint8_t*>(t.local) + at;
    const bool get = t.op == transport::TransferOp::kGet;
    if (region != nullptr) {
      const uint64_t offset = t.remote_address - region->base + at;
      return get ? region->file.Read(offset, std::span<uint8_t>(local, length), via)
                 : region->file.Write(offset, std::span<const uint8_t>(local, length), via);
    }
    return get ? peer.memory.Read(t.remote_address + at, std::span<uint8_t>(local, length))
               : peer.memory.Write(t.remote_address + at, std::span<const uint8_t>(local, length));
  };
  // Counts this copy while it runs; a helper is only worth waking while no other copy runs.
  struct Copying {
    explicit Copying(std::atomic<int>& n) : n(n), others(n.fetch_add(1)) {}
    ~Copying() { n.fetch_sub(1); }
    std::atomic<int>& n;
    const int others;
  } copying(copying_);
  if (t.length < kSplitBytes || copying.others != 0) return part(0, t.length);
  // The kernel copies a memory file page by page through a bounce page, taking the client's
  // mmap lock for each: two threads move about 1.4x what one does here (a scratch program: 1 MiB
  // reads 2.5 -> 3.5 GB/s, writes 2.6 -> 3.6); a region's file about 1.9x (3.7 -> 7.2 GB/s
  // reads). Under kSplitBytes waking the helper costs more than it saves.
  // Split at a page boundary of the client's addresses, so that no page is the two threads'.
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t first = ((t.remote_address + t.length / 2) & ~(page - 1)) - t.remote_address;
  Status second;
  if (!helper_.TryStartTask([&] { second = part(first, t.length - first); })) {
    return part(0, t.length);
  }
  split_copies_.fetch_add(1, std::memory_order_relaxed);
  // The helper writes `second` and reads `t` and `part` until Wait returns, whatever happens here.
  struct AwaitHelper {
    CopyHelper& helper;
    ~AwaitHelper() { helper.Wait(); }
  };
  Status status;
  {
    AwaitHelper await{helper_};
    status = part(0, first);
  }
  return status.ok() ? second : status;
}

}  // namespace kvault::server
