#pragma once
// UcxMemory: RAII owner of a UCX memory registration (ucp_mem_map / ucp_mem_unmap), either of
// memory the caller owns or of memory UCX allocates. Registering a large region once and using
// any sub-range of it is the intended pattern: the server's host arena is registered once, and a
// client's remote key covers every address inside its registered region.
//
// Destruction order: destroy before the UcxContext. Peers that still use the packed remote key
// get errors once the registration is gone; the caller stops their transfers first.
//
// Thread-safety: immutable after creation, so const calls are safe from any thread when the
// context is thread_safe. Movable, not copyable; a moved-from object is empty.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kvault/common/result.h"
#include "kvault/transport/ucx/ucx_context.h"

struct ucp_mem;

namespace kvault::transport {

class UcxMemory {
 public:
  // Registers [address, address + length) for local and remote read and write. The memory stays
  // owned by the caller and must outlive the registration. InvalidArgument for a null address or
  // zero length; ResourceExhausted / Unavailable when UCX refuses (e.g. pinning limits).
  static Result<UcxMemory> Map(const UcxContext& context, void* address, size_t length);
  // Allocates `length` bytes through UCX (which may place them in shared memory so that peers on
  // the host can reach them directly) and registers them; freed on destruction. InvalidArgument
  // for zero length; ResourceExhausted, before UCX is asked, when `length` is more than this
  // process can still take (MemoryHeadroomBytes: MemAvailable, its cgroup's memory limit), since
  // UCX fills the segment as it allocates and the process would be killed on the way.
  static Result<UcxMemory> Allocate(const UcxContext& context, size_t length);

  UcxMemory(UcxMemory&& other) noexcept;
  UcxMemory& operator=(UcxMemory&& other) noexcept;
  UcxMemory(const UcxMemory&) = delete;
  UcxMemory& operator=(const UcxMemory&) = delete;
  ~UcxMemory();

  void* address() const { return address_; }
  size_t length() const { return length_; }
  // True when [p, p + n) lies inside the registered range.
  bool Contains(const void* p, size_t n) const;

  // The remote key for this registration, sealed in kvault's envelope: the bytes a client sends
  // so that a peer can GET from and PUT to any address inside [address(), address() + length()).
  Result<std::vector<uint8_t>> PackRemoteKey() const;

  ucp_mem* get() const { return memh_; }

 private:
  UcxMemory(ucp_context* context, ucp_mem* memh, void* address, size_t length);

  ucp_context* context_ = nullptr;
  ucp_mem* memh_ = nullptr;
  void* address_ = nullptr;
  size_t length_ = 0;
};

}  // namespace kvault::transport
