// The Python module `kvault` (DESIGN.md §9, docs/client.md "Python"): libkvault over numpy arrays
// and raw device pointers, so that vLLM and SGLang connectors can be thin shims. One binding file
// per area: py_client.cc (Client, Region, handles), py_keys.cc (key builders), py_kv_store.cc
// (KvBlockCodec, KvStore), py_paged.cc (PagedKvStore); py_common.cc holds the errors and
// conversions they share.

#include "py_common.h"

PYBIND11_MODULE(kvault, m) {
  namespace kp = kvault::python;
  m.doc() =
      "kvault: a client of the kvault KV-cache store (kvaultd). Blocking calls release the GIL; "
      "failures raise kvault.Error subclasses whose str() is the status text.";
  m.attr("__version__") = KVAULT_VERSION;
  kp::BindErrors(m);
  kp::BindClient(m);
  kp::BindKeys(m);
  kp::BindKvStore(m);
  kp::BindPaged(m);
}
