// SipHash-1-3, 8 inputs at a time (compiled with -mavx512f).
#define KVAULT_SIPHASH_LANES 8
#define KVAULT_SIPHASH_VARIANT_NAME SipHash13LanesAvx512
#include "siphash/siphash_lanes.inc"
