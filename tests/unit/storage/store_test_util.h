#pragma once
// Shared helpers of the storage unit tests: keys, self-checking block objects, a manual clock, a
// counter-collecting visitor and an in-memory fake Tier (the seam for fault injection).

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/synthetic_block.h"
#include "kvault/storage/block_store.h"
#include "kvault/storage/clock.h"
#include "kvault/storage/counters.h"
#include "kvault/storage/tier.h"

namespace kvault::storage::testing {

inline BlockKey KeyOf(uint64_t i, uint8_t salt = 0) {
  BlockKey key{};
  // Distinct ids give distinct keys (the index hashes every byte, keyed: see scoped_key.h).
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
  std::memcpy(key.data(), &x, 8);
  std::memcpy(key.data() + 8, &i, 8);
  key[31] = salt;
  return key;
}

inline std::vector<uint8_t> ObjectFor(const BlockKey& key, uint64_t payload_bytes = 4096) {
  Result<std::vector<uint8_t>> object = MakeSyntheticBlock(key, payload_bytes);
  return object.ok() ? std::move(*object) : std::vector<uint8_t>{};
}

class ManualClock final : public Clock {
 public:
  int64_t NowNanos() const override { return now_.load(); }
  void Advance(std::chrono::nanoseconds d) { now_ += d.count(); }

 private:
  std::atomic<int64_t> now_{1'000'000'000};
};

class MapVisitor final : public CounterVisitor {
 public:
  void Counter(std::string_view tier, std::string_view name, uint64_t value) override {
    values[Name(tier, name)] = static_cast<double>(value);
  }
  void Gauge(std::string_view tier, std::string_view name, double value) override {
    values[Name(tier, name)] = value;
  }
  double Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? -1 : it->second;
  }
  std::map<std::string, double> values;

 private:
  static std::string Name(std::string_view tier, std::string_view name) {
    return tier.empty() ? std::string(name) : std::string(tier) + "." + std::string(name);
  }
};

inline double CounterOf(const BlockStore& store, const std::string& name) {
  MapVisitor v;
  store.VisitCounters(v);
  return v.Get(name);
}

// An in-memory colder tier with a byte cap and switchable faults.
class FakeTier final : public Tier {
 public:
  FakeTier(TierKind kind, uint64_t capacity) : kind_(kind), capacity_(capacity) {}

  TierKind kind() const override { return kind_; }
  TierUsage Usage() const override {
    std::lock_guard lock(mu_);
    return {capacity_, used_, used_, blocks_.size()};
  }
  Result<TierSlot> Put(const ScopedKey& key, std::span<const uint8_t> object) override {
    std::lock_guard lock(mu_);
    ++puts;
    if (refuse_writes) return Status::Unavailable("fake tier: writes stopped");
    if (corrupt_writes) return Status::Corruption("fake tier: background error (damaged file)");
    if (used_ + object.size() > capacity_) return Status::ResourceExhausted("fake tier: full");
    const TierSlot slot = next_slot_++;
    blocks_[slot] = {key, std::vector<uint8_t>(object.begin(), object.end())};
    used_ += object.size();
    return slot;
  }
  Status Read(const ScopedKey& key, TierSlot slot, uint32_t bytes,
              std::span<uint8_t> out) override {
    if (before_read) before_read();
    std::lock_guard lock(mu_);
    auto it = blocks_.find(slot);
    if (it == blocks_.end() || !(it->second.first == key)) return Status::NotFound("fake: absent");
    if (corrupt_reads) {
      used_ -= it->second.second.size();
      blocks_.erase(it);
      return Status::Corruption("fake tier: checksum mismatch");
    }
    if (bytes != it->second.second.size() || out.size() != bytes) {
      return Status::InvalidArgument("fake tier: size");
    }
    std::memcpy(out.data(), it->second.second.data(), bytes);
    return Status::Ok();
  }
  void Erase(const ScopedKey&, TierSlot slot, uint32_t) override {
    if (before_erase) before_erase();
    std::lock_guard lock(mu_);
    erased.push_back(slot);
    auto it = blocks_.find(slot);
    if (it == blocks_.end()) return;
    used_ -= it->second.second.size();
    blocks_.erase(it);
  }
  Status Recover(const RecoverFn& found) override {
    for (auto& [slot, block] : preloaded) found(block.first, slot, block.second);
    return Status::Ok();
  }
  void VisitCounters(CounterVisitor& v) const override {
    v.Gauge(TierName(kind_), "used_bytes", static_cast<double>(Usage().used_bytes));
  }
  size_t blocks() const {
    std::lock_guard lock(mu_);
    return blocks_.size();
  }
  // Stores `object` under `key` before the store opens, as a persistent tier keeps a block from
  // an earlier run: Recover reports it, and it can be read.
  void Preload(const ScopedKey& key, std::span<const uint8_t> object) {
    std::lock_guard lock(mu_);
    const TierSlot slot = next_slot_++;
    blocks_[slot] = {key, std::vector<uint8_t>(object.begin(), object.end())};
    used_ += object.size();
    preloaded[slot] = {key, static_cast<uint32_t>(object.size())};
  }

  std::atomic<bool> refuse_writes{false};
  // Writes fail with Corruption, as RocksDB's do once it met a damaged file in the background.
  std::atomic<bool> corrupt_writes{false};
  std::atomic<bool> corrupt_reads{false};
  std::atomic<int> puts{0};
  // Called at the start of every Read, outside the tier's lock (lets a test line readers up).
  std::function<void()> before_read;
  // Called at the start of every Erase, outside the tier's lock.
  std::function<void()> before_erase;
  // Reported by Recover: slot -> (key, bytes).
  std::map<TierSlot, std::pair<ScopedKey, uint32_t>> preloaded;
  // Every slot Erase was called for, in order (read once the store is idle).
  std::vector<TierSlot> erased;

 private:
  const TierKind kind_;
  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::map<TierSlot, std::pair<ScopedKey, std::vector<uint8_t>>> blocks_;
  uint64_t used_ = 0;
  TierSlot next_slot_ = 1;
};

}  // namespace kvault::storage::testing
