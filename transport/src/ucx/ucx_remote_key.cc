#include "kvault/transport/ucx/ucx_remote_key.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/little_endian.h"
#include "ucx/envelope.h"
#include "ucx/proc_files.h"
#include "ucx/shared_segment_hold.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {
namespace {

// ucp_ep_rkey_unpack takes no length, so a key from a peer is walked first. The layout UCX
// (1.11 and later) packs, in host byte order:
//   md_map (u64) | memory type (u8) | per set bit of md_map: size (u8) + size bytes |
//   optional: system device (u8) + 3 bytes per device distance
Status CheckLayout(std::span<const uint8_t> key) {
  constexpr size_t kFixed = sizeof(uint64_t) + 1;
  if (key.size() < kFixed) return Status::InvalidArgument("remote key: truncated UCX header");
  uint64_t md_map = 0;
  std::memcpy(&md_map, key.data(), sizeof(md_map));
  if (key[sizeof(uint64_t)] >= UCS_MEMORY_TYPE_LAST) {
    return Status::InvalidArgument("remote key: unknown memory type " +
                                   std::to_string(key[sizeof(uint64_t)]));
  }
  size_t offset = kFixed;
  for (int i = 0; i < std::popcount(md_map); ++i) {
    if (offset >= key.size() || offset + 1 + key[offset] > key.size()) {
      return Status::InvalidArgument("remote key: memory-domain entry runs past the end");
    }
    offset += 1 + key[offset];
  }
  const size_t rest = key.size() - offset;
  if (rest != 0 && (rest - 1) % 3 != 0) {
    return Status::InvalidArgument("remote key: " + std::to_string(rest) +
                                   " trailing bytes do not form a device-distance list");
  }
  return Status::Ok();
}

// True when the key's owner shares our pid namespace (its pid means the same process here).
bool SamePidNamespace(uint32_t pid, uint64_t pid_namespace) {
  static const uint64_t ours = PidNamespaceId();
  return pid != 0 && pid_namespace != 0 && pid_namespace == ours;
}

// UCX 1.13 crashes in its own error path when it cannot attach the shared segment of a key whose
// process has died (ucp_ep_rkey_unpack destroys a half-built key). A process that exited is gone
// from /proc or a zombie ('Z', 'X') whose descriptors are closed: refused here at once. One that
// dies after this check is caught by SharedSegmentHold, which attaches the segments first.
Status CheckOwnerAlive(uint32_t pid) {
  const Status gone =
      Status::Unavailable("remote key: its owner process " + std::to_string(pid) + " is gone");
  const std::optional<std::string> stat = ReadProcFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return errno == ENOENT ? gone : Status::Ok();
  // "pid (comm) S ...": the state follows the last ')' (comm may contain parentheses).
  const char* paren = std::strrchr(stat->c_str(), ')');
  if (paren != nullptr && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X')) return gone;
  return Status::Ok();
}

// Segment files kept open by live keys (Unpack's keep_segment_file), in this process.
std::atomic<uint64_t> kept_segment_files{0};

// Takes a place for one more kept segment file: only while they hold under half of the
// open-file limit, so that connections, nvme files and hand-overs always find descriptors.
bool TakeKeptFilePlace() {
  rlimit files{};
  uint64_t most = 512;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
    most = files.rlim_cur == RLIM_INFINITY ? uint64_t{1} << 20 : files.rlim_cur / 2;
  }
  uint64_t kept = kept_segment_files.load();
  while (kept < most) {
    if (kept_segment_files.compare_exchange_weak(kept, kept + 1)) return true;
  }
  return false;
}

}  // namespace

Result<RemoteKeyRange> RemoteKeyRegion(std::span<const uint8_t> packed) {
  KVAULT_ASSIGN_OR_RETURN(std::span<const uint8_t> payload, Open(EnvelopeKind::kRemoteKey, packed));
  if (payload.size() < kRemoteKeyHeaderBytes) {
    return Status::InvalidArgument("remote key: truncated key header");
  }
  const RemoteKeyRange range{LoadLe64(payload.data()), LoadLe64(payload.data() + 8)};
  if (range.length == 0 || range.base + range.length < range.base) {
    return Status::InvalidArgument("remote key: empty or wrapping region");
  }
  return range;
}

Result<UcxRemoteKey> UcxRemoteKey::Unpack(const UcxEndpoint& endpoint,
                                          std::span<const uint8_t> packed,
                                          const ControlConnection* connection,
                                          bool keep_segment_file) {
  if (endpoint.empty()) return Status::InvalidArgument("UcxRemoteKey: empty endpoint");
  KVAULT_ASSIGN_OR_RETURN(const RemoteKeyRange range, RemoteKeyRegion(packed));
  const uint64_t base = range.base;
  const uint64_t length = range.length;
  // Checked whole by RemoteKeyRegion.
  const std::span<const uint8_t> payload = *Open(EnvelopeKind::kRemoteKey, packed);
  std::span<const uint8_t> key = payload.subspan(kRemoteKeyHeaderBytes);
  KVAULT_RETURN_IF_ERROR(CheckLayout(key));
  const uint32_t owner = LoadLe32(payload.data() + 16);
  std::optional<SharedSegmentHold> hold;  // released after the unpack: UCX attaches its own
  std::vector<uint8_t> stripped;
  bool attach = SamePidNamespace(owner, LoadLe64(payload.data() + 24));
  if (attach) KVAULT_RETURN_IF_ERROR(CheckOwnerAlive(owner));
  if (attach && connection != nullptr) {
    const Holder holder = HoldsConnection(owner, *connection);
    if (holder == Holder::kNo) {
      return Status::InvalidArgument(
          "remote key: it names process " + std::to_string(owner) +
          ", which does not hold the connection the key came on (a client may only name its "
          "own memory)");
    }
    attach = holder == Holder::kYes;
  }
  if (attach) {
    KVAULT_ASSIGN_OR_RETURN(hold, SharedSegmentHold::Take(key, owner, base, length));
    key = hold->key();
  } else if (connection != nullptr) {
    stripped = WithoutSharedSegments(key);
    key = stripped;
  }
  ucp_rkey_h rkey = nullptr;
  KVAULT_RETURN_IF_ERROR(
      UcsToStatus(ucp_ep_rkey_unpack(endpoint.get(), key.data(), &rkey), "ucp_ep_rkey_unpack"));
  UcxRemoteKey unpacked(rkey, base, length);
  // Where the region lies here when UCX mapped its segment. ucp_rkey_ptr only adds the offset
  // into the segment: Watch checks that the whole region lies in one shared mapping, of one of
  // the segments the hold checked.
  void* first = nullptr;
  if (ucp_rkey_ptr(rkey, base, &first) == UCS_OK) {
    // Only a segment the hold checked (the owner's, holding the region, its file's page size)
    // may be mapped here: a fault in any other could not be absorbed safely.
    if (!hold || hold->held() == 0) {
      return Status::InvalidArgument(
          "remote key: it maps shared memory here that could not be checked (accepted: posix "
          "segments named through /proc, UCX_POSIX_USE_PROC_LINK=y, the default, and sysv "
          "segments, with UCX 1.13)");
    }
    Result<PeerMemoryGuard> guard =
        PeerMemoryGuard::Watch(first, length, hold->page_bytes(), hold->segments());
    if (!guard.ok()) {
      return guard.status().code() == StatusCode::kInvalidArgument
                 ? Status::InvalidArgument(
                       "remote key: its region is not inside the checked segment mapped for it")
                 : guard.status();
    }
    unpacked.guard_ = std::move(*guard);
    unpacked.small_pages_ = hold->page_bytes() == 0;
    if (keep_segment_file && unpacked.small_pages_ && TakeKeptFilePlace()) {
      if (std::optional<SharedSegmentHold::SegmentFile> file = hold->DupSegmentFile()) {
        unpacked.segment_file_ = std::move(file->file);
        unpacked.base_file_offset_ = base - file->segment_address;  // the hold checked base inside
      } else {
        kept_segment_files.fetch_sub(1);
      }
    }
  }
  return unpacked;
}

bool UcxRemoteKey::Covers(uint64_t address, size_t length) const {
  return rkey_ != nullptr && address >= base_ && length <= length_ &&
         address - base_ <= length_ - length;
}

bool UcxRemoteKey::NoteFailedFileRead(uint64_t address, uint64_t length) {
  if (segment_file_.get() < 0 || !Covers(address, length)) return false;
  struct stat st {};
  if (fstat(segment_file_.get(), &st) != 0 || st.st_size < 0) return false;
  if (static_cast<uint64_t>(st.st_size) >= SegmentFileOffset(address) + length) return false;
  file_cut_ = true;
  return true;
}

UcxRemoteKey::UcxRemoteKey(UcxRemoteKey&& other) noexcept
    : rkey_(std::exchange(other.rkey_, nullptr)),
      base_(std::exchange(other.base_, 0)),
      length_(std::exchange(other.length_, 0)),
      guard_(std::move(other.guard_)),
      small_pages_(std::exchange(other.small_pages_, false)),
      segment_file_(std::move(other.segment_file_)),
      base_file_offset_(std::exchange(other.base_file_offset_, 0)),
      file_cut_(std::exchange(other.file_cut_, false)) {}

UcxRemoteKey& UcxRemoteKey::operator=(UcxRemoteKey&& other) noexcept {
  if (this != &other) {
    guard_ = PeerMemoryGuard();  // unwatched before UCX may unmap the segment
    if (rkey_ != nullptr) ucp_rkey_destroy(rkey_);
    rkey_ = std::exchange(other.rkey_, nullptr);
    base_ = std::exchange(other.base_, 0);
    length_ = std::exchange(other.length_, 0);
    guard_ = std::move(other.guard_);
    small_pages_ = std::exchange(other.small_pages_, false);
    if (segment_file_.get() >= 0) kept_segment_files.fetch_sub(1);
    segment_file_ = std::move(other.segment_file_);
    base_file_offset_ = std::exchange(other.base_file_offset_, 0);
    file_cut_ = std::exchange(other.file_cut_, false);
  }
  return *this;
}

UcxRemoteKey::~UcxRemoteKey() {
  if (segment_file_.get() >= 0) kept_segment_files.fetch_sub(1);
  guard_ = PeerMemoryGuard();  // unwatched before UCX may unmap the segment
  if (rkey_ != nullptr) ucp_rkey_destroy(rkey_);
}

}  // namespace kvault::transport
