/* example.c: take a directory into a store, list its snapshots, put and get some bytes.
 *   cc example.c $(pkg-config --cflags --libs asl) -o example
 *   ./example STORE DIR */
#include <asl.h>
#include <stdio.h>
#include <string.h>

static int check(asl_status st, const char *what) {
  if (st != ASL_OK && st != ASL_E_INCOMPLETE) {
    fprintf(stderr, "%s: %s: %s\n", what, asl_status_name(st), asl_last_error());
    return 1;
  }
  return 0;
}

static void progress(void *ctx, const asl_progress *p) {
  (void)ctx;
  fprintf(stderr, "\r%llu files, %llu bytes read%s", (unsigned long long)p->files,
          (unsigned long long)p->bytes_read, p->done ? "\n" : "");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s STORE DIR\n", argv[0]);
    return 2;
  }
  asl_store *store;
  if (check(asl_store_open(argv[1], ASL_OPEN_WRITE | ASL_OPEN_CREATE, &store), "open"))
    return 1;

  /* Intake: one snapshot of DIR. ASL_E_INCOMPLETE means committed, some files unreadable. */
  const char *paths[] = {argv[2]};
  asl_intake_options opts = {.label = "example"};
  asl_intake_result taken;
  if (check(asl_intake(store, paths, 1, &opts, progress, NULL, &taken), "intake")) return 1;

  /* Put: visible once committed. */
  const char *note = "taken in by example.c";
  asl_ref ref;
  if (check(asl_put(store, (const uint8_t *)note, strlen(note), &ref), "put") ||
      check(asl_commit(store, &ref, "note", NULL, NULL), "commit"))
    return 1;
  char text[ASL_REF_STRING_MAX], back[64];
  size_t len;
  if (check(asl_ref_to_string(&ref, text, sizeof text), "ref") ||
      check(asl_get(store, &ref, (uint8_t *)back, sizeof back, &len), "get"))
    return 1;
  printf("put %s: %.*s\n", text, (int)len, back);

  /* Snapshots: the list owns its strings until freed. */
  asl_snapshot_list *list;
  if (check(asl_snapshots(store, &list), "snapshots")) return 1;
  for (size_t i = 0; i < asl_snapshot_list_len(list); i++) {
    asl_snapshot s;
    asl_snapshot_list_get(list, i, &s);
    printf("snapshot %llu  %-8s %s\n", (unsigned long long)s.id, s.kind,
           s.label ? s.label : "-");
  }
  asl_snapshot_list_free(list);

  asl_verify_result v;
  int rc = check(asl_verify(store, 0, &v), "verify");
  asl_store_close(store);
  return rc;
}
