#pragma once
// Tier: one storage medium (GPU memory, host RAM, NVMe) behind one small interface. The tier
// stores opaque, already-sealed block objects; the BlockStore's index decides which tier holds a
// block, and the tier manager moves blocks between tiers through this interface only.

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "kvault/common/result.h"
#include "kvault/storage/counters.h"
#include "kvault/storage/scoped_key.h"

namespace kvault::storage {

// Hottest first; demotion goes to the next larger value.
enum class TierKind : uint8_t { kGpu = 0, kHost = 1, kNvme = 2 };
inline constexpr int kTierCount = 3;

// "gpu", "host", "nvme".
std::string_view TierName(TierKind kind);

// Where a tier placed a block: opaque to everyone but that tier (an arena offset, a device offset,
// unused by nvme). The index keeps it so tiers need no index of their own.
using TierSlot = uint64_t;

struct TierUsage {
  uint64_t capacity_bytes = 0;  // the configured cap
  uint64_t used_bytes = 0;      // bytes of block objects held
  uint64_t reserved_bytes = 0;  // bytes the tier's allocator holds for them (>= used_bytes)
  uint64_t blocks = 0;
};

// Thread-safety: every implementation is thread-safe; calls on distinct keys proceed in parallel.
// The caller (BlockStore) guarantees it never erases a slot that a concurrent Read still uses.
class Tier {
 public:
  virtual ~Tier() = default;
  virtual TierKind kind() const = 0;
  virtual TierUsage Usage() const = 0;

  // Stores a copy of the sealed block object `object` under `key` and returns where it went.
  // ResourceExhausted when the tier has no room for it now (the caller evicts and retries);
  // Unavailable when the tier has stopped taking writes (disk full), IoError for a failed write.
  // On error nothing is stored.
  virtual Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object) = 0;

  // Copies the object stored at (key, slot), object_bytes long, into `out` (exactly object_bytes).
  // Verifies what it read when the medium can be damaged (nvme): Corruption when the bytes fail
  // the checksum or carry another key (the tier has then deleted the block and counted it),
  // NotFound when the block is gone.
  virtual Status Read(const ScopedKey& key, TierSlot slot, uint32_t object_bytes,
                      std::span<uint8_t> out) = 0;

  // Frees the block. Erasing what is not there is not an error.
  virtual void Erase(const ScopedKey& key, TierSlot slot, uint32_t object_bytes) = 0;

  // Calls `found` for every block the tier still holds from an earlier run (nvme rebuilds its
  // index from RocksDB); volatile tiers report nothing. Called once, before any other use.
  using RecoverFn = std::function<void(const ScopedKey&, TierSlot, uint32_t object_bytes)>;
  virtual Status Recover(const RecoverFn& /*found*/) { return Status::Ok(); }

  // Reports this tier's counters and gauges, labelled with TierName(kind()).
  virtual void VisitCounters(CounterVisitor& visitor) const = 0;
};

}  // namespace kvault::storage
