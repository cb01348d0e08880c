// XXH3 compiled for AVX2 (-mavx2).
#define KVAULT_XXH3_VARIANT_NAME Xxh3Avx2
#include "checksum/xxh3_variant_body.inc"
