#pragma once
// SharedSegmentHold: keeps the shared-memory segments named by a peer's UCX remote key attachable
// while UCX unpacks the key, whatever happens meanwhile to the process that owns them.
//
// Why: UCX 1.13 attaches a peer's posix segment by opening /proc/<owner pid>/fd/<fd>, and a sysv
// segment with shmat(shmid). Both fail once the owner has died (its descriptors are closed; the
// last sysv attachment is gone), and when an attach fails, ucp_ep_rkey_unpack destroys its
// half-built key and crashes the process (it releases entries it never unpacked). A client killed
// between sending a request and the daemon's first use of its key would take the daemon down.
//
// What: Take() attaches each such segment itself first (an open file of the posix segment, a
// sysv attachment); if the owner is gone that fails here, with a status, and UCX is never called.
// UCX maps each segment read-write and crashes the same way when it may not (this process lacks
// write permission, a memfd is sealed against writes, no huge page is left to map): Take()
// reopens each posix file read-write and maps a page of it writable, and attaches sysv segments
// read-write, so that those fail here too, with InvalidArgument. It then gives a copy of the key whose posix entries name the held file through
// this process's own /proc/<pid>/fd/<fd>, which stays valid for as long as the hold lives.
// sysv entries keep their shmid: the hold's attachment keeps the segment alive. The peer cannot
// tell: the segment UCX maps is the same one. Only UCX 1.13's layouts are recognized (checked
// with ucp_get_version); other versions get the key unchanged.
//
// Recognized entries of the packed key (CheckLayout's walk), each checked against the region the
// key claims (base, length) and the owner's pid: an entry naming another process's segment (the
// pid in a posix key, the creator of a sysv segment) or a segment that does not hold the region
// is refused (a client's key names its own segment; UCX would otherwise attach whatever it names,
// and crash if that fails):
//   posix (24 bytes, 32 in a non-default pid namespace): seg_id (u64: flag bits 60..63, procfs
//     mode = bit 63, mmid = pid in bits 0..29 and fd in bits 30..59), segment address (u64),
//     segment length (u64); the region must lie inside the segment, and inside the segment's
//     file as fstat sizes it (UCX may claim a segment rounded up past the file's end; a read
//     past the end of the file would raise SIGBUS in this process). Only procfs mode is
//     accepted: an entry without it, or one carrying the segment's directory after the fixed
//     fields (a segment named by its path, UCX_POSIX_USE_PROC_LINK=n), is refused before UCX
//     would open whatever file it names. UCX opens the held file read-write with this process's
//     credentials and maps it writable, so the file must be a shared-memory segment the owner
//     may write itself (else a client could name a read-only descriptor of any file this process
//     can write, and a PUT would write it): a regular file on tmpfs (/dev/shm, memfd) or
//     hugetlbfs (fstatfs); the owner's descriptor open for reading and writing
//     (/proc/<pid>/fdinfo/<fd> "flags:" & O_ACCMODE == O_RDWR), and naming the held file (its
//     "mnt_id:" and "ino:", Linux 5.14+: the owner cannot swap the file while it is checked);
//     the file's owner one of the owner process's uids (real, effective, saved, fs:
//     /proc/<pid>/status "Uid:").
//   sysv (12 bytes): shmid (u32), segment address (u64); the segment's creator (shmctl) must be
//     the owner, and the region must lie inside the segment of the size shmctl reports. A
//     creator pid can be a reused one, so the segment's owner or creator uid must also be one of
//     the owner process's uids, and the owner must have it attached now (/proc/<pid>/maps shows
//     a "/SYSV..." mapping whose inode is the shmid).
//
// Thread-safety: thread-compatible. Movable; releases its attachments when destroyed (after the
// unpack: UCX has its own by then).

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"
#include "kvault/transport/ucx/peer_memory_guard.h"

namespace kvault::transport {

class SharedSegmentHold {
 public:
  // `key`: a UCX packed remote key whose layout was checked (CheckLayout); `owner_pid`: the pid
  // of the process that packed it, in this process's pid namespace; [base, base + length): the
  // region the key covers. Unavailable when a segment cannot be attached (its owner is gone, or
  // the segment was freed); InvalidArgument when an entry names another process's segment, a
  // segment that does not hold the region, a segment of a user the owner does not act as, a sysv
  // segment the owner has not attached, or (posix) a descriptor that is not a regular file on
  // tmpfs or hugetlbfs (a shared-memory segment is one) or that the owner opened without write
  // access, or a segment this process cannot map writable ("cannot be mapped for writing here").
  // The key is then not to be unpacked.
  static Result<SharedSegmentHold> Take(std::span<const uint8_t> key, uint32_t owner_pid,
                                        uint64_t base, uint64_t length);

  SharedSegmentHold(SharedSegmentHold&& other) noexcept;
  SharedSegmentHold& operator=(SharedSegmentHold&& other) noexcept;
  SharedSegmentHold(const SharedSegmentHold&) = delete;
  SharedSegmentHold& operator=(const SharedSegmentHold&) = delete;
  ~SharedSegmentHold();

  // The key to give UCX while this hold lives.
  std::span<const uint8_t> key() const { return key_; }
  // How many segments are held (posix files + sysv attachments).
  size_t held() const { return files_.size() + attachments_.size(); }
  // The largest page size of a held posix segment's file system when it is hugetlbfs (its huge
  // page size), else 0 (the system's page size).
  size_t page_bytes() const { return page_bytes_; }
  // The segments checked, as /proc/self/maps shows their mappings: where UCX maps the key's
  // memory must be one of them (PeerMemoryGuard::Watch).
  const std::vector<PeerMemoryGuard::MappedFile>& segments() const { return files_seen_; }

  // For a key whose only shared segment is one posix segment: a new descriptor of its held file
  // (open for reading and writing), and the address the segment starts at in its owner, which
  // is the file's offset 0 (UCX maps a posix segment's file from its start). Empty for other
  // keys, or when the descriptor cannot be duplicated.
  struct SegmentFile {
    UniqueFd file;
    uint64_t segment_address = 0;
  };
  std::optional<SegmentFile> DupSegmentFile() const;

 private:
  SharedSegmentHold() = default;
  void Release();

  std::vector<uint8_t> key_;
  size_t page_bytes_ = 0;
  std::vector<PeerMemoryGuard::MappedFile> files_seen_;
  std::vector<int> files_;                // open descriptors of posix segments
  std::vector<uint64_t> file_addresses_;  // per entry of files_: its segment's address
  std::vector<void*> attachments_;  // sysv attachments
};

// `key` (layout checked) without its shared-memory entries (posix and sysv, recognized as above,
// posix ones named by a path included; their md_map bits cleared): a key whose owner cannot be
// shown to be the sender keeps only the transports that reach the sender itself (UCX then moves the
// bytes through the endpoint, e.g. emulated over TCP). With UCX other than 1.13, the key unchanged.
std::vector<uint8_t> WithoutSharedSegments(std::span<const uint8_t> key);

}  // namespace kvault::transport
