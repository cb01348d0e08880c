#include "kvault/transport/protocol_limits.h"

#include <string>

#include "kvault/common/block_format.h"

namespace kvault::transport {

static_assert(kCeilingBlockObjectBytes == kMaxBlockObjectBytes,
              "a message may not describe a block object the format cannot hold");

namespace {

Status CheckRange(const char* field, uint64_t value, uint64_t min, uint64_t max) {
  if (value >= min && value <= max) return Status::Ok();
  return Status::InvalidArgument(std::string(field) + " must be in " + std::to_string(min) + ".." +
                                 std::to_string(max) + ", got " + std::to_string(value));
}

}  // namespace

Status ProtocolLimits::Validate() const {
  KVAULT_RETURN_IF_ERROR(
      CheckRange("max_body_bytes", max_body_bytes, kMinBodyBytes, kCeilingBodyBytes));
  KVAULT_RETURN_IF_ERROR(
      CheckRange("max_keys_per_batch", max_keys_per_batch, 1, kCeilingKeysPerBatch));
  KVAULT_RETURN_IF_ERROR(
      CheckRange("max_block_object_bytes", max_block_object_bytes, 1, kCeilingBlockObjectBytes));
  KVAULT_RETURN_IF_ERROR(
      CheckRange("max_string_bytes", max_string_bytes, kMinStringBytes, kCeilingStringBytes));
  KVAULT_RETURN_IF_ERROR(
      CheckRange("max_remote_key_bytes", max_remote_key_bytes, 1, kCeilingRemoteKeyBytes));
  return CheckRange("max_worker_address_bytes", max_worker_address_bytes, 1,
                    kCeilingWorkerAddressBytes);
}

}  // namespace kvault::transport
