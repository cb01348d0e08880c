// The C ABI of Client::Store / Client::Load and their handles (kvault.h "Store and load").

#include <span>

#include "internal.h"
#include "transfer_calls.h"

namespace kvault::c_api {
namespace {

// The C contract returns input refused before anything was sent as the call's status, with no
// transfer: the C++ handle is then refused() with InvalidArgument (or Unsupported: no data
// plane). Anything else (a daemon that cannot be reached, or that answered at once, included) is
// the transfer's status, as in C++.
Status Refused(const TransferHandle& handle) {
  if (!handle.refused()) return Status::Ok();
  return RefusedInput(handle.Wait(Deadline::min()));
}

// kvault_store and kvault_store_chain (`parents` may be null: no hints).
Status StoreCall(const char* fn, kvault_client* client, const kvault_key* keys,
                 const kvault_key* parents, const kvault_store_source* sources, size_t num_keys,
                 int64_t timeout_ms, kvault_transfer** transfer) {
  if (transfer == nullptr) return Null(fn, "transfer");
  *transfer = nullptr;
  if (client == nullptr) return Null(fn, "client");
  if (keys == nullptr && num_keys > 0) return Null(fn, "keys");
  if (sources == nullptr && num_keys > 0) return Null(fn, "sources");
  KVAULT_RETURN_IF_ERROR(CheckCount(fn, "num_keys", num_keys, kMaxTransferKeys));
  KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                          RequestDeadline(fn, timeout_ms));
  std::vector<std::span<const uint8_t>> spans(num_keys);
  for (size_t i = 0; i < num_keys; ++i) {
    if (sources[i].data == nullptr || sources[i].size == 0) {
      return Status::InvalidArgument(std::string(fn) + ": source " + std::to_string(i) +
                                     " is null or empty");
    }
    spans[i] = {static_cast<const uint8_t*>(sources[i].data), sources[i].size};
  }
  const std::vector<BlockKey> parent_keys =
      parents == nullptr ? std::vector<BlockKey>() : CopyKeys(parents, num_keys);
  kvault::StoreOptions options;
  options.deadline = deadline;
  options.parents = parent_keys;
  auto made = std::make_unique<kvault_transfer>();
  made->store = client->client->Store(CopyKeys(keys, num_keys), spans, options);
  KVAULT_RETURN_IF_ERROR(Refused(made->store));
  *transfer = made.release();
  return Status::Ok();
}

}  // namespace
}  // namespace kvault::c_api

using kvault::Status;
using namespace kvault::c_api;  // NOLINT(google-build-using-namespace): this file's own helpers

extern "C" {

kvault_status kvault_store(kvault_client* client, const kvault_key* keys,
                           const kvault_store_source* sources, size_t num_keys, int64_t timeout_ms,
                           kvault_transfer** transfer) noexcept {
  return Guard("kvault_store", [&]() -> Status {
    return StoreCall("kvault_store", client, keys, nullptr, sources, num_keys, timeout_ms,
                     transfer);
  });
}

kvault_status kvault_store_chain(kvault_client* client, const kvault_key* keys,
                                 const kvault_key* parents, const kvault_store_source* sources,
                                 size_t num_keys, int64_t timeout_ms,
                                 kvault_transfer** transfer) noexcept {
  return Guard("kvault_store_chain", [&]() -> Status {
    return StoreCall("kvault_store_chain", client, keys, parents, sources, num_keys, timeout_ms,
                     transfer);
  });
}

kvault_status kvault_load(kvault_client* client, const kvault_lease* lease, const kvault_key* keys,
                          const kvault_load_destination* destinations, size_t num_keys,
                          int64_t timeout_ms, kvault_transfer** transfer) noexcept {
  return Guard("kvault_load", [&]() -> Status {
    constexpr const char* kFn = "kvault_load";
    if (transfer == nullptr) return Null(kFn, "transfer");
    *transfer = nullptr;
    if (client == nullptr) return Null(kFn, "client");
    if (keys == nullptr && num_keys > 0) return Null(kFn, "keys");
    if (destinations == nullptr && num_keys > 0) return Null(kFn, "destinations");
    KVAULT_RETURN_IF_ERROR(CheckCount(kFn, "num_keys", num_keys, kMaxTransferKeys));
    KVAULT_ASSIGN_OR_RETURN(std::optional<kvault::Deadline> deadline,
                            RequestDeadline(kFn, timeout_ms));
    std::vector<kvault::LoadDestination> cpp(num_keys);
    for (size_t i = 0; i < num_keys; ++i) {
      const kvault_load_destination& d = destinations[i];
      if (d.buffer == nullptr || d.capacity == 0) {
        return Status::InvalidArgument("kvault_load: destination " + std::to_string(i) +
                                       " is null or empty");
      }
      cpp[i].buffer = {static_cast<uint8_t*>(d.buffer), d.capacity};
      cpp[i].offset = d.offset;
      cpp[i].length = d.length;
    }
    kvault::LoadOptions options;
    options.deadline = deadline;
    auto made = std::make_unique<kvault_transfer>();
    made->is_load = true;
    made->load = client->client->Load(lease != nullptr ? FromC(*lease) : kvault::Lease{},
                                      CopyKeys(keys, num_keys), cpp, options);
    KVAULT_RETURN_IF_ERROR(Refused(made->load));
    *transfer = made.release();
    return Status::Ok();
  });
}

kvault_status kvault_transfer_wait(const kvault_transfer* transfer, int64_t timeout_ms) noexcept {
  return WaitTransfer("kvault_transfer_wait", transfer, timeout_ms);
}

int kvault_transfer_poll(const kvault_transfer* transfer) noexcept {
  return PollTransfer(transfer);
}

void kvault_transfer_cancel(kvault_transfer* transfer) noexcept { CancelTransfer(transfer); }

int kvault_transfer_cancelled(const kvault_transfer* transfer) noexcept {
  return GuardValue(0,
                    [&] { return transfer != nullptr && transfer->Handle().cancelled() ? 1 : 0; });
}

int kvault_transfer_settled(const kvault_transfer* transfer) noexcept {
  return GuardValue(0, [&] { return transfer == nullptr || transfer->Handle().Settled() ? 1 : 0; });
}

int kvault_transfer_wait_settled(const kvault_transfer* transfer, int64_t timeout_ms) noexcept {
  return GuardValue(0, [&] {
    return transfer == nullptr || transfer->Handle().WaitSettled(WaitDeadline(timeout_ms)) ? 1 : 0;
  });
}

size_t kvault_transfer_size(const kvault_transfer* transfer) noexcept {
  return transfer != nullptr ? transfer->Handle().size() : 0;
}

kvault_status kvault_transfer_key_status(const kvault_transfer* transfer, size_t i, char* message,
                                         size_t message_capacity) noexcept {
  return Guard("kvault_transfer_key_status", [&]() -> Status {
    Status status = transfer == nullptr ? Null("kvault_transfer_key_status", "transfer")
                                        : transfer->Handle().key_status(i);
    CopyMessage(status, message, message_capacity);
    return status;
  });
}

size_t kvault_transfer_leading_ok(const kvault_transfer* transfer) noexcept {
  return TransferLeadingOk(transfer);
}

size_t kvault_transfer_ok_count(const kvault_transfer* transfer) noexcept {
  return GuardValue<size_t>(0, [&] { return transfer ? transfer->Handle().ok_count() : 0; });
}

uint64_t kvault_transfer_object_size(const kvault_transfer* transfer, size_t i) noexcept {
  return GuardValue<uint64_t>(0, [&]() -> uint64_t {
    return transfer != nullptr && transfer->is_load ? transfer->load.object_size(i) : 0;
  });
}

void kvault_transfer_free(kvault_transfer* transfer) noexcept { DeleteHandle(transfer); }

}  // extern "C"
