#include "kvault/transport/ucx/ucx_memory.h"

#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "kvault/common/little_endian.h"
#include "ucx/envelope.h"
#include "ucx/memory_headroom.h"
#include "ucx/ucx_status.h"

namespace kvault::transport {
namespace {

constexpr unsigned kAllAccess = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE |
                                UCP_MEM_MAP_PROT_REMOTE_READ | UCP_MEM_MAP_PROT_REMOTE_WRITE;

// Maps with `flags`; `address` is null when UCX allocates.
Result<ucp_mem_h> MemMap(ucp_context_h context, void* address, size_t length, unsigned flags) {
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_PROT;
  params.address = address;
  params.length = length;
  params.flags = flags;
  params.prot = kAllAccess;
  ucp_mem_h memh = nullptr;
  KVAULT_RETURN_IF_ERROR(UcsToStatus(ucp_mem_map(context, &params, &memh), "ucp_mem_map"));
  return memh;
}

}  // namespace

Result<UcxMemory> UcxMemory::Map(const UcxContext& context, void* address, size_t length) {
  if (context.get() == nullptr) return Status::InvalidArgument("UcxMemory: empty context");
  if (address == nullptr || length == 0) {
    return Status::InvalidArgument("UcxMemory::Map: null address or zero length");
  }
  KVAULT_ASSIGN_OR_RETURN(ucp_mem_h memh, MemMap(context.get(), address, length, 0));
  return UcxMemory(context.get(), memh, address, length);
}

Result<UcxMemory> UcxMemory::Allocate(const UcxContext& context, size_t length) {
  if (context.get() == nullptr) return Status::InvalidArgument("UcxMemory: empty context");
  if (length == 0) return Status::InvalidArgument("UcxMemory::Allocate: zero length");
  // UCX fills a shared segment as it allocates it: past what this process may still take it
  // would be killed on the way (leaving the segment's file behind), so that is refused here.
  if (const std::optional<uint64_t> headroom = MemoryHeadroomBytes();
      headroom && length > *headroom) {
    return Status::ResourceExhausted(
        "cannot allocate " + std::to_string(length) + " bytes: only " + std::to_string(*headroom) +
        " bytes of memory are available to this process (MemAvailable, cgroup limit)");
  }
  KVAULT_ASSIGN_OR_RETURN(ucp_mem_h memh,
                          MemMap(context.get(), nullptr, length, UCP_MEM_MAP_ALLOCATE));
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  const ucs_status_t s = ucp_mem_query(memh, &attr);
  if (s != UCS_OK) {
    ucp_mem_unmap(context.get(), memh);
    return UcsToStatus(s, "ucp_mem_query");
  }
  // UCX may round the length up; callers asked for `length`.
  return UcxMemory(context.get(), memh, attr.address, length);
}

UcxMemory::UcxMemory(ucp_context* context, ucp_mem* memh, void* address, size_t length)
    : context_(context), memh_(memh), address_(address), length_(length) {}

UcxMemory::UcxMemory(UcxMemory&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)),
      memh_(std::exchange(other.memh_, nullptr)),
      address_(std::exchange(other.address_, nullptr)),
      length_(std::exchange(other.length_, 0)) {}

UcxMemory& UcxMemory::operator=(UcxMemory&& other) noexcept {
  if (this != &other) {
    if (memh_ != nullptr) ucp_mem_unmap(context_, memh_);
    context_ = std::exchange(other.context_, nullptr);
    memh_ = std::exchange(other.memh_, nullptr);
    address_ = std::exchange(other.address_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

UcxMemory::~UcxMemory() {
  if (memh_ != nullptr) ucp_mem_unmap(context_, memh_);
}

bool UcxMemory::Contains(const void* p, size_t n) const {
  const auto base = reinterpret_cast<uintptr_t>(address_);
  const auto start = reinterpret_cast<uintptr_t>(p);
  return memh_ != nullptr && start >= base && n <= length_ && start - base <= length_ - n;
}

Result<std::vector<uint8_t>> UcxMemory::PackRemoteKey() const {
  if (memh_ == nullptr) return Status::InvalidArgument("UcxMemory::PackRemoteKey: empty");
  void* buffer = nullptr;
  size_t size = 0;
  KVAULT_RETURN_IF_ERROR(
      UcsToStatus(ucp_rkey_pack(context_, memh_, &buffer, &size), "ucp_rkey_pack"));
  // The region's bounds travel with the key so that the initiator can refuse ranges outside it,
  // and the owner so that it can refuse the key of a dead process (envelope.h).
  static const uint64_t pid_namespace = PidNamespaceId();
  std::vector<uint8_t> payload(kRemoteKeyHeaderBytes + size);
  StoreLe64(payload.data(), reinterpret_cast<uint64_t>(address_));
  StoreLe64(payload.data() + 8, length_);
  StoreLe32(payload.data() + 16, static_cast<uint32_t>(getpid()));
  StoreLe32(payload.data() + 20, 0);
  StoreLe64(payload.data() + 24, pid_namespace);
  std::memcpy(payload.data() + kRemoteKeyHeaderBytes, buffer, size);
  ucp_rkey_buffer_release(buffer);
  return Seal(EnvelopeKind::kRemoteKey, payload);
}

}  // namespace kvault::transport
