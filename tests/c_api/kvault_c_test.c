/* The C ABI (kvault/kvault.h) end to end, from C: a program that includes only that header and
 * libc, starts a real kvaultd (argv[1]) on loopback ports in a scratch directory, and checks
 * connect, errors, memory, key builders, the host block codec, store / lookup / load / delete,
 * leases and transfer handles, then paged KV (kvault_c_paged.c).
 *
 * Usage: kvault_c_test PATH/TO/kvaultd */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_test.h"
#include "kvault/kvault.h"

/* A non-NULL pointer that a failing call must overwrite with NULL. */
static int g_sentinel;

/* ---- tests ----------------------------------------------------------------------------- */

static void test_errors_and_config(void) {
  CHECK(strlen(kvault_version()) >= 5);
  CHECK(strcmp(kvault_status_name(KVAULT_OK), "ok") == 0);
  CHECK(strcmp(kvault_status_name(KVAULT_UNAVAILABLE), "unavailable") == 0);
  CHECK(strcmp(kvault_status_name((kvault_status)42), "unknown") == 0);

  kvault_client* client = (kvault_client*)&g_sentinel; /* must be reset to NULL on failure */
  CHECK_STATUS(kvault_connect(NULL, &client), KVAULT_INVALID_ARGUMENT);
  CHECK(client == NULL);
  CHECK(strstr(kvault_last_error(), "config is null") != NULL);
  kvault_config config;
  kvault_config_init(&config);
  CHECK(config.struct_size == sizeof(kvault_config));
  CHECK(config.connect_timeout_ms == 2000 && config.request_timeout_ms == 5000);
  CHECK(config.data_plane == 1 && config.tls == 0);
  CHECK(config.registered_staging_bytes == (uint64_t)64 << 20);
  CHECK_STATUS(kvault_connect(&config, NULL), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT); /* no server */
  CHECK(strstr(kvault_last_error(), "server") != NULL);
  config.server = "127.0.0.1:not-a-port";
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  config.server = "127.0.0.1:1";
  config.request_timeout_ms = 0;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  kvault_config_init(&config);
  config.server = "127.0.0.1:1";
  config.struct_size = sizeof(kvault_config) - 8;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "struct_size") != NULL);
  /* A success clears the last error. */
  kvault_key digest;
  CHECK_STATUS(kvault_vllm_none_hash("0", &digest), KVAULT_OK);
  CHECK(strcmp(kvault_last_error(), "") == 0);
  /* Freeing NULL is a no-op everywhere. */
  kvault_close(NULL);
  kvault_region_free(NULL);
  kvault_transfer_free(NULL);
  kvault_block_codec_free(NULL);
  kvault_paged_store_free(NULL);
  kvault_paged_transfer_free(NULL);
}

static void test_dead_daemon(void) {
  char server[64];
  snprintf(server, sizeof(server), "127.0.0.1:%d", c_test_dead_port());
  kvault_config config;
  kvault_config_init(&config);
  config.server = server;
  config.data_plane = 0;
  config.connect_timeout_ms = 1000;
  kvault_client* client = NULL;
  const int64_t t0 = c_test_monotonic_ms();
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_UNAVAILABLE);
  CHECK(c_test_monotonic_ms() - t0 < 3000);
  CHECK(client == NULL);
  CHECK(strlen(kvault_last_error()) > 0);

  /* Timeouts up to a year pass the config checks (the port is still refused at once); longer
   * ones are INVALID_ARGUMENT naming the field, not a deadline that overflows. */
  const int64_t year_ms = (int64_t)365 * 24 * 3600 * 1000;
  config.connect_timeout_ms = year_ms;
  config.request_timeout_ms = year_ms;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_UNAVAILABLE);
  config.connect_timeout_ms = year_ms + 1;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "connect_timeout") != NULL);
  CHECK(strstr(kvault_last_error(), "over a year") != NULL);
  config.connect_timeout_ms = 1000;
  config.request_timeout_ms = (int64_t)1 << 60;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "request_timeout") != NULL);
  config.request_timeout_ms = 5000;
  config.stall_timeout_ms = INT64_MAX;
  CHECK_STATUS(kvault_connect(&config, &client), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "stall_timeout") != NULL);
  CHECK(client == NULL);
}

/* Against the worked examples of docs/keys.md. */
static void test_keys(void) {
  kvault_namespace ns;
  kvault_namespace_init(&ns);
  const kvault_namespace_extra_key extra = {"k", "v"};
  ns.model_id = "m";
  ns.num_layers = ns.kv_heads = ns.head_dim = ns.block_tokens = 1;
  ns.dtype = "f16";
  ns.extra_keys = &extra;
  ns.num_extra_keys = 1;
  kvault_key digest;
  CHECK_STATUS(kvault_namespace_digest(&ns, &digest), KVAULT_OK);
  CHECK(c_test_key_is(&digest, "5f02438dcdd3d42f0411a8744cf92e6098fad9c362d3f6af192b26a675f23593"));
  ns.model_id = NULL;
  CHECK_STATUS(kvault_namespace_digest(&ns, &digest), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "model_id") != NULL);
  CHECK_STATUS(kvault_namespace_digest(NULL, &digest), KVAULT_INVALID_ARGUMENT);

  const kvault_key llama =
      c_test_key_from_hex("d3c28481e5df2cfe08972a2f6056a1e35c676c0abe80d54283c4ed857f85bb93");
  uint32_t tokens[40];
  for (uint32_t i = 0; i < 40; ++i) tokens[i] = i + 1;
  kvault_key keys[3];
  size_t n = 0;
  CHECK_STATUS(kvault_chain_block_keys(&llama, tokens, 40, 16, keys, 3, &n), KVAULT_OK);
  CHECK(n == 2);
  CHECK(
      c_test_key_is(&keys[0], "6c62463ce6e7d987e8d2bc5d0c7f52fa1b3b472fcfaff5f81b8262da238e8076"));
  CHECK(
      c_test_key_is(&keys[1], "d3f9283b38513770b2d55d4483dbe9efae33d947f3ad8cfae176c75ac42df94c"));
  CHECK_STATUS(kvault_chain_block_keys(&llama, tokens, 40, 16, keys, 1, &n),
               KVAULT_INVALID_ARGUMENT);
  CHECK(n == 2);
  CHECK_STATUS(kvault_chain_block_keys(&llama, tokens, 40, 0, keys, 3, &n),
               KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_chain_block_keys(&llama, NULL, 40, 16, keys, 3, &n), KVAULT_INVALID_ARGUMENT);
  kvault_key next;
  CHECK_STATUS(kvault_next_block_key(&keys[0], tokens + 16, 16, &next), KVAULT_OK);
  CHECK(memcmp(&next, &keys[1], sizeof(next)) == 0);
  /* The kvault chain is the SGLang chain with prior = ns_digest. */
  kvault_key pages[3];
  CHECK_STATUS(kvault_sglang_page_hashes(tokens, 40, 16, &llama, pages, 3, &n), KVAULT_OK);
  CHECK(n == 2 && memcmp(pages, keys, 2 * sizeof(kvault_key)) == 0);
  CHECK_STATUS(kvault_sglang_page_hashes(tokens, 7, 3, NULL, pages, 3, &n), KVAULT_OK);
  CHECK(n == 2);
  CHECK(
      c_test_key_is(&pages[0], "4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d"));
  CHECK(
      c_test_key_is(&pages[1], "b33a1d453499d2f2cc40ae1c3579a476f2576432f8dcb7d4c235aa946a68d4bf"));

  kvault_key none_default, none_0;
  CHECK_STATUS(kvault_vllm_none_hash("vllm-none-hash", &none_default), KVAULT_OK);
  CHECK(c_test_key_is(&none_default,
                      "9bd96a485ad84efdafb72ee48a1d7a69bcead0f8f0433173941b276b9581eef0"));
  CHECK_STATUS(kvault_vllm_none_hash("0", &none_0), KVAULT_OK);
  CHECK(c_test_key_is(&none_0, "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e"));
  kvault_key hashes[3];
  CHECK_STATUS(kvault_vllm_block_hashes(&none_0, tokens, 4, 4, NULL, hashes, 3, &n), KVAULT_OK);
  CHECK(n == 1);
  CHECK(c_test_key_is(&hashes[0],
                      "c9d58ba695280d69b243e1e0df813136ca9196b286fb1a021e0b2e028ef071cb"));
  const char lora[] = "sql-lora";
  const char salt[] = "tenant-salt";
  kvault_vllm_value lora_value = {KVAULT_VLLM_TEXT, 0, lora, sizeof(lora) - 1, NULL, 0};
  kvault_vllm_value salt_value = {KVAULT_VLLM_TEXT, 0, salt, sizeof(salt) - 1, NULL, 0};
  kvault_vllm_extra_keys one = {1, &lora_value, 1};
  CHECK_STATUS(kvault_vllm_block_hashes(&none_0, tokens, 4, 4, &one, hashes, 3, &n), KVAULT_OK);
  CHECK(c_test_key_is(&hashes[0],
                      "8f9afed63606909cc2ce3ca7179bda617be725f58352aac29d39fcc163208ef4"));
  uint32_t request[40];
  for (uint32_t i = 0; i < 40; ++i) request[i] = 1000 + i;
  const kvault_vllm_value block0[2] = {lora_value, salt_value};
  const kvault_vllm_extra_keys extras[2] = {{1, block0, 2}, {1, &lora_value, 1}};
  CHECK_STATUS(kvault_vllm_block_hashes(&none_default, request, 40, 16, extras, hashes, 3, &n),
               KVAULT_OK);
  CHECK(n == 2);
  CHECK(c_test_key_is(&hashes[0],
                      "9309c647bea5877992b15db12521ea1a563f3e7b3990e0fd77d0d02d8b2c3926"));
  CHECK(c_test_key_is(&hashes[1],
                      "d15def09dc8ab4ef95e76550d34ddd2907b3ac61f19f85a10ec7e0cc891ad237"));
  kvault_vllm_value bad = {(kvault_vllm_value_kind)9, 0, NULL, 0, NULL, 0};
  const kvault_vllm_extra_keys bad_extras[2] = {{1, &bad, 1}, {0, NULL, 0}};
  CHECK_STATUS(kvault_vllm_block_hashes(&none_default, request, 40, 16, bad_extras, hashes, 3, &n),
               KVAULT_INVALID_ARGUMENT);
}

enum { kLayers = 2, kHeads = 2, kDim = 64, kBlockTokens = 16, kBlocks = 3 };
enum { kTokens = kBlocks * kBlockTokens + 5 }; /* a partial tail block gets no key */
#define KV_ELEMENTS(tokens) ((size_t)kLayers * 2 * (tokens)*kHeads * kDim)

/* A block index whose tokens overflow uint64 (2^63 * 16 wraps to 0: unchecked, it aliased block
 * 0) or lie past kv_tokens is INVALID_ARGUMENT for encode and decode; the last block is fine. */
static void test_block_codec_indexes(void) {
  const kvault_key ns = c_test_namespace("c-abi-indexes", kLayers, kHeads, kDim, kBlockTokens);
  const kvault_block_format format =
      c_test_block_format(kLayers, kHeads, kDim, kBlockTokens, "raw", ns);
  kvault_block_codec* codec = NULL;
  REQUIRE_STATUS(kvault_block_codec_create(&format, &codec), KVAULT_OK);
  const size_t object = (size_t)kvault_block_codec_object_bytes(codec, 1);
  const uint32_t kv_tokens = 2 * kBlockTokens;
  uint16_t* kv = malloc(KV_ELEMENTS(kv_tokens) * 2);
  uint16_t* decoded = calloc(KV_ELEMENTS(kv_tokens), 2);
  uint8_t* bytes = malloc(object);
  REQUIRE(kv != NULL && decoded != NULL && bytes != NULL);
  c_test_fill_f16(kv, KV_ELEMENTS(kv_tokens), 3);
  kvault_key key;
  memset(&key, 7, sizeof(key));

  const uint64_t bad[] = {(uint64_t)1 << 63, (uint64_t)1 << 60, UINT64_MAX, 2};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    CHECK(kvault_block_codec_object_bytes(codec, bad[i]) == 0 || bad[i] == 2);
    CHECK_STATUS(kvault_block_codec_encode(codec, kv, kv_tokens, bad[i], &key, bytes, object),
                 KVAULT_INVALID_ARGUMENT);
  }
  REQUIRE_STATUS(kvault_block_codec_encode(codec, kv, kv_tokens, 1, &key, bytes, object),
                 KVAULT_OK);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    CHECK_STATUS(kvault_block_codec_decode(codec, bytes, object, bad[i], &key, decoded, kv_tokens),
                 KVAULT_INVALID_ARGUMENT);
  }
  CHECK(strstr(kvault_last_error(), "past") != NULL);
  CHECK_STATUS(kvault_block_codec_decode(codec, bytes, object, 1, &key, decoded, kv_tokens),
               KVAULT_OK);
  /* Layer 0's K: block 1 decoded, block 0 untouched. */
  const size_t per_block = (size_t)kBlockTokens * kHeads * kDim;
  CHECK(memcmp(decoded + per_block, kv + per_block, per_block * 2) == 0);
  int block0_zero = 1;
  for (size_t i = 0; i < per_block; ++i) block0_zero &= decoded[i] == 0;
  CHECK(block0_zero);
  free(bytes);
  free(decoded);
  free(kv);
  kvault_block_codec_free(codec);
}

/* A shape the block format cannot hold is INVALID_ARGUMENT whichever field is bad (the format's
 * own checks report some as out of range); the largest shape it holds is fine. */
static void test_block_codec_shapes(void) {
  kvault_key ns;
  memset(&ns, 0, sizeof(ns));
  struct {
    uint32_t layers, heads, dim, block_tokens;
    const char* field;
  } const bad[] = {{0, 2, 64, 16, "num_layers"},  {1025, 2, 64, 16, "num_layers"},
                   {2, 0, 64, 16, "kv_heads"},    {2, 1025, 64, 16, "kv_heads"},
                   {2, 2, 0, 16, "head_dim"},     {2, 2, 12, 16, "head_dim"},
                   {2, 2, 64, 0, "block_tokens"}, {2, 2, 64, 65537, "block_tokens"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
    const kvault_block_format f = c_test_block_format(bad[i].layers, bad[i].heads, bad[i].dim,
                                                      bad[i].block_tokens, "raw", ns);
    kvault_block_codec* codec = (kvault_block_codec*)&g_sentinel;
    CHECK_STATUS(kvault_block_codec_create(&f, &codec), KVAULT_INVALID_ARGUMENT);
    CHECK(codec == NULL);
    CHECK(strstr(kvault_last_error(), bad[i].field) != NULL);
  }
  const kvault_block_format edge = c_test_block_format(1024, 1024, 8, 1, "raw", ns);
  kvault_block_codec* codec = NULL;
  CHECK_STATUS(kvault_block_codec_create(&edge, &codec), KVAULT_OK);
  kvault_block_codec_free(codec);
}

/* Key counts. Lookup and delete are one request each: more keys than the daemon's
 * max_keys_per_batch (4096 by default) are INVALID_ARGUMENT, as the C++ client documents; 4096
 * pass. A count no caller's array can have (over 2^20 for lookup and delete, 2^24 for store and
 * load) is INVALID_ARGUMENT before anything is allocated for it, not out of memory or INTERNAL. */
static void test_key_counts(kvault_client* client) {
  enum { kBatch = 4096 };
  kvault_key* keys = calloc(kBatch + 1, sizeof(kvault_key));
  kvault_status* statuses = calloc(kBatch + 1, sizeof(kvault_status));
  REQUIRE(keys != NULL && statuses != NULL);
  for (size_t i = 0; i <= kBatch; ++i) memcpy(keys[i].bytes, &i, sizeof(i));
  uint32_t hits = 99;
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBatch, 0, 0, &hits, NULL, NULL), KVAULT_OK);
  CHECK(hits == 0);
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBatch + 1, 0, 0, &hits, NULL, NULL),
               KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "max_keys_per_batch") != NULL);
  CHECK_STATUS(kvault_delete(client, keys, kBatch, 0, statuses), KVAULT_OK);
  CHECK_STATUS(statuses[kBatch - 1], KVAULT_NOT_FOUND);
  CHECK_STATUS(kvault_delete(client, keys, kBatch + 1, 0, statuses), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "max_keys_per_batch") != NULL);

  const size_t absurd[] = {SIZE_MAX, SIZE_MAX / sizeof(kvault_key) + 1, (size_t)1 << 44,
                           ((size_t)1 << 20) + 1};
  for (size_t i = 0; i < sizeof(absurd) / sizeof(absurd[0]); ++i) {
    CHECK_STATUS(kvault_lookup_prefix(client, keys, absurd[i], 0, 0, &hits, NULL, NULL),
                 KVAULT_INVALID_ARGUMENT);
    CHECK(strstr(kvault_last_error(), "num_keys") != NULL);
    CHECK(hits == 0);
    CHECK_STATUS(kvault_delete(client, keys, absurd[i], 0, NULL), KVAULT_INVALID_ARGUMENT);
    CHECK(strstr(kvault_last_error(), "num_keys") != NULL);
  }

  kvault_region* region = NULL;
  REQUIRE_STATUS(kvault_allocate_memory(client, 4096, &region), KVAULT_OK);
  const kvault_store_source source = {kvault_region_data(region), 64};
  const kvault_load_destination destination = {kvault_region_data(region), 4096, 0, 0};
  const size_t too_many[] = {SIZE_MAX, (size_t)1 << 40, ((size_t)1 << 24) + 1};
  for (size_t i = 0; i < sizeof(too_many) / sizeof(too_many[0]); ++i) {
    kvault_transfer* refused = (kvault_transfer*)&g_sentinel;
    CHECK_STATUS(kvault_store(client, keys, &source, too_many[i], 0, &refused),
                 KVAULT_INVALID_ARGUMENT);
    CHECK(refused == NULL);
    CHECK(strstr(kvault_last_error(), "num_keys") != NULL);
    refused = (kvault_transfer*)&g_sentinel;
    CHECK_STATUS(kvault_load(client, NULL, keys, &destination, too_many[i], 0, &refused),
                 KVAULT_INVALID_ARGUMENT);
    CHECK(refused == NULL);
    CHECK(strstr(kvault_last_error(), "num_keys") != NULL);
  }
  /* Positive control: one key of the same arrays loads (a miss). */
  kvault_transfer* get = NULL;
  REQUIRE_STATUS(kvault_load(client, NULL, keys, &destination, 1, 0, &get), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(get, 10000), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_key_status(get, 0, NULL, 0), KVAULT_NOT_FOUND);
  CHECK(kvault_transfer_wait_settled(get, 10000));
  kvault_transfer_free(get);
  kvault_region_free(region);
  free(statuses);
  free(keys);
}

static void test_store_lookup_load(kvault_client* client) {
  uint32_t tokens[kTokens];
  c_test_fill_tokens(tokens, kTokens, 1);
  const kvault_key ns = c_test_namespace("c-abi-test", kLayers, kHeads, kDim, kBlockTokens);
  kvault_key keys[kBlocks + 1];
  size_t num_keys = 0;
  REQUIRE_STATUS(
      kvault_chain_block_keys(&ns, tokens, kTokens, kBlockTokens, keys, kBlocks + 1, &num_keys),
      KVAULT_OK);
  REQUIRE(num_keys == kBlocks);

  /* Sealed objects of host KV, raw, so that a decode gives the KV back byte for byte. */
  kvault_block_format format = c_test_block_format(kLayers, kHeads, kDim, kBlockTokens, "raw", ns);
  kvault_block_codec* codec = NULL;
  REQUIRE_STATUS(kvault_block_codec_create(&format, &codec), KVAULT_OK);
  const size_t object = (size_t)kvault_block_codec_object_bytes(codec, 0);
  REQUIRE(object > KV_ELEMENTS(kBlockTokens) * 2);
  format.codec = "int3";
  kvault_block_codec* bad_codec = NULL;
  CHECK_STATUS(kvault_block_codec_create(&format, &bad_codec), KVAULT_INVALID_ARGUMENT);
  CHECK(bad_codec == NULL);

  const uint32_t kv_tokens = kBlocks * kBlockTokens;
  uint16_t* kv = malloc(KV_ELEMENTS(kv_tokens) * 2);
  uint16_t* decoded = calloc(KV_ELEMENTS(kv_tokens), 2);
  REQUIRE(kv != NULL && decoded != NULL);
  c_test_fill_f16(kv, KV_ELEMENTS(kv_tokens), 2);

  kvault_region* staging = NULL;
  REQUIRE_STATUS(kvault_allocate_memory(client, kBlocks * object, &staging), KVAULT_OK);
  REQUIRE(kvault_region_size(staging) == kBlocks * object);
  uint8_t* objects = kvault_region_data(staging);
  kvault_store_source sources[kBlocks];
  for (size_t i = 0; i < kBlocks; ++i) {
    REQUIRE_STATUS(
        kvault_block_codec_encode(codec, kv, kv_tokens, i, &keys[i], objects + i * object, object),
        KVAULT_OK);
    sources[i].data = objects + i * object;
    sources[i].size = object;
  }
  CHECK_STATUS(kvault_block_codec_encode(codec, kv, kv_tokens, 0, &keys[0], objects, object - 1),
               KVAULT_INVALID_ARGUMENT);

  /* Store, and the transfer handle's view of it. */
  kvault_transfer* put = NULL;
  REQUIRE_STATUS(kvault_store(client, keys, sources, kBlocks, 0, &put), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(put, 10000), KVAULT_OK);
  CHECK(kvault_transfer_poll(put));
  /* Settled follows done once the reply is processed, not atomically with it. */
  CHECK(kvault_transfer_wait_settled(put, 10000));
  CHECK(kvault_transfer_settled(put));
  CHECK_STATUS(kvault_transfer_wait(put, 0), KVAULT_OK);
  CHECK(kvault_transfer_size(put) == kBlocks);
  CHECK(kvault_transfer_leading_ok(put) == kBlocks && kvault_transfer_ok_count(put) == kBlocks);
  char message[64] = "x";
  for (size_t i = 0; i < kBlocks; ++i) {
    CHECK_STATUS(kvault_transfer_key_status(put, i, message, sizeof(message)), KVAULT_OK);
    CHECK(message[0] == '\0');
  }
  CHECK_STATUS(kvault_transfer_key_status(put, kBlocks, message, sizeof(message)),
               KVAULT_OUT_OF_RANGE);
  CHECK(strstr(message, "out of range") != NULL);
  CHECK(kvault_transfer_object_size(put, 0) == 0); /* a store has none */
  kvault_transfer_cancel(put);                     /* done: nothing changes */
  CHECK(!kvault_transfer_cancelled(put));
  CHECK_STATUS(kvault_transfer_wait(put, 0), KVAULT_OK);
  kvault_transfer_free(put);

  /* The same chain through kvault_store_chain, each block naming its parent (the first none):
   * already stored, so every key is OK again. */
  kvault_key parents[kBlocks];
  memset(parents, 0, sizeof(parents));
  for (size_t i = 1; i < kBlocks; ++i) parents[i] = keys[i - 1];
  kvault_transfer* chained = NULL;
  REQUIRE_STATUS(kvault_store_chain(client, keys, parents, sources, kBlocks, 0, &chained),
                 KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(chained, 10000), KVAULT_OK);
  CHECK(kvault_transfer_leading_ok(chained) == kBlocks);
  kvault_transfer_free(chained);
  chained = NULL;
  REQUIRE_STATUS(kvault_store_chain(client, keys, NULL, sources, kBlocks, 0, &chained), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(chained, 10000), KVAULT_OK);
  kvault_transfer_free(chained);
  chained = (kvault_transfer*)&g_sentinel;
  CHECK_STATUS(kvault_store_chain(NULL, keys, parents, sources, kBlocks, 0, &chained),
               KVAULT_INVALID_ARGUMENT);
  CHECK(chained == NULL);
  CHECK(strstr(kvault_last_error(), "kvault_store_chain: client is null") != NULL);

  /* Lookup: the stored chain hits (positive control), another namespace's chain misses. */
  uint32_t hits = 99;
  uint8_t tiers[kBlocks];
  kvault_lease lease;
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBlocks, 0, 0, &hits, tiers, &lease), KVAULT_OK);
  CHECK(hits == kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) CHECK(tiers[i] != KVAULT_TIER_NONE);
  CHECK(lease.id != 0 && lease.session != 0 && lease.expiry_ms > c_test_monotonic_ms());
  const kvault_key other_ns = c_test_namespace("c-abi-other", kLayers, kHeads, kDim, kBlockTokens);
  kvault_key other[kBlocks];
  REQUIRE_STATUS(
      kvault_chain_block_keys(&other_ns, tokens, kTokens, kBlockTokens, other, kBlocks, &num_keys),
      KVAULT_OK);
  CHECK_STATUS(kvault_lookup_prefix(client, other, kBlocks, 0, 0, &hits, tiers, NULL), KVAULT_OK);
  CHECK(hits == 0);
  for (size_t i = 0; i < kBlocks; ++i) CHECK(tiers[i] == KVAULT_TIER_NONE);
  CHECK_STATUS(kvault_lookup_prefix(client, NULL, kBlocks, 0, 0, &hits, NULL, NULL),
               KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "keys is null") != NULL);
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBlocks, 0, -1, &hits, NULL, NULL),
               KVAULT_INVALID_ARGUMENT);

  /* Load into caller memory registered with the client, byte for byte, and decode. */
  uint8_t* landing = calloc(kBlocks + 1, object);
  REQUIRE(landing != NULL);
  kvault_region* registered = NULL;
  REQUIRE_STATUS(kvault_register_memory(client, landing, (kBlocks + 1) * object, &registered),
                 KVAULT_OK);
  CHECK(kvault_region_data(registered) == landing);
  kvault_load_destination destinations[kBlocks];
  c_test_destinations(destinations, kBlocks, landing, object);
  kvault_transfer* get = NULL;
  REQUIRE_STATUS(kvault_load(client, &lease, keys, destinations, kBlocks, 0, &get), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(get, -1), KVAULT_OK);
  CHECK(kvault_transfer_leading_ok(get) == kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    CHECK_STATUS(kvault_transfer_key_status(get, i, NULL, 0), KVAULT_OK);
    CHECK(kvault_transfer_object_size(get, i) == object);
  }
  CHECK(memcmp(landing, objects, kBlocks * object) == 0);
  kvault_transfer_free(get);
  for (size_t i = 0; i < kBlocks; ++i) {
    CHECK_STATUS(kvault_block_codec_decode(codec, landing + i * object, object, i, &keys[i],
                                           decoded, kv_tokens),
                 KVAULT_OK);
  }
  CHECK(memcmp(decoded, kv, KV_ELEMENTS(kv_tokens) * 2) == 0);
  CHECK_STATUS(kvault_block_codec_decode(codec, landing, object, 0, &keys[1], decoded, kv_tokens),
               KVAULT_CORRUPTION);

  /* A destination too small for the object: OUT_OF_RANGE, with the object's size to retry. */
  kvault_load_destination small = {landing + kBlocks * object, object / 2, 0, 0};
  REQUIRE_STATUS(kvault_load(client, NULL, keys, &small, 1, 0, &get), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_wait(get, 10000), KVAULT_OK);
  CHECK_STATUS(kvault_transfer_key_status(get, 0, message, sizeof(message)), KVAULT_OUT_OF_RANGE);
  CHECK(kvault_transfer_object_size(get, 0) == object);
  CHECK(kvault_transfer_leading_ok(get) == 0);
  kvault_transfer_free(get);

  /* The lease: released once, then unknown. */
  CHECK_STATUS(kvault_release_lease(client, &lease, 0), KVAULT_OK);
  CHECK_STATUS(kvault_release_lease(client, &lease, 0), KVAULT_NOT_FOUND);
  CHECK(strlen(kvault_last_error()) > 0);
  kvault_lease none = {0, 0, 0};
  CHECK_STATUS(kvault_release_lease(client, &none, 0), KVAULT_INVALID_ARGUMENT);

  /* Input refused before anything is sent: the call's status, no transfer. */
  uint8_t* unregistered = malloc(object);
  REQUIRE(unregistered != NULL);
  memcpy(unregistered, objects, object);
  kvault_store_source outside = {unregistered, object};
  put = (kvault_transfer*)&g_sentinel;
  CHECK_STATUS(kvault_store(client, keys, &outside, 1, 0, &put), KVAULT_INVALID_ARGUMENT);
  CHECK(put == NULL);
  CHECK(strstr(kvault_last_error(), "registered") != NULL);
  kvault_store_source empty = {objects, 0};
  CHECK_STATUS(kvault_store(client, keys, &empty, 1, 0, &put), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_store(NULL, keys, sources, kBlocks, 0, &put), KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(kvault_last_error(), "client is null") != NULL);
  CHECK_STATUS(kvault_store(client, keys, NULL, kBlocks, 0, &put), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_store(client, keys, sources, kBlocks, 0, NULL), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_load(client, NULL, keys, NULL, kBlocks, 0, &get), KVAULT_INVALID_ARGUMENT);
  kvault_load_destination too_long = {landing, object, 0, object + 1};
  CHECK_STATUS(kvault_load(client, NULL, keys, &too_long, 1, 0, &get), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_transfer_wait(NULL, 0), KVAULT_INVALID_ARGUMENT);
  CHECK_STATUS(kvault_transfer_key_status(NULL, 0, message, sizeof(message)),
               KVAULT_INVALID_ARGUMENT);
  CHECK(strstr(message, "transfer is null") != NULL);
  kvault_region* refused = (kvault_region*)&g_sentinel;
  CHECK_STATUS(kvault_register_memory(client, NULL, 64, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(refused == NULL);
  CHECK_STATUS(kvault_allocate_memory(client, 0, &refused), KVAULT_INVALID_ARGUMENT);
  CHECK(refused == NULL);
  CHECK_STATUS(kvault_allocate_memory(NULL, 64, &refused), KVAULT_INVALID_ARGUMENT);
  free(unregistered);

  /* Delete: each key once, then gone. */
  kvault_status deleted[kBlocks];
  CHECK_STATUS(kvault_delete(client, keys, kBlocks, 0, deleted), KVAULT_OK);
  for (size_t i = 0; i < kBlocks; ++i) CHECK_STATUS(deleted[i], KVAULT_OK);
  CHECK_STATUS(kvault_delete(client, keys, kBlocks, 0, deleted), KVAULT_OK);
  for (size_t i = 0; i < kBlocks; ++i) CHECK_STATUS(deleted[i], KVAULT_NOT_FOUND);
  CHECK_STATUS(kvault_lookup_prefix(client, keys, kBlocks, 0, 0, &hits, NULL, NULL), KVAULT_OK);
  CHECK(hits == 0);

  kvault_region_free(registered);
  kvault_region_free(staging);
  kvault_block_codec_free(codec);
  free(landing);
  free(kv);
  free(decoded);
}

/* Regions and transfers may outlive their client. */
static void test_close_with_live_objects(const char* server) {
  kvault_config config;
  kvault_config_init(&config);
  config.server = server;
  kvault_client* client = NULL;
  REQUIRE_STATUS(kvault_connect(&config, &client), KVAULT_OK);
  kvault_region* region = NULL;
  REQUIRE_STATUS(kvault_allocate_memory(client, 4096, &region), KVAULT_OK);
  kvault_key key;
  memset(&key, 0xAB, sizeof(key));
  kvault_load_destination d = {kvault_region_data(region), 4096, 0, 0};
  kvault_transfer* get = NULL;
  REQUIRE_STATUS(kvault_load(client, NULL, &key, &d, 1, 0, &get), KVAULT_OK);
  kvault_close(client);
  const kvault_status s = kvault_transfer_wait(get, 10000);
  CHECK(s == KVAULT_OK || s == KVAULT_UNAVAILABLE);
  const kvault_status k = kvault_transfer_key_status(get, 0, NULL, 0);
  CHECK(k == KVAULT_NOT_FOUND || k == KVAULT_UNAVAILABLE);
  CHECK(kvault_transfer_wait_settled(get, 10000));
  kvault_transfer_free(get);
  kvault_region_free(region);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH/TO/kvaultd\n", argv[0]);
    return 2;
  }
  c_test_setup();
  test_errors_and_config();
  test_keys();
  test_dead_daemon();
  test_block_codec_indexes();
  test_block_codec_shapes();

  char server[128];
  c_test_start_daemon(argv[1], server, sizeof(server));
  kvault_config config;
  kvault_config_init(&config);
  config.server = server;
  config.client_name = "kvault_c_test";
  kvault_client* client = NULL;
  REQUIRE_STATUS(kvault_connect(&config, &client), KVAULT_OK);
  CHECK(kvault_connected(client));
  uint64_t rtt_ns = 0;
  CHECK_STATUS(kvault_ping(client, 0, &rtt_ns), KVAULT_OK);
  CHECK(rtt_ns > 0);
  CHECK_STATUS(kvault_ping(NULL, 0, &rtt_ns), KVAULT_INVALID_ARGUMENT);

  test_store_lookup_load(client);
  test_key_counts(client);
  c_test_paged(client);
  kvault_close(client);
  test_close_with_live_objects(server);
  c_test_paged_after_close(server);

  CHECK(c_test_stop_daemon() == 0);
  return c_test_finish();
}
