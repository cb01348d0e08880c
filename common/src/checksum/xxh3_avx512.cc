// XXH3 compiled for AVX-512 (-mavx512f -mavx512bw).
#define KVAULT_XXH3_VARIANT_NAME Xxh3Avx512
#include "checksum/xxh3_variant_body.inc"
