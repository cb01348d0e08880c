#pragma once
// Shared plumbing of the C ABI (kvault/kvault.h): the structs behind the opaque handles, the
// per-thread last error, the exception barrier and the argument conversions. Private to
// client/c_api.

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "kvault/client.h"
#include "kvault/client_config.h"
#include "kvault/common/block_key.h"
#include "kvault/common/dtype.h"
#include "kvault/common/result.h"
#include "kvault/common/status.h"
#include "kvault/handles.h"
#include "kvault/kvault.h"
#include "kvault/transport/protocol_limits.h"

// Shared with the paged stores made from it: kvault_close drops this reference, and the
// connection closes once they are freed too.
struct kvault_client {
  std::shared_ptr<kvault::Client> client;
};

struct kvault_region {
  kvault::MemoryRegion region;
};

// A store or a load: one of the two handles is set. Both are shared references to the
// operation's state, so freeing this struct never touches the operation.
struct kvault_transfer {
  kvault::StoreHandle store;
  kvault::LoadHandle load;
  bool is_load = false;
  kvault::TransferHandle& Handle() {
    return is_load ? static_cast<kvault::TransferHandle&>(load) : store;
  }
  const kvault::TransferHandle& Handle() const {
    return is_load ? static_cast<const kvault::TransferHandle&>(load) : store;
  }
};

namespace kvault::c_api {

// Longest timeout a caller may give (a year, as ClientConfig's): keeps every deadline (and the
// client's arithmetic on it) far from the clock's overflow.
inline constexpr int64_t kMaxTimeoutMs = kMaxClientTimeout.count();

// Most keys of one lookup or delete: each is one request, and no daemon's max_keys_per_batch
// may exceed the protocol's ceiling. (The client refuses counts over the daemon's own limit.)
inline constexpr size_t kMaxRequestKeys = transport::kCeilingKeysPerBatch;
// Most keys of one store, load or paged sequence (16 Mi, far past any real transfer; the client
// splits a transfer into requests of the daemon's batch size).
inline constexpr size_t kMaxTransferKeys = size_t{1} << 24;

// InvalidArgument "<function>: <what> <count> is over <most>" when count > most. Every count a
// C caller gives is checked so before anything is allocated for it: an absurd count is the
// caller's error, not an out-of-memory (or a read past the caller's arrays).
Status CheckCount(const char* function, const char* what, size_t count, size_t most);

// Records `status` as the calling thread's last error ("" for OK) and returns its code.
// Never throws: when the message cannot be stored a fixed text stands in.
kvault_status Report(const Status& status) noexcept;
kvault_status ReportCode(kvault_status code, const char* message) noexcept;

// The exception barrier of every function that returns kvault_status: runs `body` (which
// returns a Status) and reports its result; std::bad_alloc becomes RESOURCE_EXHAUSTED,
// std::length_error (a container asked for more than it can ever hold: a size from the caller)
// INVALID_ARGUMENT, any other exception INTERNAL.
template <typename Body>
kvault_status Guard(const char* function, Body&& body) noexcept {
  try {
    return Report(body());
  } catch (const std::bad_alloc&) {
    return ReportCode(KVAULT_RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::length_error& e) {
    try {
      return Report(
          Status::InvalidArgument(std::string(function) + ": size too large: " + e.what()));
    } catch (...) {
      return ReportCode(KVAULT_INVALID_ARGUMENT, "size too large");
    }
  } catch (const std::exception& e) {
    try {
      return Report(
          Status::Internal(std::string(function) + ": unexpected exception: " + e.what()));
    } catch (...) {
      return ReportCode(KVAULT_INTERNAL, "unexpected exception");
    }
  } catch (...) {
    return ReportCode(KVAULT_INTERNAL, "unexpected exception");
  }
}

// The barrier of functions that return a plain value: `fallback` when anything throws.
template <typename T, typename Body>
T GuardValue(T fallback, Body&& body) noexcept {
  try {
    return body();
  } catch (...) {
    return fallback;
  }
}

// `new T{args...}` for a handle given to a C caller; the caller's Guard reports std::bad_alloc.
template <typename T, typename... Args>
T* NewHandle(Args&&... args) {
  return new T{std::forward<Args>(args)...};  // NOLINT(bugprone-unhandled-exception-at-new)
}

// `delete handle` for kvault_close and the kvault_*_free functions, which never throw (a
// destructor that throws would terminate anyway; there is nobody to report to).
template <typename T>
void DeleteHandle(T* handle) noexcept {
  try {
    delete handle;
  } catch (...) {
  }
}

// InvalidArgument "<function>: <what> is null".
Status Null(const char* function, const char* what);

// A request deadline from a C timeout: 0 = the client's default (nullopt), > 0 = from now.
// InvalidArgument for a negative or over-long timeout.
Result<std::optional<Deadline>> RequestDeadline(const char* function, int64_t timeout_ms);
// A wait's deadline: < 0 = Deadline::max(), else now + timeout (clamped).
Deadline WaitDeadline(int64_t timeout_ms);

// The C contract returns input refused before anything started as the call's status, with no
// transfer: `status` (the settled status of a finished handle) when it is InvalidArgument or
// Unsupported (no data plane), else OK (anything else is the transfer's status, as in C++).
Status RefusedInput(const Status& status);

// Keys copied out of the C array (kvault_key and BlockKey are both 32 plain bytes, but distinct
// types: copying avoids aliasing one as the other). `count` is checked by the caller
// (CheckCount).
std::vector<BlockKey> CopyKeys(const kvault_key* keys, size_t count);
inline void PutKey(const BlockKey& from, kvault_key& to) {
  std::memcpy(to.bytes, from.data(), sizeof(to.bytes));
}
inline BlockKey GetKey(const kvault_key& from) {
  BlockKey key;
  std::memcpy(key.data(), from.bytes, key.size());
  return key;
}

Lease FromC(const kvault_lease& lease);
kvault_lease ToC(const Lease& lease);

// Copies `status`'s message into `message` (capacity bytes, NUL-terminated, truncated).
void CopyMessage(const Status& status, char* message, size_t capacity);

// A C string that may be NULL, as a std::string.
inline std::string Str(const char* s) { return s != nullptr ? std::string(s) : std::string(); }

// The integer a C caller stored in an enum-typed field or argument. C may store any int there,
// while in C++ reading an enum object whose value lies outside its enumerators' range is
// undefined; so the bytes are read as the underlying type, to be checked before conversion.
template <typename E>
int64_t RawEnum(const E& e) {
  std::underlying_type_t<E> raw;
  std::memcpy(&raw, &e, sizeof(raw));
  return static_cast<int64_t>(raw);
}

// KVAULT_DTYPE_* as a DType; InvalidArgument for another value.
Result<DType> DTypeFromC(const char* function, const kvault_dtype& dtype);

// The struct_size check of versioned structs: this library knows exactly one size of each.
Status CheckStructSize(const char* function, const char* what, size_t got, size_t want);

}  // namespace kvault::c_api
