/* The C side of bench/ffi: puts and gets through libasl.so, the same as
 * crates/asl-ffi/examples/bench_rust.rs does through the Rust API.
 * Prints `c put|get SIZE COUNT WALL_SECONDS CPU_SECONDS` (CPU: user and system time of the
 * whole process, the library's sealing threads included).
 *   bench STORE SIZE COUNT SEED */
#define _POSIX_C_SOURCE 200809L
#include <asl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage u;
  if (getrusage(RUSAGE_SELF, &u) != 0) return -1;
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
         (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

/* splitmix64, as bench_rust.rs computes it. */
static void fill(uint8_t *buf, size_t len, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < len; i += 8) {
    s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (size_t k = 0; k < 8 && i + k < len; k++) buf[i + k] = (uint8_t)(z >> (8 * k));
  }
}

static void check(asl_status st, const char *what) {
  if (st != ASL_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, asl_status_name(st), asl_last_error());
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bench STORE SIZE COUNT SEED\n");
    return 2;
  }
  size_t size = strtoull(argv[2], NULL, 10), count = strtoull(argv[3], NULL, 10);
  uint64_t seed = strtoull(argv[4], NULL, 10);
  uint8_t **objects = malloc(count * sizeof *objects);
  asl_ref *refs = malloc(count * sizeof *refs);
  for (size_t i = 0; i < count; i++) {
    objects[i] = malloc(size);
    fill(objects[i], size, seed * 1000003 + i);
  }

  asl_store *w;
  check(asl_store_open(argv[1], ASL_OPEN_WRITE | ASL_OPEN_CREATE, &w), "open");
  double t = now(), c = cpu();
  for (size_t i = 0; i < count; i++) check(asl_put(w, objects[i], size, &refs[i]), "put");
  check(asl_commit(w, NULL, "put", NULL, NULL), "commit");
  printf("c put %zu %zu %.6f %.6f\n", size, count, now() - t, cpu() - c);
  check(asl_store_close(w), "close");

  asl_store *r;
  check(asl_store_open(argv[1], 0, &r), "open");
  uint8_t *buf = malloc(size);
  t = now(), c = cpu();
  for (size_t i = 0; i < count; i++) {
    size_t len;
    check(asl_get(r, &refs[i], buf, size, &len), "get");
    if (len != size || memcmp(buf, objects[i], size) != 0) {
      fprintf(stderr, "object %zu read back other bytes\n", i);
      return 1;
    }
  }
  printf("c get %zu %zu %.6f %.6f\n", size, count, now() - t, cpu() - c);
  check(asl_store_close(r), "close");
  for (size_t i = 0; i < count; i++) free(objects[i]);
  free(objects);
  free(refs);
  free(buf);
  return 0;
}
