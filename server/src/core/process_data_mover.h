#pragma once
// ProcessDataMover: the DataMover for clients on this host whose memory the server copies
// directly (transport::ProcessMemory: the client's /proc/<pid>/mem, which it handed over). A
// peer is one such memory; transfers run on the calling thread, one after another, and one of
// kSplitBytes or more is split in two halves, the second copied meanwhile by a helper thread
// when that is idle and no other copy of this mover runs (the kernel copies these page by page
// through a bounce page: with one client, 1 MiB loads ran about 1.4x faster, stores 1.2x, on the
// 2-vCPU CI host; docs/daemon.md, "Store benchmark"). The Service's copy helper
// (Service::copy_helper_: the UCX plane's mapped GETs, and a Store's GETs from mapped regions,
// below) is not counted: up to four threads copy at once.
// A region of the client's memory that it handed over as a file (AttachRegion, up to kMaxRegions
// per peer) is copied through that file instead, with pread and pwrite: one copy, without the
// bounce page and the client's mmap lock (a scratch program here: 1 MiB reads 2.7 -> 3.7 GB/s on
// one thread, 4.3 -> 7.2 GB/s on two). A transfer must lie wholly inside one region for that.
// With a MappedResidency, the region's file is also mapped here, and bytes the client uses again
// (its load destinations, a staging buffer) are copied through that mapping, within the
// residency's budget (transport::RegionFile::MapShared). A Store's GETs from such a region go to
// its batch's copy_mapped (ArrivingObjects), which hashes them piece by piece as they land, as
// for the UCX plane's mapped keys.
// Regions and peers are destroyed on a thread of their own (ReleaseThread::Share), whichever
// thread drops the last reference, a copy still running on an io thread included: the last close
// of a large memfd frees its pages there and then, not on an io thread. While that thread has
// kMaxRegionsInAll or more still to close, no region is attached (their descriptors are still
// open).
// Remote keys play no part, except that ForgetRemoteKey drops the region with the key's base and
// length (the client deregisters it). Connect (UCX worker addresses) is Unsupported. Peer ids
// have the top bit set (kPeerBit), so DataPlanes can tell them from UCX's.
//
// Thread-safety: all members may be called from many threads at once.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/copy_helper.h"
#include "core/data_mover.h"
#include "core/release_thread.h"
#include "kvault/transport/local/mapped_residency.h"
#include "kvault/transport/local/process_memory.h"

namespace kvault::server {

class ProcessDataMover final : public DataMover {
 public:
  static constexpr transport::PeerId kPeerBit = transport::PeerId{1} << 63;

  // `residency` (may be null: regions are never mapped) outlives the mover.
  explicit ProcessDataMover(transport::MappedResidency* residency = nullptr)
      : residency_(residency) {}

  Result<transport::PeerId> Connect(std::span<const uint8_t> worker_address,
                                    const std::optional<transport::ControlConnection>& connection,
                                    const transport::WorkerProof& proof) override;
  // A new peer for `memory` (checked and probed when it was handed over by user `uid`).
  Result<transport::PeerId> AttachProcess(transport::ProcessMemory memory, uint32_t uid) override;
  // InvalidArgument for a region that is not a range of addresses or overlaps one the peer has;
  // ResourceExhausted when the peer has kMaxRegions, the peers of its user kMaxRegionsPerUser, or
  // all peers together kMaxRegionsInAll (each holds a descriptor), or while kMaxRegionsInAll
  // regions that went are still to be closed; NotFound for an unknown or disconnected peer.
  Status AttachRegion(transport::PeerId peer, uint64_t base, transport::RegionFile file) override;
  void Disconnect(transport::PeerId peer) override;
  std::vector<Status> Run(transport::TransferBatch batch) override;
  // Calls `arrived(i)` right after GET i is copied, while its bytes are in cache; a GET wholly
  // inside a mapped region goes to batch.copy_mapped instead, when set (the region's mapped bytes,
  // with its file where Route picks the file), and is not reported as arrived.
  std::vector<Status> RunInOrder(transport::TransferBatch batch,
                                 const std::function<void(size_t)>& arrived) override;
  void ForgetRemoteKey(transport::PeerId peer, std::span<const uint8_t> remote_key) override;

  static constexpr size_t kMaxRegions = 64;
  static constexpr size_t kMaxRegionsInAll = 256;
  // One user's processes cannot take every slot from the others.
  static constexpr size_t kMaxRegionsPerUser = kMaxRegionsInAll / 2;

  // How many transfers were split with the helper so far, and how many went through a region's
  // file (for tests).
  uint64_t split_copies() const { return split_copies_.load(std::memory_order_relaxed); }
  uint64_t region_copies() const { return region_copies_.load(std::memory_order_relaxed); }
  // Regions and peers that went and are not dropped yet (for tests).
  size_t releases_pending() const { return releases_.pending(); }

 private:
  struct Region {
    uint64_t base;
    transport::RegionFile file;
  };
  // Attached regions of all peers, and of each user's peers.
  class RegionCounts {
   public:
    // Counts one more region of user `uid`; ResourceExhausted (nothing counted) when that user
    // or everyone together is at the limit.
    Status Take(uint32_t uid);
    void Release(uint32_t uid, size_t n);

   private:
    std::mutex mu_;
    size_t all_ = 0;
    std::unordered_map<uint32_t, size_t> by_user_;  // users with regions only
  };
  struct Peer {
    Peer(transport::ProcessMemory m, uint32_t uid, RegionCounts* counts)
        : memory(std::move(m)), uid(uid), counts(counts) {}
    ~Peer() { counts->Release(uid, regions.size()); }
    const transport::ProcessMemory memory;
    const uint32_t uid;                     // who handed the memory over
    std::atomic<bool> disconnected{false};  // set by Disconnect: running batches stop copying
    std::mutex regions_mu;                  // after mu_ when both are held; RegionCounts' after it
    std::vector<std::shared_ptr<const Region>> regions;  // guarded by regions_mu
    RegionCounts* const counts;  // the mover's region_counts_, which outlives its peers
  };
  std::shared_ptr<Peer> Find(transport::PeerId peer) const;
  // Forgets the regions of `peer` that `which` picks (their files are closed on releases_ once
  // no copy holds them: the last close of a large memfd frees its pages there and then).
  void TakeRegions(Peer& peer, const std::function<bool(const Region&)>& which);
  // The region of `peer` that holds [address, +length), or null.
  static std::shared_ptr<const Region> RegionOf(Peer& peer, uint64_t address, uint64_t length);
  using CopyMappedFn = std::function<Status(size_t, const transport::MappedRemote&)>;
  // Moves one transfer (number `index` of its batch): OK once every byte moved, else the first
  // failing half's status. A GET from a mapped region goes to `copy_mapped` when that is set
  // (*handed_over then says so).
  Status Copy(Peer& peer, const transport::Transfer& t, const CopyMappedFn& copy_mapped,
              size_t index, bool* handed_over);

  // Transfers at least this long are split between the calling thread and helper_.
  static constexpr uint64_t kSplitBytes = 256 << 10;
  transport::MappedResidency* const residency_;  // may be null
  CopyHelper helper_;            // shared by every peer; a caller that finds it busy copies alone
  std::atomic<int> copying_{0};  // Copy calls running
  std::atomic<uint64_t> split_copies_{0};
  std::atomic<uint64_t> region_copies_{0};
  RegionCounts region_counts_;
  // Destroys the regions and peers (Share): declared after region_counts_, which peers count on,
  // and before peers_, whose peers and regions it destroys when the mover goes.
  ReleaseThread releases_;

  mutable std::mutex mu_;
  std::unordered_map<transport::PeerId, std::shared_ptr<Peer>> peers_;
  std::atomic<transport::PeerId> next_{1};
};

}  // namespace kvault::server
