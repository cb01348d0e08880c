#pragma once
// GpuTier: the `gpu` tier (DESIGN.md §7), a pool of device memory on one GPU for the hottest
// blocks. Blocks are filled from and drained to host memory with CUDA copies, and co-located
// processes read them directly through CUDA IPC (kernels/gpu_ipc.h). Host-only header: no CUDA types.
//
// The pool is one cudaMalloc allocation of `capacity_bytes`, made at Create and never grown, so
// the cap is exact and one IPC handle covers every block. Blocks are carved from it by a best-fit
// allocator with coalescing of free neighbours, in multiples of `alignment_bytes`: the blocks of
// one deployment mostly share one size, so a freed block leaves a hole that fits the next one
// exactly, and no size-class rounding is paid. What fragmentation remains is reported.
//
// In a build without CUDA every entry point returns Unsupported.

#include <cstdint>
#include <memory>
#include <span>

#include "kvault/common/result.h"
#include "kvault/storage/counters.h"
#include "kvault/kernels/gpu_ipc.h"
#include "kvault/storage/scoped_key.h"
#include "kvault/storage/tier.h"

namespace kvault::storage {

struct GpuTierOptions {
  // CUDA device ordinal (as this process numbers its visible devices) that holds the pool.
  // Default 0.
  int device = 0;

  // Bytes of device memory allocated at Create and never exceeded; rounded down to a multiple of
  // `alignment_bytes`. Larger pools hold more hot blocks but leave less HBM to the engine when
  // they share a GPU. Default 1 GiB.
  uint64_t capacity_bytes = uint64_t{1} << 30;

  // Allocation granularity: every block starts at a multiple of this and occupies a multiple of
  // it. A power of two in [256, 1 GiB]; 256 keeps every block at least as aligned as cudaMalloc
  // memory. Smaller wastes less per block (at most alignment - 1 bytes); larger keeps the free
  // list shorter under churn of mixed sizes. Default 4 KiB (under 7% waste for 64 KiB blocks).
  uint64_t alignment_bytes = 4096;

  // CUDA streams for copies. Concurrent Put and Read calls take them round-robin, so up to this
  // many copies overlap. In [1, 64]. Default 2 (one per copy direction is enough to keep a PCIe
  // link busy).
  uint32_t copy_streams = 2;
};

// Thread-safe: one mutex guards the allocator and the table of blocks; copies run outside it on
// the tier's streams, so Puts and Reads of distinct blocks overlap. As Tier requires, the caller
// never erases a block while a Read or an IPC reader still uses it.
class GpuTier final : public Tier {
 public:
  // Allocates the pool and the copy streams on `options.device`.
  // InvalidArgument: an option out of range (or a device ordinal the process does not see).
  // Unavailable: no CUDA device (or the driver is missing). ResourceExhausted: cudaMalloc of the
  // pool failed. Unsupported: this build has no CUDA.
  static Result<std::unique_ptr<GpuTier>> Create(const GpuTierOptions& options);

  ~GpuTier() override;  // frees the pool; IPC mappings in other processes become invalid
  GpuTier(const GpuTier&) = delete;
  GpuTier& operator=(const GpuTier&) = delete;

  TierKind kind() const override { return TierKind::kGpu; }
  TierUsage Usage() const override;

  // Copies `object` into the pool (on one of the tier's streams, synchronized before return); the
  // slot is the block's byte offset in the pool. `object` may be pageable or pinned host memory,
  // or device memory (a block just encoded on a GPU is copied device to device). InvalidArgument:
  // empty object or one over 4 GiB - 1. ResourceExhausted: no free range large enough (the caller
  // evicts and retries). On any error nothing is stored and no space stays taken.
  Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object) override;

  // Copies the block into `out` (host or device memory, synchronized before return).
  // NotFound: no block of `key` at `slot`. InvalidArgument: object_bytes is not the stored size,
  // or out.size() != object_bytes. The pool is device memory, not a medium that rots, so no
  // checksum is verified here.
  Status Read(const ScopedKey& key, TierSlot slot, uint32_t object_bytes,
              std::span<uint8_t> out) override;

  // Frees the block's range for reuse. Nothing happens when `key` has no block at `slot`.
  void Erase(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) override;

  // Gauges "capacity_bytes", "used_bytes", "reserved_bytes", "blocks", "free_ranges",
  // "largest_free_bytes", "fragmentation_ratio" (1 - largest free range / free bytes: 0 when the
  // free space is one range or none, near 1 when it is scattered in small holes); counters
  // "puts_total", "allocation_failures_total", "reads_total", "erases_total",
  // "copied_in_bytes_total", "copied_out_bytes_total", "ipc_exports_total". All labelled "gpu".
  void VisitCounters(CounterVisitor& visitor) const override;

  // Describes the block for a co-located process (kernels/gpu_ipc.h): the pool's IPC handle plus the
  // block's offset and length. The block must stay stored until that process is done with it.
  // NotFound: no block of `key` at `slot`. InvalidArgument: object_bytes is not the stored size.
  // Unsupported: the driver could not export the pool (cudaIpcGetMemHandle failed at Create; the
  // message says why), or this build has no CUDA.
  Result<kernels::GpuIpcExport> ExportIpc(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) const;

  // The device ordinal and the pool size after rounding.
  int device() const;
  uint64_t capacity_bytes() const;

 private:
  class Impl;
  explicit GpuTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::storage
