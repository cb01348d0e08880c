#pragma once
// IeeeFloatScope: the CPU codecs' arithmetic in the floating-point environment the reference is
// defined in (round to nearest even, subnormals kept), whatever the calling thread set. A host
// process may have turned on flush-to-zero and denormals-are-zero in MXCSR (a library built with
// -ffast-math, torch.set_flush_denormal(True)); bf16 inputs below 2^-126 would then encode to
// other bytes than the reference's and the CUDA kernels' (which are built with -ftz=false).
// Internal to kernels/src.
//
// Thread-safety: affects the calling thread only; restores its environment on destruction.

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace kvault::kernels {

class IeeeFloatScope {
 public:
#if defined(__SSE__)
  // All exceptions masked, round to nearest even, no flush-to-zero, no denormals-are-zero.
  static constexpr unsigned kDefaultMxcsr = 0x1F80;
  IeeeFloatScope() : saved_(_mm_getcsr()) {
    if (saved_ != kDefaultMxcsr) _mm_setcsr(kDefaultMxcsr);
  }
  ~IeeeFloatScope() {
    if (saved_ != kDefaultMxcsr) _mm_setcsr(saved_);
  }

 private:
  unsigned saved_;
#else
  IeeeFloatScope() {}
  ~IeeeFloatScope() {}  // user-provided: the scope objects are not "unused"
#endif

 public:
  IeeeFloatScope(const IeeeFloatScope&) = delete;
  IeeeFloatScope& operator=(const IeeeFloatScope&) = delete;
};

}  // namespace kvault::kernels
