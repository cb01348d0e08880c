#pragma once
// RegionFile: the server's side of a SharedMemoryFile (shared_memory_file.h): the file a client
// process handed over for one region of its memory, through which the process-memory data plane
// copies that region's bytes with pread and pwrite (one copy, no bounce page, no lock of the
// client's address space). Only a file that cannot shrink or grow is taken: a memfd (shmem or
// hugetlbfs) sealed with F_SEAL_SHRINK and F_SEAL_GROW. Such a file has no flush or write-back
// a close could wait on, and the checks ask only the memfd seals, the open flags and the size,
// none of which calls into a file system the sender serves.
//
// What a client maps where is its own business: the server copies through the file the bytes the
// client said it maps at the region's addresses, so a client that maps something else there
// only stores the file's bytes (which still pass the block checks) and loads into the file.
//
// The server may also map the file (MapShared): copies of bytes it uses again then run through
// the mapping, one memcpy at about twice pread's speed, while MappedResidency bounds the pages
// that stay mapped (mapped_residency.h).
//
// Thread-safety: Read, Write, MappedBytes and Touched may run on many threads at once; Adopt,
// MapShared and the moves are thread-compatible.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "kvault/common/file_io.h"
#include "kvault/common/result.h"
#include "kvault/transport/local/mapped_residency.h"

namespace kvault::transport {

class RegionFile {
 public:
  // Takes *fd when it is a memfd sealed against shrinking and growing, open for reading and
  // writing, of exactly `length` (> 0) bytes, all of them allocated (not sparse: the server's
  // writes then allocate nothing, unless the client punches holes later: see Allocated).
  // InvalidArgument otherwise (naming what is missing), Unavailable when its size cannot be read;
  // *fd is then left to the caller (closing another kind of file may call into its file system).
  static Result<RegionFile> Adopt(UniqueFd* fd, uint64_t length);

  RegionFile(RegionFile&&) noexcept = default;
  RegionFile& operator=(RegionFile&& other) noexcept;
  ~RegionFile() = default;

  // Maps the file shared, read and write, so that Read and Write go through the mapping where
  // `residency` (not null; outlives this) admits (ResidentMapping::Admit), and through the file
  // otherwise. Unsupported for a file not on tmpfs (a hugetlbfs page the client punched out
  // would raise SIGBUS in the server where a tmpfs one is allocated); Unavailable when mmap
  // refuses (a file sealed against writes). Either way the file still works unmapped.
  Status MapShared(MappedResidency* residency);
  bool mapped() const { return mapping_ != nullptr; }

  uint64_t length() const { return length_; }
  // Whether every page of the file is still allocated (one fstat): a client that punched holes
  // into it would have the server's writes there allocate pages charged to the server, so the
  // server writes such a region through the process's memory file instead.
  bool Allocated() const;
  int descriptor() const { return file_.get(); }

  // Which way a copy goes: through the file, or through the mapping (MapShared).
  enum class Via { kFile, kMapping };
  // The way for a copy of [offset, +n) (ResidentMapping::Admit; kFile when not mapped). A
  // transfer copied in pieces asks once, for the whole, and copies each piece that way, so that
  // its reuse is told the same however it is split.
  Via Route(uint64_t offset, uint64_t n) const;

  // The mapping's bytes [offset, +n), for a copy the caller makes itself (ArrivingObjects, which
  // hashes them as they land): through them when Route gave kMapping, and then counted with
  // Touched once copied; else through the file at `offset` (descriptor()). Empty when the file is
  // not mapped or the range is empty or lies outside it.
  std::span<const uint8_t> MappedBytes(uint64_t offset, uint64_t n) const;
  // Counts a copy of [offset, +n) that the caller made through the mapping.
  void Touched(uint64_t offset, uint64_t n) const;

  // Copies the file's bytes [offset, +local.size()) into `local`, or `local` into them, the way
  // Route gives (or `via`; kMapping needs a mapping). OK only when every byte moved; OutOfRange
  // for a range past length(); Unavailable when the system refuses (a client that seals the file
  // against writes, or sets O_APPEND on the open file it shares with the server, makes every
  // Write through the file fail so).
  Status Read(uint64_t offset, std::span<uint8_t> local) const;
  Status Write(uint64_t offset, std::span<const uint8_t> local) const;
  Status Read(uint64_t offset, std::span<uint8_t> local, Via via) const;
  Status Write(uint64_t offset, std::span<const uint8_t> local, Via via) const;

 private:
  struct Unmap {
    uint64_t length;
    void operator()(uint8_t* mapped) const;
  };

  RegionFile(UniqueFd file, uint64_t length) : file_(std::move(file)), length_(length) {}
  // Whether [offset, +n) lies inside the file.
  bool Holds(uint64_t offset, uint64_t n) const {
    return offset <= length_ && n <= length_ - offset;
  }
  Status Copy(bool write, uint64_t offset, uint8_t* local, size_t n, std::optional<Via> via) const;

  UniqueFd file_;
  uint64_t length_ = 0;
  std::unique_ptr<uint8_t, Unmap> mapping_{nullptr, Unmap{0}};  // null until MapShared
  // Declared after mapping_, so destroyed first: its chunks are forgotten before the unmap.
  mutable ResidentMapping resident_;
};

}  // namespace kvault::transport
