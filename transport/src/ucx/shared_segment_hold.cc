#include "ucx/shared_segment_hold.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ucx/proc_files.h"

namespace kvault::transport {
namespace {

// UCX 1.13's posix key (uct_posix_packed_rkey_t) and sysv key (uct_sysv_packed_rkey_t).
constexpr size_t kPosixKeyBytes = 24;
constexpr size_t kPosixKeyBytesWithNamespace = kPosixKeyBytes + 8;
constexpr size_t kSysvKeyBytes = 12;
constexpr uint64_t kPosixProcfsFlag = uint64_t{1} << 63;
constexpr uint64_t kPosixFlagsMask = uint64_t{0xF} << 60;
constexpr int kPosixMmidBits = 30;  // pid in bits 0..29, fd in bits 30..59
constexpr uint64_t kPosixMmidMask = (uint64_t{1} << kPosixMmidBits) - 1;

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

bool Inside(uint64_t base, uint64_t length, uint64_t segment, uint64_t segment_length) {
  return base >= segment && length <= segment_length && base - segment <= segment_length - length;
}

bool IsUcx113() {
  static const bool is = [] {
    unsigned major = 0, minor = 0, release = 0;
    ucp_get_version(&major, &minor, &release);
    return major == 1 && minor == 13;
  }();
  return is;
}

// A posix entry of a segment named by its path (UCX_POSIX_USE_PROC_LINK=n) has no procfs flag and
// carries the segment's directory after the fixed fields (and the pid namespace): an absolute
// path of printable characters, NUL-terminated. (Other transports' entries, e.g. a CUDA IPC
// handle, are binary.)
bool NamesADirectory(const uint8_t* entry, size_t size) {
  if (size < kPosixKeyBytes || (Load64(entry) & kPosixProcfsFlag) != 0) return false;
  for (size_t fixed : {kPosixKeyBytes, kPosixKeyBytesWithNamespace}) {
    if (size <= fixed + 1 || entry[fixed] != '/' || entry[size - 1] != 0) continue;
    if (std::all_of(entry + fixed, entry + size - 1,
                    [](uint8_t c) { return c >= 0x20 && c < 0x7F; })) {
      return true;
    }
  }
  return false;
}

// Such a segment is a file anyone may have named: UCX would open whatever the key says (and crash
// if that fails), and nothing ties it to the key's owner.
Status NamedByPath() {
  return Status::InvalidArgument(
      "remote key: a posix segment named by its path is not accepted, only one named through "
      "/proc (UCX_POSIX_USE_PROC_LINK=y, the default)");
}

Status Gone(const std::string& what) {
  return Status::Unavailable("remote key: " + what + " (its owner process is gone?)");
}

// UCX maps the held file read-write with this process's credentials, whatever the owner could do
// with it. So the file must be what UCX's posix transport makes, a shared-memory segment (on
// tmpfs: /dev/shm or a memfd; or on hugetlbfs), that the owner itself may write: its descriptor
// is open for reading and writing, and the file belongs to a uid the owner acts as. (Without
// this, a read-only descriptor of any file this process can write, e.g. a root-owned 0644 file,
// was written by a PUT.) `held`: this process's descriptor of /proc/<pid>/fd/<fd>, `st` its fstat.
Status CheckPosixSegmentFile(uint64_t pid, uint64_t fd, int held, const struct stat& st,
                             const struct statfs& fs, const std::string& path) {
  if (fs.f_type != TMPFS_MAGIC && fs.f_type != HUGETLBFS_MAGIC) {
    return Status::InvalidArgument("remote key: " + path +
                                   " is not on tmpfs or hugetlbfs, so not a shared-memory "
                                   "segment");
  }
  const std::string fdinfo_path = "/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd);
  const std::optional<std::string> fdinfo = ReadProcFile(fdinfo_path);
  if (!fdinfo) return Gone("cannot read " + fdinfo_path + ": " + std::strerror(errno));
  const std::vector<uint64_t> flags = ProcField(*fdinfo, "flags", 8);
  if (flags.size() != 1 || (flags[0] & O_ACCMODE) != O_RDWR) {
    return Status::InvalidArgument("remote key: its owner's descriptor " + path +
                                   " is not open for reading and writing");
  }
  // The flags must be those of the file held: the owner may have put another file at that
  // descriptor since it was opened here. fdinfo names the file (mount and inode; Linux 5.14 and
  // later); on older kernels the owner check below is what ties the file to the owner.
  const std::vector<uint64_t> ino = ProcField(*fdinfo, "ino", 10);
  const std::vector<uint64_t> mnt = ProcField(*fdinfo, "mnt_id", 10);
  if (!ino.empty() && !mnt.empty()) {
    const std::optional<std::string> own =
        ReadProcFile("/proc/self/fdinfo/" + std::to_string(held));
    const std::vector<uint64_t> own_mnt =
        own ? ProcField(*own, "mnt_id", 10) : std::vector<uint64_t>{};
    if (ino[0] != static_cast<uint64_t>(st.st_ino) || own_mnt != mnt) {
      return Status::InvalidArgument("remote key: its owner replaced the file at " + path +
                                     " while it was checked");
    }
  }
  const std::optional<std::array<uint64_t, 4>> uids = ProcessUids(pid);
  if (!uids) return Gone("cannot read the owner's uids");
  if (!IsOneOf(st.st_uid, *uids)) {
    return Status::InvalidArgument("remote key: its shared segment " + path +
                                   " belongs to a user its owner does not act as");
  }
  return Status::Ok();
}

// A read-write descriptor of the file `held` names (reopened through /proc/self/fd, as UCX
// does), after a trial shared writable mapping of `map_bytes` of it, as UCX maps the segment:
// InvalidArgument when this process may not open the file for writing or map it writable (a
// seal, no huge pages left), or when the file can still be sealed (a memfd created with
// MFD_ALLOW_SEALING: its owner could seal it between this check and UCX's mapping; UCX's own
// segments, and memfds without that flag, carry F_SEAL_SEAL).
Result<int> OpenWritable(int held, size_t map_bytes, const std::string& path) {
  const auto refuse = [&](const std::string& why) {
    return Status::InvalidArgument("remote key: its shared segment " + path +
                                   " cannot be mapped for writing here: " + why);
  };
  const int seals = fcntl(held, F_GET_SEALS);
  if (seals >= 0 && (seals & F_SEAL_SEAL) == 0) return refuse("it can still be sealed");
  if (seals >= 0 && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0) {
    return refuse("it is sealed against writes");
  }
  const std::string self_path = "/proc/self/fd/" + std::to_string(held);
  const int writable = open(self_path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  void* trial = writable < 0 ? MAP_FAILED
                             : mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                                    writable, 0);
  if (trial == MAP_FAILED) {
    const int error = errno;
    if (writable >= 0) close(writable);
    return refuse(std::strerror(error));
  }
  munmap(trial, map_bytes);
  return writable;
}

}  // namespace

std::vector<uint8_t> WithoutSharedSegments(std::span<const uint8_t> key) {
  std::vector<uint8_t> out(key.begin(), key.end());
  if (!IsUcx113()) return out;
  const uint64_t md_map = Load64(key.data());
  constexpr size_t kFixed = sizeof(uint64_t) + 1;  // md_map, memory type
  out.resize(kFixed);
  uint64_t kept_map = 0;
  size_t offset = kFixed;
  uint64_t bits = md_map;
  while (bits != 0) {
    const uint64_t bit = bits & (~bits + 1);  // lowest set bit: entries follow md_map's order
    bits &= bits - 1;
    const size_t size = key[offset];
    const uint8_t* entry = key.data() + offset + 1;
    // Longer than the fixed sizes, an entry may still be a posix one: named by a path (UCX would
    // open whatever path it names: crash when that fails, block on a FIFO; the path need not be
    // absolute or printable), or through /proc with padding UCX does not check. Any such entry
    // (a NUL-terminated tail, or the procfs flag) goes too.
    const bool posix_like =
        size > kPosixKeyBytes && (entry[size - 1] == 0 || (Load64(entry) & kPosixProcfsFlag) != 0);
    const bool shared = size == kPosixKeyBytes || size == kPosixKeyBytesWithNamespace ||
                        size == kSysvKeyBytes || posix_like;
    if (!shared) {
      kept_map |= bit;
      out.insert(out.end(), key.begin() + offset, key.begin() + offset + 1 + size);
    }
    offset += 1 + size;
  }
  out.insert(out.end(), key.begin() + offset, key.end());  // the device-distance trailer
  std::memcpy(out.data(), &kept_map, sizeof(kept_map));
  return out;
}

Result<SharedSegmentHold> SharedSegmentHold::Take(std::span<const uint8_t> key, uint32_t owner_pid,
                                                  uint64_t base, uint64_t length) {
  SharedSegmentHold hold;
  hold.key_.assign(key.begin(), key.end());
  if (!IsUcx113() || owner_pid == 0) return hold;
  const uint64_t self = static_cast<uint64_t>(getpid());
  const uint64_t md_map = Load64(key.data());
  size_t offset = sizeof(uint64_t) + 1;  // md_map, memory type
  for (int i = 0; i < std::popcount(md_map); ++i) {
    const size_t size = key[offset];
    uint8_t* entry = hold.key_.data() + offset + 1;
    offset += 1 + size;
    if (NamesADirectory(entry, size)) return NamedByPath();
    // A /proc-named posix entry of another size is padded (UCX does not check): not one the hold
    // can check.
    if (size > kPosixKeyBytes && size != kPosixKeyBytesWithNamespace &&
        (Load64(entry) & kPosixProcfsFlag) != 0) {
      return Status::InvalidArgument("remote key: a posix entry of " + std::to_string(size) +
                                     " bytes (a /proc-named one is 24 or 32)");
    }
    if (size == kPosixKeyBytes || size == kPosixKeyBytesWithNamespace) {
      const uint64_t seg_id = Load64(entry);
      const uint64_t mmid = seg_id & ~kPosixFlagsMask;
      const uint64_t pid = mmid & kPosixMmidMask;
      const uint64_t fd = mmid >> kPosixMmidBits;
      if ((seg_id & kPosixProcfsFlag) == 0) return NamedByPath();
      // UCX packs the allocating process's own pid and the segment the region lies in: a key
      // naming another process, or a region outside its segment, is not a client's own memory.
      if (pid != owner_pid || !Inside(base, length, Load64(entry + 8), Load64(entry + 16))) {
        return Status::InvalidArgument(
            "remote key: its shared segment belongs to another process or does not hold the "
            "key's region");
      }
      const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
      // Non-blocking: the peer names the descriptor, and opening a FIFO would otherwise wait
      // for a writer. Only a regular file (a shared-memory segment) is held and given to UCX;
      // anything else is refused before UCX would open it.
      int held = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      if (held < 0)
        return Gone("cannot open its shared segment " + path + ": " + std::strerror(errno));
      hold.files_.push_back(held);
      hold.file_addresses_.push_back(Load64(entry + 8));
      struct stat st {};
      if (fstat(held, &st) != 0 || !S_ISREG(st.st_mode)) {
        return Status::InvalidArgument("remote key: " + path + " is not a shared-memory segment");
      }
      struct statfs fs {};
      if (fstatfs(held, &fs) != 0) {
        return Status::Internal("remote key: fstatfs of its shared segment " + path + ": " +
                                std::strerror(errno));
      }
      KVAULT_RETURN_IF_ERROR(CheckPosixSegmentFile(pid, fd, held, st, fs, path));
      hold.files_seen_.push_back(
          {major(st.st_dev), minor(st.st_dev), static_cast<uint64_t>(st.st_ino), false});
      // A segment on hugetlbfs is mapped in huge pages: what PeerMemoryGuard replaces, if the
      // client cuts it short, must be whole ones.
      if (fs.f_type == HUGETLBFS_MAGIC && fs.f_bsize > 0) {
        hold.page_bytes_ = std::max<size_t>(hold.page_bytes_, static_cast<size_t>(fs.f_bsize));
      }
      // A read of the mapping past the end of the file raises SIGBUS in this process, so the
      // file must hold the key's region (UCX may claim a segment rounded up past the file's end;
      // transfers stay inside the region).
      const uint64_t region_end = base - Load64(entry + 8) + length;  // Inside() held
      if (static_cast<uint64_t>(st.st_size) < region_end) {
        return Status::InvalidArgument("remote key: its shared segment " + path + " holds " +
                                       std::to_string(st.st_size) + " bytes, less than the " +
                                       std::to_string(region_end) + " its region needs");
      }
      // UCX reopens the held file read-write and maps it shared and writable, and crashes when
      // that fails (EACCES for a server that may not write the file, EPERM for a memfd sealed
      // against writes): the same is tried here first, and the writable descriptor is held.
      const uint64_t file_page = fs.f_type == HUGETLBFS_MAGIC && fs.f_bsize > 0
                                     ? static_cast<uint64_t>(fs.f_bsize)
                                     : static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
      const uint64_t segment_bytes = Load64(entry + 16);
      if (segment_bytes == 0 || segment_bytes > UINT64_MAX - file_page) {
        return Status::InvalidArgument("remote key: its posix segment has no usable length");
      }
      KVAULT_ASSIGN_OR_RETURN(
          const int writable,
          OpenWritable(held, (segment_bytes + file_page - 1) / file_page * file_page, path));
      close(held);
      held = writable;
      hold.files_.back() = held;
      if (static_cast<uint64_t>(held) > kPosixMmidMask || self > kPosixMmidMask) {
        return Status::Internal("remote key: descriptor or pid too large for a posix key");
      }
      const uint64_t rewritten =
          (seg_id & kPosixFlagsMask) | self | (static_cast<uint64_t>(held) << kPosixMmidBits);
      std::memcpy(entry, &rewritten, sizeof(rewritten));
    } else if (size == kSysvKeyBytes) {
      uint32_t shmid;
      std::memcpy(&shmid, entry, sizeof(shmid));
      shmid_ds info{};
      if (shmctl(static_cast<int>(shmid), IPC_STAT, &info) != 0) {
        // No such segment (any more): its owner is gone. (Of the transports Debian's UCX 1.13
        // builds, only sysv packs 12-byte entries.)
        return Gone("sysv segment " + std::to_string(shmid) + ": " + std::strerror(errno));
      }
      // UCX creates the segment in the allocating process: its creator is the key's owner.
      if (info.shm_cpid != static_cast<pid_t>(owner_pid) ||
          !Inside(base, length, Load64(entry + 4), info.shm_segsz)) {
        return Status::InvalidArgument(
            "remote key: its sysv segment belongs to another process or does not hold the key's "
            "region");
      }
      // A creator pid alone can be a reused one: the segment must also belong to (or have been
      // created by) a uid the owner acts as, and be attached in the owner now.
      const std::optional<std::array<uint64_t, 4>> uids = ProcessUids(owner_pid);
      if (!uids) return Gone("cannot read the owner's uids");
      if (!IsOneOf(info.shm_perm.uid, *uids) && !IsOneOf(info.shm_perm.cuid, *uids)) {
        return Status::InvalidArgument("remote key: sysv segment " + std::to_string(shmid) +
                                       " belongs to a user its owner does not act as");
      }
      const std::optional<bool> attached = HasSysvAttached(owner_pid, shmid);
      if (!attached) return Gone("cannot read the owner's memory map");
      if (!*attached) {
        return Status::InvalidArgument("remote key: sysv segment " + std::to_string(shmid) +
                                       " is not attached in its owner");
      }
      // Read-write, as UCX attaches it (and crashes when that fails).
      void* at = shmat(static_cast<int>(shmid), nullptr, 0);
      if (at == reinterpret_cast<void*>(-1)) {
        if (errno == EACCES || errno == EPERM) {
          return Status::InvalidArgument("remote key: sysv segment " + std::to_string(shmid) +
                                         " cannot be mapped for writing here: " +
                                         std::strerror(errno));
        }
        return Gone("cannot attach sysv segment " + std::to_string(shmid) + ": " +
                    std::strerror(errno));
      }
      hold.attachments_.push_back(at);
      // A sysv segment's mapping shows its shmid as the inode.
      hold.files_seen_.push_back({0, 0, shmid, true});
    }
  }
  return hold;
}

SharedSegmentHold::SharedSegmentHold(SharedSegmentHold&& other) noexcept
    : key_(std::move(other.key_)),
      page_bytes_(other.page_bytes_),
      files_seen_(std::move(other.files_seen_)),
      files_(std::exchange(other.files_, {})),
      file_addresses_(std::exchange(other.file_addresses_, {})),
      attachments_(std::exchange(other.attachments_, {})) {}

SharedSegmentHold& SharedSegmentHold::operator=(SharedSegmentHold&& other) noexcept {
  if (this != &other) {
    Release();
    key_ = std::move(other.key_);
    page_bytes_ = other.page_bytes_;
    files_seen_ = std::move(other.files_seen_);
    files_ = std::exchange(other.files_, {});
    file_addresses_ = std::exchange(other.file_addresses_, {});
    attachments_ = std::exchange(other.attachments_, {});
  }
  return *this;
}

std::optional<SharedSegmentHold::SegmentFile> SharedSegmentHold::DupSegmentFile() const {
  if (files_.size() != 1 || !attachments_.empty()) return std::nullopt;
  UniqueFd copy(fcntl(files_[0], F_DUPFD_CLOEXEC, 0));
  if (copy.get() < 0) return std::nullopt;
  return SegmentFile{std::move(copy), file_addresses_[0]};
}

SharedSegmentHold::~SharedSegmentHold() { Release(); }

void SharedSegmentHold::Release() {
  for (int fd : files_) close(fd);
  for (void* at : attachments_) shmdt(at);
  files_.clear();
  file_addresses_.clear();
  attachments_.clear();
}

}  // namespace kvault::transport
