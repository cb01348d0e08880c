/* The support of kvault_c_test (c_test.h): checks, test data, and the kvaultd process, which is
 * killed and its scratch directory removed on every exit path (also a failed REQUIRE and a
 * timeout; PR_SET_PDEATHSIG covers a crash of the test). */
#define _XOPEN_SOURCE 700

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "c_test.h"
#include "kvault/kvault.h"

/* ---- checks ---------------------------------------------------------------------------- */

static int g_checks;
static int g_failures;

int c_test_check(int ok, const char* what, const char* file, int line) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    fprintf(stderr, "%s:%d: check failed: %s (last error: \"%s\")\n", file, line, what,
            kvault_last_error());
  }
  return ok;
}

int c_test_check_status(kvault_status got, kvault_status want, const char* what, const char* file,
                        int line) {
  ++g_checks;
  if (got != want) {
    ++g_failures;
    fprintf(stderr, "%s:%d: %s is %s, want %s (last error: \"%s\")\n", file, line, what,
            kvault_status_name(got), kvault_status_name(want), kvault_last_error());
  }
  return got == want;
}

void c_test_fatal(const char* what, const char* file, int line) {
  fprintf(stderr, "%s:%d: fatal: %s\n", file, line, what);
  exit(1);
}

uint64_t c_test_random(uint64_t* state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ull;
}

void c_test_fill_f16(uint16_t* values, size_t count, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < count; ++i) {
    const uint64_t r = c_test_random(&state);
    const uint16_t sign = (r & 1) ? 0x8000 : 0;
    const uint16_t exponent = (uint16_t)(11 + (r >> 1) % 5); /* 2^-4 .. 2^0 */
    values[i] = (uint16_t)(sign | (exponent << 10) | ((r >> 8) & 0x3FF));
  }
}

void c_test_fill_tokens(uint32_t* tokens, size_t count, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 7;
  for (size_t i = 0; i < count; ++i) tokens[i] = (uint32_t)(c_test_random(&state) % 128000);
}

kvault_key c_test_namespace(const char* model_id, uint32_t layers, uint32_t kv_heads,
                            uint32_t head_dim, uint32_t block_tokens) {
  kvault_namespace ns;
  kvault_namespace_init(&ns);
  ns.model_id = model_id;
  ns.num_layers = layers;
  ns.kv_heads = kv_heads;
  ns.head_dim = head_dim;
  ns.dtype = "f16";
  ns.block_tokens = block_tokens;
  kvault_key digest;
  REQUIRE_STATUS(kvault_namespace_digest(&ns, &digest), KVAULT_OK);
  return digest;
}

kvault_block_format c_test_block_format(uint32_t layers, uint32_t kv_heads, uint32_t head_dim,
                                        uint32_t block_tokens, const char* codec,
                                        kvault_key ns_digest) {
  kvault_block_format format;
  kvault_block_format_init(&format);
  format.num_layers = layers;
  format.kv_heads = kv_heads;
  format.head_dim = head_dim;
  format.block_tokens = block_tokens;
  format.codec = codec;
  format.ns_digest = ns_digest;
  return format;
}

void c_test_destinations(kvault_load_destination* destinations, size_t count, uint8_t* base,
                         size_t object) {
  for (size_t i = 0; i < count; ++i) {
    destinations[i].buffer = base + i * object;
    destinations[i].capacity = object;
    destinations[i].offset = 0;
    destinations[i].length = 0;
  }
}

kvault_key c_test_key_from_hex(const char* hex) {
  kvault_key key;
  for (int i = 0; i < KVAULT_KEY_BYTES; ++i) {
    unsigned byte = 0;
    REQUIRE(sscanf(hex + 2 * i, "%2x", &byte) == 1);
    key.bytes[i] = (uint8_t)byte;
  }
  return key;
}

int c_test_key_is(const kvault_key* key, const char* hex) {
  const kvault_key want = c_test_key_from_hex(hex);
  return memcmp(key->bytes, want.bytes, KVAULT_KEY_BYTES) == 0;
}

int64_t c_test_monotonic_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- the daemon ------------------------------------------------------------------------ */

static pid_t g_daemon = -1;
static char g_dir[256];

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void stop_everything(void) {
  if (g_daemon > 0) {
    kill(g_daemon, SIGKILL);
    waitpid(g_daemon, NULL, 0);
    g_daemon = -1;
  }
  if (g_dir[0] != '\0') {
    nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = '\0';
  }
}

static void on_alarm(int sig) {
  (void)sig;
  static const char kMessage[] = "kvault_c_test: timed out\n";
  if (write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1) < 0) _exit(2);
  if (g_daemon > 0) kill(g_daemon, SIGKILL);
  _exit(2);
}

static void print_daemon_stderr(void) {
  char path[300];
  snprintf(path, sizeof(path), "%s/kvaultd.err", g_dir);
  FILE* f = fopen(path, "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof(line), f) != NULL) fprintf(stderr, "kvaultd: %s", line);
  fclose(f);
}

/* Starts kvaultd on ports 0 in g_dir and writes its control address ("HOST:PORT") to `server`. */
void c_test_start_daemon(const char* kvaultd, char* server, size_t server_size) {
  int out[2];
  REQUIRE(pipe(out) == 0);
  char data_dir[300];
  snprintf(data_dir, sizeof(data_dir), "%s/data", g_dir);
  char err_path[300];
  snprintf(err_path, sizeof(err_path), "%s/kvaultd.err", g_dir);
  g_daemon = fork();
  REQUIRE(g_daemon >= 0);
  if (g_daemon == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out[1], STDOUT_FILENO);
    const int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, STDERR_FILENO);
    close(out[0]);
    execl(kvaultd, "kvaultd", "--control-port", "0", "--http-port", "0", "--data-dir", data_dir,
          (char*)NULL);
    _exit(127);
  }
  close(out[1]);
  char line[1024] = {0};
  size_t used = 0;
  const int64_t until = c_test_monotonic_ms() + 20000;
  while (strchr(line, '\n') == NULL && used + 1 < sizeof(line) && c_test_monotonic_ms() < until) {
    struct pollfd p = {out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = read(out[0], line + used, sizeof(line) - 1 - used);
    if (n <= 0) break;
    used += (size_t)n;
  }
  close(out[0]);
  const char* at = strstr(line, "control=");
  if (strncmp(line, "kvaultd ready ", 14) != 0 || at == NULL) {
    fprintf(stderr, "no ready line from %s: \"%s\"\n", kvaultd, line);
    print_daemon_stderr();
    c_test_fatal("kvaultd did not start", __FILE__, __LINE__);
  }
  at += strlen("control=");
  const size_t len = strcspn(at, " \n");
  REQUIRE(len > 0 && len < server_size);
  memcpy(server, at, len);
  server[len] = '\0';
}

/* SIGTERM and the exit status (0 expected), within 30 s. */
int c_test_stop_daemon(void) {
  kill(g_daemon, SIGTERM);
  const int64_t until = c_test_monotonic_ms() + 30000;
  int status = 0;
  while (waitpid(g_daemon, &status, WNOHANG) == 0) {
    if (c_test_monotonic_ms() > until) return -1;
    const struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  g_daemon = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A loopback port nobody listens on (bound, then closed). */
int c_test_dead_port(void) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  REQUIRE(bind(fd, (struct sockaddr*)&a, sizeof(a)) == 0);
  REQUIRE(getsockname(fd, (struct sockaddr*)&a, &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

void c_test_setup(void) {
  signal(SIGALRM, on_alarm);
  alarm(240);
  snprintf(g_dir, sizeof(g_dir), "/tmp/kvault_c_test.XXXXXX");
  if (mkdtemp(g_dir) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  atexit(stop_everything);
}

int c_test_finish(void) {
  printf("kvault_c_test: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
