#include "ucx/region_table.h"

#include <iterator>
#include <optional>
#include <string>

namespace kvault::transport {

bool RegionTable::OverlapsLocked(uintptr_t base, size_t length) const {
  auto next = by_base_.lower_bound(base);
  if (next != by_base_.end() && next->first - base < length) return true;
  if (next == by_base_.begin()) return false;
  auto prev = std::prev(next);
  return base - prev->first < prev->second.length();
}

Result<RegionId> RegionTable::Add(const UcxContext& context, void* address, size_t length) {
  if (address == nullptr || length == 0) {
    return Status::InvalidArgument("RegisterMemory: null address or zero length");
  }
  const auto base = reinterpret_cast<uintptr_t>(address);
  if (base + length < base) return Status::InvalidArgument("RegisterMemory: range wraps");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (OverlapsLocked(base, length)) {
      return Status::InvalidArgument("RegisterMemory: range overlaps a registered region");
    }
  }
  // Registration can take long (pinning a large arena): not under the lock. A racing overlapping
  // registration is caught by the second check.
  KVAULT_ASSIGN_OR_RETURN(UcxMemory memory, UcxMemory::Map(context, address, length));
  std::lock_guard<std::mutex> lock(mu_);
  if (OverlapsLocked(base, length)) {
    return Status::InvalidArgument("RegisterMemory: range overlaps a registered region");
  }
  by_base_.emplace(base, std::move(memory));
  const RegionId id = next_id_++;
  bases_.emplace(id, base);
  return id;
}

Status RegionTable::Remove(RegionId id) {
  std::optional<UcxMemory> doomed;  // unmapped after the lock is released
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = bases_.find(id);
    if (it == bases_.end()) {
      return Status::NotFound("UnregisterMemory: unknown region " + std::to_string(id));
    }
    auto node = by_base_.extract(it->second);
    bases_.erase(it);
    doomed.emplace(std::move(node.mapped()));
  }
  return Status::Ok();
}

ucp_mem* RegionTable::Find(const void* p, size_t n) const {
  const auto start = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_base_.upper_bound(start);
  if (it == by_base_.begin()) return nullptr;
  --it;
  return it->second.Contains(p, n) ? it->second.get() : nullptr;
}

void RegionTable::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  bases_.clear();
  by_base_.clear();
}

}  // namespace kvault::transport
