#pragma once
// Shared pieces of the Python module `kvault` (DESIGN.md §9, docs/client.md "Python"): the
// exception hierarchy, conversions between Python objects and kvault types (keys, tokens,
// deadlines, dtypes, buffers), and the client holder every binding file uses.
//
// Rules every binding follows:
//   - A non-OK Status that is an error for the caller becomes a kvault.Error subclass
//     (ThrowIfError); per-key outcomes stay values (kvault.Status).
//   - Every call that can block releases the GIL (py::gil_scoped_release) and touches no Python
//     object while it is released.
//   - Memory that the daemon or a background thread may still touch is kept alive by the Python
//     object that started the transfer (handles hold their buffers).

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvault/client.h"
#include "kvault/client_config.h"
#include "kvault/common/block_key.h"
#include "kvault/common/dtype.h"
#include "kvault/common/status.h"

namespace kvault::python {

namespace py = pybind11;

// --- errors ---

// Thrown by bindings for a non-OK Status; translated into the kvault.Error subclass of its code,
// with str(e) = the status message and e.code = StatusCodeName (e.g. "unavailable").
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return status_.message().c_str(); }

 private:
  Status status_;
};

// Throws StatusError for a non-OK status.
inline void ThrowIfError(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}

// Throws the status of a handle whose call refused its input before anything started (as the C
// ABI returns it as the call's status): bad input raises at the call, not at wait().
template <typename Handle>
void ThrowIfRefused(const Handle& handle) {
  if (handle.refused()) ThrowIfError(handle.Wait(Deadline::min()));
}

// Throws StatusError(InvalidArgument(message)): kvault.InvalidArgumentError, a ValueError.
[[noreturn]] inline void Invalid(const std::string& message) {
  throw StatusError(Status::InvalidArgument(message));
}

// Creates kvault.Error and its subclasses in `m` and registers the translator.
void BindErrors(py::module_& m);

// --- keys and tokens ---

// A 32-byte bytes-like object (bytes, bytearray, memoryview, numpy uint8[32]); ValueError else.
BlockKey ToKey(py::handle obj, const char* what = "key");
// A sequence of keys (each as ToKey), or one bytes-like object of 32 * n bytes.
std::vector<BlockKey> ToKeys(py::handle obj);
py::bytes KeyBytes(const BlockKey& key);
py::list KeyList(const std::vector<BlockKey>& keys);
// `obj` as a 1-D numpy array (numpy.asarray); ValueError `what` when it is not one.
py::array AsVector(py::handle obj, const char* what);
// Token ids: a sequence of ints or an integer numpy array, each in [0, 2^32). ValueError else.
std::vector<uint32_t> ToTokens(py::handle obj);

// --- time ---

// Request deadline from a timeout in milliseconds; nullopt (the client's request_timeout) for
// None or 0 (as 0 is in the C ABI). ValueError for NaN, an infinity, a negative value or one over a
// year (as the C ABI).
std::optional<Deadline> RequestDeadline(const std::optional<double>& timeout_ms);
// Wait deadline from a timeout in seconds; Deadline::max() for None.
Deadline WaitDeadline(const std::optional<double>& timeout_s);
// A duration in milliseconds the caller asks for (lease_ttl_ms): a number in [0, a year]
// (kMaxClientTimeout, the C ABI's bound too), truncated to whole milliseconds. ValueError naming
// `what` for NaN, an infinity, a negative value or one over a year.
std::chrono::milliseconds ToMilliseconds(double ms, const char* what);
// As ToMilliseconds, for an argument that may be any Python object: an int or a float. ValueError
// naming `what` for anything else (a bool, a string, an int too large for a float).
std::chrono::milliseconds MillisecondsArg(py::handle obj, const char* what);

// --- integers ---

// An int (or integer-like object, e.g. a numpy integer) in [0, 2**64): an offset, a length, an
// address. ValueError naming `what` for a negative or larger int, a bool or a non-integer,
// instead of pybind11's RuntimeError "Unable to cast".
uint64_t ToUint64(py::handle obj, const std::string& what);

// --- dtypes and buffers ---

// "float16", "f16", "fp16", "half" -> kF16; "bfloat16", "bf16" -> kBF16. ValueError else.
DType ParseDTypeArg(const std::string& name);

// A contiguous buffer of any Python object that exports one (numpy arrays, bytes, bytearray,
// memoryview, Region). Holds the export (and so the object) until destroyed; destroy with the GIL.
class BufferRef {
 public:
  // ValueError when `obj` exports no contiguous buffer, or no writable one when `writable`.
  BufferRef(py::handle obj, bool writable, const char* what);
  ~BufferRef();
  BufferRef(const BufferRef&) = delete;
  BufferRef& operator=(const BufferRef&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }
  // Bytes per element of the exporter's format (1 for bytes, bytearray and uint8 arrays).
  size_t itemsize() const { return static_cast<size_t>(view_.itemsize); }
  // The exporter's struct-module format ("B" for bytes, "32s" for numpy S32); "B" when none.
  std::string format() const { return view_.format != nullptr ? view_.format : "B"; }
  std::span<uint8_t> bytes() const { return {data(), size()}; }

 private:
  Py_buffer view_{};
};

// A 16-bit KV tensor as numpy: float16 (for "float16"), bfloat16 from ml_dtypes (for
// "bfloat16"), or uint16/int16 holding the raw bits of either. Must be C-contiguous, and
// writable when `writable`. ValueError naming `what` otherwise.
py::array CheckKvArray(py::handle obj, DType dtype, bool writable, const char* what);

// --- the client ---

// The Python Client's state. The C++ Client is shared with the KvStores and PagedKvStores made
// from it (they reference it), so it lives until close() and the last of those are gone.
struct PyClient {
  std::shared_ptr<Client> client;
  // The C++ client, or kvault.Error (InvalidArgumentError "client is closed") after close().
  std::shared_ptr<Client> Get() const;
};

// Lease from a Python argument: None -> no lease, else a kvault.Lease.
Lease ToLease(py::handle obj);

void BindClient(py::module_& m);
void BindKeys(py::module_& m);
void BindKvStore(py::module_& m);
void BindPaged(py::module_& m);

}  // namespace kvault::python
