/* kvault.h: the C ABI of libkvault, the client of kvaultd (DESIGN.md §9, docs/client.md "C ABI").
 *
 * Pure C99; no C++ is needed to use it. Link libkvault_c.so (-lkvault_c), or, from C++/CMake,
 * the static kvault_client target, which holds the same functions.
 *
 *   kvault_config config;
 *   kvault_config_init(&config);
 *   config.server = "127.0.0.1:7400";
 *   kvault_client* client = NULL;
 *   if (kvault_connect(&config, &client) != KVAULT_OK) {
 *     fprintf(stderr, "kvault: %s\n", kvault_last_error());
 *   }
 *   ...
 *   kvault_close(client);
 *
 * Errors. Every function that can fail returns a kvault_status (the codes of kvault::StatusCode)
 * and writes what it creates through out-parameters. When it fails, an object out-parameter is
 * set to NULL and other outputs are left untouched unless the function's contract says more. Every
 * function that returns a kvault_status also sets the calling thread's last error: the message of
 * that status, "" for KVAULT_OK (kvault_last_error). Null pointers and bad sizes give
 * KVAULT_INVALID_ARGUMENT with a message that names the argument. No C++ exception ever leaves the
 * library: an allocation failure is KVAULT_RESOURCE_EXHAUSTED, anything else unexpected
 * KVAULT_INTERNAL.
 *
 * Ownership. Every object a kvault_*_create / kvault_connect / kvault_store ... returns is owned
 * by the caller and freed with its own kvault_*_free (kvault_close for a client); freeing NULL is
 * a no-op. Arrays passed in are read during the call only (copied where the work continues
 * after it returns), except the memory that transfers read or write, which the documentation of
 * each call names.
 *
 * Time. Request timeouts (`timeout_ms` of kvault_lookup_prefix, kvault_store, ...): 0 = the
 * client's request_timeout_ms, > 0 = milliseconds from the call, < 0 or over a year =
 * KVAULT_INVALID_ARGUMENT (as are the config's timeouts over a year).
 * Waits (kvault_transfer_wait, ...): < 0 = no bound, 0 = do not block, > 0 = at most that long.
 * A slow or dead daemon becomes misses and KVAULT_UNAVAILABLE, never a hang.
 *
 * Counts. A key count is checked before anything is allocated for it: over 2^20 (1048576, the
 * protocol's ceiling of one request) for kvault_lookup_prefix and kvault_delete, over 2^24
 * (16777216) for kvault_store, kvault_load and a paged sequence (its keys and its block ids),
 * it is KVAULT_INVALID_ARGUMENT.
 *
 * Thread-safety. A kvault_client, transfers and paged stores are thread-safe: any function on
 * them may be called from several threads at once, except their kvault_*_free (kvault_close),
 * which must not race with any other use of that object. Regions and block codecs are immutable
 * after creation. The key builders are pure functions: safe from any thread.
 */
#ifndef KVAULT_KVAULT_H_
#define KVAULT_KVAULT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define KVAULT_API __attribute__((visibility("default")))
#else
#define KVAULT_API
#endif
/* C++ callers may rely on it: no function of this header throws. */
#ifdef __cplusplus
#define KVAULT_NOEXCEPT noexcept
extern "C" {
#else
#define KVAULT_NOEXCEPT
#endif

/* ---- Status and errors ------------------------------------------------------------------- */

/* Equal to kvault::StatusCode (common/status.h). */
typedef enum kvault_status {
  KVAULT_OK = 0,
  KVAULT_INVALID_ARGUMENT = 1,   /* malformed input: null pointer, bad size, bad spec */
  KVAULT_NOT_FOUND = 2,          /* a miss; an unknown or expired lease */
  KVAULT_CORRUPTION = 3,         /* bytes failed verification (checksum, key, shape) */
  KVAULT_UNSUPPORTED = 4,        /* well-formed but not possible here (no data plane, no CUDA) */
  KVAULT_OUT_OF_RANGE = 5,       /* size or index past a limit (destination too small, ...) */
  KVAULT_IO_ERROR = 6,           /* a transfer or the operating system failed */
  KVAULT_RESOURCE_EXHAUSTED = 7, /* no memory, no room in the daemon */
  KVAULT_UNAVAILABLE = 8,        /* daemon unreachable, deadline passed, cancelled, in flight */
  KVAULT_INTERNAL = 9            /* a bug in kvault */
} kvault_status;

/* "ok", "invalid_argument", ... (stable, lower case); "unknown" for other values. Never NULL. */
KVAULT_API const char* kvault_status_name(kvault_status status) KVAULT_NOEXCEPT;

/* The message of the status the last kvault function that returns a kvault_status returned on
 * the calling thread ("" after KVAULT_OK or before any call). Never NULL. The pointer is valid
 * until the next such call on this thread; copy it to keep it. */
KVAULT_API const char* kvault_last_error(void) KVAULT_NOEXCEPT;

/* The library's version, "MAJOR.MINOR.PATCH". Never NULL; static storage. */
KVAULT_API const char* kvault_version(void) KVAULT_NOEXCEPT;

/* ---- Keys -------------------------------------------------------------------------------- */

#define KVAULT_KEY_BYTES 32

/* A 32-byte block key (or namespace digest): raw SHA-256 bytes. A struct rather than
 * uint8_t[32] so that arrays of keys pass as `const kvault_key*` without C's const
 * pointer-to-array pitfalls; it has no padding (sizeof == 32, alignment 1), so a flat buffer of
 * 32 * n bytes may be cast to it. */
typedef struct kvault_key {
  uint8_t bytes[KVAULT_KEY_BYTES];
} kvault_key;

/* One extra namespace dimension, e.g. {"lora", "sql-adapter-v3"}. NUL-terminated strings. */
typedef struct kvault_namespace_extra_key {
  const char* name;  /* non-empty, unique within the namespace */
  const char* value; /* may be "" */
} kvault_namespace_extra_key;

/* Everything that must match for a block to be reusable (kvault::Namespace, docs/keys.md).
 * Strings are NUL-terminated; NULL reads as "". Fill with kvault_namespace_init first. */
typedef struct kvault_namespace {
  size_t struct_size;         /* sizeof(kvault_namespace), set by kvault_namespace_init */
  const char* tenant;         /* may be empty */
  const char* model_id;       /* required */
  const char* model_revision; /* may be empty */
  uint32_t num_layers;        /* layout: all non-zero */
  uint32_t kv_heads;
  uint32_t head_dim;
  const char* dtype; /* "f16" or "bf16", as kvault spells them; required */
  uint32_t block_tokens;
  uint32_t tp_rank; /* tp_rank < tp_size; default 0 of 1 */
  uint32_t tp_size;
  uint32_t pp_rank; /* pp_rank < pp_size; default 0 of 1 */
  uint32_t pp_size;
  const kvault_namespace_extra_key* extra_keys; /* num_extra_keys entries; any order */
  size_t num_extra_keys;
} kvault_namespace;

/* Zeroes `ns`, sets struct_size and tp_size = pp_size = 1. */
KVAULT_API void kvault_namespace_init(kvault_namespace* ns) KVAULT_NOEXCEPT;

/* Writes SHA-256 of the namespace's canonical encoding to `*digest`: the seed of its key chains.
 * INVALID_ARGUMENT naming the field for an invalid namespace (empty model_id or dtype, a zero
 * dimension, a rank not below its size, a repeated extra key, ...). */
KVAULT_API kvault_status kvault_namespace_digest(const kvault_namespace* ns,
                                                 kvault_key* digest) KVAULT_NOEXCEPT;

/* kvault key chain (docs/keys.md): key_0 = SHA-256(ns_digest || tokens[0, B) as u32 LE),
 * key_i = SHA-256(key_{i-1} || tokens[iB, (i+1)B)), B = block_tokens. Writes the
 * num_tokens / block_tokens keys of the full blocks to `keys` (a partial tail gets none) and
 * their count to `*num_keys`. `tokens` may be NULL when num_tokens is 0.
 * INVALID_ARGUMENT: a null pointer, block_tokens == 0, or key_capacity below the count (then
 * `*num_keys` is set to the count and nothing is written). */
KVAULT_API kvault_status kvault_chain_block_keys(const kvault_key* ns_digest,
                                                 const uint32_t* tokens, size_t num_tokens,
                                                 uint32_t block_tokens, kvault_key* keys,
                                                 size_t key_capacity,
                                                 size_t* num_keys) KVAULT_NOEXCEPT;

/* One step of the chain: `*key` = SHA-256(parent || tokens as u32 LE), any number of tokens.
 * INVALID_ARGUMENT for a null pointer (tokens may be NULL when num_tokens is 0). */
KVAULT_API kvault_status kvault_next_block_key(const kvault_key* parent, const uint32_t* tokens,
                                               size_t num_tokens, kvault_key* key) KVAULT_NOEXCEPT;

/* SGLang's radix-cache page hashes (docs/keys.md): page i = SHA-256(parent || page tokens as
 * u32 LE), parent = page i-1's hash, `prior` for page 0 (NULL: nothing, a page under the radix
 * root). Output and errors as kvault_chain_block_keys, with page_size for block_tokens. */
KVAULT_API kvault_status kvault_sglang_page_hashes(const uint32_t* tokens, size_t num_tokens,
                                                   uint32_t page_size, const kvault_key* prior,
                                                   kvault_key* hashes, size_t hash_capacity,
                                                   size_t* num_hashes) KVAULT_NOEXCEPT;

/* A value of vLLM's extra_keys tuple: int, str, bytes or a nested tuple (LoRA name as TEXT,
 * multimodal (identifier, offset) items as LIST of TEXT and INT, cache salt as TEXT, prompt
 * embeddings digest as BYTES). */
typedef enum kvault_vllm_value_kind {
  KVAULT_VLLM_INT = 0,
  KVAULT_VLLM_TEXT = 1,  /* UTF-8 bytes [data, data + size) */
  KVAULT_VLLM_BYTES = 2, /* bytes [data, data + size) */
  KVAULT_VLLM_LIST = 3   /* items [items, items + num_items), nested at most 16 deep */
} kvault_vllm_value_kind;

typedef struct kvault_vllm_value {
  kvault_vllm_value_kind kind;
  int64_t int_value;
  const void* data;
  size_t size;
  const struct kvault_vllm_value* items;
  size_t num_items;
} kvault_vllm_value;

/* One block's extra_keys: None when `present` is 0, else the tuple of num_items values (an empty
 * tuple hashes differently from None, as in Python). */
typedef struct kvault_vllm_extra_keys {
  int present;
  const kvault_vllm_value* items;
  size_t num_items;
} kvault_vllm_extra_keys;

/* vLLM's NONE_HASH under sha256_cbor for `seed`: PYTHONHASHSEED when it is set (e.g. "0"), else
 * "vllm-none-hash" in vLLM releases that derive it (older ones drew it at random).
 * INVALID_ARGUMENT for a null pointer. */
KVAULT_API kvault_status kvault_vllm_none_hash(const char* seed,
                                               kvault_key* none_hash) KVAULT_NOEXCEPT;

/* vLLM's block hashes with --prefix-caching-hash-algo sha256_cbor (docs/keys.md):
 * hash_i = SHA-256(canonical CBOR [parent, block tokens, extra_keys_i]), parent = none_hash for
 * block 0. `per_block_extra` is NULL (every block's extra_keys is None) or holds one entry per
 * full block, num_tokens / block_size of them. Output and errors as kvault_chain_block_keys,
 * plus INVALID_ARGUMENT for a malformed extra value (null data with a non-zero size, an unknown
 * kind, nesting past 16). */
KVAULT_API kvault_status kvault_vllm_block_hashes(const kvault_key* none_hash,
                                                  const uint32_t* tokens, size_t num_tokens,
                                                  uint32_t block_size,
                                                  const kvault_vllm_extra_keys* per_block_extra,
                                                  kvault_key* hashes, size_t hash_capacity,
                                                  size_t* num_hashes) KVAULT_NOEXCEPT;

/* ---- Host block codec: one block of host KV <-> one sealed block object ----------------- */

typedef enum kvault_dtype { KVAULT_DTYPE_F16 = 1, KVAULT_DTYPE_BF16 = 2 } kvault_dtype;

/* The shape and codec of a model shard's blocks (kvault::KvBlockFormat). Fill with
 * kvault_block_format_init first. */
typedef struct kvault_block_format {
  size_t struct_size; /* sizeof(kvault_block_format), set by kvault_block_format_init */
  uint32_t num_layers;
  uint32_t kv_heads;
  uint32_t head_dim;     /* a multiple of 8; a power of two for `rot` */
  kvault_dtype dtype;    /* default F16 */
  uint32_t block_tokens; /* default 16 */
  const char* codec;     /* spec (docs/codecs.md): "raw", "fp8", "k=int4,v=int2", ...; "fp8" */
  kvault_key ns_digest;  /* written into every object's header; default zeros */
} kvault_block_format;

KVAULT_API void kvault_block_format_init(kvault_block_format* format) KVAULT_NOEXCEPT;

/* Encodes and decodes blocks of a fixed format with the CPU codecs. Immutable: thread-safe. */
typedef struct kvault_block_codec kvault_block_codec;

/* INVALID_ARGUMENT for a bad shape (num_layers, kv_heads or head_dim 0 or over 1024, head_dim not
 * a multiple of 8, block_tokens 0 or over 65536, an object over 4 GiB), a bad codec spec or one
 * that does not fit the shape. */
KVAULT_API kvault_status kvault_block_codec_create(const kvault_block_format* format,
                                                   kvault_block_codec** codec) KVAULT_NOEXCEPT;
KVAULT_API void kvault_block_codec_free(kvault_block_codec* codec) KVAULT_NOEXCEPT;

/* Bytes of block `index`'s object (block 0 may differ: sink tokens); 0 for a NULL codec or an
 * index whose tokens do not fit in uint64. */
KVAULT_API uint64_t kvault_block_codec_object_bytes(const kvault_block_codec* codec,
                                                    uint64_t index) KVAULT_NOEXCEPT;

/* Encodes block `index` (tokens [index * block_tokens, (index + 1) * block_tokens)) of the host
 * KV `kv`, laid out contiguously as [num_layers][2 (K, V)][kv_tokens][kv_heads][head_dim] 16-bit
 * elements of the format's dtype, into the sealed object of `key` at `object` (exactly
 * object_bytes(index) bytes). INVALID_ARGUMENT for a null pointer, kv_tokens == 0, a block past
 * kv_tokens (or whose token range overflows uint64) or a wrong object size. */
KVAULT_API kvault_status kvault_block_codec_encode(const kvault_block_codec* codec,
                                                   const uint16_t* kv, uint32_t kv_tokens,
                                                   uint64_t index, const kvault_key* key,
                                                   void* object,
                                                   size_t object_bytes) KVAULT_NOEXCEPT;

/* Verifies a whole object (checksum, `key` inside it, this format's shape and position `index`)
 * and decodes it into block `index` of `kv` (layout as encode). CORRUPTION when verification
 * fails (nothing is written then); INVALID_ARGUMENT as encode. */
KVAULT_API kvault_status kvault_block_codec_decode(const kvault_block_codec* codec,
                                                   const void* object, size_t object_bytes,
                                                   uint64_t index, const kvault_key* key,
                                                   uint16_t* kv,
                                                   uint32_t kv_tokens) KVAULT_NOEXCEPT;

/* ---- Client ------------------------------------------------------------------------------ */

/* A connection to one kvaultd (kvault::Client). Thread-safe. */
typedef struct kvault_client kvault_client;

/* How to reach the daemon (kvault::ClientConfig; docs/client.md has the details). Strings are
 * NUL-terminated, NULL reads as "", and they are copied by kvault_connect. Fill with
 * kvault_config_init first. */
typedef struct kvault_config {
  size_t struct_size;           /* sizeof(kvault_config), set by kvault_config_init */
  const char* server;           /* "host:port", "[::1]:port"; required */
  const char* tenant;           /* default "": the daemon's default tenant */
  const char* token;            /* default "": none; only an HMAC proof crosses the wire */
  int64_t connect_timeout_ms;   /* TCP connect + handshake (and each reconnect); default 2000 */
  int64_t request_timeout_ms;   /* deadline of a request given timeout_ms 0; default 5000 */
  int64_t stall_timeout_ms;     /* unanswered past its deadline this long: drop; 0 never; 30000 */
  int64_t reconnect_backoff_ms; /* least time between reconnect attempts; default 1000 */
  int data_plane;               /* non-zero: start UCX (needed by store/load); default 1 */
  const char* ucx_transports;   /* UCX_TLS syntax ("tcp", "posix,cma,tcp"); default "": UCX's */
  const char* client_name;      /* shown in the daemon's logs; default "libkvault" */
  int tls;                      /* non-zero: TLS on the control connection; default 0 */
  const char* tls_ca_file;      /* PEM CA bundle; default "": the system's. Only with tls */
  const char* tls_server_name;  /* name the certificate must match; default: host of server */
  uint64_t registered_staging_bytes; /* staging pool for kvault_register_memory regions;
                                      * 0 off; default 64 MiB */
} kvault_config;

/* Fills `config` with the defaults above (server NULL). */
KVAULT_API void kvault_config_init(kvault_config* config) KVAULT_NOEXCEPT;

/* Connects and runs the handshake within connect_timeout_ms; on success `*client` is a new
 * client (free with kvault_close). INVALID_ARGUMENT for a bad config (also a struct_size other
 * than this header's) or a refused token ("unauthenticated: ..."); UNAVAILABLE for an
 * unreachable or silent daemon, a failed TLS handshake, or a UCX that could not start. */
KVAULT_API kvault_status kvault_connect(const kvault_config* config,
                                        kvault_client** client) KVAULT_NOEXCEPT;

/* Frees the client and closes the connection, once the paged stores made from it are freed too
 * (they keep it open until then); transfers still in flight on a closed connection complete with
 * UNAVAILABLE ("client closed"). Regions, transfers and paged stores of the client may outlive
 * it (free them later as usual). NULL is a no-op. */
KVAULT_API void kvault_close(kvault_client* client) KVAULT_NOEXCEPT;

/* Non-zero while the connection is up (0 after a loss until a call reconnects, and for NULL). */
KVAULT_API int kvault_connected(const kvault_client* client) KVAULT_NOEXCEPT;

/* Round trip of a Ping; writes it in nanoseconds to `*rtt_ns` (which may be NULL).
 * UNAVAILABLE when the daemon cannot be reached in time. */
KVAULT_API kvault_status kvault_ping(kvault_client* client, int64_t timeout_ms,
                                     uint64_t* rtt_ns) KVAULT_NOEXCEPT;

/* ---- Registered memory ------------------------------------------------------------------- */

/* Host memory registered with the client's UCX agent. Store sources and load destinations must
 * lie inside one. Immutable; its functions are thread-safe. */
typedef struct kvault_region kvault_region;

/* Registers caller-owned host memory [ptr, ptr + len), which must stay valid until the region is
 * freed and every transfer that uses it has settled. INVALID_ARGUMENT for a null pointer or zero
 * length; UNSUPPORTED without a data plane; RESOURCE_EXHAUSTED when UCX cannot pin it. */
KVAULT_API kvault_status kvault_register_memory(kvault_client* client, void* ptr, size_t len,
                                                kvault_region** region) KVAULT_NOEXCEPT;

/* Allocates `len` registered bytes through UCX (the preferred staging memory: a daemon on the
 * same host reaches it with single copies). The memory lives until the region is freed and every
 * transfer that uses it has settled. Errors as kvault_register_memory. */
KVAULT_API kvault_status kvault_allocate_memory(kvault_client* client, size_t len,
                                                kvault_region** region) KVAULT_NOEXCEPT;

/* The region's first byte and length (NULL and 0 for NULL). */
KVAULT_API uint8_t* kvault_region_data(const kvault_region* region) KVAULT_NOEXCEPT;
KVAULT_API size_t kvault_region_size(const kvault_region* region) KVAULT_NOEXCEPT;

/* Drops the handle. The registration (and allocated memory) lives on while a transfer that
 * names it is unsettled, so freeing a region under a transfer is safe. NULL is a no-op. */
KVAULT_API void kvault_region_free(kvault_region* region) KVAULT_NOEXCEPT;

/* ---- Lookup and leases ------------------------------------------------------------------- */

/* Where a looked-up block lives (kvault::Tier). */
typedef enum kvault_tier {
  KVAULT_TIER_NONE = 0, /* a miss */
  KVAULT_TIER_GPU = 1,
  KVAULT_TIER_HOST = 2,
  KVAULT_TIER_NVME = 3
} kvault_tier;

/* A server-side pin on looked-up blocks, valid only on the session that got it. id 0 = none. */
typedef struct kvault_lease {
  uint64_t id;
  uint64_t session;  /* the daemon session that granted it */
  int64_t expiry_ms; /* CLOCK_MONOTONIC milliseconds; measured from when the lookup was sent */
} kvault_lease;

/* How many leading keys of a chain (prefix order) the daemon holds. Writes the count to
 * `*leading_hits`, one kvault_tier value per key to `tiers` (num_keys bytes; may be NULL), and,
 * when `lease` is not NULL, asks for a lease on the leading hits (lease_ttl_ms, 0 = the daemon's
 * default) and writes it (id 0 when none was granted). A failed lookup is a full miss: it
 * returns why (UNAVAILABLE: daemon unreachable or slow; INVALID_ARGUMENT: more keys than one
 * request carries under the daemon's limits (its max_keys_per_batch, default 4096), null
 * pointers, a ttl or timeout negative or over a year) with 0 hits, every tier NONE and no lease,
 * except that `tiers` is left untouched when num_keys is over 2^20 (the protocol's ceiling for one
 * request: no such array is trusted). `keys` may be NULL when num_keys is 0. */
KVAULT_API kvault_status kvault_lookup_prefix(kvault_client* client, const kvault_key* keys,
                                              size_t num_keys, int64_t lease_ttl_ms,
                                              int64_t timeout_ms, uint32_t* leading_hits,
                                              uint8_t* tiers, kvault_lease* lease) KVAULT_NOEXCEPT;

/* Ends a lease before its expiry. NOT_FOUND ("lease_expired") when the daemon does not know it
 * (expired, released, or from a lost session); INVALID_ARGUMENT for id 0; UNAVAILABLE when the
 * daemon cannot be reached. */
KVAULT_API kvault_status kvault_release_lease(kvault_client* client, const kvault_lease* lease,
                                              int64_t timeout_ms) KVAULT_NOEXCEPT;

/* Drops keys from every tier. Writes one status per key to `key_status` (num_keys entries; may
 * be NULL): OK (deleted) or NOT_FOUND (was not there). Returns the request's status:
 * INVALID_ARGUMENT for more keys than one request carries (as kvault_lookup_prefix) or null
 * pointers; UNAVAILABLE when the daemon cannot be reached. */
KVAULT_API kvault_status kvault_delete(kvault_client* client, const kvault_key* keys,
                                       size_t num_keys, int64_t timeout_ms,
                                       kvault_status* key_status) KVAULT_NOEXCEPT;

/* ---- Store and load ---------------------------------------------------------------------- */

/* A store or load in progress (kvault::StoreHandle / LoadHandle; handles.h has the life of an
 * operation). Thread-safe, except kvault_transfer_free.
 *   done:    every key has its status (the daemon replied, the deadline passed, the connection
 *            was lost, or it was cancelled).
 *   settled: every request got its reply (the daemon is done with the transfer's memory) or
 *            its connection was lost. Done and settled coincide when the daemon answers; after
 *            a timeout or cancel they do not: keep a load's destinations unused and a store's
 *            sources unchanged until settled. After a lost connection a transfer the daemon had
 *            started may still reach memory the request named directly (kvault_allocate_memory,
 *            or registered memory that got no staging); staged memory is safe (docs/client.md,
 *            "Handles"). */
typedef struct kvault_transfer kvault_transfer;

/* A store source: the whole sealed object of one key, inside a registered region. */
typedef struct kvault_store_source {
  const void* data;
  size_t size;
} kvault_store_source;

/* A load destination inside a registered region: `buffer` (room for `capacity` bytes) receives
 * object bytes [offset, offset + length); length 0 = to the end of the object. */
typedef struct kvault_load_destination {
  void* buffer;
  size_t capacity;
  uint64_t offset;
  uint64_t length;
} kvault_load_destination;

/* Stores sealed block objects (kvault_block_codec_encode): sources[i] is keys[i]'s object.
 * On KVAULT_OK `*transfer` is the operation (free with kvault_transfer_free); its per-key
 * statuses are OK (stored or already present, or being stored by another request then: if
 * that write fails the block is absent and a later lookup misses), IO_ERROR, CORRUPTION (the object
 * failed verification or holds another key), RESOURCE_EXHAUSTED (no room), or the request's failure
 * (UNAVAILABLE when the daemon cannot be reached or the timeout passes). Input refused before
 * anything is sent returns its status and no transfer: INVALID_ARGUMENT for null pointers, a
 * num_keys over 2^24, an empty source, a source outside every registered region or over the
 * daemon's object size limit; UNSUPPORTED without a data plane. A refusal by the daemon, however
 * fast, is the transfer's status. The sources are read until the transfer settles. */
KVAULT_API kvault_status kvault_store(kvault_client* client, const kvault_key* keys,
                                      const kvault_store_source* sources, size_t num_keys,
                                      int64_t timeout_ms,
                                      kvault_transfer** transfer) KVAULT_NOEXCEPT;

/* As kvault_store, with each key's chain parent: parents[i] is the key of the block before
 * keys[i] in its chain (all zero for a chain's first block). The daemon's prefix-aware eviction
 * then takes a full tier's blocks from the tails of chains, so what stays is a prefix that still
 * hits (docs/eviction.md); without parents every block counts as a chain's first. parents may be
 * NULL (no hints: kvault_store); otherwise it holds num_keys keys. */
KVAULT_API kvault_status kvault_store_chain(kvault_client* client, const kvault_key* keys,
                                            const kvault_key* parents,
                                            const kvault_store_source* sources, size_t num_keys,
                                            int64_t timeout_ms,
                                            kvault_transfer** transfer) KVAULT_NOEXCEPT;

/* Loads blocks (or byte ranges of them) into registered memory. `lease` (may be NULL) from
 * kvault_lookup_prefix keeps the blocks from being evicted meanwhile. Returns as kvault_store;
 * per key: OK (bytes written), NOT_FOUND (a miss, or "lease_expired"), OUT_OF_RANGE (range
 * outside the object or capacity too small; see kvault_transfer_object_size), IO_ERROR,
 * CORRUPTION. INVALID_ARGUMENT also for a length over the capacity. The destinations may be
 * written until the transfer settles. */
KVAULT_API kvault_status kvault_load(kvault_client* client, const kvault_lease* lease,
                                     const kvault_key* keys,
                                     const kvault_load_destination* destinations, size_t num_keys,
                                     int64_t timeout_ms,
                                     kvault_transfer** transfer) KVAULT_NOEXCEPT;

/* Blocks until the transfer is done or `timeout_ms` passes. Returns the request-level status
 * once done: OK when the daemon answered every part (each key has its own status, which may be a
 * miss), else why it failed as a whole. UNAVAILABLE ("still in flight ...") when the wait timed
 * out; the transfer goes on. INVALID_ARGUMENT for NULL. */
KVAULT_API kvault_status kvault_transfer_wait(const kvault_transfer* transfer,
                                              int64_t timeout_ms) KVAULT_NOEXCEPT;
/* Non-zero once done (and for NULL). Never blocks. */
KVAULT_API int kvault_transfer_poll(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Completes the transfer now, if in flight, with UNAVAILABLE ("cancelled"); the daemon is not
 * told (see settled). Idempotent; NULL is a no-op. */
KVAULT_API void kvault_transfer_cancel(kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Non-zero when cancelled by kvault_transfer_cancel. */
KVAULT_API int kvault_transfer_cancelled(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Non-zero once settled (and for NULL). */
KVAULT_API int kvault_transfer_settled(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Blocks until settled or `timeout_ms`; returns kvault_transfer_settled. */
KVAULT_API int kvault_transfer_wait_settled(const kvault_transfer* transfer,
                                            int64_t timeout_ms) KVAULT_NOEXCEPT;
/* Number of keys (0 for NULL). */
KVAULT_API size_t kvault_transfer_size(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Key i's status once done (before: UNAVAILABLE "in flight"), and its message copied to
 * `message` (NUL-terminated, truncated to message_capacity - 1 bytes; may be NULL with capacity
 * 0). OUT_OF_RANGE for i >= size; INVALID_ARGUMENT for a NULL transfer. */
KVAULT_API kvault_status kvault_transfer_key_status(const kvault_transfer* transfer, size_t i,
                                                    char* message,
                                                    size_t message_capacity) KVAULT_NOEXCEPT;
/* Keys [0, leading_ok) succeeded; 0 before done. */
KVAULT_API size_t kvault_transfer_leading_ok(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Keys that succeeded; 0 before done. */
KVAULT_API size_t kvault_transfer_ok_count(const kvault_transfer* transfer) KVAULT_NOEXCEPT;
/* Load: the whole stored object's size for key i as the daemon reported it (also on
 * OUT_OF_RANGE); 0 for a miss, before done, for a store or i out of range. */
KVAULT_API uint64_t kvault_transfer_object_size(const kvault_transfer* transfer,
                                                size_t i) KVAULT_NOEXCEPT;
/* Frees the handle; the operation itself is neither cancelled nor waited for (its memory stays
 * in use until it settles). NULL is a no-op. */
KVAULT_API void kvault_transfer_free(kvault_transfer* transfer) KVAULT_NOEXCEPT;

/* ---- Paged KV: an engine's paged cache to and from kvaultd (kvault/paged_kv.h) ----------- */

typedef enum kvault_memory_kind {
  KVAULT_MEMORY_HOST = 0,
  KVAULT_MEMORY_CUDA = 1
} kvault_memory_kind;

/* Mirrors kvault::kernels::KvLayout (kernels/kv_view.h); shapes per layer tensor. */
typedef enum kvault_kv_layout {
  KVAULT_LAYOUT_CONTIGUOUS = 0,     /* [layers][2][tokens][heads][dim], one tensor */
  KVAULT_LAYOUT_VLLM_NHD = 1,       /* [2][num_blocks][block_size][heads][dim] */
  KVAULT_LAYOUT_VLLM_HND = 2,       /* [2][num_blocks][heads][block_size][dim] */
  KVAULT_LAYOUT_FLASHINFER_NHD = 3, /* [pages][2][page_size][heads][dim] */
  KVAULT_LAYOUT_FLASHINFER_HND = 4  /* [pages][2][heads][page_size][dim] */
} kvault_kv_layout;

/* The engine's KV cache as the engine allocated it (kvault::PagedKvCache). */
typedef struct kvault_paged_cache {
  kvault_memory_kind memory; /* host memory (CPU codecs) or CUDA device memory */
  kvault_kv_layout layout;
  kvault_dtype dtype;
  uint32_t num_layers;
  uint32_t kv_heads;
  uint32_t head_dim;
  uint32_t engine_block_tokens; /* vLLM block_size, FlashInfer page_size (CONTIGUOUS: tokens) */
  uint32_t engine_num_blocks;   /* blocks in the cache; block ids are below it */
  /* num_layers pointers (one tensor per layer), or 1 pointer to all layers stacked. The array
   * is copied; the tensors must outlive the paged store. */
  void* const* tensors;
  size_t num_tensors;
} kvault_paged_cache;

/* kvault::PagedKvOptions. Fill with kvault_paged_options_init first. */
typedef struct kvault_paged_options {
  size_t struct_size; /* sizeof(kvault_paged_options), set by kvault_paged_options_init */
  kvault_paged_cache cache;
  uint32_t block_tokens;   /* tokens per kvault block, a multiple of engine_block_tokens; 256 */
  const char* codec;       /* codec spec (docs/codecs.md); default "fp8" */
  kvault_key ns_digest;    /* written into every object's header; default zeros */
  size_t staging_bytes;    /* page-locked host staging, all buffers together; default 64 MiB */
  uint32_t pipeline_depth; /* staging buffers (waves in flight); at least 1; default 2 */
  /* CUDA memory: a load with a lease decodes the blocks the daemon holds in its gpu tier
   * straight from there through CUDA IPC (non-zero, the default), or brings every block through
   * host staging (0). Ignored for host memory. */
  int gpu_ipc;
} kvault_paged_options;

/* Zeroes `options`, sets struct_size and the defaults above (cache: HOST, VLLM_NHD, F16,
 * engine_block_tokens 16; gpu_ipc 1). */
KVAULT_API void kvault_paged_options_init(kvault_paged_options* options) KVAULT_NOEXCEPT;

/* Moves one cache's blocks; transfers run one at a time, in call order, on its own thread.
 * Thread-safe, except kvault_paged_store_free. */
typedef struct kvault_paged_store kvault_paged_store;
/* A paged store or load in progress (kvault::PagedStoreHandle / PagedLoadHandle). Thread-safe,
 * except kvault_paged_transfer_free. */
typedef struct kvault_paged_transfer kvault_paged_transfer;

/* Validates the cache and codec (INVALID_ARGUMENT), allocates the staging memory (the client's
 * allocate_memory; page-locked for CUDA) and, for CUDA, device staging (UNSUPPORTED in a build
 * without CUDA, UNAVAILABLE without a device). The store keeps the client's connection open:
 * kvault_close may come before kvault_paged_store_free. */
KVAULT_API kvault_status kvault_paged_store_create(kvault_client* client,
                                                   const kvault_paged_options* options,
                                                   kvault_paged_store** store) KVAULT_NOEXCEPT;
/* Cancels what has not started, waits for the rest, frees. NULL is a no-op. */
KVAULT_API void kvault_paged_store_free(kvault_paged_store* store) KVAULT_NOEXCEPT;
/* Bytes of block `index`'s object under the store's codec; 0 for NULL. */
KVAULT_API uint64_t kvault_paged_store_object_bytes(const kvault_paged_store* store,
                                                    uint64_t index) KVAULT_NOEXCEPT;

/* One sequence of the engine. The arrays are copied by the call that takes it. */
typedef struct kvault_paged_sequence {
  const int32_t* block_ids; /* engine block ids in token order, covering num_tokens */
  size_t num_block_ids;
  uint64_t num_tokens;
  const kvault_key* keys; /* keys[i] names kvault block i (tokens [i*B, (i+1)*B)) */
  size_t num_keys;
} kvault_paged_sequence;

/* Stores the full blocks of `sequence` that have a key; with skip_stored non-zero, looks the
 * chain up first and sends only the blocks after its leading hits. `stream` (a cudaStream_t,
 * CUDA path only; may be NULL) is where the engine produced the KV. The engine's KV must stay
 * unchanged until kvault_paged_transfer_wait_source_released. On KVAULT_OK `*transfer` is the
 * operation (free with kvault_paged_transfer_free). Input refused before anything starts returns
 * its status and no transfer: INVALID_ARGUMENT for null pointers, no keys (or num_keys over
 * 2^24), block ids outside the cache or too few for num_tokens. */
KVAULT_API kvault_status kvault_store_paged(kvault_paged_store* store,
                                            const kvault_paged_sequence* sequence, int skip_stored,
                                            void* stream, int64_t timeout_ms,
                                            kvault_paged_transfer** transfer) KVAULT_NOEXCEPT;

/* Loads blocks [0, blocks) of `sequence` (normally the lookup's leading hits, with its lease;
 * `lease` may be NULL) into the engine's blocks, layer wave by layer wave (layers_per_wave, 0 =
 * as many as fit a staging buffer). A block that fails is not written, nor any after it. Returns
 * as kvault_store_paged; INVALID_ARGUMENT also for more blocks than the sequence has full blocks
 * with keys. */
KVAULT_API kvault_status kvault_load_paged(kvault_paged_store* store, const kvault_lease* lease,
                                           const kvault_paged_sequence* sequence, size_t blocks,
                                           void* stream, uint32_t layers_per_wave,
                                           int64_t timeout_ms,
                                           kvault_paged_transfer** transfer) KVAULT_NOEXCEPT;

/* As kvault_transfer_wait / _poll / _cancel / _size / _key_status / _leading_ok, per block. */
KVAULT_API kvault_status kvault_paged_transfer_wait(const kvault_paged_transfer* transfer,
                                                    int64_t timeout_ms) KVAULT_NOEXCEPT;
KVAULT_API int kvault_paged_transfer_poll(const kvault_paged_transfer* transfer) KVAULT_NOEXCEPT;
KVAULT_API void kvault_paged_transfer_cancel(kvault_paged_transfer* transfer) KVAULT_NOEXCEPT;
KVAULT_API size_t kvault_paged_transfer_size(const kvault_paged_transfer* transfer) KVAULT_NOEXCEPT;
KVAULT_API kvault_status kvault_paged_transfer_key_status(const kvault_paged_transfer* transfer,
                                                          size_t i, char* message,
                                                          size_t message_capacity) KVAULT_NOEXCEPT;
KVAULT_API size_t kvault_paged_transfer_leading_ok(const kvault_paged_transfer* transfer)
    KVAULT_NOEXCEPT;
/* Store: leading blocks found already stored (skip_stored) and not sent again; 0 for a load. */
KVAULT_API size_t kvault_paged_transfer_skipped(const kvault_paged_transfer* transfer)
    KVAULT_NOEXCEPT;
/* Load, CUDA path: leading blocks decoded straight from the daemon's gpu tier through CUDA IPC
 * (with a lease, from a daemon that exports its gpu tier); final once the transfer is done, and
 * then at most its leading_ok. 0 on the host path and for a store. */
KVAULT_API size_t kvault_paged_transfer_gpu_tier_blocks(const kvault_paged_transfer* transfer)
    KVAULT_NOEXCEPT;
/* Store: blocks until the engine's KV is no longer read or `timeout_ms`; non-zero when released
 * (from then on the engine may reuse its blocks). A load returns non-zero at once. */
KVAULT_API int kvault_paged_transfer_wait_source_released(const kvault_paged_transfer* transfer,
                                                          int64_t timeout_ms) KVAULT_NOEXCEPT;
/* Load: blocks until layer `layer` is ready for every block that loads (host: written; CUDA:
 * queued on the load's stream), the transfer ends, or `timeout_ms`. OK when ready; the
 * transfer's status when it ended without it; UNAVAILABLE at the timeout; INVALID_ARGUMENT for a
 * layer out of range or a store transfer. */
KVAULT_API kvault_status kvault_paged_transfer_wait_layer(const kvault_paged_transfer* transfer,
                                                          uint32_t layer,
                                                          int64_t timeout_ms) KVAULT_NOEXCEPT;
/* Load, CUDA path: a cudaEvent_t recorded after layer `layer`'s decode, valid after wait_layer
 * returned OK and while the transfer lives. NULL on the host path and for a store. */
KVAULT_API void* kvault_paged_transfer_layer_event(const kvault_paged_transfer* transfer,
                                                   uint32_t layer) KVAULT_NOEXCEPT;
/* Frees the handle; the transfer goes on (kvault_paged_store_free waits for it). NULL: no-op. */
KVAULT_API void kvault_paged_transfer_free(kvault_paged_transfer* transfer) KVAULT_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVAULT_KVAULT_H_ */
