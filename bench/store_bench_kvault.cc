// The kvault side of `kvault-bench store`: kvaultd started from the same build directory (or the
// daemon named with --server), chain lookups, and store/load windows through libkvault with one
// Client per worker thread and one request in flight per Client.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "kvault/client.h"
#include "kvault/common/auth.h"
#include "kvault/common/block_key.h"
#include "kvault/common/synthetic_block.h"
#include "kvaultd_process.h"
#include "store_bench.h"

namespace kvault::bench::store_bench {
namespace {

// Tags that keep the keys of the chain and of every row apart.
constexpr uint32_t kChainTag = 0x43484e;  // "CHN"
constexpr uint32_t kRowTag = 0x524f57;    // "ROW"
constexpr size_t kDeleteBatch = 1024;

// The token of the started daemon's tenant with --data-plane process-memory (a client attaches
// its memory only to a daemon that proved it knows a real token); empty otherwise, or when no
// random bytes could be had. Fresh random bytes for each run.
const std::string& BenchToken(const Config& c) {
  static const std::string token = [] {
    Result<AuthNonce> random = NewAuthChallenge();
    return random.ok() ? HexEncode(*random) : std::string();  // empty: the run is refused
  }();
  static const std::string none;
  return c.process_memory && c.server.empty() ? token : none;
}

Result<std::unique_ptr<Client>> ConnectClient(const Config& c, const std::string& server) {
  return ConnectToKvaultd(
      server, c.transports, "kvault-bench store",
      c.memory == ClientMemory::kRegisterDirect ? 0 : ClientConfig{}.registered_staging_bytes,
      BenchToken(c));
}

Status DeleteAll(Client& client, const std::vector<BlockKey>& keys) {
  for (size_t at = 0; at < keys.size(); at += kDeleteBatch) {
    const size_t n = std::min(kDeleteBatch, keys.size() - at);
    KVAULT_ASSIGN_OR_RETURN(std::vector<Status> statuses,
                            client.Delete(std::span(keys).subspan(at, n)));
    (void)statuses;  // NotFound for objects evicted already: fine
  }
  return Status::Ok();
}

// Stores one object and waits; kFailed with the reason unless the daemon stored it.
Step StoreOne(Client& client, const BlockKey& key, std::span<const uint8_t> object,
              std::string& why) {
  const std::span<const uint8_t> sources[1] = {object};
  StoreHandle h = client.Store(std::span(&key, 1), sources);
  Status s = h.Wait();
  if (s.ok()) s = h.key_status(0);
  if (s.ok()) return Step::kOk;
  why = "store: " + s.ToString();
  return Step::kFailed;
}

struct FreeBytes {
  void operator()(uint8_t* p) const { std::free(p); }
};
using OwnedBytes = std::unique_ptr<uint8_t, FreeBytes>;

}  // namespace

struct KvaultSide::Worker {
  std::unique_ptr<Client> client;
  // --client-memory register(-direct): the bench's own memory behind `objects` and `destination`
  // (declared first, so that it outlives their registrations).
  std::vector<OwnedBytes> owned;
  MemoryRegion objects;      // objects_per_thread_ objects back to back
  MemoryRegion destination;  // two objects: loads alternate between them

  // `bytes` of registered memory: allocated by the client through UCX, or (register) allocated
  // here, page-aligned and faulted in, and registered.
  Result<MemoryRegion> Memory(ClientMemory kind, size_t bytes) {
    if (kind == ClientMemory::kAllocate) return client->AllocateMemory(bytes);
    constexpr size_t kPage = 4096;
    const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
    OwnedBytes memory(static_cast<uint8_t*>(std::aligned_alloc(kPage, rounded)));
    if (memory == nullptr) return Status::ResourceExhausted("cannot allocate the client memory");
    std::memset(memory.get(), 0, rounded);
    Result<MemoryRegion> region = client->RegisterMemory(memory.get(), bytes);
    if (region.ok()) owned.push_back(std::move(memory));
    return region;
  }
  std::vector<BlockKey> keys;
  int64_t last_loaded[2] = {-1, -1};  // index of the object last loaded into each destination
};

Result<std::unique_ptr<KvaultSide>> KvaultSide::Create(const Config& c,
                                                       const std::string& scratch) {
  std::unique_ptr<KvaultSide> side(new KvaultSide());
  side->server_ = c.server;
  if (c.server.empty()) {
    KvaultdLaunch launch;
    launch.binary = c.kvaultd;
    launch.scratch = scratch;
    launch.host_capacity = c.host_capacity;
    // 64 MiB (or the largest object, when larger), lowered to the largest block whose size class
    // fits the host tier: kvaultd refuses a larger limit. ParseConfig keeps every object within
    // a quarter of the tier, so each one stays under the limit.
    uint64_t largest = 64ull << 20;
    for (uint64_t size : c.sizes) largest = std::max(largest, SyntheticObjectBytes(size));
    launch.max_block_bytes = MaxBlockBytesFitting(c.host_capacity, largest);
    launch.transports = c.transports;
    if (c.process_memory) launch.process_memory = "on";
    launch.token = BenchToken(c);
    if (c.process_memory && launch.token.empty()) {
      return Status::Unavailable("no random bytes for the token of the benchmark's tenant");
    }
    KVAULT_ASSIGN_OR_RETURN(RunningKvaultd daemon, StartKvaultd(launch));
    side->daemon_ = std::move(daemon.process);
    side->ready_line_ = std::move(daemon.ready_line);
    side->server_ = std::move(daemon.server);
  }
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<Client> probe, ConnectClient(c, side->server_));
  KVAULT_RETURN_IF_ERROR(probe->Ping().status().WithContext("ping " + side->server_));
  return side;
}

KvaultSide::~KvaultSide() { Stop(); }

void KvaultSide::Stop() {
  workers_.clear();
  if (daemon_) daemon_->Stop(10);
}

Result<Lookup> KvaultSide::MeasureLookup(const Config& c) {
  KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectClient(c, server_));
  // The chain: key_i = SHA-256(key_{i-1} || tokens_i), smallest synthetic objects.
  const uint64_t object_bytes = SyntheticObjectBytes(0);
  std::vector<BlockKey> keys;
  BlockKey parent{};
  for (uint32_t i = 0; i < c.chain_keys; ++i) {
    const uint32_t tokens[2] = {kChainTag, i};
    parent = NextBlockKey(parent, tokens);
    keys.push_back(parent);
  }
  KVAULT_ASSIGN_OR_RETURN(MemoryRegion region, client->AllocateMemory(object_bytes * keys.size()));
  std::vector<std::span<const uint8_t>> sources;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::span<uint8_t> out(region.data() + i * object_bytes, object_bytes);
    KVAULT_RETURN_IF_ERROR(WriteSyntheticBlock(keys[i], 0, out));
    sources.push_back(out);
  }
  StoreHandle stored = client->Store(keys, sources);
  KVAULT_RETURN_IF_ERROR(stored.Wait().WithContext("store the chain"));
  if (stored.ok_count() != keys.size()) {
    return Status::Internal("the daemon stored " + std::to_string(stored.ok_count()) + " of " +
                            std::to_string(keys.size()) + " chain blocks");
  }
  // --reps rounds of --lookups timed calls each (20 untimed warm-up calls first); each figure is
  // the median over the rounds, so one burst of the machine's noise moves one round's p99, not
  // the reported one.
  auto lookup_once = [&]() -> Result<double> {
    const auto start = std::chrono::steady_clock::now();
    LookupResult hit = client->LookupPrefix(keys);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    KVAULT_RETURN_IF_ERROR(hit.status.WithContext("lookup"));
    if (hit.leading_hits != keys.size()) {
      return Status::Internal("chain lookup found " + std::to_string(hit.leading_hits) + " of " +
                              std::to_string(keys.size()) + " keys");
    }
    return took;
  };
  for (int i = 0; i < 20; ++i) KVAULT_RETURN_IF_ERROR(lookup_once().status());
  Lookup out;
  out.keys = c.chain_keys;
  out.lookups = c.lookups;
  std::vector<double> p50s, p99s, means;
  for (uint32_t round = 0; round < c.reps; ++round) {
    std::vector<double> seconds;
    for (uint32_t i = 0; i < c.lookups; ++i) {
      KVAULT_ASSIGN_OR_RETURN(double took, lookup_once());
      seconds.push_back(took);
    }
    double total = 0;
    for (double s : seconds) total += s;
    p50s.push_back(Percentile(seconds, 50) * 1e6);
    p99s.push_back(Percentile(seconds, 99) * 1e6);
    means.push_back(total / seconds.size() * 1e6);
  }
  out.round_p99_us = p99s;
  out.p50_us = Median(p50s);
  out.p99_us = Median(p99s);
  out.mean_us = Median(means);
  return out;
}

RegisteredStagingStats KvaultSide::staging() const {
  RegisteredStagingStats sum = closed_staging_;
  for (const auto& w : workers_) {
    const RegisteredStagingStats s = w->client->registered_staging();
    sum.pool_bytes = s.pool_bytes;
    sum.staged_requests += s.staged_requests;
    sum.direct_requests += s.direct_requests;
  }
  return sum;
}

Status KvaultSide::PrepareRow(const Config& c, uint64_t block_bytes, uint32_t threads, Row& row) {
  // The previous row's load set is still stored; the new row starts from an empty tier. Its
  // clients are closed too: the daemon may keep a client's buffers mapped (cached remote keys)
  // while the client is connected, which would count the last row's buffers in its memory.
  for (auto& w : workers_) {
    KVAULT_RETURN_IF_ERROR(DeleteAll(*w->client, w->keys).WithContext("delete the last row"));
  }
  closed_staging_ = staging();
  workers_.clear();
  object_bytes_ = SyntheticObjectBytes(block_bytes);
  if (object_bytes_ == 0) return Status::OutOfRange("block size too large");
  if (c.ops > 0) {
    objects_per_thread_ = (c.ops + threads - 1) / threads;
  } else {
    objects_per_thread_ = std::max<uint64_t>(2, c.pool_bytes / object_bytes_ / threads);
  }
  load_per_thread_ =
      std::clamp<uint64_t>(c.host_capacity / 4 / object_bytes_ / threads, 1, objects_per_thread_);
  row.block_bytes = block_bytes;
  row.object_bytes = object_bytes_;
  row.concurrency = threads;
  row.store_objects = objects_per_thread_ * threads;
  row.load_objects = load_per_thread_ * threads;

  while (workers_.size() < threads) {
    auto w = std::make_unique<Worker>();
    KVAULT_ASSIGN_OR_RETURN(w->client, ConnectClient(c, server_));
    workers_.push_back(std::move(w));
  }
  std::vector<Status> built(threads);
  std::vector<std::thread> builders;
  for (uint32_t t = 0; t < threads; ++t) {
    Worker& w = *workers_[t];
    // Registrations of an earlier row are gone before their memory is.
    w.objects = MemoryRegion();
    w.destination = MemoryRegion();
    w.owned.clear();
    Result<MemoryRegion> objects = w.Memory(c.memory, objects_per_thread_ * object_bytes_);
    if (!objects.ok()) return objects.status().WithContext("allocate objects");
    w.objects = std::move(*objects);
    Result<MemoryRegion> dest = w.Memory(c.memory, 2 * object_bytes_);
    if (!dest.ok()) return dest.status().WithContext("allocate destinations");
    w.destination = std::move(*dest);
    w.last_loaded[0] = w.last_loaded[1] = -1;
    w.keys.clear();
    for (uint64_t j = 0; j < objects_per_thread_; ++j) {
      const uint32_t words[6] = {kRowTag,
                                 static_cast<uint32_t>(block_bytes),
                                 static_cast<uint32_t>(block_bytes >> 32),
                                 threads,
                                 t,
                                 static_cast<uint32_t>(j)};
      w.keys.push_back(NextBlockKey(BlockKey{}, words));
    }
    // Sealing objects is CPU work: each worker builds its own share.
    builders.emplace_back([this, &w, &built, t, block_bytes] {
      for (uint64_t j = 0; j < objects_per_thread_ && built[t].ok(); ++j) {
        built[t] = WriteSyntheticBlock(
            w.keys[j], block_bytes, std::span(w.objects.data() + j * object_bytes_, object_bytes_));
      }
    });
  }
  for (std::thread& b : builders) b.join();
  for (const Status& s : built) KVAULT_RETURN_IF_ERROR(s);
  return Status::Ok();
}

const uint8_t* KvaultSide::Object(uint32_t thread, uint64_t j) const {
  return workers_[thread]->objects.data() + j * object_bytes_;
}

Window KvaultSide::StoreWindow(const Config& c) {
  const uint32_t threads = static_cast<uint32_t>(workers_.size());
  Window w = RunWindow(threads, c.ops > 0 ? 0 : c.seconds, 0,
                       [&](uint32_t t, uint64_t i, uint64_t& bytes, std::string& why) {
                         if (i >= objects_per_thread_) return Step::kDone;
                         Worker& worker = *workers_[t];
                         const Step s = StoreOne(*worker.client, worker.keys[i],
                                                 std::span(Object(t, i), object_bytes_), why);
                         bytes = s == Step::kOk ? object_bytes_ : 0;
                         return s;
                       });
  for (auto& worker : workers_) {
    const Status s = DeleteAll(*worker->client, worker->keys);
    if (!s.ok() && w.first_failure.empty()) {
      ++w.failures;
      w.first_failure = "delete after the window: " + s.ToString();
    }
  }
  return w;
}

Status KvaultSide::StoreLoadSet() {
  const uint32_t threads = static_cast<uint32_t>(workers_.size());
  Window w = RunWindow(threads, 0, load_per_thread_,
                       [&](uint32_t t, uint64_t i, uint64_t& bytes, std::string& why) {
                         bytes = object_bytes_;
                         return StoreOne(*workers_[t]->client, workers_[t]->keys[i],
                                         std::span(Object(t, i), object_bytes_), why);
                       });
  if (w.failures > 0) return Status::Internal("storing the load set: " + w.first_failure);
  return Status::Ok();
}

Result<Window> KvaultSide::LoadWindow(const Config& c, bool hot) {
  const uint32_t threads = static_cast<uint32_t>(workers_.size());
  Window window = RunWindow(
      threads, c.ops > 0 ? 0 : c.seconds, c.ops > 0 ? (c.ops + threads - 1) / threads : 0,
      [&](uint32_t t, uint64_t i, uint64_t& bytes, std::string& why) {
        Worker& w = *workers_[t];
        const uint64_t j = hot ? 0 : i % load_per_thread_;
        const int slot = static_cast<int>(i % 2);
        const LoadDestination dest[1] = {
            {std::span(w.destination.data() + slot * object_bytes_, object_bytes_), 0, 0}};
        LoadHandle h = w.client->Load(Lease{}, std::span(&w.keys[j], 1), dest);
        Status s = h.Wait();
        if (s.ok()) s = h.key_status(0);
        if (s.ok() && h.object_size(0) != object_bytes_) {
          s = Status::Corruption("loaded object of " + std::to_string(h.object_size(0)) + " bytes");
        }
        if (!s.ok()) {
          why = "load: " + s.ToString();
          w.last_loaded[slot] = -1;
          return Step::kFailed;
        }
        w.last_loaded[slot] = static_cast<int64_t>(j);
        bytes = object_bytes_;
        return Step::kOk;
      });
  // The sample: what each destination holds now must be exactly the object last loaded there.
  for (auto& w : workers_) {
    for (int slot = 0; slot < 2; ++slot) {
      if (w->last_loaded[slot] < 0) continue;
      const uint64_t j = static_cast<uint64_t>(w->last_loaded[slot]);
      std::span<const uint8_t> got(w->destination.data() + slot * object_bytes_, object_bytes_);
      if (!IsSyntheticBlockFor(w->keys[j], got)) {
        return Status::Corruption("a loaded object differs from the one stored");
      }
      w->last_loaded[slot] = -1;
    }
  }
  return window;
}

}  // namespace kvault::bench::store_bench
