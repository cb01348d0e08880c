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
  return chunks_.bytes;
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
    if (!chunks_.index.contains(ChunkId{mapping, start})) resident = false;
  });
  const ChunkId id{mapping, from};
  const RangeList::Iterator ghost = ghosts_.Find(id);
  const bool passed_over = ghost != ghosts_.order.end();
  if (resident || (passed_over && ghost->bytes >= to - from)) {
    if (passed_over) ghosts_.Erase(ghost);
    return true;  // counted by the caller's Touched, after its copy
  }
  // Remembered anew, and as long as it is now.
  if (passed_over) ghosts_.Erase(ghost);
  ghosts_.Insert(ghosts_.order.end(), Range{id, to - from});
  while (ghosts_.order.size() > 1 &&
         (ghosts_.bytes > kGhostRounds * budget_ || ghosts_.order.size() > kMaxGhosts)) {
    ghosts_.Erase(ghosts_.order.begin());
  }
  return false;
}

void MappedResidency::TouchLocked(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from,
                                  uintptr_t to) {
  ForEachChunk(begin, end, from, to, [&](uintptr_t start, uint64_t bytes) {
    const RangeList::Iterator it = chunks_.Find(ChunkId{mapping, start});
    if (it != chunks_.order.end()) {
      chunks_.order.splice(chunks_.order.begin(), chunks_.order, it);
    } else {
      chunks_.Insert(chunks_.order.begin(), Range{ChunkId{mapping, start}, bytes});
    }
  });
  while (chunks_.bytes > budget_ && !chunks_.order.empty()) {
    const RangeList::Iterator old = std::prev(chunks_.order.end());
    // Cannot fail for a shared mapping of small pages that is still there (which the contract
    // promises); a failure leaves the pages mapped, uncounted here but not unseen.
    if (madvise(reinterpret_cast<void*>(old->id.start), old->bytes, MADV_DONTNEED) == 0) {
      dropped_ += old->bytes;
    } else {
      ++failed_drops_;
    }
    chunks_.Erase(old);
  }
}

void MappedResidency::Forget(uint64_t mapping) {
  std::lock_guard lock(mu_);
  chunks_.EraseMapping(mapping);
  ghosts_.EraseMapping(mapping);
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
