#pragma once
// The bodies shared by kvault_transfer_* and kvault_paged_transfer_*: `T` is kvault_transfer or
// kvault_paged_transfer, whose Handle() is the common base of its store and load handles. Each
// keeps the contract its kvault.h declaration states (a NULL transfer is done, cancels nothing and
// has no blocks). Private to client/c_api.

#include <cstddef>
#include <cstdint>

#include "internal.h"

namespace kvault::c_api {

// Waits for the transfer (WaitDeadline(timeout_ms)); InvalidArgument for a NULL transfer.
template <typename T>
kvault_status WaitTransfer(const char* function, const T* transfer, int64_t timeout_ms) noexcept {
  return Guard(function, [&]() -> Status {
    if (transfer == nullptr) return Null(function, "transfer");
    return transfer->Handle().Wait(WaitDeadline(timeout_ms));
  });
}

// 1 when the transfer is done (or NULL), else 0.
template <typename T>
int PollTransfer(const T* transfer) noexcept {
  return GuardValue(1, [&] { return transfer == nullptr || transfer->Handle().Poll() ? 1 : 0; });
}

template <typename T>
void CancelTransfer(T* transfer) noexcept {
  GuardValue(0, [&] {
    if (transfer != nullptr) transfer->Handle().Cancel();
    return 0;
  });
}

// The blocks that succeeded before the first failure (0 for NULL).
template <typename T>
size_t TransferLeadingOk(const T* transfer) noexcept {
  return GuardValue<size_t>(0, [&] { return transfer ? transfer->Handle().leading_ok() : 0; });
}

}  // namespace kvault::c_api
