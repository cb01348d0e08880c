#pragma once
// CUDA IPC for the gpu tier (DESIGN.md §7): how a co-located process reads a block straight out of
// the daemon's device-memory pool. Host-only header: no CUDA types.
//
// The exporting side (GpuTier::ExportIpc) describes one block as a GpuIpcExport: the pool
// allocation's cudaIpcMemHandle_t as opaque bytes, the UUID of the GPU that holds it, the pool
// size, and the block's offset and length inside the pool. The importing side (GpuIpcImporter)
// opens each pool once with cudaIpcOpenMemHandle, caches the mapping, and hands out device
// pointers or copies blocks to host memory.
//
// Lifetime: the tier does not track importers. A block's bytes stay valid only while the exporter
// keeps the block (a lease or pin in the BlockStore); once it is erased its range may hold another
// block. Block objects verify themselves (checksum and key in the header, DESIGN.md §5), so a
// reader that verifies what it copied never accepts another block's bytes as its own.
//
// CUDA refuses to open an IPC handle in the process that created it: importers live in other
// processes (fork + exec, not a bare fork: a forked child cannot use its parent's CUDA context).

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "kvault/common/result.h"

namespace kvault::kernels {

inline constexpr size_t kGpuIpcHandleBytes = 64;  // sizeof(cudaIpcMemHandle_t)
inline constexpr size_t kGpuUuidBytes = 16;       // sizeof(cudaUUID_t)

// One block of an exported pool. Plain value type; copy it to the other process in any encoding
// (the bytes are opaque but position-independent).
struct GpuIpcExport {
  std::array<uint8_t, kGpuIpcHandleBytes> pool_handle{};  // cudaIpcMemHandle_t of the pool
  std::array<uint8_t, kGpuUuidBytes> device_uuid{};       // the GPU holding the pool
  uint64_t pool_bytes = 0;                                // size of the pool allocation
  uint64_t offset = 0;                                    // the block's first byte in the pool
  uint32_t length = 0;                                    // the block object's bytes

  bool operator==(const GpuIpcExport&) const = default;
};

// The importing side: opens exported pools (each once, on the local device with the exporter's
// UUID, so differing CUDA_VISIBLE_DEVICES orders do not matter) and closes them all when
// destroyed. Device pointers it returns are valid until then.
//
// Thread-safe: one mutex guards the table of opened pools; copies run outside it.
class GpuIpcImporter {
 public:
  // Unavailable when the process sees no CUDA device; Unsupported in a build without CUDA.
  static Result<std::unique_ptr<GpuIpcImporter>> Create();

  ~GpuIpcImporter();
  GpuIpcImporter(const GpuIpcImporter&) = delete;
  GpuIpcImporter& operator=(const GpuIpcImporter&) = delete;

  // Device pointer to the block's first byte, opening the pool on first use (which makes the
  // pool's device the calling thread's current device).
  // InvalidArgument: zero length, or [offset, offset + length) not inside the pool.
  // Unavailable: no visible GPU has the exporter's UUID. Otherwise the CUDA error of
  // cudaIpcOpenMemHandle (a stale or foreign handle is usually InvalidArgument).
  Result<const void*> Map(const GpuIpcExport& block);

  // Copies the block into `out` (exactly block.length bytes, else InvalidArgument) with a
  // synchronous device-to-host copy. Errors as Map, plus the copy's CUDA error.
  Status CopyToHost(const GpuIpcExport& block, std::span<uint8_t> out);

  // The local device ordinal of the GPU that holds `block`'s pool. Unavailable when no visible
  // GPU has the exporter's UUID. Never fails otherwise; opens nothing.
  Result<int> LocalDevice(const GpuIpcExport& block) const;

  // Pools opened so far (each distinct pool handle counts once).
  size_t open_pools() const;

 private:
  class Impl;
  explicit GpuIpcImporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvault::kernels
