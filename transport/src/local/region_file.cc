// RegionFile (local/region_file.h).

#include "kvault/transport/local/region_file.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "kvault/common/errno_text.h"
#include "kvault/common/positional_copy.h"

namespace kvault::transport {
namespace {

bool FullyAllocated(const struct stat& st, uint64_t length) {
  return st.st_blocks >= 0 && static_cast<uint64_t>(st.st_blocks) >= (length + 511) / 512;
}

}  // namespace

Result<RegionFile> RegionFile::Adopt(UniqueFd* fd, uint64_t length) {
  if (fd->get() < 0) return Status::InvalidArgument("no region file was handed over");
  if (length == 0) return Status::InvalidArgument("a region file of 0 bytes");
  // F_GET_SEALS answers only for a memfd (shmem or hugetlbfs) and asks no file system; after it,
  // fstat of such a file does not either.
  const int seals = fcntl(fd->get(), F_GET_SEALS);
  if (seals < 0) {
    return Status::InvalidArgument("the region file is not a memfd (" + ErrnoText("F_GET_SEALS") +
                                   ")");
  }
  if ((seals & F_SEAL_SHRINK) == 0 || (seals & F_SEAL_GROW) == 0) {
    return Status::InvalidArgument("the region file is not sealed against shrinking and growing");
  }
  const int flags = fcntl(fd->get(), F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) != O_RDWR) {
    return Status::InvalidArgument("the region file is not open for reading and writing");
  }
  struct stat st {};
  if (fstat(fd->get(), &st) != 0) return Status::Unavailable(ErrnoText("region file: fstat"));
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) != length) {
    return Status::InvalidArgument("the region file holds " + std::to_string(st.st_size) +
                                   " bytes, " +
                                   (static_cast<uint64_t>(st.st_size) < length ? "fewer" : "more") +
                                   " than the region's " + std::to_string(length));
  }
  // Every page allocated already (by the client, charged to it): a sparse file would have the
  // server's writes allocate its pages, charged to the server.
  if (!FullyAllocated(st, length)) {
    return Status::InvalidArgument(
        "the region file is sparse: " + std::to_string(uint64_t(st.st_blocks) * 512) + " of " +
        std::to_string(length) + " bytes allocated");
  }
  return RegionFile(std::move(*fd), length);
}

RegionFile& RegionFile::operator=(RegionFile&& other) noexcept {
  if (this != &other) {
    resident_ = ResidentMapping();  // forgotten before the old mapping goes
    mapping_ = std::move(other.mapping_);
    resident_ = std::move(other.resident_);
    file_ = std::move(other.file_);
    length_ = other.length_;
  }
  return *this;
}

void RegionFile::Unmap::operator()(uint8_t* mapped) const { munmap(mapped, length); }

Status RegionFile::MapShared(MappedResidency* residency) {
  struct statfs fs {};
  if (fstatfs(file_.get(), &fs) != 0) return Status::Unavailable(ErrnoText("region file: fstatfs"));
  if (fs.f_type != TMPFS_MAGIC) {
    return Status::Unsupported("the region file is not on tmpfs: copied with pread and pwrite");
  }
  void* mapped = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_SHARED, file_.get(), 0);
  if (mapped == MAP_FAILED) return Status::Unavailable(ErrnoText("region file: mmap"));
  resident_ = ResidentMapping();
  mapping_ = std::unique_ptr<uint8_t, Unmap>(static_cast<uint8_t*>(mapped), Unmap{length_});
  resident_ = ResidentMapping(residency, mapped, length_);
  return Status::Ok();
}

bool RegionFile::Allocated() const {
  struct stat st {};
  return fstat(file_.get(), &st) == 0 && FullyAllocated(st, length_);
}

RegionFile::Via RegionFile::Route(uint64_t offset, uint64_t n) const {
  if (mapping_ == nullptr || !Holds(offset, n)) return Via::kFile;
  return resident_.Admit(mapping_.get() + offset, n) ? Via::kMapping : Via::kFile;
}

std::span<const uint8_t> RegionFile::MappedBytes(uint64_t offset, uint64_t n) const {
  if (mapping_ == nullptr || n == 0 || !Holds(offset, n)) return {};
  return std::span<const uint8_t>(mapping_.get() + offset, n);
}

void RegionFile::Touched(uint64_t offset, uint64_t n) const {
  if (!MappedBytes(offset, n).empty()) resident_.Touched(mapping_.get() + offset, n);
}

Status RegionFile::Read(uint64_t offset, std::span<uint8_t> local) const {
  return Copy(false, offset, local.data(), local.size(), std::nullopt);
}

Status RegionFile::Write(uint64_t offset, std::span<const uint8_t> local) const {
  // pwrite only reads `local`.
  return Copy(true, offset, const_cast<uint8_t*>(local.data()), local.size(), std::nullopt);
}

Status RegionFile::Read(uint64_t offset, std::span<uint8_t> local, Via via) const {
  return Copy(false, offset, local.data(), local.size(), via);
}

Status RegionFile::Write(uint64_t offset, std::span<const uint8_t> local, Via via) const {
  return Copy(true, offset, const_cast<uint8_t*>(local.data()), local.size(), via);
}

Status RegionFile::Copy(bool write, uint64_t offset, uint8_t* local, size_t n,
                        std::optional<Via> via) const {
  if (!Holds(offset, n)) {
    return Status::OutOfRange("bytes [" + std::to_string(offset) + ", +" + std::to_string(n) +
                              ") lie outside the region file's " + std::to_string(length_));
  }
  if (!via) via = Route(offset, n);
  if (*via == Via::kMapping && mapping_ != nullptr) {
    // The seals keep every mapped page inside the file: no access here can fault past its end.
    if (write) {
      std::memcpy(mapping_.get() + offset, local, n);
    } else {
      std::memcpy(local, mapping_.get() + offset, n);
    }
    resident_.Touched(mapping_.get() + offset, n);
    return Status::Ok();
  }
  size_t done = 0;
  const int error = PositionalCopy(file_.get(), write, offset, local, n, &done);
  if (error == 0) return Status::Ok();
  // The seals keep the file at least length_ long, so nothing moved means the system refused.
  if (error > 0) errno = error;
  return Status::Unavailable(error < 0
                                 ? std::string("region file: nothing moved")
                                 : ErrnoText(write ? "region file: pwrite" : "region file: pread"));
}

}  // namespace kvault::transport
