/* Paged KV through the C ABI on host memory (part of kvault_c_test): an engine's vLLM NHD cache
 * (f16, 2 layers) stored block by block and loaded into other engine blocks of another cache.
 * "raw" must round-trip byte for byte; "fp8" must give the objects and the KV that the host block
 * codec gives for the same tokens, and the same KV on a second load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_test.h"
#include "kvault/kvault.h"

enum {
  kLayers = 2,
  kHeads = 2,
  kDim = 64,
  kEngineBlockTokens = 16,
  kEngineBlocks = 8,
  kBlockTokens = 32, /* two engine blocks per kvault block */
  kSeqEngineBlocks = 4,
  kTokens = kSeqEngineBlocks * kEngineBlockTokens,
  kBlocks = kTokens / kBlockTokens
};
#define LAYER_ELEMENTS ((size_t)2 * kEngineBlocks * kEngineBlockTokens * kHeads * kDim)
#define CONTIGUOUS_ELEMENTS ((size_t)kLayers * 2 * kTokens * kHeads * kDim)

/* An engine's cache: one [2][blocks][block_size][heads][dim] tensor per layer. */
typedef struct {
  uint16_t* layers[kLayers];
} cache;

static void cache_init(cache* c, uint64_t seed) {
  for (int l = 0; l < kLayers; ++l) {
    c->layers[l] = calloc(LAYER_ELEMENTS, sizeof(uint16_t));
    REQUIRE(c->layers[l] != NULL);
    if (seed != 0) c_test_fill_f16(c->layers[l], LAYER_ELEMENTS, seed + (uint64_t)l);
  }
}

static void cache_free(cache* c) {
  for (int l = 0; l < kLayers; ++l) free(c->layers[l]);
}

/* The sequence's KV gathered into the contiguous [layers][2][tokens][heads][dim] form. Computes
 * NHD offsets itself, independently of the library. */
static void gather(const cache* c, const int32_t* block_ids, uint16_t* out) {
  size_t at = 0;
  for (int l = 0; l < kLayers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      for (int t = 0; t < kTokens; ++t) {
        const size_t block = (size_t)block_ids[t / kEngineBlockTokens];
        const size_t slot = (size_t)(t % kEngineBlockTokens);
        const size_t base =
            (((size_t)kv * kEngineBlocks + block) * kEngineBlockTokens + slot) * kHeads * kDim;
        memcpy(out + at, c->layers[l] + base, (size_t)kHeads * kDim * sizeof(uint16_t));
        at += (size_t)kHeads * kDim;
      }
    }
  }
}

/* Options for a store of `c` with `codec`; `tensors` (kLayers entries) receives the layers. */
static kvault_paged_options options_of(cache* c, const char* codec, const kvault_key* ns,
                                       void** tensors) {
  kvault_paged_options o;
  kvault_paged_options_init(&o);
  o.cache.memory = KVAULT_MEMORY_HOST;
  o.cache.layout = KVAULT_LAYOUT_VLLM_NHD;
  o.cache.dtype = KVAULT_DTYPE_F16;
  o.cache.num_layers = kLayers;
  o.cache.kv_heads = kHeads;
  o.cache.head_dim = kDim;
  o.cache.engine_block_tokens = kEngineBlockTokens;
  o.cache.engine_num_blocks = kEngineBlocks;
  for (int l = 0; l < kLayers; ++l) tensors[l] = c->layers[l];
  o.cache.tensors = tensors;
  o.cache.num_tensors = kLayers;
  o.block_tokens = kBlockTokens;
  o.codec = codec;
  o.ns_digest = *ns;
  o.staging_bytes = 1u << 20;
  return o;
}

static kvault_paged_store* make_store(kvault_client* client, cache* c, const char* codec,
                                      const kvault_key* ns) {
  void* tensors[kLayers];
  const kvault_paged_options o = options_of(c, codec, ns, tensors);
  kvault_paged_store* store = NULL;
  REQUIRE_STATUS(kvault_paged_store_create(client, &o, &store), KVAULT_OK);
  return store;
}

static kvault_paged_sequence sequence_of(const int32_t* block_ids, const kvault_key* keys) {
  kvault_paged_sequence s = {block_ids, kSeqEngineBlocks, kTokens, keys, kBlocks};
  return s;
}

/* Stores `c`'s blocks `ids` under `keys` and checks the handle. */
static void store_all(kvault_paged_store* store, const int32_t* ids, const kvault_key* keys,
                      size_t want_skipped) {
  const kvault_paged_sequence s = sequence_of(ids, keys);
  kvault_paged_transfer* put = NULL;
  REQUIRE_STATUS(kvault_store_paged(store, &s, 1, NULL, 0, &put), KVAULT_OK);
  CHECK(kvault_paged_transfer_wait_source_released(put, 10000));
  CHECK_STATUS(kvault_paged_transfer_wait(put, 10000), KVAULT_OK);
  CHECK(kvault_paged_transfer_poll(put));
  CHECK(kvault_paged_transfer_size(put) == kBlocks);
  CHECK(kvault_paged_transfer_leading_ok(put) == kBlocks);
  CHECK(kvault_paged_transfer_skipped(put) == want_skipped);
  CHECK(kvault_paged_transfer_gpu_tier_blocks(put) == 0); /* a store */
  for (size_t i = 0; i < kBlocks; ++i) {
    CHECK_STATUS(kvault_paged_transfer_key_status(put, i, NULL, 0), KVAULT_OK);
  }
  CHECK_STATUS(kvault_paged_transfer_wait_layer(put, 0, 0), KVAULT_INVALID_ARGUMENT);
  kvault_paged_transfer_free(put);
}

/* Looks `keys` up with a lease and loads them into blocks `ids` of `store`'s cache. */
static void load_all(kvault_client* client, kvault_paged_store* store, const int32_t* ids,
                     const kvault_key* keys) {
  uint32_t hits = 0;
  kvault_lease lease;
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBlocks, 0, 0, &hits, NULL, &lease), KVAULT_OK);
  CHECK(hits == kBlocks);
  const kvault_paged_sequence s = sequence_of(ids, keys);
  kvault_paged_transfer* get = NULL;
  REQUIRE_STATUS(kvault_load_paged(store, &lease, &s, hits, NULL, 1, 0, &get), KVAULT_OK);
  for (uint32_t l = 0; l < kLayers; ++l) {
    CHECK_STATUS(kvault_paged_transfer_wait_layer(get, l, 10000), KVAULT_OK);
    CHECK(kvault_paged_transfer_layer_event(get, l) == NULL); /* host path */
  }
  CHECK_STATUS(kvault_paged_transfer_wait_layer(get, kLayers, 0), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_paged_transfer_wait(get, 10000), KVAULT_OK);
  CHECK(kvault_paged_transfer_leading_ok(get) == kBlocks);
  CHECK(kvault_paged_transfer_skipped(get) == 0);
  CHECK(kvault_paged_transfer_gpu_tier_blocks(get) == 0); /* host path */
  CHECK(kvault_paged_transfer_wait_source_released(get, 0));
  char message[64];
  CHECK_STATUS(kvault_paged_transfer_key_status(get, kBlocks, message, sizeof(message)),
               KVAULT_OUT_OF_RANGE);
  kvault_paged_transfer_free(get);
  CHECK_STATUS(kvault_release_lease(client, &lease, 0), KVAULT_OK);
}

static void chain(const char* model, kvault_key* ns, kvault_key* keys) {
  uint32_t tokens[kTokens];
  c_test_fill_tokens(tokens, kTokens, 11);
  *ns = c_test_namespace(model, kLayers, kHeads, kDim, kBlockTokens);
  size_t n = 0;
  REQUIRE_STATUS(kvault_chain_block_keys(ns, tokens, kTokens, kBlockTokens, keys, kBlocks, &n),
                 KVAULT_OK);
  REQUIRE(n == kBlocks);
}

void c_test_paged(kvault_client* client) {
  const int32_t source_ids[kSeqEngineBlocks] = {5, 2, 7, 0};
  const int32_t target_ids[kSeqEngineBlocks] = {1, 3, 4, 6};
  cache source, target, again;
  cache_init(&source, 21);
  cache_init(&target, 0);
  cache_init(&again, 0);
  uint16_t* want = malloc(CONTIGUOUS_ELEMENTS * sizeof(uint16_t));
  uint16_t* got = malloc(CONTIGUOUS_ELEMENTS * sizeof(uint16_t));
  REQUIRE(want != NULL && got != NULL);

  /* raw: byte for byte into other engine blocks of another cache. */
  kvault_key ns, keys[kBlocks];
  chain("c-abi-paged-raw", &ns, keys);
  kvault_paged_store* store = make_store(client, &source, "raw", &ns);
  kvault_paged_store* loader = make_store(client, &target, "raw", &ns);
  store_all(store, source_ids, keys, 0);
  store_all(store, source_ids, keys, kBlocks); /* all found stored: skipped */
  load_all(client, loader, target_ids, keys);
  gather(&source, source_ids, want);
  gather(&target, target_ids, got);
  CHECK(memcmp(want, got, CONTIGUOUS_ELEMENTS * sizeof(uint16_t)) == 0);

  /* Input refused before anything starts. */
  const int32_t outside[kSeqEngineBlocks] = {5, 2, 7, kEngineBlocks};
  kvault_paged_sequence bad = sequence_of(outside, keys);
  kvault_paged_transfer* refused = NULL;
  CHECK_STATUS(kvault_store_paged(store, &bad, 1, NULL, 0, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(refused == NULL);
  CHECK(strstr(kvault_last_error(), "outside the cache") != NULL);
  bad = sequence_of(source_ids, keys);
  CHECK_STATUS(kvault_load_paged(store, NULL, &bad, kBlocks + 1, NULL, 0, 0, &refused),
               KVAULT_INVALID_ARGUMENT);
  /* An absurd block or key count is refused too, before anything is allocated for it. */
  CHECK_STATUS(kvault_load_paged(store, NULL, &bad, SIZE_MAX, NULL, 0, 0, &refused),
               KVAULT_INVALID_ARGUMENT);
  CHECK(refused == NULL);
  CHECK(strstr(kvault_last_error(), "blocks asked") != NULL);
  bad.num_keys = SIZE_MAX;
  CHECK_STATUS(kvault_store_paged(store, &bad, 1, NULL, 0, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "sequence->num_keys") != NULL);
  bad.num_keys = kBlocks;
  bad.num_block_ids = SIZE_MAX; /* never read: refused before the array is copied */
  CHECK_STATUS(kvault_store_paged(store, &bad, 1, NULL, 0, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "sequence->num_block_ids") != NULL);
  bad.num_block_ids = ((size_t)1 << 24) + 1;
  CHECK_STATUS(kvault_load_paged(store, NULL, &bad, kBlocks, NULL, 0, 0, &refused),
               KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "sequence->num_block_ids") != NULL);
  bad.num_block_ids = kSeqEngineBlocks;
  bad.num_keys = ((size_t)1 << 24) + 1;
  CHECK_STATUS(kvault_load_paged(store, NULL, &bad, kBlocks, NULL, 0, 0, &refused),
               KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "sequence->num_keys") != NULL);
  CHECK(refused == NULL);
  CHECK_STATUS(kvault_store_paged(store, NULL, 1, NULL, 0, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "sequence is null") != NULL);
  kvault_paged_options o;
  kvault_paged_options_init(&o);
  CHECK(o.gpu_ipc == 1 && o.pipeline_depth == 2 && o.block_tokens == 256);
  kvault_paged_store* none = NULL;
  CHECK_STATUS(kvault_paged_store_create(client, &o, &none), KVAULT_INVALID_ARGUMENT);
  CHECK(none == NULL);
  /* More tensors than a cache can have layers: refused before the array is read past its end. */
  void* tensors[kLayers];
  o = options_of(&source, "raw", &ns, tensors);
  o.cache.num_tensors = (size_t)1 << 20;
  CHECK_STATUS(kvault_paged_store_create(client, &o, &none), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "options->cache.num_tensors") != NULL);
  CHECK(none == NULL);
  o.cache.num_tensors = kLayers; /* positive control */
  o.gpu_ipc = 0;                 /* accepted; host memory never uses CUDA IPC */
  CHECK_STATUS(kvault_paged_store_create(client, &o, &none), KVAULT_OK);
  kvault_paged_store_free(none);
  kvault_paged_store_free(store);
  kvault_paged_store_free(loader);

  /* fp8: the same objects and KV as the host block codec, and the same KV on a second load. */
  chain("c-abi-paged-fp8", &ns, keys);
  store = make_store(client, &source, "fp8", &ns);
  loader = make_store(client, &target, "fp8", &ns);
  kvault_paged_store* second = make_store(client, &again, "fp8", &ns);
  store_all(store, source_ids, keys, 0);
  load_all(client, loader, target_ids, keys);
  load_all(client, second, target_ids, keys);
  gather(&target, target_ids, got);
  uint16_t* got_again = malloc(CONTIGUOUS_ELEMENTS * sizeof(uint16_t));
  REQUIRE(got_again != NULL);
  gather(&again, target_ids, got_again);
  CHECK(memcmp(got, got_again, CONTIGUOUS_ELEMENTS * sizeof(uint16_t)) == 0);
  CHECK(memcmp(got, want, CONTIGUOUS_ELEMENTS * sizeof(uint16_t)) != 0); /* fp8 is lossy */

  kvault_block_format f = c_test_block_format(kLayers, kHeads, kDim, kBlockTokens, "fp8", ns);
  kvault_block_codec* codec = NULL;
  REQUIRE_STATUS(kvault_block_codec_create(&f, &codec), KVAULT_OK);
  const size_t object = (size_t)kvault_block_codec_object_bytes(codec, 0);
  CHECK(object == kvault_paged_store_object_bytes(store, 0));
  kvault_region* region = NULL;
  REQUIRE_STATUS(kvault_allocate_memory(client, 2 * kBlocks * object, &region), KVAULT_OK);
  uint8_t* stored = kvault_region_data(region);
  uint8_t* local = stored + kBlocks * object;
  kvault_load_destination d[kBlocks];
  c_test_destinations(d, kBlocks, stored, object);
  kvault_transfer* get = NULL;
  REQUIRE_STATUS(kvault_load(client, NULL, keys, d, kBlocks, 0, &get), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(get, 10000), KVAULT_OK);
  CHECK(kvault_transfer_leading_ok(get) == kBlocks);
  kvault_transfer_free(get);
  uint16_t* decoded = calloc(CONTIGUOUS_ELEMENTS, sizeof(uint16_t));
  REQUIRE(decoded != NULL);
  for (size_t i = 0; i < kBlocks; ++i) {
    CHECK_STATUS(
        kvault_block_codec_encode(codec, want, kTokens, i, &keys[i], local + i * object, object),
        KVAULT_OK);
    CHECK_STATUS(kvault_block_codec_decode(codec, stored + i * object, object, i, &keys[i], decoded,
                                           kTokens),
                 KVAULT_OK);
  }
  CHECK(memcmp(stored, local, kBlocks * object) == 0);
  CHECK(memcmp(decoded, got, CONTIGUOUS_ELEMENTS * sizeof(uint16_t)) == 0);

  kvault_region_free(region);
  kvault_block_codec_free(codec);
  kvault_paged_store_free(second);
  kvault_paged_store_free(loader);
  kvault_paged_store_free(store);
  free(decoded);
  free(got_again);
  free(got);
  free(want);
  cache_free(&again);
  cache_free(&target);
  cache_free(&source);
}

void c_test_paged_after_close(const char* server) {
  kvault_config config;
  kvault_config_init(&config);
  config.server = server;
  kvault_client* client = NULL;
  REQUIRE_STATUS(kvault_connect(&config, &client), KVAULT_OK);
  const int32_t ids[kSeqEngineBlocks] = {3, 1, 6, 4};
  cache source;
  cache_init(&source, 33);
  kvault_key ns, keys[kBlocks];
  chain("c-abi-paged-after-close", &ns, keys);
  kvault_paged_store* store = make_store(client, &source, "raw", &ns);
  /* The store keeps the connection: closing the client first leaves it working. */
  kvault_close(client);
  store_all(store, ids, keys, 0);
  /* Another client sees the blocks; a chain never stored misses. */
  REQUIRE_STATUS(kvault_connect(&config, &client), KVAULT_OK);
  uint32_t hits = 0;
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBlocks, 0, 0, &hits, NULL, NULL), KVAULT_OK);
  CHECK(hits == kBlocks);
  kvault_key other_ns, other[kBlocks];
  chain("c-abi-paged-after-close-never-stored", &other_ns, other);
  CHECK_STATUS(kvault_lookup_prefix(client, other, kBlocks, 0, 0, &hits, NULL, NULL), KVAULT_OK);
  CHECK(hits == 0);
  kvault_paged_store_free(store);
  kvault_close(client);
  cache_free(&source);
}
