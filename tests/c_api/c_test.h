/* Checks and small helpers shared by the C ABI test's files (kvault_c_test.c). C11, libc and
 * kvault/kvault.h only. */
#ifndef KVAULT_TESTS_C_API_C_TEST_H_
#define KVAULT_TESTS_C_API_C_TEST_H_

#include <stddef.h>
#include <stdint.h>

#include "kvault/kvault.h"

/* Counts a check; on failure prints it with the thread's kvault_last_error(). Returns `ok`. */
int c_test_check(int ok, const char* what, const char* file, int line);
/* Checks that `got` is `want`, printing both names and the last error when not. */
int c_test_check_status(kvault_status got, kvault_status want, const char* what, const char* file,
                        int line);
/* Ends the program with a failure (the daemon is stopped by the exit handler). */
void c_test_fatal(const char* what, const char* file, int line);

#define CHECK(cond) c_test_check((cond) != 0, #cond, __FILE__, __LINE__)
#define CHECK_STATUS(expr, want) c_test_check_status((expr), (want), #expr, __FILE__, __LINE__)
#define REQUIRE(cond)                                          \
  do {                                                         \
    if (!CHECK(cond)) c_test_fatal(#cond, __FILE__, __LINE__); \
  } while (0)
#define REQUIRE_STATUS(expr, want)                                          \
  do {                                                                      \
    if (!CHECK_STATUS(expr, want)) c_test_fatal(#expr, __FILE__, __LINE__); \
  } while (0)

/* Deterministic pseudo-random numbers (xorshift64*). */
uint64_t c_test_random(uint64_t* state);
/* Finite fp16 bit patterns of magnitude about 0.1 .. 2, either sign. */
void c_test_fill_f16(uint16_t* values, size_t count, uint64_t seed);
/* Token ids 0 .. 127999. */
void c_test_fill_tokens(uint32_t* tokens, size_t count, uint64_t seed);

/* A key from 64 hex digits, and whether `key` equals one. */
kvault_key c_test_key_from_hex(const char* hex);
int c_test_key_is(const kvault_key* key, const char* hex);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t c_test_monotonic_ms(void);

/* Makes the scratch directory, arms a 240 s watchdog and the exit handler that kills the daemon
 * and removes the directory. Call first. */
void c_test_setup(void);
/* Starts kvaultd on ports 0 in the scratch directory; writes its control address ("HOST:PORT")
 * to `server`. Fatal when no ready line comes within 20 s. */
void c_test_start_daemon(const char* kvaultd, char* server, size_t server_size);
/* SIGTERM; the daemon's exit status, or -1 when it did not exit within 30 s. */
int c_test_stop_daemon(void);
/* A loopback port nobody listens on. */
int c_test_dead_port(void);
/* Prints the counts; the exit code (0 when every check passed). */
int c_test_finish(void);

/* The namespace digest of a small test model (f16; model id, layout and block_tokens given). */
kvault_key c_test_namespace(const char* model_id, uint32_t layers, uint32_t kv_heads,
                            uint32_t head_dim, uint32_t block_tokens);

/* A kvault_block_format of f16 KV with the given shape, codec and namespace digest. */
kvault_block_format c_test_block_format(uint32_t layers, uint32_t kv_heads, uint32_t head_dim,
                                        uint32_t block_tokens, const char* codec,
                                        kvault_key ns_digest);

/* destinations[i] = the `object` bytes at base + i * object (whole object, offset 0), for i <
 * count. */
void c_test_destinations(kvault_load_destination* destinations, size_t count, uint8_t* base,
                         size_t object);

/* Paged KV through kvault_store_paged / kvault_load_paged on host memory (kvault_c_paged.c). */
void c_test_paged(kvault_client* client);
/* A paged store used and freed after kvault_close of its client (kvault_c_paged.c). */
void c_test_paged_after_close(const char* server);

#endif /* KVAULT_TESTS_C_API_C_TEST_H_ */
