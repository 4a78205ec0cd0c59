/* The C test of libasl.so: calls every function of asl.h, as a C program would.
 *
 *   asl_test api WORKDIR          every call, on a store it creates in WORKDIR/store
 *   asl_test bad WORKDIR          bad input: NULL, closed handles, non-UTF-8, locks, damage
 *   asl_test read STORE REF FILE  a store written by the CLI: REF must read back as FILE
 *   asl_test threads WORKDIR      one handle shared by threads that put, get and close
 *
 * It prints "KEY value" lines the Rust harness (tests/c_api.rs) checks against the CLI, and
 * exits non-zero at the first check that fails, naming it. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "asl.h"

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

/* A call that must succeed. */
#define OK(call)                                                                   \
  do {                                                                             \
    asl_status st_ = (call);                                                       \
    if (st_ != ASL_OK)                                                             \
      fail("%s:%d: %s -> %s: %s", __FILE__, __LINE__, #call, asl_status_name(st_), \
           asl_last_error());                                                      \
  } while (0)

/* A call that must fail with `code` and a message containing `needle`. */
#define EXPECT(code, needle, call)                                                    \
  do {                                                                                \
    asl_status st_ = (call);                                                          \
    const char *m_ = asl_last_error();                                                \
    if (st_ != (code))                                                                \
      fail("%s:%d: %s -> %s (%s), expected %s", __FILE__, __LINE__, #call,            \
           asl_status_name(st_), m_, asl_status_name(code));                          \
    if (m_ == NULL || strstr(m_, (needle)) == NULL)                                   \
      fail("%s:%d: %s: message '%s' lacks '%s'", __FILE__, __LINE__, #call, m_,       \
           (needle));                                                                 \
    printf("BAD %s %s: %s\n", #code, #call, m_);                                      \
  } while (0)

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
    fail("cannot write %s: %s", path, strerror(errno));
}

static void print_ref(const char *key, const asl_ref *r) {
  char text[ASL_REF_STRING_MAX];
  OK(asl_ref_to_string(r, text, sizeof text));
  printf("%s %s\n", key, text);
}

/* A pseudo-random, deterministic byte stream for asl_put_stream. */
struct pattern {
  uint64_t state;
  size_t left;
};

static uint8_t pattern_byte(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint8_t)(*s >> 56);
}

static ptrdiff_t read_pattern(void *ctx, uint8_t *buf, size_t cap) {
  struct pattern *p = ctx;
  size_t n = cap < p->left ? cap : p->left;
  /* Short reads on purpose: the library must cope with any amount. */
  if (n > 100000) n = 100000;
  for (size_t i = 0; i < n; i++) buf[i] = pattern_byte(&p->state);
  p->left -= n;
  return (ptrdiff_t)n;
}

struct check {
  uint64_t state;
  size_t seen;
  int mismatch;
};

static int32_t check_pattern(void *ctx, const uint8_t *buf, size_t len) {
  struct check *c = ctx;
  for (size_t i = 0; i < len; i++)
    if (buf[i] != pattern_byte(&c->state)) c->mismatch = 1;
  c->seen += len;
  return 0;
}

static ptrdiff_t read_fails(void *ctx, uint8_t *buf, size_t cap) {
  (void)ctx, (void)buf, (void)cap;
  return -1;
}

static int32_t write_refuses(void *ctx, const uint8_t *buf, size_t len) {
  (void)ctx, (void)buf, (void)len;
  return 5;
}

struct reentry {
  asl_store *store;
  const asl_ref *ref;
  asl_status status;
};

/* A stream callback calling back into its own handle gets ASL_E_USAGE, not a deadlock. */
static int32_t write_reenters(void *ctx, const uint8_t *buf, size_t len) {
  (void)buf, (void)len;
  struct reentry *r = ctx;
  uint64_t n;
  r->status = asl_artifact_len(r->store, r->ref, &n);
  if (asl_store_close(r->store) != ASL_E_USAGE) r->status = ASL_E_FAILED;
  return 0;
}

struct progress_seen {
  int calls;
  int done;
  uint64_t files;
  asl_store *store;
  asl_status reentry;
};

static void on_progress(void *ctx, const asl_progress *p) {
  struct progress_seen *s = ctx;
  s->calls++;
  if (p->current_path == NULL) fail("progress without a current path");
  if (p->done) {
    s->done++;
    s->files = p->files;
    /* A call back into the same handle must be refused, not deadlock. */
    asl_snapshot_list *l = NULL;
    s->reentry = asl_snapshots(s->store, &l);
    asl_snapshot_list_free(l);
  }
}

static void make_tree(const char *dir) {
  char p[4096];
  if (mkdir(dir, 0755) != 0) fail("mkdir %s: %s", dir, strerror(errno));
  snprintf(p, sizeof p, "%s/sub", dir);
  if (mkdir(p, 0750) != 0) fail("mkdir %s", p);
  snprintf(p, sizeof p, "%s/hello.txt", dir);
  write_file(p, "hello from C\n", 13);
  snprintf(p, sizeof p, "%s/sub/data.bin", dir);
  static uint8_t big[300000];
  uint64_t s = 7;
  for (size_t i = 0; i < sizeof big; i++) big[i] = pattern_byte(&s);
  write_file(p, big, sizeof big);
  snprintf(p, sizeof p, "%s/sub/link", dir);
  if (symlink("../hello.txt", p) != 0) fail("symlink %s", p);
}

static void list_snapshots(asl_store *s, const char *key, size_t expect) {
  asl_snapshot_list *list = NULL;
  OK(asl_snapshots(s, &list));
  size_t n = asl_snapshot_list_len(list);
  if (n != expect) fail("%s: %zu snapshots, expected %zu", key, n, expect);
  for (size_t i = 0; i < n; i++) {
    asl_snapshot snap;
    OK(asl_snapshot_list_get(list, i, &snap));
    printf("%s %llu %s %s %s\n", key, (unsigned long long)snap.id, snap.kind,
           snap.label ? snap.label : "-", snap.has_root ? "root" : "noroot");
    if (snap.json == NULL || strstr(snap.json, "\"id\"") == NULL) fail("snapshot json: %s", snap.json);
  }
  asl_snapshot snap;
  EXPECT(ASL_E_USAGE, "past the end", asl_snapshot_list_get(list, n, &snap));
  asl_snapshot_list_free(list);
}

static int api(const char *work) {
  char store[2048], tree[2048], target[2048], file[2048];
  snprintf(store, sizeof store, "%s/store", work);
  snprintf(tree, sizeof tree, "%s/tree", work);
  snprintf(target, sizeof target, "%s/restored", work);
  snprintf(file, sizeof file, "%s/capture.txt", work);
  printf("VERSION %s\n", asl_version());
  if (strcmp(asl_status_name(ASL_E_LOCKED), "ASL_E_LOCKED") != 0) fail("status name");

  asl_init_options init = {.hash_id = ASL_HASH_BLAKE3, .domain_id = 7};
  OK(asl_store_init(store, &init));
  EXPECT(ASL_E_EXISTS, "refusing to initialise", asl_store_init(store, NULL));

  asl_store *w = NULL;
  OK(asl_store_open(store, ASL_OPEN_WRITE, &w));

  /* put, commit, get */
  const char *hello = "hello, libasl";
  asl_ref put_ref, stream_ref, parsed;
  OK(asl_put(w, (const uint8_t *)hello, strlen(hello), &put_ref));
  struct pattern pat = {.state = 42, .left = 5u << 20};
  OK(asl_put_stream(w, read_pattern, &pat, &stream_ref));
  char text[ASL_REF_STRING_MAX];
  OK(asl_ref_to_string(&put_ref, text, sizeof text));
  OK(asl_ref_parse(text, &parsed));
  if (memcmp(&parsed, &put_ref, sizeof parsed) != 0) fail("reference text round trip");
  EXPECT(ASL_E_BUFFER, "needs", asl_ref_to_string(&put_ref, text, 10));
  /* Not visible before the commit. */
  uint64_t len = 0;
  EXPECT(ASL_E_NOT_FOUND, "not in the store", asl_artifact_len(w, &put_ref, &len));
  uint64_t put_snap = 0;
  OK(asl_commit(w, &stream_ref, "put", "c-put", &put_snap));
  print_ref("PUT_REF", &put_ref);
  print_ref("STREAM_REF", &stream_ref);
  printf("PUT_SNAPSHOT %llu\n", (unsigned long long)put_snap);

  OK(asl_artifact_len(w, &put_ref, &len));
  if (len != strlen(hello)) fail("artifact_len %llu", (unsigned long long)len);
  char small[4];
  size_t got = 0;
  EXPECT(ASL_E_BUFFER, "buffer holds 4", asl_get(w, &put_ref, (uint8_t *)small, sizeof small, &got));
  if (got != strlen(hello)) fail("needed length %zu", got);
  char buf[64];
  OK(asl_get(w, &put_ref, (uint8_t *)buf, sizeof buf, &got));
  if (got != strlen(hello) || memcmp(buf, hello, got) != 0) fail("get returned other bytes");
  struct check chk = {.state = 42};
  uint64_t streamed = 0;
  OK(asl_get_stream(w, &stream_ref, check_pattern, &chk, &streamed));
  if (chk.mismatch || chk.seen != (5u << 20) || streamed != (5u << 20))
    fail("get_stream: mismatch %d, %zu bytes", chk.mismatch, chk.seen);
  struct reentry re = {.store = w, .ref = &put_ref};
  OK(asl_get_stream(w, &put_ref, write_reenters, &re, NULL));
  if (re.status != ASL_E_USAGE) fail("re-entry from a stream callback gave %s", asl_status_name(re.status));

  /* intake with progress, restore, verify */
  make_tree(tree);
  const char *paths[] = {tree};
  const char *excludes[] = {"*.tmp"};
  asl_intake_options io = {.label = "c-intake", .excludes = excludes, .excludes_len = 1,
                           .threads = 2, .progress_interval_ms = 1};
  struct progress_seen ps = {.store = w};
  asl_intake_result ir;
  OK(asl_intake(w, paths, 1, &io, on_progress, &ps, &ir));
  if (ps.done != 1 || ps.calls < 1 || ps.files != 2) fail("progress: %d calls, %d done, %llu files", ps.calls, ps.done, (unsigned long long)ps.files);
  if (ps.reentry != ASL_E_USAGE) fail("re-entry from the callback gave %s", asl_status_name(ps.reentry));
  if (ir.files != 2 || ir.dirs != 2 || ir.symlinks != 1 || ir.errors != 0)
    fail("intake counts: %llu files %llu dirs %llu symlinks", (unsigned long long)ir.files,
         (unsigned long long)ir.dirs, (unsigned long long)ir.symlinks);
  printf("INTAKE_SNAPSHOT %llu\n", (unsigned long long)ir.snapshot_id);
  print_ref("INTAKE_ROOT", &ir.root);

  list_snapshots(w, "SNAPSHOT", 2);
  asl_snapshot_list *shown = NULL;
  OK(asl_snapshot_show(w, "c-intake", &shown));
  asl_snapshot one;
  OK(asl_snapshot_list_get(shown, 0, &one));
  if (asl_snapshot_list_len(shown) != 1 || one.id != ir.snapshot_id || !one.has_root ||
      memcmp(&one.root, &ir.root, sizeof one.root) != 0 || strcmp(one.kind, "intake") != 0)
    fail("snapshot_show");
  asl_snapshot_list_free(shown);
  uint64_t latest = 0;
  OK(asl_snapshot_resolve(w, "latest", &latest));
  if (latest != ir.snapshot_id) fail("latest is %llu", (unsigned long long)latest);

  asl_restore_result rr;
  OK(asl_restore(w, "c-intake", NULL, target, ASL_RESTORE_NO_OWNERS, &rr));
  if (rr.files != 2 || rr.symlinks != 1 || rr.errors != 0 || rr.integrity_errors != 0)
    fail("restore counts");
  char subtarget[4096];
  snprintf(subtarget, sizeof subtarget, "%s/restored-sub", work);
  OK(asl_restore(w, "latest", "sub/data.bin", subtarget, 0, NULL));
  printf("RESTORED %s\n", target);

  asl_verify_result vr;
  OK(asl_verify(w, ASL_VERIFY_READ_DATA, &vr));
  if (vr.problems != 0 || vr.snapshots != 2 || vr.bytes_read == 0) fail("verify counts");

  /* capture a file through a read-only handle */
  EXPECT(ASL_E_LOCKED, "takes the lock", asl_capture_file(w, file, NULL, NULL, NULL));
  OK(asl_store_close(w));
  write_file(file, "captured by C\n", 14);
  asl_store *r = NULL;
  OK(asl_store_open(store, 0, &r));
  EXPECT(ASL_E_READ_ONLY, "read-only", asl_put(r, (const uint8_t *)"x", 1, &parsed));
  asl_capture_result cr;
  OK(asl_capture_file(r, file, "c-capture", NULL, &cr));
  printf("CAPTURE_SNAPSHOT %llu\n", (unsigned long long)cr.snapshot_id);
  print_ref("CAPTURE_RECEIPT", &cr.receipt);
  OK(asl_store_refresh(r));
  list_snapshots(r, "AFTER_CAPTURE", 3);
  OK(asl_store_close(r));
  printf("API OK\n");
  return 0;
}

static int flip_a_byte(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)ftw;
  if (type != FTW_F || strstr(path, "/open/") != NULL || st->st_size < 64) return 0;
  int fd = open(path, O_RDWR);
  if (fd < 0) fail("open %s: %s", path, strerror(errno));
  /* Invert every byte: whatever the layout, each record's data is damaged. */
  uint8_t b[4096];
  for (off_t at = 0; at < st->st_size; at += (off_t)sizeof b) {
    ssize_t n = pread(fd, b, sizeof b, at);
    if (n <= 0) fail("pread %s", path);
    for (ssize_t i = 0; i < n; i++) b[i] ^= 0xff;
    if (pwrite(fd, b, (size_t)n, at) != n) fail("pwrite %s", path);
  }
  close(fd);
  return 0;
}

static int bad(const char *work) {
  char store[2048], other[2048], blocks[4096], config[4096];
  snprintf(store, sizeof store, "%s/store", work);
  asl_store *w = NULL, *w2 = NULL, *r = NULL;
  asl_ref ref;
  size_t got;
  uint64_t id;

  /* NULL pointers */
  EXPECT(ASL_E_NULL, "dir is NULL", asl_store_init(NULL, NULL));
  EXPECT(ASL_E_NULL, "dir is NULL", asl_store_open(NULL, ASL_OPEN_WRITE, &w));
  EXPECT(ASL_E_NULL, "out is NULL", asl_store_open(store, ASL_OPEN_WRITE | ASL_OPEN_CREATE, NULL));
  EXPECT(ASL_E_NULL, "store is NULL", asl_put(NULL, (const uint8_t *)"x", 1, &ref));
  EXPECT(ASL_E_NULL, "store is NULL", asl_store_close(NULL));
  EXPECT(ASL_E_NULL, "reference is NULL", asl_ref_to_string(NULL, (char *)&got, sizeof got));
  EXPECT(ASL_E_NULL, "list is NULL", asl_snapshot_list_get(NULL, 0, &(asl_snapshot){0}));
  if (asl_snapshot_list_len(NULL) != 0) fail("list_len(NULL)");
  asl_snapshot_list_free(NULL);

  OK(asl_store_open(store, ASL_OPEN_WRITE | ASL_OPEN_CREATE, &w));
  EXPECT(ASL_E_NULL, "data is NULL", asl_put(w, NULL, 5, &ref));
  EXPECT(ASL_E_NULL, "out is NULL", asl_put(w, (const uint8_t *)"x", 1, NULL));
  EXPECT(ASL_E_NULL, "read is NULL", asl_put_stream(w, NULL, NULL, &ref));
  EXPECT(ASL_E_NULL, "reference is NULL", asl_get(w, NULL, NULL, 0, &got));
  EXPECT(ASL_E_NULL, "paths is NULL", asl_intake(w, NULL, 1, NULL, NULL, NULL, NULL));
  const char *null_path[] = {NULL};
  EXPECT(ASL_E_NULL, "paths[0] is NULL", asl_intake(w, null_path, 1, NULL, NULL, NULL, NULL));
  EXPECT(ASL_E_NULL, "snapshot name is NULL", asl_restore(w, NULL, NULL, work, 0, NULL));
  EXPECT(ASL_E_NULL, "out is NULL", asl_snapshots(w, NULL));
  EXPECT(ASL_E_NULL, "path is NULL", asl_capture_file(w, NULL, NULL, NULL, NULL));

  /* bad arguments and failing callbacks */
  EXPECT(ASL_E_USAGE, "no '<algorithm>:' prefix", asl_ref_parse("abc", &ref));
  EXPECT(ASL_E_USAGE, "unknown open flags", asl_store_open(store, 64, &r));
  asl_ref bogus = {.hash_id = 9};
  EXPECT(ASL_E_USAGE, "unknown hash id", asl_get(w, &bogus, NULL, 0, &got));
  EXPECT(ASL_E_CALLBACK, "read callback returned -1", asl_put_stream(w, read_fails, NULL, &ref));
  EXPECT(ASL_E_NO_SNAPSHOT, "no snapshots yet", asl_snapshot_resolve(w, "latest", &id));
  EXPECT(ASL_E_NOT_FOUND, "cannot take in", asl_intake(w, (const char *[]){"/nonexistent/x"}, 1, NULL, NULL, NULL, NULL));
  asl_ref damaged;
  OK(asl_put(w, (const uint8_t *)"damage me, please", 17, &damaged));
  OK(asl_commit(w, &damaged, NULL, NULL, &id));
  EXPECT(ASL_E_CALLBACK, "write callback returned 5", asl_get_stream(w, &damaged, write_refuses, NULL, NULL));
  snprintf(other, sizeof other, "%s/no-tree", work);
  EXPECT(ASL_E_USAGE, "has no tree", asl_restore(w, "latest", NULL, other, 0, NULL));
  EXPECT(ASL_E_NO_SNAPSHOT, "no snapshot matches", asl_snapshot_show(w, "nope", &(asl_snapshot_list *){0}));

  /* text that is not UTF-8, and a path that is not (which is a valid Linux path) */
  EXPECT(ASL_E_UTF8, "label", asl_commit(w, NULL, NULL, "bad\xff\xfelabel", &id));
  EXPECT(ASL_E_UTF8, "snapshot name", asl_snapshot_resolve(w, "snap\xc3", &id));
  EXPECT(ASL_E_UTF8, "reference", asl_ref_parse("b3:\xff", &ref));
  snprintf(other, sizeof other, "%s/store-\xff\xfe", work);
  EXPECT(ASL_E_NOT_A_STORE, "is not an ASL store", asl_store_open(other, 0, &r));
  asl_store *nu = NULL;
  OK(asl_store_open(other, ASL_OPEN_WRITE | ASL_OPEN_CREATE, &nu));
  OK(asl_put(nu, (const uint8_t *)"non-utf8 home", 13, &ref));
  OK(asl_commit(nu, &ref, NULL, "non-utf8-path", NULL));
  OK(asl_store_close(nu));
  printf("NON_UTF8_STORE ok\n");

  /* a locked store */
  EXPECT(ASL_E_LOCKED, "is locked by a running writer", asl_store_open(store, ASL_OPEN_WRITE, &w2));
  EXPECT(ASL_E_LOCKED, "takes the lock", asl_capture_file(w, store, NULL, NULL, NULL));

  /* a closed handle, and one that never was */
  OK(asl_store_close(w));
  EXPECT(ASL_E_HANDLE, "closed", asl_put(w, (const uint8_t *)"x", 1, &ref));
  EXPECT(ASL_E_HANDLE, "closed", asl_snapshots(w, &(asl_snapshot_list *){0}));
  EXPECT(ASL_E_HANDLE, "closed", asl_store_close(w));
  EXPECT(ASL_E_HANDLE, "never opened", asl_verify((asl_store *)(uintptr_t)0xdeadbeef, 0, NULL));
  /* The lock went with the close. */
  OK(asl_store_open(store, ASL_OPEN_WRITE, &w2));
  OK(asl_store_close(w2));

  /* a damaged store: flipped bytes in every block, then a config that is not one */
  snprintf(blocks, sizeof blocks, "%s/blocks", store);
  if (nftw(blocks, flip_a_byte, 8, FTW_PHYS) != 0) fail("nftw %s", blocks);
  OK(asl_store_open(store, 0, &r));
  char buf[64];
  EXPECT(ASL_E_CORRUPT, "damaged", asl_get(r, &damaged, (uint8_t *)buf, sizeof buf, &got));
  asl_verify_result vr;
  EXPECT(ASL_E_CORRUPT, "is damaged", asl_verify(r, ASL_VERIFY_READ_DATA, &vr));
  if (vr.problems == 0) fail("verify found no problem");
  OK(asl_store_close(r));
  snprintf(config, sizeof config, "%s/config", store);
  write_file(config, "{not json", 9);
  EXPECT(ASL_E_FORMAT, "config", asl_store_open(store, 0, &r));
  printf("BAD OK\n");
  return 0;
}

static int read_cli_store(const char *store, const char *ref_text, const char *file) {
  asl_store *r = NULL;
  OK(asl_store_open(store, 0, &r));
  asl_snapshot_list *list = NULL;
  OK(asl_snapshots(r, &list));
  printf("CLI_SNAPSHOTS %zu\n", asl_snapshot_list_len(list));
  asl_snapshot_list_free(list);
  asl_ref ref;
  OK(asl_ref_parse(ref_text, &ref));
  uint64_t len;
  OK(asl_artifact_len(r, &ref, &len));
  uint8_t *data = malloc(len ? len : 1), *want = malloc(len ? len : 1);
  size_t got;
  OK(asl_get(r, &ref, data, len, &got));
  FILE *f = fopen(file, "rb");
  if (f == NULL || fread(want, 1, len, f) != len) fail("read %s", file);
  fclose(f);
  if (got != len || memcmp(data, want, len) != 0) fail("bytes differ from %s", file);
  free(data);
  free(want);
  OK(asl_verify(r, ASL_VERIFY_READ_DATA, NULL));
  OK(asl_store_close(r));
  printf("READ OK %llu\n", (unsigned long long)len);
  return 0;
}

/* Threads sharing one handle: puts in parallel, gets of committed data meanwhile, then a close
 * racing with calls (each call either works or returns ASL_E_HANDLE). */
#define THREADS 4
#define PUTS 100

struct worker {
  asl_store *store;
  int index;
  asl_ref refs[PUTS];
  const asl_ref *committed;
  int failed;
};

static void *put_worker(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < PUTS; i++) {
    char data[64];
    int n = snprintf(data, sizeof data, "thread %d object %d", w->index, i);
    if (asl_put(w->store, (const uint8_t *)data, (size_t)n, &w->refs[i]) != ASL_OK) w->failed = 1;
    char buf[64];
    size_t len;
    if (asl_get(w->store, w->committed, (uint8_t *)buf, sizeof buf, &len) != ASL_OK) w->failed = 1;
  }
  return NULL;
}

static void *racing_worker(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 1000; i++) {
    asl_snapshot_list *l = NULL;
    asl_status st = asl_snapshots(w->store, &l);
    asl_snapshot_list_free(l);
    if (st == ASL_E_HANDLE) return NULL;
    if (st != ASL_OK) w->failed = 1;
  }
  return NULL;
}

static int threads(const char *work) {
  char store[2048];
  snprintf(store, sizeof store, "%s/store", work);
  asl_store *s;
  OK(asl_store_open(store, ASL_OPEN_WRITE | ASL_OPEN_CREATE, &s));
  asl_ref first;
  OK(asl_put(s, (const uint8_t *)"first", 5, &first));
  OK(asl_commit(s, &first, NULL, NULL, NULL));
  struct worker ws[THREADS];
  pthread_t tid[THREADS];
  for (int t = 0; t < THREADS; t++) {
    ws[t] = (struct worker){.store = s, .index = t, .committed = &first};
    if (pthread_create(&tid[t], NULL, put_worker, &ws[t]) != 0) fail("pthread_create");
  }
  for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
  uint64_t id;
  OK(asl_commit(s, NULL, NULL, "threads", &id));
  for (int t = 0; t < THREADS; t++) {
    if (ws[t].failed) fail("thread %d: a call failed", t);
    for (int i = 0; i < PUTS; i++) {
      char want[64], buf[64];
      int n = snprintf(want, sizeof want, "thread %d object %d", t, i);
      size_t len;
      OK(asl_get(s, &ws[t].refs[i], (uint8_t *)buf, sizeof buf, &len));
      if (len != (size_t)n || memcmp(buf, want, len) != 0) fail("thread %d object %d", t, i);
    }
  }
  for (int t = 0; t < THREADS; t++) {
    ws[t].failed = 0;
    if (pthread_create(&tid[t], NULL, racing_worker, &ws[t]) != 0) fail("pthread_create");
  }
  OK(asl_store_close(s));
  for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
  for (int t = 0; t < THREADS; t++)
    if (ws[t].failed) fail("racing thread %d got another error than ASL_E_HANDLE", t);
  /* The close released the lock. */
  OK(asl_store_open(store, ASL_OPEN_WRITE, &s));
  OK(asl_store_close(s));
  printf("THREADS OK %d\n", THREADS * PUTS);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 3 && strcmp(argv[1], "api") == 0) return api(argv[2]);
  if (argc == 3 && strcmp(argv[1], "bad") == 0) return bad(argv[2]);
  if (argc == 3 && strcmp(argv[1], "threads") == 0) return threads(argv[2]);
  if (argc == 5 && strcmp(argv[1], "read") == 0) return read_cli_store(argv[2], argv[3], argv[4]);
  fprintf(stderr, "usage: asl_test api|bad|threads WORKDIR | read STORE REF FILE\n");
  return 2;
}
