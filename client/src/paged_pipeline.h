#pragma once
// PagedPipeline: the engine of PagedKvStore (paged_kv.h). One thread runs the transfers in call
// order; each is cut into waves that fit one of `pipeline_depth` slices of a registered staging
// region, with up to pipeline_depth waves in flight at the daemon while the next is encoded
// (store) or the previous decoded (load). Where the KV lives is the wave codec's business
// (paged_wave_codec.h).
//
// Thread-safety: Store, Load and the destructor are safe from any thread.

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kvault/client.h"
#include "kvault/kernels/cuda_runtime.h"
#include "kvault/kv_store.h"
#include "kvault/paged_kv.h"
#include "paged_op_state.h"
#include "paged_wave_codec.h"

namespace kvault::client_internal {

struct LoadWave;
struct IssuedLoadWave;
struct LoadProgress;

class PagedPipeline {
 public:
  static Result<std::unique_ptr<PagedPipeline>> Create(Client& client,
                                                       const PagedKvOptions& options);
  // Cancels the transfers that have not started, finishes the running one, joins the thread.
  ~PagedPipeline();
  // PagedKvStore::Close: drops the queued jobs (finished as closed), joins the thread after the
  // running one, drains the device. Idempotent.
  void Close();

  std::shared_ptr<PagedOpState> Store(const PagedSequence& sequence,
                                      const PagedStoreOptions& options);
  std::shared_ptr<PagedOpState> Load(const Lease& lease, const PagedSequence& sequence,
                                     size_t blocks, const PagedLoadOptions& options);

  const PagedKvOptions& options() const { return options_; }
  const KvBlockCodec& codec() const { return codec_; }

 private:
  struct Job;
  PagedPipeline(Client& client, PagedKvOptions options, KvBlockCodec codec);

  Status CheckSequence(const PagedSequence& sequence) const;
  std::shared_ptr<PagedOpState> Enqueue(std::unique_ptr<Job> job);
  void Run();
  void RunStore(Job& job);
  void RunLoad(Job& job);
  // GPU path: decodes the leading blocks the daemon's gpu tier exports (CUDA IPC) and returns
  // how many it handled (their statuses in `result`); the load goes on from there.
  size_t ImportFromGpuTier(const Job& job, std::vector<Status>& result);
  // Store with skip_stored: how many leading blocks of the job the daemon already holds.
  size_t LeadingStored(const Job& job);
  // The waves of blocks [start, end of job) in layer-major order, each fitting one slice.
  std::vector<LoadWave> PlanLoadWaves(const Job& job, size_t start) const;
  // Lays `wave` out in staging buffer `buffer` and sends its Load.
  Status IssueLoadWave(const Job& job, const LoadWave& wave, uint32_t buffer, IssuedLoadWave& out);
  // Waits for an issued wave and decodes the blocks of it that are still worth it.
  Status FinishLoadWave(const Job& job, const LoadWave& wave, uint32_t buffer,
                        IssuedLoadWave& issued, LoadProgress& progress);
  // Slice `buffer` of the staging region, (re)allocating the region when it was dropped.
  Result<uint8_t*> StagingSlice(uint32_t buffer);
  // Retires the staging region (Client::RetireMemory): a transfer that may still touch it was
  // abandoned. Waits first for the device copies queued from and into it (PagedWaveCodec::Drain).
  void DropStaging();
  Deadline WaveDeadline(const Job& job) const;

  Client& client_;
  const PagedKvOptions options_;
  const KvBlockCodec codec_;
  const uint64_t slice_bytes_;
  std::unique_ptr<PagedWaveCodec> wave_codec_;
  MemoryRegion staging_;
  kernels::HostPinning pinning_;  // GPU path: staging page-locked for asynchronous copies

  std::mutex close_mu_;  // one Close at a time (it joins thread_); before mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kvault::client_internal
