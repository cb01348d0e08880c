// SipHash-1-3, 4 inputs at a time (compiled with -mavx2).
#define KVAULT_SIPHASH_LANES 4
#define KVAULT_SIPHASH_VARIANT_NAME SipHash13LanesAvx2
#include "siphash/siphash_lanes.inc"
