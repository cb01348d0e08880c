// The nvme-tier phase of `kvault-bench storage`: the tier's own put and read throughput (through
// NvmeTier, the interface the BlockStore moves blocks with), the time to rebuild its index, and
// BlockStore lookups of blocks held in it; plus the filesystem probe that decides whether fio can
// use direct I/O.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>

#include "kvault/common/file_io.h"
#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/host_tier.h"
#include "kvault/storage/nvme_tier.h"
#include "report.h"
#include "storage_bench.h"

namespace kvault::bench::storage_bench {
namespace {

namespace fs = std::filesystem;
using storage::NvmeTier;
using storage::ScopedKey;
using storage::TenantId;

// Distinct objects generated per block size; more blocks reuse them under other tenants (a block
// verifies under its key for any tenant), so writing a GiB does not mean generating a GiB.
constexpr uint64_t kPoolBytes = 64ull << 20;
// Lookups timed per block size at most.
constexpr uint64_t kMaxLookups = 20000;


Status Errno(const std::string& what) {
  return Status::IoError(what + ": " + std::strerror(errno));
}

std::string FsTypeName(int64_t magic) {
  switch (magic) {
    case EXT4_SUPER_MAGIC:  // also ext2 and ext3
      return "ext4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case BTRFS_SUPER_MAGIC:
      return "btrfs";
    case TMPFS_MAGIC:
      return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case NFS_SUPER_MAGIC:
      return "nfs";
    case F2FS_SUPER_MAGIC:
      return "f2fs";
    default:
      return Format("0x%llx", static_cast<unsigned long long>(magic));
  }
}

// fsyncs every file under `dir` and the directory itself: what the tier wrote is then on the
// device, not in the page cache.
Status FsyncTree(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    UniqueFd fd(::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0 || ::fsync(fd.get()) != 0) return Errno("fsync " + entry.path().string());
  }
  if (ec) return Status::IoError("list " + dir + ": " + ec.message());
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return Errno("fsync " + dir);
  return Status::Ok();
}

// Drops the (clean) page-cache pages of every file under `dir`, so that reads go to the device.
Status DropPageCache(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    UniqueFd fd(::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Errno("open " + entry.path().string());
    const int rc = ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    if (rc != 0) return Status::IoError("fadvise " + entry.path().string() + ": " + strerror(rc));
  }
  if (ec) return Status::IoError("list " + dir + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

Result<Filesystem> ProbeFilesystem(const std::string& dir) {
  Filesystem out;
  struct statfs st;
  if (::statfs(dir.c_str(), &st) != 0) return Errno("statfs " + dir);
  out.type = FsTypeName(static_cast<int64_t>(st.f_type));
  // tmpfs and some others refuse O_DIRECT at open (EINVAL); others only at the first I/O.
  const std::string probe = (fs::path(dir) / ".kvault-direct-io-probe").string();
  const int raw = ::open(probe.c_str(), O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
  if (raw < 0) {
    if (errno != EINVAL) return Errno("create " + probe);
    return out;
  }
  UniqueFd fd(raw);
  constexpr size_t kAlign = 4096;
  std::unique_ptr<void, decltype(&std::free)> buf(std::aligned_alloc(kAlign, kAlign), &std::free);
  if (buf == nullptr) return Status::ResourceExhausted("direct I/O probe buffer");
  std::memset(buf.get(), 0, kAlign);
  out.direct_io = ::pwrite(fd.get(), buf.get(), kAlign, 0) == static_cast<ssize_t>(kAlign) &&
                  ::pread(fd.get(), buf.get(), kAlign, 0) == static_cast<ssize_t>(kAlign);
  ::unlink(probe.c_str());
  return out;
}

Result<NvmeRow> MeasureNvme(const Config& c, const std::string& dir, uint64_t block_bytes,
                            const std::function<Result<double>()>& paired_fio) {
  NvmeRow row;
  row.block_bytes = block_bytes;
  const uint64_t obj = SyntheticObjectBytes(block_bytes);
  if (obj == 0) return Status::OutOfRange("block size too large");
  row.object_bytes = obj;
  const uint64_t n = std::max<uint64_t>(1, c.nvme_bytes / obj);
  row.blocks = n;
  const uint64_t pool_n = std::min(n, std::max<uint64_t>(1, kPoolBytes / obj));
  KVAULT_ASSIGN_OR_RETURN(BlockPool pool, MakeBlockPool(c.seed, block_bytes, pool_n));
  auto key_of = [&](uint64_t i) {
    return ScopedKey{static_cast<TenantId>(i / pool_n + 1), pool.keys[i % pool_n]};
  };

  storage::NvmeTierOptions options = c.nvme_options;
  options.directory = (fs::path(dir) / ("nvme-" + std::to_string(block_bytes))).string();
  options.capacity_bytes = n * obj + (64ull << 20);
  std::vector<double> lat;

  // Puts, then close (flushes the memtables) and fsync: sustained = bytes on the device / time,
  // from the first Put (opening the tier is not writing).
  double start = 0;
  double calls_end = 0;
  {
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<NvmeTier> tier, NvmeTier::Open(options));
    KVAULT_RETURN_IF_ERROR(tier->Recover([](const ScopedKey&, storage::TierSlot, uint32_t) {}));
    start = NowSeconds();
    for (uint64_t i = 0; i < n; ++i) {
      const double t0 = NowSeconds();
      Result<storage::TierSlot> slot = tier->Put(key_of(i), pool.At(i % pool_n));
      lat.push_back(NowSeconds() - t0);
      if (!slot.ok()) return slot.status().WithContext("nvme put");
    }
    calls_end = NowSeconds();
  }
  KVAULT_RETURN_IF_ERROR(FsyncTree(options.directory));
  const double end = NowSeconds();
  row.put = Summarize(std::move(lat), obj);
  row.sustained_put_gbps = static_cast<double>(n * obj) / (end - start) / 1e9;
  row.flush_sync_s = end - calls_end;
  KVAULT_RETURN_IF_ERROR(DropPageCache(options.directory));

  // Every block once, in random order, from the device.
  std::vector<uint64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(c.seed));
  {
    const double t_open = NowSeconds();
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<NvmeTier> tier, NvmeTier::Open(options));
    uint64_t found = 0;
    KVAULT_RETURN_IF_ERROR(
        tier->Recover([&](const ScopedKey&, storage::TierSlot, uint32_t) { ++found; }));
    row.recover_ms = (NowSeconds() - t_open) * 1e3;
    if (found != n) {
      return Status::Internal(Format("nvme tier recovered %llu of %llu blocks",
                                     static_cast<unsigned long long>(found),
                                     static_cast<unsigned long long>(n)));
    }
    std::vector<uint8_t> buf(obj, 1);
    lat.clear();
    // With fio paired, the reads run in slices with fio's random reads before, between and after
    // them: each slice's ratio compares two measurements of the same minute of a shared disk.
    const uint64_t slices = paired_fio ? std::clamp<uint64_t>(c.read_slices, 1, n) : 1;
    double fio_before = 0;
    if (paired_fio) {
      KVAULT_ASSIGN_OR_RETURN(fio_before, paired_fio());
    }
    uint64_t next = 0;
    for (uint64_t slice = 0; slice < slices; ++slice) {
      const uint64_t end = n * (slice + 1) / slices;
      ReadSlice timed;
      double seconds = 0;
      for (; next < end; ++next) {
        const uint64_t i = order[next];
        const double t0 = NowSeconds();
        Status s = tier->Read(key_of(i), 0, static_cast<uint32_t>(obj), buf);
        lat.push_back(NowSeconds() - t0);
        seconds += lat.back();
        if (!s.ok()) return s.WithContext("nvme read");
        if (std::memcmp(buf.data(), pool.At(i % pool_n).data(), obj) != 0) {
          return Status::Corruption("nvme read: bytes differ from what was put");
        }
        ++timed.blocks;
      }
      if (!paired_fio) break;
      timed.tier_gbps = seconds > 0 ? static_cast<double>(timed.blocks * obj) / seconds / 1e9 : 0;
      timed.fio_before_gbps = fio_before;
      KVAULT_ASSIGN_OR_RETURN(timed.fio_after_gbps, paired_fio());
      fio_before = timed.fio_after_gbps;
      row.read_slices.push_back(timed);
    }
    row.read = Summarize(std::move(lat), obj);
  }

  // Lookups through a BlockStore whose index was rebuilt from the directory: every block is in
  // the nvme tier. Promotion is off so that lookups move nothing.
  {
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<NvmeTier> nvme, NvmeTier::Open(options));
    storage::HostTierOptions host_options;
    host_options.capacity_bytes = std::max<uint64_t>(64ull << 20, 4 * obj);
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<storage::HostTier> host,
                            storage::HostTier::Create(host_options));
    storage::StoreTiers tiers;
    tiers.host = std::move(host);
    tiers.nvme = std::move(nvme);
    storage::BlockStoreOptions store_options;
    store_options.promote_on_hit = false;
    store_options.policy = c.policy;
    KVAULT_ASSIGN_OR_RETURN(std::unique_ptr<storage::BlockStore> store,
                            storage::BlockStore::Create(store_options, std::move(tiers)));
    lat.clear();
    for (uint64_t k = 0; k < std::min(n, kMaxLookups); ++k) {
      const ScopedKey key = key_of(order[k]);
      const double t0 = NowSeconds();
      storage::LookupResult r = store->Lookup(key.tenant, {&key.key, 1});
      lat.push_back(NowSeconds() - t0);
      if (r.leading_hits != 1 || r.tiers[0] != storage::TierKind::kNvme) {
        return Status::Internal("nvme lookup: a block missed or is not in the nvme tier");
      }
    }
    row.lookup = Summarize(std::move(lat), 0);
  }
  if (!c.keep) {
    std::error_code ec;
    fs::remove_all(options.directory, ec);
  }
  return row;
}

}  // namespace kvault::bench::storage_bench
