// XXH3 compiled for baseline x86-64 (SSE2).
#define KVAULT_XXH3_VARIANT_NAME Xxh3Baseline
#include "checksum/xxh3_variant_body.inc"
