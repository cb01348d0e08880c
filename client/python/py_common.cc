// Errors and conversions shared by the binding files (py_common.h).

#include "py_common.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>

namespace kvault::python {
namespace {

struct ErrorClass {
  StatusCode code;
  const char* name;
  const char* doc;
};

// One Python class per StatusCode (kOk has none). InvalidArgumentError is also a ValueError, so
// that argument checks read as Python expects.
constexpr std::array kErrorClasses = {
    ErrorClass{StatusCode::kInvalidArgument, "InvalidArgumentError",
               "A malformed argument: bad shape, dtype, key, spec or option."},
    ErrorClass{StatusCode::kNotFound, "NotFoundError",
               "A named thing does not exist (e.g. an expired lease)."},
    ErrorClass{StatusCode::kCorruption, "CorruptionError",
               "Stored or received bytes failed validation."},
    ErrorClass{StatusCode::kUnsupported, "UnsupportedError",
               "A well-formed request this build or device cannot do."},
    ErrorClass{StatusCode::kOutOfRange, "OutOfRangeError",
               "A size or index beyond a documented limit."},
    ErrorClass{StatusCode::kIoError, "IoError", "An I/O operation or transfer failed."},
    ErrorClass{StatusCode::kResourceExhausted, "ResourceExhaustedError",
               "No space, no memory, or a quota reached."},
    ErrorClass{StatusCode::kUnavailable, "UnavailableError",
               "The daemon is unreachable, slow or gone (also: deadline exceeded, cancelled)."},
    ErrorClass{StatusCode::kInternal, "InternalError", "A broken invariant inside kvault (a bug)."},
};

// The classes, created once at import and kept for the life of the interpreter.
PyObject* g_error = nullptr;
std::array<PyObject*, kErrorClasses.size()> g_classes{};

PyObject* ClassFor(StatusCode code) {
  for (size_t i = 0; i < kErrorClasses.size(); ++i) {
    if (kErrorClasses[i].code == code) return g_classes[i];
  }
  return g_error;
}

void RaiseStatus(const Status& status) {
  PyObject* cls = ClassFor(status.code());
  const std::string text =
      status.message().empty() ? std::string(StatusCodeName(status.code())) : status.message();
  py::object exc = py::reinterpret_borrow<py::object>(cls)(text);
  PyErr_SetObject(cls, exc.ptr());
}

}  // namespace

void BindErrors(py::module_& m) {
  g_error = PyErr_NewExceptionWithDoc(
      "kvault.Error",
      "Base class of kvault's errors. str(e) is the status text; e.code is the status code name "
      "('unavailable', 'invalid_argument', ...).",
      PyExc_Exception, nullptr);
  if (g_error == nullptr) throw py::error_already_set();
  py::handle(g_error).attr("code") = py::none();
  m.attr("Error") = py::handle(g_error);
  for (size_t i = 0; i < kErrorClasses.size(); ++i) {
    const ErrorClass& e = kErrorClasses[i];
    py::tuple bases = e.code == StatusCode::kInvalidArgument
                          ? py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError))
                          : py::make_tuple(py::handle(g_error));
    const std::string qualified = std::string("kvault.") + e.name;
    PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), e.doc, bases.ptr(), nullptr);
    if (cls == nullptr) throw py::error_already_set();
    py::handle(cls).attr("code") = std::string(StatusCodeName(e.code));
    g_classes[i] = cls;
    m.attr(e.name) = py::handle(cls);
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      RaiseStatus(e.status());
    }
  });
}

// --- keys and tokens ---

BlockKey ToKey(py::handle obj, const char* what) {
  BlockKey key{};
  if (PyObject_CheckBuffer(obj.ptr()) == 0) {
    Invalid(std::string(what) + " must be a 32-byte bytes object, not " +
            std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  BufferRef buffer(obj, /*writable=*/false, what);
  if (buffer.size() != key.size()) {
    Invalid(std::string(what) + " must be 32 bytes, got " + std::to_string(buffer.size()));
  }
  std::memcpy(key.data(), buffer.data(), key.size());
  return key;
}

std::vector<BlockKey> ToKeys(py::handle obj) {
  std::vector<BlockKey> keys;
  if (PyObject_CheckBuffer(obj.ptr()) != 0) {
    BufferRef buffer(obj, /*writable=*/false, "keys");
    // Bytes (itemsize 1), or raw byte strings of 32 (numpy S32, V32): token ids (an int32 or
    // int64 array) passed as keys would otherwise be taken as keys.
    const std::string format = buffer.format();
    const char kind = format.empty() ? 'B' : format.back();
    const bool raw_bytes =
        buffer.itemsize() == 1 || (buffer.itemsize() == 32 && (kind == 's' || kind == 'x'));
    if (!raw_bytes) {
      Invalid("keys given as one buffer must be bytes (uint8, or numpy S32/V32 items), got " +
              std::to_string(buffer.itemsize()) + "-byte items of format '" + format + "'");
    }
    if (buffer.size() % 32 != 0) {
      Invalid("keys given as one bytes-like object must be 32 * n bytes, got " +
              std::to_string(buffer.size()));
    }
    keys.resize(buffer.size() / 32);
    if (!keys.empty()) std::memcpy(keys.data(), buffer.data(), buffer.size());
    return keys;
  }
  if (py::isinstance<py::str>(obj) || !py::hasattr(obj, "__iter__")) {
    Invalid("keys must be a sequence of 32-byte bytes objects");
  }
  for (py::handle item : obj) {
    const std::string what = "key " + std::to_string(keys.size());
    keys.push_back(ToKey(item, what.c_str()));
  }
  return keys;
}

py::bytes KeyBytes(const BlockKey& key) {
  return py::bytes(reinterpret_cast<const char*>(key.data()), key.size());
}

py::list KeyList(const std::vector<BlockKey>& keys) {
  py::list out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) out[i] = KeyBytes(keys[i]);
  return out;
}

py::array AsVector(py::handle obj, const char* what) {
  py::array arr;
  try {
    arr = py::module_::import("numpy").attr("asarray")(obj);
  } catch (const py::error_already_set&) {
    Invalid(what);
  }
  if (arr.ndim() != 1) Invalid(what);
  return arr;
}

std::vector<uint32_t> ToTokens(py::handle obj) {
  constexpr const char* kWhat = "tokens must be a 1-D sequence of integers in [0, 2**32)";
  const py::array arr = AsVector(obj, kWhat);
  std::vector<uint32_t> tokens(static_cast<size_t>(arr.size()));
  if (tokens.empty()) return tokens;
  const char kind = arr.dtype().kind();
  if (kind == 'i') {
    auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const int64_t* p = a.data();
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (p[i] < 0 || p[i] > std::numeric_limits<uint32_t>::max()) Invalid(kWhat);
      tokens[i] = static_cast<uint32_t>(p[i]);
    }
  } else if (kind == 'u') {
    auto a = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const uint64_t* p = a.data();
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (p[i] > std::numeric_limits<uint32_t>::max()) Invalid(kWhat);
      tokens[i] = static_cast<uint32_t>(p[i]);
    }
  } else {
    Invalid(kWhat);
  }
  return tokens;
}

// --- time ---

namespace {

// Ten years: longer timeouts are taken as "no deadline" without overflowing the clock.
constexpr double kLongestSeconds = 10.0 * 365 * 24 * 3600;

Deadline FromNow(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(std::min(seconds, kLongestSeconds)));
}

// `obj` as an int through __index__ (ints, numpy integers); nullopt for anything else.
std::optional<py::int_> AsIndex(py::handle obj) {
  PyObject* index = PyNumber_Index(obj.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    return std::nullopt;
  }
  return py::reinterpret_steal<py::int_>(index);
}

}  // namespace

std::optional<Deadline> RequestDeadline(const std::optional<double>& timeout_ms) {
  // None or 0: the client's request_timeout_ms, as 0 is in the C ABI.
  if (!timeout_ms || *timeout_ms == 0) return std::nullopt;
  // As the C ABI and ClientConfig: a number of milliseconds up to a year (NaN, inf refused);
  // fractions of a millisecond are kept.
  (void)ToMilliseconds(*timeout_ms, "timeout_ms");
  return FromNow(*timeout_ms / 1000.0);
}

Deadline WaitDeadline(const std::optional<double>& timeout_s) {
  if (!timeout_s || std::isinf(*timeout_s) || *timeout_s >= kLongestSeconds) {
    return Deadline::max();
  }
  if (std::isnan(*timeout_s)) Invalid("timeout_s must be a number");
  return FromNow(std::max(0.0, *timeout_s));
}

std::chrono::milliseconds ToMilliseconds(double ms, const char* what) {
  // Written so that NaN fails the test too.
  if (!(ms >= 0 && ms <= static_cast<double>(kMaxClientTimeout.count()))) {
    Invalid(std::string(what) + " must be a number of milliseconds in [0, " +
            std::to_string(kMaxClientTimeout.count()) + "] (a year), got " +
            std::string(py::str(py::float_(ms))));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::chrono::milliseconds MillisecondsArg(py::handle obj, const char* what) {
  if (!py::isinstance<py::bool_>(obj)) {
    try {
      if (py::isinstance<py::float_>(obj)) return ToMilliseconds(obj.cast<double>(), what);
      if (std::optional<py::int_> i = AsIndex(obj)) return ToMilliseconds(i->cast<double>(), what);
    } catch (const py::cast_error&) {
      // An int too large for a double: refused below, with the argument's name.
    }
  }
  Invalid(std::string(what) + " must be a number of milliseconds, got " +
          std::string(py::repr(obj)));
}

// --- integers ---

uint64_t ToUint64(py::handle obj, const std::string& what) {
  // Ints and integer-like objects (numpy integers: __index__), never floats, Decimals or bools
  // (whose __int__ would truncate or pass them).
  if (!py::isinstance<py::bool_>(obj)) {
    try {
      if (std::optional<py::int_> i = AsIndex(obj)) return i->cast<uint64_t>();
    } catch (const py::cast_error&) {
      // Negative or too large: refused below, with the argument's name.
    }
  }
  Invalid(what + " must be an int in [0, 2**64), got " + std::string(py::repr(obj)));
}

// --- dtypes and buffers ---

DType ParseDTypeArg(const std::string& name) {
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  if (std::optional<DType> d = ParseDType(name)) return *d;
  Invalid("dtype must be 'float16' or 'bfloat16', got '" + name + "'");
}

BufferRef::BufferRef(py::handle obj, bool writable, const char* what) {
  const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
    PyErr_Clear();
    view_.obj = nullptr;
    Invalid(std::string(what) + " must be a C-contiguous" + (writable ? ", writable" : "") +
            " buffer (a numpy array or bytes-like object)");
  }
}

BufferRef::~BufferRef() {
  if (view_.obj != nullptr) PyBuffer_Release(&view_);
}

py::array CheckKvArray(py::handle obj, DType dtype, bool writable, const char* what) {
  if (!py::isinstance<py::array>(obj)) {
    Invalid(std::string(what) + " must be a numpy array");
  }
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  const py::dtype dt = arr.dtype();
  const std::string name = py::str(dt.attr("name"));
  const bool raw_bits = (dt.kind() == 'u' || dt.kind() == 'i') && dt.itemsize() == 2;
  const bool ok =
      dtype == DType::kF16 ? (name == "float16" || raw_bits) : (name == "bfloat16" || raw_bits);
  if (!ok) {
    Invalid(std::string(what) + " must have dtype " +
            (dtype == DType::kF16 ? "float16" : "bfloat16") +
            " (or uint16 holding its bits), got " + name);
  }
  if (!py::bool_(dt.attr("isnative"))) {
    Invalid(std::string(what) + " must be in this machine's byte order (use astype('=f2'))");
  }
  if ((arr.flags() & py::array::c_style) == 0) {
    Invalid(std::string(what) + " must be C-contiguous (use numpy.ascontiguousarray)");
  }
  if (!py::bool_(arr.attr("flags").attr("aligned"))) {
    Invalid(std::string(what) + " must be aligned to its 2-byte elements");
  }
  if (writable && !arr.writeable()) Invalid(std::string(what) + " must be writable");
  return arr;
}

// --- the client ---

std::shared_ptr<Client> PyClient::Get() const {
  if (!client) Invalid("client is closed");
  return client;
}

Lease ToLease(py::handle obj) {
  if (obj.is_none()) return Lease{};
  try {
    return obj.cast<Lease>();
  } catch (const py::cast_error&) {
    Invalid("lease must be a kvault.Lease or None");
  }
}

}  // namespace kvault::python
