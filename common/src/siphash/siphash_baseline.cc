// SipHash-1-3, 2 inputs at a time (SSE2, every x86-64).
#define KVAULT_SIPHASH_LANES 2
#define KVAULT_SIPHASH_VARIANT_NAME SipHash13LanesBaseline
#include "siphash/siphash_lanes.inc"
