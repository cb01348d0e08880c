#pragma once
// MappedResidency: a bound on the pages of clients' memory that the server keeps mapped. Where
// the server copies through a mapping of a client's shared memory (a UCX posix or sysv segment
// it attached, transfer.h's copy_mapped), every page it touched stays in its page tables, and
// counts in its resident memory (VmRSS, VmHWM, RssShmem), until the mapping goes: a client that
// stores 384 MiB from fresh buffers adds 384 MiB to the server's resident memory, though the
// pages are the client's and stay charged to it.
//
// Each such mapping registers here (ResidentMapping) and reports the bytes a transfer touched.
// Touched bytes are counted in chunks of kChunkBytes; once they exceed the budget, the chunks
// touched least recently are dropped from this process's page tables with MADV_DONTNEED. For a
// shared mapping that loses nothing: the pages stay in the client's memory, and the next access
// maps them again from there (a minor fault; fault-around maps 16 pages at once). A scratch
// program here: 1 MiB copies from first-touched pages ran 3.7-4.0 GB/s, 3.3-3.4 GB/s when a
// chunk 32 MiB behind was dropped after each.
//
// Where the same bytes can also be copied through a file (a region's memfd, a posix segment's
// file), mapping fresh pages is the slower way: a copy from pages that must first be mapped (and
// later dropped) ran at about pread's speed, one from pages mapped already about twice that. Admit
// tells such a caller which way to go: through the mapping for chunks counted as touched, or for
// a range passed over before (the same start, no longer; the last kGhostRounds budgets' worth of
// ranges passed over are remembered): its bytes are being reused, as a staging buffer or a load
// destination is. Through the file otherwise, so that bytes streamed once (stores of fresh
// buffers) never enter the page tables.
//
// Only for MAP_SHARED mappings of small pages (on a private mapping MADV_DONTNEED would discard
// data; on hugetlbfs it may be refused). Callers report a copy's range once the copy is done
// (Touched): a copy that runs while another thread drops its chunk maps the pages again and is
// correct, and they count again when it reports them. So the server's resident memory holds at
// most the budget plus the bytes of the copies running at once (and of UCX PUTs being written).
//
// Thread-safety: all members may be called from many threads at once. A ResidentMapping must be
// destroyed before its pages are unmapped (its destructor waits for a drop in progress).

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <mutex>
#include <unordered_map>

namespace kvault::transport {

class MappedResidency {
 public:
  static constexpr uint64_t kChunkBytes = uint64_t{2} << 20;
  // Chunks passed over (Admit false) are remembered up to this many budgets' worth.
  static constexpr uint64_t kGhostRounds = 2;
  // At most this many ranges passed over are remembered, whatever their bytes.
  static constexpr size_t kMaxGhosts = 4096;

  // `budget_bytes` >= kChunkBytes (smaller budgets count as kChunkBytes).
  explicit MappedResidency(uint64_t budget_bytes);
  MappedResidency(const MappedResidency&) = delete;
  MappedResidency& operator=(const MappedResidency&) = delete;

  uint64_t budget_bytes() const { return budget_; }
  // Bytes of the chunks counted as touched now (at most the budget between calls).
  uint64_t resident_bytes() const;
  // Bytes dropped from the page tables so far.
  uint64_t dropped_bytes() const;
  // Chunks whose drop the kernel refused (left mapped, no longer counted): none for the shared
  // mappings of small pages the contract asks for.
  uint64_t failed_drops() const;

 private:
  friend class ResidentMapping;
  struct ChunkId {
    uint64_t mapping;
    uintptr_t start;
    bool operator==(const ChunkId&) const = default;
  };
  struct ChunkIdHash {
    size_t operator()(const ChunkId& c) const {
      return (c.mapping * 0x9E3779B97F4A7C15ull) ^ c.start;
    }
  };
  // A counted chunk (its start, page-aligned) or a range passed over (its first byte).
  struct Range {
    ChunkId id;
    uint64_t bytes;
  };
  // Ranges in an order of their use, found by id, their bytes summed.
  struct RangeList {
    using Iterator = std::list<Range>::iterator;
    Iterator Find(const ChunkId& id) {
      auto it = index.find(id);
      return it == index.end() ? order.end() : it->second;
    }
    void Insert(Iterator where, Range r) {
      index.emplace(r.id, order.insert(where, r));
      bytes += r.bytes;
    }
    void Erase(Iterator it) {
      bytes -= it->bytes;
      index.erase(it->id);
      order.erase(it);
    }
    void EraseMapping(uint64_t mapping) {
      for (auto it = order.begin(); it != order.end();) {
        const auto next = std::next(it);
        if (it->id.mapping == mapping) Erase(it);
        it = next;
      }
    }
    std::list<Range> order;
    std::unordered_map<ChunkId, Iterator, ChunkIdHash> index;
    uint64_t bytes = 0;
  };

  uint64_t Register();
  void Touched(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from, uintptr_t to);
  bool Admit(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from, uintptr_t to);
  void Forget(uint64_t mapping);
  // Under mu_: counts the chunks of [from, to) as touched, then drops the oldest over budget.
  void TouchLocked(uint64_t mapping, uintptr_t begin, uintptr_t end, uintptr_t from, uintptr_t to);
  // Calls fn(start, bytes) for each chunk of [from, to) clipped to [begin, end).
  template <typename Fn>
  static void ForEachChunk(uintptr_t begin, uintptr_t end, uintptr_t from, uintptr_t to, Fn fn);

  const uint64_t budget_;
  mutable std::mutex mu_;
  // All guarded by mu_.
  uint64_t next_mapping_ = 1;
  RangeList chunks_;  // counted chunks, most recently touched first; bytes: the resident bytes
  RangeList ghosts_;  // ranges passed over, oldest first
  uint64_t dropped_ = 0;
  uint64_t failed_drops_ = 0;
};

// One mapping of a client's memory whose touched pages MappedResidency bounds: the bytes
// [base, +length) of this process's address space, which must be one MAP_SHARED mapping (or part
// of one) for the object's whole life. Movable; an empty (default) one counts nothing.
class ResidentMapping {
 public:
  ResidentMapping() = default;
  // Counts touches of [base, +length), widened to whole pages, against `residency`'s budget
  // (null: an empty one).
  ResidentMapping(MappedResidency* residency, const void* base, size_t length);
  ~ResidentMapping();
  ResidentMapping(ResidentMapping&& other) noexcept;
  ResidentMapping& operator=(ResidentMapping&& other) noexcept;

  // A transfer touched [address, +length) (clipped to the mapping); may drop the pages of chunks
  // touched least recently, of this mapping or of others.
  void Touched(const void* address, size_t length);
  // For a copy of [address, +length) (clipped to the mapping) that could go through a file
  // instead: true when it should go through the mapping (every chunk counted as touched, or
  // passed over recently: see the file comment; the caller then reports it with Touched once
  // the copy is done); false when it should go through the file, and the range is remembered as
  // passed over. Always true for an empty ResidentMapping.
  bool Admit(const void* address, size_t length);
  // Whether touches count (not empty).
  bool counts() const { return residency_ != nullptr; }

 private:
  void Reset();

  MappedResidency* residency_ = nullptr;
  uint64_t id_ = 0;
  uintptr_t begin_ = 0;  // page-aligned
  uintptr_t end_ = 0;    // page-aligned
};

}  // namespace kvault::transport
