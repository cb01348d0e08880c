// MappedResidency and ResidentMapping (local/mapped_residency.h).

#include "kvault/transport/local/mapped_residency.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace kvault::transport {
namespace {

uintptr_t PageBytes() {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

MappedResidency::MappedResidency(uint64_t budget_bytes)
    : budget_(std::max(budget_bytes, kChunkBytes)) {}

uint64_t MappedResidency::resident_bytes() const {
  std::lock_guard lock(mu_);
  return resident_;
}

uint64_t MappedResidency::dropped_bytes() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

uint64_t MappedResidency::failed_drops() const {
  std::lock_guard lock(mu_);
  return failed_drops_;
}

uint64_t MappedResidency::Register() {
  std::lock_guard lock(mu_);
  return next_mapping_++;
}

template <typename Fn>
void MappedResidency::ForEachChunk(uintptr_t begin, uintptr_t end, uintptr_t from, uintptr_t to,
                                   Fn fn) {
  from = std::max(from, begin);
  to = std::min(to, end);
  if (from >= to) return;
  // Chunks are aligned in the address space (so a chunk's start is page-aligned), clipped to the
  // mapping.
  for (uintptr_t c = from & ~uintptr_t{kChunkBytes - 1}; c < to; c += kChunkBytes) {
    const uintptr_t start = std::max(c, begin);
    fn(start, std::min<uintptr_t>(c + kChunkBytes, end) - start);
  }
}

void MappedResidency::Touched(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from,
                              uintptr_t to) {
  std::lock_guard lock(mu_);
  TouchLocked(mapping, begin, end, from, to);
}

bool MappedResidency::Admit(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from,
                            uintptr_t to) {
  from = std::max(from, begin);
  to = std::min(to, end);
  if (from >= to) return true;  // nothing of the mapping is touched
  std::lock_guard lock(mu_);
  bool resident = true;
  ForEachChunk(begin, end, from, to, [&](uintptr_t start, uint64_t) {
    if (!index_.contains(ChunkId{mapping, start})) resident = false;
  });
  const ChunkId id{mapping, from};
  auto ghost = ghost_index_.find(id);
  const bool seen = ghost != ghost_index_.end() && ghost->second->bytes >= to - from;
  if (ghost != ghost_index_.end() && (resident || seen)) {
    ghost_bytes_ -= ghost->second->bytes;
    ghosts_.erase(ghost->second);
    ghost_index_.erase(ghost);
  }
  if (resident || seen) return true;  // counted by the caller's Touched, after its copy
  if (ghost != ghost_index_.end()) {  // seen shorter: remembered as this long now, and anew
    ghost_bytes_ += (to - from) - ghost->second->bytes;
    ghost->second->bytes = to - from;
    ghosts_.splice(ghosts_.end(), ghosts_, ghost->second);
  } else {
    ghost_index_.emplace(id, ghosts_.insert(ghosts_.end(), Ghost{id, to - from}));
    ghost_bytes_ += to - from;
  }
  while (ghosts_.size() > 1 &&
         (ghost_bytes_ > kGhostRounds * budget_ || ghosts_.size() > kMaxGhosts)) {
    ghost_bytes_ -= ghosts_.front().bytes;
    ghost_index_.erase(ghosts_.front().id);
    ghosts_.pop_front();
  }
  return false;
}

void MappedResidency::TouchLocked(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from,
                                  uintptr_t to) {
  ForEachChunk(begin, end, from, to, [&](uintptr_t start, uint64_t bytes) {
    auto it = index_.find(ChunkId{mapping, start});
    if (it != index_.end()) {
      chunks_.splice(chunks_.begin(), chunks_, it->second);
      return;
    }
    chunks_.push_front(Chunk{mapping, start, bytes});
    index_.emplace(ChunkId{mapping, start}, chunks_.begin());
    resident_ += bytes;
  });
  while (resident_ > budget_ && !chunks_.empty()) {
    const Chunk& old = chunks_.back();
    // Cannot fail for a shared mapping of small pages that is still there (which the contract
    // promises); a failure leaves the pages mapped, uncounted here but not unseen.
    if (madvise(reinterpret_cast<void*>(old.start), old.bytes, MADV_DONTNEED) == 0) {
      dropped_ += old.bytes;
    } else {
      ++failed_drops_;
    }
    resident_ -= old.bytes;
    index_.erase(ChunkId{old.mapping, old.start});
    chunks_.pop_back();
  }
}

void MappedResidency::Forget(uint64_t mapping) {
  std::lock_guard lock(mu_);
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    if (it->mapping == mapping) {
      resident_ -= it->bytes;
      index_.erase(ChunkId{it->mapping, it->start});
      it = chunks_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = ghosts_.begin(); it != ghosts_.end();) {
    if (it->id.mapping == mapping) {
      ghost_bytes_ -= it->bytes;
      ghost_index_.erase(it->id);
      it = ghosts_.erase(it);
    } else {
      ++it;
    }
  }
}

ResidentMapping::ResidentMapping(MappedResidency* residency, const void* base, size_t length)
    : residency_(residency) {
  if (residency_ == nullptr || length == 0) {
    residency_ = nullptr;
    return;
  }
  const uintptr_t page = PageBytes();
  const uintptr_t first = reinterpret_cast<uintptr_t>(base);
  begin_ = first & ~(page - 1);
  end_ = (first + length + page - 1) & ~(page - 1);
  id_ = residency_->Register();
}

ResidentMapping::~ResidentMapping() { Reset(); }

ResidentMapping::ResidentMapping(ResidentMapping&& other) noexcept
    : residency_(std::exchange(other.residency_, nullptr)),
      id_(std::exchange(other.id_, 0)),
      begin_(std::exchange(other.begin_, 0)),
      end_(std::exchange(other.end_, 0)) {}

ResidentMapping& ResidentMapping::operator=(ResidentMapping&& other) noexcept {
  if (this != &other) {
    Reset();
    residency_ = std::exchange(other.residency_, nullptr);
    id_ = std::exchange(other.id_, 0);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
  }
  return *this;
}

void ResidentMapping::Touched(const void* address, size_t length) {
  if (residency_ == nullptr || length == 0) return;
  const uintptr_t from = reinterpret_cast<uintptr_t>(address);
  residency_->Touched(id_, begin_, end_, from, from + length);
}

bool ResidentMapping::Admit(const void* address, size_t length) {
  if (residency_ == nullptr || length == 0) return true;
  const uintptr_t from = reinterpret_cast<uintptr_t>(address);
  return residency_->Admit(id_, begin_, end_, from, from + length);
}

void ResidentMapping::Reset() {
  if (residency_ != nullptr) residency_->Forget(id_);
  residency_ = nullptr;
}

}  // namespace kvault::transport
