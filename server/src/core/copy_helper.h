#pragma once
// CopyHelper: a second thread for the copy of a stored object out of client memory that is
// mapped into the daemon (shared memory). One core copies at about 6 GB/s from memory that is not
// in cache; two copy about 9 (measured on the 2-vCPU CI host). So while the io thread copies and
// hashes the first half of a chunk, the helper copies the second, which the io thread then
// hashes as it lands (ArrivingObjects::CopyMapped; docs/daemon.md, "The data plane").
//
// The helper copies in pieces of kPieceBytes and publishes each one as it lands (AwaitLanded), so
// the io thread can hash the helper's half while the rest of it is still being copied instead of
// waiting for the last byte and then hashing it all.
//
// It also reads a file instead (TryStartRead), piece by piece with pread, publishing each piece
// the same way: ArrivingObjects' read of the tail of a chunk from a client's segment file, which
// the io thread hashes as it lands. Or it runs a task (TryStartTask): ProcessDataMover's read or
// write of the second half of a client's memory range through its memory file, which the kernel
// copies.
//
// One copy at a time: TryStart gives the helper a copy only when it is idle, and the thread that
// got it must call Wait before anything else touches the helper. A busy helper is not waited for:
// the caller copies everything itself, as it would with no helper.
//
// Thread-safety: TryStart, TryStartRead, TryStartTask and reads_started may be called from any
// thread; AwaitLanded and Wait only by the thread whose TryStart (or TryStartRead, TryStartTask)
// returned true. The thread starts on the first of them and is joined by the destructor.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <thread>

namespace kvault::server {

class CopyHelper {
 public:
  CopyHelper() = default;
  ~CopyHelper();
  CopyHelper(const CopyHelper&) = delete;
  CopyHelper& operator=(const CopyHelper&) = delete;

  // Starts copying `from` into `to` (equal sizes, no overlap) on the helper thread and returns
  // true, or returns false at once when the helper is busy with another caller's copy or its
  // thread cannot be started. Both ranges must stay valid until Wait returns.
  bool TryStart(std::span<const uint8_t> from, std::span<uint8_t> to);
  // Starts `task` on the helper thread and returns true, or returns false at once (and `task` is
  // not run) when the helper is busy or cannot be started. For a copy the kernel does (pread of
  // another process's memory): nothing lands piece by piece, so only Wait may follow, never
  // AwaitLanded. What `task` touches must stay valid until Wait returns.
  bool TryStartTask(std::function<void()> task);
  // Starts reading `to.size()` bytes of file `fd` at `offset` into `to` on the helper thread, in
  // pieces of kPieceBytes, each published as it lands (AwaitLanded), and returns true; or returns
  // false at once when the helper is busy or cannot be started. `fd` and `to` must stay valid
  // until Wait returns, which tells how the read ended.
  bool TryStartRead(int fd, uint64_t offset, std::span<uint8_t> to);
  // Returns how many leading bytes of `to` have landed, once that is more than `landed` (which
  // must be below the copy's size): at least the next piece, all of it once the copy is done.
  // Those bytes are visible to this thread. A read that fails ends short: then it returns
  // `landed` itself once nothing more will land. It spins while the helper makes progress (the
  // caller has nothing else to do, and a sleep would cost a wake-up per piece), and sleeps until
  // the whole copy is done when the helper has landed nothing yet or nothing more for
  // kSpinWithoutProgress (it is not running: spinning could keep it from a core).
  size_t AwaitLanded(size_t landed);
  // Returns once the job this thread started is complete (its bytes are visible to this thread),
  // and frees the helper for the next caller. Returns 0, or, for a read (TryStartRead), what
  // PositionalCopy returned for the piece that failed (an errno; -1 for a file that ended first;
  // nothing past that piece was read).
  int Wait();
  // How many reads (TryStartRead) the helper took so far (for tests).
  uint64_t reads_started() const { return reads_started_.load(std::memory_order_relaxed); }

  static constexpr size_t kPieceBytes = 64 << 10;
  static constexpr std::chrono::microseconds kSpinWithoutProgress{50};

 private:
  // What the helper is given: a copy (from into to), a read (read_fd into to) or a task.
  struct Job {
    std::span<const uint8_t> from;
    std::span<uint8_t> to;
    bool read = false;
    int read_fd = -1;
    uint64_t read_offset = 0;
    std::function<void()> task;
  };
  bool TryHandOver(Job job);
  // Moves job.to's bytes piece by piece, publishing each in landed_; returns the read's error
  // (PositionalCopy's), or 0.
  int MovePieces(const Job& job);
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;     // a caller owns the helper (TryStart returned true, Wait not yet done)
  bool pending_ = false;  // a copy is waiting for the thread or running
  bool stop_ = false;
  Job job_;                        // the pending one
  int error_ = 0;                  // the running job's (written before pending_ is cleared)
  std::atomic<uint64_t> reads_started_{0};
  std::atomic<size_t> landed_{0};  // leading bytes of job_.to moved (release by the helper)
  std::thread thread_;
};

}  // namespace kvault::server
