/* kvault.h is C99: this file is compiled with -std=c99 -Wall -Wextra -pedantic -Werror and
 * fails the build when the header stops being plain, warning-free C99. */
#include "kvault/kvault.h"

/* Every type of the header is complete or usable through a pointer. */
size_t kvault_header_c99_sizes(void) {
  return sizeof(kvault_key) + sizeof(kvault_config) + sizeof(kvault_namespace) +
         sizeof(kvault_block_format) + sizeof(kvault_lease) + sizeof(kvault_store_source) +
         sizeof(kvault_load_destination) + sizeof(kvault_paged_options) +
         sizeof(kvault_paged_sequence) + sizeof(kvault_vllm_extra_keys);
}
