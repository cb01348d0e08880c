#pragma once
// Clock: the time source for leases. Production uses SteadyClock; tests drive a manual clock so
// lease expiry is tested without sleeping.

#include <chrono>
#include <cstdint>

namespace kvault::storage {

// Thread-safe implementations only: the store reads the clock from many threads.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary epoch.
  virtual int64_t NowNanos() const = 0;
};

class SteadyClock final : public Clock {
 public:
  int64_t NowNanos() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace kvault::storage
