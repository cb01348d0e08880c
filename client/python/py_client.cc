// kvault.Client, kvault.Region, kvault.Lease, kvault.Status, kvault.LookupResult and the
// StoreHandle / LoadHandle of raw object transfers (client.h, handles.h).

#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <utility>

#include "py_common.h"

namespace kvault::python {
namespace {

// --- memory regions ---

// A registered region. For register(), `buffer` holds the caller's object (so its memory
// outlives the registration); allocate() memory belongs to the region itself.
struct PyRegion {
  std::unique_ptr<BufferRef> buffer;  // declared first: destroyed after `region`
  MemoryRegion region;
  bool readonly = false;
};

// --- transfer handles ---

// A handle plus the exports of the buffers its transfer reads or writes.
template <typename H>
struct PyHandle {
  H handle;
  std::vector<std::unique_ptr<BufferRef>> buffers;

  PyHandle(H h, std::vector<std::unique_ptr<BufferRef>> b)
      : handle(std::move(h)), buffers(std::move(b)) {}
  PyHandle(PyHandle&&) noexcept = default;
  ~PyHandle();
};

// Buffers of handles dropped before their transfer settled: the daemon may still read or write
// them, so they are kept until it cannot. Touched only with the GIL held.
struct Pending {
  TransferHandle handle;
  std::vector<std::unique_ptr<BufferRef>> buffers;
};
std::vector<Pending>& Graveyard() {
  static auto* pending = new std::vector<Pending>();  // never destroyed: outlives the module
  return *pending;
}
void SweepGraveyard() {
  std::vector<Pending>& g = Graveyard();
  std::erase_if(g, [](const Pending& p) { return p.handle.Settled(); });
}

template <typename H>
PyHandle<H>::~PyHandle() {
  if (!buffers.empty() && !handle.Settled()) {
    Graveyard().push_back(Pending{handle, std::move(buffers)});
  }
}

// The request-level status once done; Unavailable "in flight" before.
Status DoneStatus(const TransferHandle& h) {
  if (!h.Poll()) return Status::Unavailable("in flight");
  return h.Wait(Deadline::min());
}

template <typename H>
bool WaitHandle(const H& h, std::optional<double> timeout_s, bool check) {
  const Deadline deadline = WaitDeadline(timeout_s);
  {
    py::gil_scoped_release release;
    (void)h.Wait(deadline);
  }
  if (!h.Poll()) return false;
  if (check) ThrowIfError(h.Wait(Deadline::min()));
  return true;
}

template <typename H>
py::class_<PyHandle<H>> BindTransfer(py::module_& m, const char* name, const char* doc) {
  using P = PyHandle<H>;
  py::class_<P> c(m, name, doc);
  c.def(
       "wait",
       [](const P& self, std::optional<double> timeout_s, bool check) {
         return WaitHandle(self.handle, timeout_s, check);
       },
       py::arg("timeout_s") = py::none(), py::arg("check") = true,
       "Blocks (GIL released) until the transfer is done or timeout_s passes. Returns True when "
       "done, False at the timeout (it stays in flight). With check, a request that failed as a "
       "whole raises its kvault.Error; per-key outcomes are in key_status()/statuses.")
      .def(
          "poll", [](const P& self) { return self.handle.Poll(); },
          "True once the transfer is done. Never blocks.")
      .def(
          "cancel", [](P& self) { self.handle.Cancel(); },
          "Completes the transfer now with Unavailable ('cancelled'); the daemon is not told, "
          "so buffers stay in use until settled.")
      .def_property_readonly("cancelled", [](const P& self) { return self.handle.cancelled(); })
      .def_property_readonly(
          "settled", [](const P& self) { return self.handle.Settled(); },
          "True once the daemon can no longer touch the transfer's memory.")
      .def(
          "wait_settled",
          [](const P& self, std::optional<double> timeout_s) {
            const Deadline deadline = WaitDeadline(timeout_s);
            py::gil_scoped_release release;
            return self.handle.WaitSettled(deadline);
          },
          py::arg("timeout_s") = py::none(),
          "Blocks (GIL released) until settled or timeout_s; returns settled.")
      .def_property_readonly(
          "status", [](const P& self) { return DoneStatus(self.handle); },
          "The request-level kvault.Status once done; Unavailable 'in flight' before.")
      .def("__len__", [](const P& self) { return self.handle.size(); })
      .def(
          "key_status",
          [](const P& self, size_t i) {
            if (i >= self.handle.size()) throw py::index_error("key index out of range");
            return self.handle.key_status(i);
          },
          py::arg("i"), "kvault.Status of key i ('in flight' before done).")
      .def_property_readonly("statuses", [](const P& self) { return self.handle.key_statuses(); })
      .def_property_readonly("ok_count", [](const P& self) { return self.handle.ok_count(); })
      .def_property_readonly("leading_ok", [](const P& self) { return self.handle.leading_ok(); });
  return c;
}

// --- client methods ---

std::unique_ptr<PyClient> Connect(const ClientConfig& config) {
  std::optional<Result<std::unique_ptr<Client>>> client;
  {
    py::gil_scoped_release release;
    client.emplace(Client::Connect(config));
  }
  ThrowIfError(client->status());
  auto out = std::make_unique<PyClient>();
  out->client = std::shared_ptr<Client>(std::move(**client));
  return out;
}

// Client(...): builds the ClientConfig and connects.
std::unique_ptr<PyClient> NewClient(std::string server, std::string tenant, std::string token,
                                    py::handle connect_timeout_ms, py::handle request_timeout_ms,
                                    py::handle stall_timeout_ms, py::handle reconnect_backoff_ms,
                                    bool data_plane, std::string ucx_transports,
                                    std::string client_name, bool tls, std::string tls_ca_file,
                                    std::string tls_server_name,
                                    py::handle registered_staging_bytes) {
  ClientConfig c;
  c.server = std::move(server);
  c.tenant = std::move(tenant);
  c.token = std::move(token);
  c.connect_timeout = MillisecondsArg(connect_timeout_ms, "connect_timeout_ms");
  c.request_timeout = MillisecondsArg(request_timeout_ms, "request_timeout_ms");
  c.stall_timeout = MillisecondsArg(stall_timeout_ms, "stall_timeout_ms");
  c.reconnect_backoff = MillisecondsArg(reconnect_backoff_ms, "reconnect_backoff_ms");
  c.data_plane = data_plane;
  c.ucx_transports = std::move(ucx_transports);
  c.client_name = std::move(client_name);
  c.tls = tls;
  c.tls_ca_file = std::move(tls_ca_file);
  c.tls_server_name = std::move(tls_server_name);
  c.registered_staging_bytes = ToUint64(registered_staging_bytes, "registered_staging_bytes");
  return Connect(c);
}

PyRegion Register(const PyClient& self, py::handle obj) {
  std::shared_ptr<Client> c = self.Get();
  PyRegion r;
  try {
    r.buffer = std::make_unique<BufferRef>(obj, /*writable=*/true, "memory");
  } catch (const StatusError&) {
    r.buffer = std::make_unique<BufferRef>(obj, /*writable=*/false, "memory");
    r.readonly = true;
  }
  std::optional<Result<MemoryRegion>> region;
  {
    py::gil_scoped_release release;
    region.emplace(c->RegisterMemory(r.buffer->data(), r.buffer->size()));
  }
  ThrowIfError(region->status());
  r.region = std::move(**region);
  return r;
}

PyRegion Allocate(const PyClient& self, py::handle nbytes_obj) {
  const uint64_t nbytes = ToUint64(nbytes_obj, "nbytes");
  std::shared_ptr<Client> c = self.Get();
  std::optional<Result<MemoryRegion>> region;
  {
    py::gil_scoped_release release;
    region.emplace(c->AllocateMemory(nbytes));
  }
  ThrowIfError(region->status());
  PyRegion r;
  r.region = std::move(**region);
  return r;
}

LookupResult Lookup(const PyClient& self, py::handle keys_obj, bool lease, double lease_ttl_ms,
                    std::optional<double> timeout_ms, bool check) {
  std::shared_ptr<Client> c = self.Get();
  const std::vector<BlockKey> keys = ToKeys(keys_obj);
  LookupOptions options;
  options.want_lease = lease;
  options.lease_ttl = ToMilliseconds(lease_ttl_ms, "lease_ttl_ms");
  options.deadline = RequestDeadline(timeout_ms);
  LookupResult result;
  {
    py::gil_scoped_release release;
    result = c->LookupPrefix(keys, options);
  }
  if (check) ThrowIfError(result.status);
  return result;
}

PyHandle<StoreHandle> Store(const PyClient& self, py::handle keys_obj, py::handle sources_obj,
                            std::optional<double> timeout_ms, py::handle parents_obj) {
  std::shared_ptr<Client> c = self.Get();
  SweepGraveyard();
  const std::vector<BlockKey> keys = ToKeys(keys_obj);
  const std::vector<BlockKey> parents =
      parents_obj.is_none() ? std::vector<BlockKey>() : ToKeys(parents_obj);
  std::vector<std::unique_ptr<BufferRef>> buffers;
  std::vector<std::span<const uint8_t>> sources;
  for (py::handle s : sources_obj) {
    const std::string what = "source " + std::to_string(buffers.size());
    buffers.push_back(std::make_unique<BufferRef>(s, /*writable=*/false, what.c_str()));
    sources.emplace_back(buffers.back()->data(), buffers.back()->size());
  }
  StoreOptions options;
  options.deadline = RequestDeadline(timeout_ms);
  options.parents = parents;
  StoreHandle h;
  {
    py::gil_scoped_release release;
    h = c->Store(keys, sources, options);
  }
  ThrowIfRefused(h);
  return PyHandle<StoreHandle>(std::move(h), std::move(buffers));
}

PyHandle<LoadHandle> Load(const PyClient& self, py::handle lease_obj, py::handle keys_obj,
                          py::handle destinations_obj, std::optional<double> timeout_ms) {
  std::shared_ptr<Client> c = self.Get();
  SweepGraveyard();
  const Lease lease = ToLease(lease_obj);
  const std::vector<BlockKey> keys = ToKeys(keys_obj);
  std::vector<std::unique_ptr<BufferRef>> buffers;
  std::vector<LoadDestination> destinations;
  for (py::handle d : destinations_obj) {
    const std::string what = "destination " + std::to_string(buffers.size());
    LoadDestination dst;
    py::handle buffer = d;
    if (py::isinstance<py::tuple>(d)) {
      py::tuple t = py::reinterpret_borrow<py::tuple>(d);
      if (t.size() < 1 || t.size() > 3) {
        throw StatusError(Status::InvalidArgument(
            what + " must be a buffer or a tuple (buffer, offset[, length])"));
      }
      buffer = t[0];
      if (t.size() > 1) dst.offset = ToUint64(t[1], what + " offset");
      if (t.size() > 2) dst.length = ToUint64(t[2], what + " length");
    }
    buffers.push_back(std::make_unique<BufferRef>(buffer, /*writable=*/true, what.c_str()));
    dst.buffer = buffers.back()->bytes();
    destinations.push_back(dst);
  }
  LoadOptions options;
  options.deadline = RequestDeadline(timeout_ms);
  LoadHandle h;
  {
    py::gil_scoped_release release;
    h = c->Load(lease, keys, destinations, options);
  }
  ThrowIfRefused(h);
  return PyHandle<LoadHandle>(std::move(h), std::move(buffers));
}

std::string StatusRepr(const Status& s) {
  if (s.ok()) return "kvault.Status(ok)";
  return "kvault.Status(" + std::string(StatusCodeName(s.code())) + ": " + s.message() + ")";
}

}  // namespace

void BindClient(py::module_& m) {
  py::class_<Status>(m, "Status",
                     "Outcome of one key of a transfer, or of a whole request: a code name and a "
                     "message. Truthy when OK.")
      .def_property_readonly("ok", &Status::ok)
      .def_property_readonly(
          "code", [](const Status& s) { return std::string(StatusCodeName(s.code())); },
          "'ok', 'not_found', 'unavailable', ...")
      .def_property_readonly("message", &Status::message)
      .def("__bool__", &Status::ok)
      .def("__str__", &Status::ToString)
      .def("__repr__", &StatusRepr)
      .def("__eq__",
           [](const Status& a, const Status& b) {
             return a.code() == b.code() && a.message() == b.message();
           })
      .def(
          "raise_if_error", [](const Status& s) { ThrowIfError(s); },
          "Raises the matching kvault.Error unless OK.");

  py::class_<Lease>(m, "Lease",
                    "A server-side pin on looked-up blocks; valid only on the session that got "
                    "it. Falsy when no lease was granted.")
      .def(py::init<>())
      .def_readonly("id", &Lease::id)
      .def_readonly("session", &Lease::session)
      .def_property_readonly("valid", &Lease::valid)
      .def("__bool__", &Lease::valid)
      .def_property_readonly(
          "remaining_s",
          [](const Lease& l) {
            if (!l.valid()) return 0.0;
            return std::chrono::duration<double>(l.expiry - Clock::now()).count();
          },
          "Seconds until the lease expires (conservative; negative once expired).")
      .def("__repr__", [](const Lease& l) {
        return "kvault.Lease(id=" + std::to_string(l.id) +
               ", session=" + std::to_string(l.session) + ")";
      });

  py::class_<LookupResult>(m, "LookupResult")
      .def_readonly("leading_hits", &LookupResult::leading_hits,
                    "Keys [0, leading_hits) are cached (0 when status is not OK).")
      .def_property_readonly(
          "tiers",
          [](const LookupResult& r) {
            std::vector<std::string> tiers;
            tiers.reserve(r.tiers.size());
            for (Tier t : r.tiers) tiers.emplace_back(TierName(t));
            return tiers;
          },
          "Per key: 'none' (miss), 'gpu', 'host' or 'nvme'; empty when status is not OK.")
      .def_readonly("lease", &LookupResult::lease)
      .def_readonly("status", &LookupResult::status,
                    "OK, or why the lookup failed (then a full miss).")
      .def_property_readonly("ok", [](const LookupResult& r) { return r.status.ok(); })
      .def("__repr__", [](const LookupResult& r) {
        return "kvault.LookupResult(leading_hits=" + std::to_string(r.leading_hits) +
               ", keys=" + std::to_string(r.tiers.size()) + ", " + StatusRepr(r.status) + ")";
      });

  py::class_<PyRegion>(m, "Region", py::buffer_protocol(),
                       "Host memory registered with the client's data plane. Store sources and "
                       "load destinations must lie inside one. Exposes the buffer protocol and "
                       "`array`, a numpy uint8 view.")
      .def_buffer([](PyRegion& r) {
        return py::buffer_info(r.region.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(r.region.size())}, {py::ssize_t{1}},
                               r.readonly);
      })
      .def_property_readonly(
          "array",
          [](py::object self) {
            PyRegion& r = self.cast<PyRegion&>();
            py::array_t<uint8_t> a({static_cast<py::ssize_t>(r.region.size())}, {py::ssize_t{1}},
                                   r.region.data(), self);
            if (r.readonly) a.attr("setflags")(py::arg("write") = false);
            return a;
          },
          "A numpy uint8 view of the region (keeps the region alive).")
      .def_property_readonly("nbytes", [](const PyRegion& r) { return r.region.size(); })
      .def("__len__", [](const PyRegion& r) { return r.region.size(); })
      .def_property_readonly(
          "address", [](const PyRegion& r) { return reinterpret_cast<uintptr_t>(r.region.data()); },
          "The region's first byte, as an integer.");

  BindTransfer<StoreHandle>(m, "StoreHandle", "A store in progress (Client.store).");
  BindTransfer<LoadHandle>(m, "LoadHandle", "A load in progress (Client.load).")
      .def(
          "object_size",
          [](const PyHandle<LoadHandle>& self, size_t i) {
            if (i >= self.handle.size()) throw py::index_error("key index out of range");
            return self.handle.object_size(i);
          },
          py::arg("i"),
          "The whole stored object's size of key i (also on OutOfRange); 0 for a miss.");

  py::class_<PyClient>(m, "Client",
                       "A connection to kvaultd (thread-safe). Raises kvault.Error subclasses: "
                       "UnavailableError when the daemon cannot be reached within "
                       "connect_timeout_ms, InvalidArgumentError for a bad configuration or a "
                       "refused token. A context manager; close() ends the connection once no "
                       "KvStore or PagedKvStore made from it is left.")
      .def(py::init(&NewClient), py::arg("server"), py::arg("tenant") = "", py::arg("token") = "",
           py::arg("connect_timeout_ms") = py::int_(2000),
           py::arg("request_timeout_ms") = py::int_(5000),
           py::arg("stall_timeout_ms") = py::int_(30000),
           py::arg("reconnect_backoff_ms") = py::int_(1000), py::arg("data_plane") = true,
           py::arg("ucx_transports") = "", py::arg("client_name") = "kvault-python",
           py::arg("tls") = false, py::arg("tls_ca_file") = "", py::arg("tls_server_name") = "",
           py::arg("registered_staging_bytes") = py::int_(ClientConfig{}.registered_staging_bytes))
      .def("close",
           [](PyClient& self) {
             std::shared_ptr<Client> c = std::move(self.client);
             py::gil_scoped_release release;
             c.reset();
           })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](PyClient& self, py::args) {
             std::shared_ptr<Client> c = std::move(self.client);
             py::gil_scoped_release release;
             c.reset();
           })
      .def_property_readonly("closed", [](const PyClient& self) { return !self.client; })
      .def_property_readonly(
          "connected",
          [](const PyClient& self) { return self.client != nullptr && self.client->connected(); })
      .def_property_readonly("session_id",
                             [](const PyClient& self) { return self.Get()->session_id(); })
      .def_property_readonly("server",
                             [](const PyClient& self) { return self.Get()->config().server; })
      .def_property_readonly(
          "registered_staging",
          [](const PyClient& self) {
            const RegisteredStagingStats s = self.Get()->registered_staging();
            py::dict d;
            d["pool_bytes"] = s.pool_bytes;
            d["staged_requests"] = s.staged_requests;
            d["direct_requests"] = s.direct_requests;
            d["retired_bytes"] = s.retired_bytes;
            return d;
          },
          "How requests on register()ed memory went: {'pool_bytes', 'staged_requests', "
          "'direct_requests', 'retired_bytes'} (Client::registered_staging).")
      .def("allocate", &Allocate, py::arg("nbytes"),
           "Allocates and registers nbytes of host memory (the preferred staging buffer).")
      .def("register", &Register, py::arg("buffer"),
           "Registers the memory of a C-contiguous buffer (e.g. a numpy array); the Region keeps "
           "it alive. Requests on it are staged through the client's own shared memory "
           "(registered_staging_bytes).")
      .def("lookup", &Lookup, py::arg("keys"), py::arg("lease") = false,
           py::arg("lease_ttl_ms") = 0, py::arg("timeout_ms") = py::none(),
           py::arg("check") = false,
           "How many leading keys the daemon holds (GIL released). A failed lookup is a full "
           "miss with the reason in .status (check=True raises it instead).")
      .def("store", &Store, py::arg("keys"), py::arg("sources"), py::arg("timeout_ms") = py::none(),
           py::arg("parents") = py::none(),
           "Stores sealed block objects: sources[i] (a buffer inside a registered region) is the "
           "whole object of keys[i]. parents, when given, holds one 32-byte key per key: the "
           "block before it in its chain (all zero for a chain's first), a hint that lets the "
           "daemon evict chains from their tails. Returns a StoreHandle.")
      .def("load", &Load, py::arg("lease"), py::arg("keys"), py::arg("destinations"),
           py::arg("timeout_ms") = py::none(),
           "Loads objects into registered memory: destinations[i] is a writable buffer or "
           "(buffer, offset[, length]) for a byte range. lease may be None. Returns a LoadHandle.")
      .def(
          "release_lease",
          [](const PyClient& self, py::handle lease_obj, std::optional<double> timeout_ms) {
            std::shared_ptr<Client> c = self.Get();
            const Lease lease = ToLease(lease_obj);
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            Status s;
            {
              py::gil_scoped_release release;
              s = c->ReleaseLease(lease, deadline);
            }
            ThrowIfError(s);
          },
          py::arg("lease"), py::arg("timeout_ms") = py::none(),
          "Ends a lease; NotFoundError when the daemon no longer knows it.")
      .def(
          "delete",
          [](const PyClient& self, py::handle keys_obj, std::optional<double> timeout_ms) {
            std::shared_ptr<Client> c = self.Get();
            const std::vector<BlockKey> keys = ToKeys(keys_obj);
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            std::optional<Result<std::vector<Status>>> r;
            {
              py::gil_scoped_release release;
              r.emplace(c->Delete(keys, deadline));
            }
            ThrowIfError(r->status());
            std::vector<bool> deleted;
            for (const Status& s : **r) deleted.push_back(s.ok());
            return deleted;
          },
          py::arg("keys"), py::arg("timeout_ms") = py::none(),
          "Drops keys from every tier; per key True when it was there.")
      .def(
          "stats",
          [](const PyClient& self, std::optional<double> timeout_ms) {
            std::shared_ptr<Client> c = self.Get();
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            std::optional<Result<std::vector<ServerStat>>> r;
            {
              py::gil_scoped_release release;
              r.emplace(c->Stats(deadline));
            }
            ThrowIfError(r->status());
            py::dict out;
            for (const ServerStat& s : **r) {
              if (std::holds_alternative<uint64_t>(s.value)) {
                out[py::str(s.name)] = std::get<uint64_t>(s.value);
              } else {
                out[py::str(s.name)] = std::get<double>(s.value);
              }
            }
            return out;
          },
          py::arg("timeout_ms") = py::none(),
          "The daemon's counters and gauges as {name: int | float}.")
      .def(
          "ping",
          [](const PyClient& self, std::optional<double> timeout_ms) {
            std::shared_ptr<Client> c = self.Get();
            const std::optional<Deadline> deadline = RequestDeadline(timeout_ms);
            std::optional<Result<std::chrono::nanoseconds>> r;
            {
              py::gil_scoped_release release;
              r.emplace(c->Ping(deadline));
            }
            ThrowIfError(r->status());
            return std::chrono::duration<double>(**r).count();
          },
          py::arg("timeout_ms") = py::none(), "Control-plane round trip, in seconds.");
}

}  // namespace kvault::python
