#pragma once
// UcxRemoteKey: RAII owner of an unpacked remote key (ucp_ep_rkey_unpack / ucp_rkey_destroy),
// the handle that lets one endpoint GET from and PUT to a peer's registered memory.
//
// Destruction order: before the endpoint it was unpacked for, on that endpoint's worker thread.
//
// Thread-safety: as the endpoint's. Movable, not copyable; a moved-from key is empty.

#include <cstddef>
#include <cstdint>
#include <span>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"
#include "kvault/transport/ucx/control_connection.h"
#include "kvault/transport/ucx/peer_memory_guard.h"
#include "kvault/transport/ucx/ucx_endpoint.h"

struct ucp_rkey;

namespace kvault::transport {

// The client region a sealed remote key (UcxMemory::PackRemoteKey) covers, as the client sees
// it, read without UCX: InvalidArgument or Corruption as Unpack for a malformed envelope or key
// header, InvalidArgument for an empty or wrapping region.
struct RemoteKeyRange {
  uint64_t base = 0;
  uint64_t length = 0;
};
Result<RemoteKeyRange> RemoteKeyRegion(std::span<const uint8_t> packed);

class UcxRemoteKey {
 public:
  // Unpacks sealed remote-key bytes (UcxMemory::PackRemoteKey) for `endpoint`. The bytes come
  // from a peer, so they are checked before UCX sees them: InvalidArgument when the envelope or
  // the UCX layout inside it is malformed or truncated, Corruption when the checksum fails,
  // Unavailable when the key's owner process is gone (same pid namespace: its shared segments are
  // attached and held before UCX sees the key, so a death at any moment gives this status, never
  // a crash in UCX; see transport/ucx.md), and UCX's own
  // error (e.g. Unavailable) when the key names memory this endpoint cannot reach.
  //
  // When the key maps the peer's memory into this process (posix or sysv shared memory), the
  // mapping is watched (PeerMemoryGuard) for as long as the key lives: a peer that cuts its memory
  // short makes cut_short() true instead of crashing this process. InvalidArgument when the
  // mapped segment is not one SharedSegmentHold checked (a posix segment named by path, any
  // segment with a UCX other than 1.13) or the region is larger than what was mapped for it;
  // ResourceExhausted when too many regions are watched already.
  //
  // `connection`: the control connection the key came on, when known. A key that names a process
  // of this pid namespace must then name the one holding the client end of that connection
  // (HoldsConnection), else InvalidArgument: a client cannot hand over another process's key.
  // When that cannot be told (the key claims another pid namespace, /proc is not readable, the
  // connection is translated), the key loses its shared-memory entries (WithoutSharedSegments)
  // and reaches only what the sender's own endpoint reaches.
  //
  // `keep_segment_file`: keep a descriptor of the key's posix segment file (segment_file()),
  // when the key maps exactly one such segment, in small pages; one more open file per key,
  // while the keys of this process keep fewer than half of its open-file limit.
  static Result<UcxRemoteKey> Unpack(const UcxEndpoint& endpoint, std::span<const uint8_t> packed,
                                     const ControlConnection* connection = nullptr,
                                     bool keep_segment_file = false);

  UcxRemoteKey(UcxRemoteKey&& other) noexcept;
  UcxRemoteKey& operator=(UcxRemoteKey&& other) noexcept;
  UcxRemoteKey(const UcxRemoteKey&) = delete;
  UcxRemoteKey& operator=(const UcxRemoteKey&) = delete;
  ~UcxRemoteKey();

  // The client region the key covers, as the client sees it (carried in the sealed bytes).
  uint64_t base() const { return base_; }
  uint64_t length() const { return length_; }
  // True when [address, address + length) lies inside the region.
  bool Covers(uint64_t address, size_t length) const;

  // True once a read or write of the peer's memory mapped here found it cut short (the peer
  // shrank its shared segment): what such transfers read are zeros and what they wrote went
  // nowhere, so they must fail. Also true once NoteFailedFileRead found the segment file short.
  // Always false for memory that is not mapped here.
  bool cut_short() const { return file_cut_ || guard_.cut_short(); }
  // After a read of [address, +length) through segment_file() failed: true when the file no
  // longer holds those bytes (the peer shrank it), and cut_short() is true from then on, as after
  // a fault in the mapping, so later transfers through the key fail without reading the file
  // again. False, and nothing changes, when the file still holds them, cannot be examined, or
  // the key keeps no file.
  bool NoteFailedFileRead(uint64_t address, uint64_t length);

  ucp_rkey* get() const { return rkey_; }

  // Whether the key's memory is mapped here in pages of the system's size (not hugetlbfs): only
  // then may MappedResidency drop them. False for memory not mapped here.
  bool mapped_in_small_pages() const { return small_pages_; }
  // Where the bytes of memory mapped here can also be read and written without touching the
  // mapping: a descriptor of the one posix segment file UCX mapped for the key, or -1 (not kept:
  // see Unpack; memory not mapped here, a sysv segment, a key of several segments, huge pages);
  // and the file offset of `address` (inside the region). A segment the peer cut short makes
  // reads there come up short.
  int segment_file() const { return segment_file_.get(); }
  uint64_t SegmentFileOffset(uint64_t address) const { return address - base_ + base_file_offset_; }

 private:
  UcxRemoteKey(ucp_rkey* rkey, uint64_t base, uint64_t length)
      : rkey_(rkey), base_(base), length_(length) {}

  ucp_rkey* rkey_ = nullptr;
  uint64_t base_ = 0;
  uint64_t length_ = 0;
  PeerMemoryGuard guard_;  // released before the key is destroyed
  bool small_pages_ = false;
  UniqueFd segment_file_;
  uint64_t base_file_offset_ = 0;  // of base_ in segment_file_
  bool file_cut_ = false;          // set by NoteFailedFileRead
};

}  // namespace kvault::transport
