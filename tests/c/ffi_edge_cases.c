/*
 * Every error path of the C API, through the header, as a C program sees it. Run by
 * tests/test_c_abi.py under AddressSanitizer, LeakSanitizer and UBSan:
 *
 *   ffi_edge_cases DIR      # DIR: an empty scratch directory
 *
 * Each check asserts one specific status. After every failure the thread's last error must be
 * non-empty, and after every success it must be empty (dstore clears it on success). The first
 * failed check prints its line, the call, and the last error, and exits with status 1.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, fork */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dstore.h"

static atomic_uint checks;

static void expect_status(dstore_status got, dstore_status want, const char *call, int line) {
    const char *got_name = dstore_status_name(got);
    const char *want_name = dstore_status_name(want);
    const char *error = dstore_last_error();
    const char *problem = NULL;
    if (got != want) {
        problem = "wrong status";
    } else if (want != DSTORE_OK && error[0] == '\0') {
        problem = "failed without setting the last error";
    } else if (want == DSTORE_OK && error[0] != '\0') {
        problem = "succeeded but left a last error";
    }
    if (problem != NULL) {
        fprintf(stderr, "%s:%d: %s\n  %s\n  returned %s, expected %s\n  last error: \"%s\"\n",
                __FILE__, line, problem, call, got_name, want_name, error);
        exit(1);
    }
    atomic_fetch_add(&checks, 1);
}

/* EXPECT(call, status): `call` returns exactly `status`. */
#define EXPECT(call, status) expect_status((call), (status), #call, __LINE__)

/* CHECK(cond): anything else that must hold. */
#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n  last error: \"%s\"\n", __FILE__,     \
                    __LINE__, #cond, dstore_last_error());                                    \
            exit(1);                                                                          \
        }                                                                                     \
        atomic_fetch_add(&checks, 1);                                                         \
    } while (0)

static const char *scratch; /* argv[1] */

/* Writes "<scratch>/<name>" into `buf`. */
static void path_in_scratch(char *buf, size_t size, const char *name) {
    int n = snprintf(buf, size, "%s/%s", scratch, name);
    CHECK(n > 0 && (size_t)n < size);
}

static const uint8_t KEY_A[32] = {1};
static const uint8_t KEY_B[32] = {2};

/* Opens a node on <scratch>/<name> with an optional data key; the status is checked. */
static dstore_node *open_node(const char *name, const uint8_t *data_key, dstore_status want) {
    char root[4096];
    path_in_scratch(root, sizeof root, name);
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    if (data_key != NULL) {
        EXPECT(dstore_options_set_data_key(opts, data_key, 32), DSTORE_OK);
    }
    dstore_node *node = NULL;
    EXPECT(dstore_new(opts, &node), want);
    CHECK((node != NULL) == (want == DSTORE_OK));
    dstore_options_free(opts);
    return node;
}

static void store_str(dstore_node *node, const char *key, const char *value, bool encrypt) {
    EXPECT(dstore_store(node, key, (const uint8_t *)value, strlen(value), encrypt), DSTORE_OK);
}

/* ---- options ------------------------------------------------------------------------- */

static void test_options(void) {
    const uint8_t bytes[64] = {0};
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);

    EXPECT(dstore_options_set_root(NULL, "/tmp/x"), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_root(opts, NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_root(opts, "/tmp/\xff\xfe"), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`path` is not valid UTF-8") != NULL);
    EXPECT(dstore_options_set_root(opts, ""), DSTORE_INVALID_ARGUMENT);

    EXPECT(dstore_options_set_data_key(NULL, bytes, 32), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, NULL, 32), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, NULL, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, bytes, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, bytes, 31), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`key_len` must be 32") != NULL);
    EXPECT(dstore_options_set_data_key(opts, bytes, 33), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, bytes, SIZE_MAX), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_data_key(opts, bytes, 32), DSTORE_OK);

    EXPECT(dstore_options_set_secret(NULL, bytes, 8), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_secret(opts, NULL, 8), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_secret(opts, NULL, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_secret(opts, bytes, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_secret(opts, bytes, SIZE_MAX), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_secret(opts, bytes, 1), DSTORE_OK);

    EXPECT(dstore_options_set_chunk_size(NULL, 4096), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_chunk_size(opts, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_chunk_size(opts, 63), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_chunk_size(opts, (8u << 20) + 1), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_chunk_size(opts, SIZE_MAX), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_chunk_size(opts, 64), DSTORE_OK);
    EXPECT(dstore_options_set_chunk_size(opts, 8u << 20), DSTORE_OK);

    /* No root yet: refused, and *out untouched. */
    dstore_node *node = (dstore_node *)0x1;
    EXPECT(dstore_new(opts, &node), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "root") != NULL);
    CHECK(node == (dstore_node *)0x1);
    EXPECT(dstore_new(NULL, &node), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_new(opts, NULL), DSTORE_INVALID_ARGUMENT);

    dstore_options_free(opts);
    dstore_options_free(NULL);
}

/* ---- quorums, timeouts, background work, and stats ------------------------------------ */

/* Every counter of repair, scrubbing and garbage collection is zero. */
static bool background_idle(const dstore_stats *s) {
    return s->repair_passes == 0 && !s->repair_running && s->repair_last_pass_ms == 0 &&
           s->repair_checked == 0 && s->repair_chunks_pushed == 0 &&
           s->repair_manifests_pushed == 0 && s->repair_bytes_pushed == 0 &&
           s->repair_handed_off == 0 && s->repair_read_repairs == 0 && s->scrub_passes == 0 &&
           s->scrub_bytes == 0 && s->scrub_objects == 0 && s->scrub_bad == 0 &&
           s->scrub_restored == 0 && s->gc_chunks_collected == 0 &&
           s->gc_tombstones_collected == 0;
}

static void test_maintenance(void) {
    /* NULL options. */
    EXPECT(dstore_options_set_write_quorum(NULL, 2), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`opts` is NULL") != NULL);
    EXPECT(dstore_options_set_read_quorum(NULL, 2), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_timeouts_ms(NULL, 1000, 2000, 3000), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_repair_interval_ms(NULL, 1000), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_scrub(NULL, 1000, 1u << 20), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_gc_grace_ms(NULL, 1000, 2000), DSTORE_INVALID_ARGUMENT);

    char root[4096];
    path_in_scratch(root, sizeof root, "tuned");
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);

    /* Quorums: 0 is a majority; more than 255 can never fit the replica count. */
    EXPECT(dstore_options_set_write_quorum(opts, 256), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_read_quorum(opts, SIZE_MAX), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_write_quorum(opts, 0), DSTORE_OK);
    EXPECT(dstore_options_set_read_quorum(opts, 0), DSTORE_OK);

    /* Timeouts: 0 keeps a value; a member is suspect before it is dead. */
    EXPECT(dstore_options_set_timeouts_ms(opts, 0, 0, 0), DSTORE_OK);
    EXPECT(dstore_options_set_timeouts_ms(opts, 5000, 1000, 0), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "dead_after (1 s)") != NULL);
    EXPECT(dstore_options_set_timeouts_ms(opts, 60000, 0, 0), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "dead_after (10 s)") != NULL); /* the default */
    EXPECT(dstore_options_set_timeouts_ms(opts, 500, 500, 2000), DSTORE_OK);
    EXPECT(dstore_options_set_timeouts_ms(opts, 0, 400, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_options_set_timeouts_ms(opts, UINT64_MAX, UINT64_MAX, UINT64_MAX), DSTORE_OK);

    EXPECT(dstore_options_set_repair_interval_ms(opts, 250), DSTORE_OK);
    EXPECT(dstore_options_set_scrub(opts, 1000, 0), DSTORE_OK);
    EXPECT(dstore_options_set_scrub(opts, UINT64_MAX, UINT64_MAX), DSTORE_OK);
    EXPECT(dstore_options_set_gc_grace_ms(opts, 0, 0), DSTORE_OK);
    EXPECT(dstore_options_set_gc_grace_ms(opts, 3600000, 86400000), DSTORE_OK);

    /* A quorum larger than the replica count (3 by default) is refused by dstore_new. */
    dstore_node *node = (dstore_node *)0x1;
    EXPECT(dstore_options_set_write_quorum(opts, 4), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "write quorum") != NULL);
    CHECK(node == (dstore_node *)0x1);
    EXPECT(dstore_options_set_write_quorum(opts, 2), DSTORE_OK);
    EXPECT(dstore_options_set_replicas(opts, 1), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_INVALID_ARGUMENT); /* now 2 > 1 */
    CHECK(node == (dstore_node *)0x1);
    EXPECT(dstore_options_set_write_quorum(opts, 1), DSTORE_OK);
    EXPECT(dstore_options_set_read_quorum(opts, 2), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "read quorum") != NULL);
    EXPECT(dstore_options_set_read_quorum(opts, 1), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_OK);
    dstore_options_free(opts);

    /* Stats: checked arguments, and outputs written only on success. */
    dstore_stats stats;
    memset(&stats, 0x5a, sizeof stats);
    const dstore_stats before = stats;
    EXPECT(dstore_node_stats(NULL, &stats, sizeof stats), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`node` is NULL") != NULL);
    EXPECT(dstore_node_stats(node, NULL, sizeof stats), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_stats(node, &stats, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_stats(node, &stats, sizeof stats - 1), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "sizeof(dstore_stats)") != NULL);
    EXPECT(dstore_node_stats(node, &stats, sizeof stats + 8), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_stats(node, &stats, SIZE_MAX), DSTORE_INVALID_ARGUMENT);
    CHECK(memcmp(&stats, &before, sizeof stats) == 0);

    /* A new standalone node: everything zero. */
    EXPECT(dstore_node_stats(node, &stats, sizeof stats), DSTORE_OK);
    CHECK(stats.keys == 0 && stats.chunks == 0 && stats.bytes_stored == 0 &&
          stats.bytes_read == 0);
    CHECK(background_idle(&stats));

    /* It counts what callers do, and does no background work. */
    store_str(node, "one", "first value", true);
    store_str(node, "two", "second", false);
    uint8_t *out = NULL;
    size_t out_len = 0;
    EXPECT(dstore_get(node, "one", &out, &out_len), DSTORE_OK);
    dstore_bytes_free(out, out_len);
    EXPECT(dstore_node_stats(node, &stats, sizeof stats), DSTORE_OK);
    CHECK(stats.keys == 2 && stats.chunks == 0); /* values this small live in manifests */
    CHECK(stats.bytes_stored == 11 + 6 && stats.bytes_read == 11);
    CHECK(background_idle(&stats));
    EXPECT(dstore_delete(node, "two"), DSTORE_OK);
    EXPECT(dstore_node_stats(node, &stats, sizeof stats), DSTORE_OK);
    CHECK(stats.keys == 1 && stats.chunks == 0);
    CHECK(background_idle(&stats));
    dstore_free(node);
}

/* ---- opening: locks and secrets ------------------------------------------------------ */

static void test_open(void) {
    dstore_node *first = open_node("locked", NULL, DSTORE_OK);
    /* A second node on the same root, in the same process: locked, *out untouched. */
    open_node("locked", NULL, DSTORE_LOCKED);
    CHECK(strstr(dstore_last_error(), "locked") != NULL);
    dstore_free(first);
    /* dstore_free released the lock. */
    dstore_free(open_node("locked", NULL, DSTORE_OK));

    /* A root remembers its cluster secret. */
    char root[4096];
    path_in_scratch(root, sizeof root, "secret");
    dstore_options *opts = dstore_options_new();
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    EXPECT(dstore_options_set_secret(opts, (const uint8_t *)"one", 3), DSTORE_OK);
    dstore_node *node = NULL;
    EXPECT(dstore_new(opts, &node), DSTORE_OK);
    dstore_free(node);
    node = NULL;
    EXPECT(dstore_options_set_secret(opts, (const uint8_t *)"two", 3), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_WRONG_KEY);
    CHECK(node == NULL);
    dstore_options_free(opts);

    /* A root that cannot be created (below a regular file). */
    char file[4096], below[4096];
    path_in_scratch(file, sizeof file, "plain-file");
    path_in_scratch(below, sizeof below, "plain-file/root");
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fclose(f);
    opts = dstore_options_new();
    EXPECT(dstore_options_set_root(opts, below), DSTORE_OK);
    EXPECT(dstore_new(opts, &node), DSTORE_IO);
    dstore_options_free(opts);
}

/* ---- NULL, invalid UTF-8 and impossible lengths, for every entry point ---------------- */

static void test_arguments(dstore_node *node) {
    const char *bad_utf8 = "k\xff\xfe";
    const char *keys_refused[] = {bad_utf8, ""};
    char long_key[1026];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[1025] = '\0'; /* 1025 bytes: one too many */
    char path[4096];
    path_in_scratch(path, sizeof path, "args-file");
    const uint8_t data[] = "abc";
    uint8_t *out = (uint8_t *)0x1;
    size_t out_len = 77;
    bool has = true;
    char **keys = (char **)0x1;
    size_t count = 77;
    char id[65];

    /* NULL node. */
    EXPECT(dstore_store(NULL, "k", data, 3, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`node` is NULL") != NULL);
    EXPECT(dstore_get(NULL, "k", &out, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_has(NULL, "k", &has), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_delete(NULL, "k"), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_keys(NULL, &keys, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_store_file(NULL, "k", path, true), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_file(NULL, "k", path), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_id(NULL, id, sizeof id), DSTORE_INVALID_ARGUMENT);

    /* NULL key. */
    EXPECT(dstore_store(node, NULL, data, 3, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`key` is NULL") != NULL);
    EXPECT(dstore_get(node, NULL, &out, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_has(node, NULL, &has), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_delete(node, NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_store_file(node, NULL, path, true), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_file(node, NULL, path), DSTORE_INVALID_ARGUMENT);

    /* Keys that are not UTF-8, or empty: refused by every function that takes a key. */
    for (size_t i = 0; i < sizeof keys_refused / sizeof *keys_refused; i++) {
        const char *key = keys_refused[i];
        EXPECT(dstore_store(node, key, data, 3, true), DSTORE_INVALID_ARGUMENT);
        CHECK(strstr(dstore_last_error(), key[0] ? "not valid UTF-8" : "1 to 1024") != NULL);
        EXPECT(dstore_get(node, key, &out, &out_len), DSTORE_INVALID_ARGUMENT);
        EXPECT(dstore_has(node, key, &has), DSTORE_INVALID_ARGUMENT);
        EXPECT(dstore_delete(node, key), DSTORE_INVALID_ARGUMENT);
        EXPECT(dstore_store_file(node, key, path, true), DSTORE_INVALID_ARGUMENT);
        EXPECT(dstore_get_file(node, key, path), DSTORE_INVALID_ARGUMENT);
    }
    /* 1025 bytes is one too many; 1024 is fine. */
    EXPECT(dstore_store(node, long_key, data, 3, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "1025") != NULL);
    EXPECT(dstore_get(node, long_key, &out, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_has(node, long_key, &has), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_delete(node, long_key), DSTORE_INVALID_ARGUMENT);
    long_key[1024] = '\0';
    EXPECT(dstore_store(node, long_key, data, 3, true), DSTORE_OK);
    EXPECT(dstore_has(node, long_key, &has), DSTORE_OK);
    CHECK(has);
    EXPECT(dstore_delete(node, long_key), DSTORE_OK);
    has = true;

    /* Paths: NULL and invalid UTF-8. */
    EXPECT(dstore_store_file(node, "k", NULL, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`path` is NULL") != NULL);
    EXPECT(dstore_store_file(node, "k", "/tmp/\xff", true), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_file(node, "k", NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_file(node, "k", "/tmp/\xff"), DSTORE_INVALID_ARGUMENT);

    /* Data: impossible lengths are refused before anything is read. */
    EXPECT(dstore_store(node, "k", data, SIZE_MAX, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "larger than any buffer") != NULL);
    EXPECT(dstore_store(node, "k", data, (size_t)PTRDIFF_MAX + 1, false), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_store(node, "k", NULL, 3, true), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`data` is NULL") != NULL);

    /* NULL outputs. */
    EXPECT(dstore_get(node, "k", NULL, &out_len), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`out` is NULL") != NULL);
    EXPECT(dstore_get(node, "k", &out, NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_has(node, "k", NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_keys(node, NULL, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_keys(node, &keys, NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_id(node, NULL, 65), DSTORE_INVALID_ARGUMENT);

    /* A node id needs 65 bytes; a smaller buffer is refused and left as it was. */
    memset(id, '?', sizeof id);
    EXPECT(dstore_node_id(node, id, 0), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_node_id(node, id, 64), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "`buf_len` is 64") != NULL);
    for (size_t i = 0; i < sizeof id; i++) {
        CHECK(id[i] == '?');
    }
    EXPECT(dstore_node_id(node, id, sizeof id), DSTORE_OK);
    CHECK(strlen(id) == 64 && strspn(id, "0123456789abcdef") == 64);

    /* Outputs of the failed calls above were never written. */
    CHECK(out == (uint8_t *)0x1 && out_len == 77 && has && keys == (char **)0x1 && count == 77);

    /* Every _free accepts NULL. */
    dstore_free(NULL);
    dstore_options_free(NULL);
    dstore_bytes_free(NULL, 0);
    dstore_bytes_free(NULL, 10);
    dstore_keys_free(NULL, 0);
    dstore_keys_free(NULL, 10);
}

/* ---- values: empty, missing, deleted -------------------------------------------------- */

static void test_values(dstore_node *node) {
    /* data NULL with len 0 is a valid, empty value; reading it gives a non-NULL pointer. */
    EXPECT(dstore_store(node, "empty", NULL, 0, true), DSTORE_OK);
    uint8_t *out = NULL;
    size_t out_len = 99;
    EXPECT(dstore_get(node, "empty", &out, &out_len), DSTORE_OK);
    CHECK(out != NULL && out_len == 0);
    dstore_bytes_free(out, out_len);

    /* A missing key: DSTORE_NOT_FOUND, and the outputs keep their values. */
    uint8_t sentinel = 0;
    out = &sentinel;
    out_len = 12345;
    EXPECT(dstore_get(node, "missing", &out, &out_len), DSTORE_NOT_FOUND);
    CHECK(strstr(dstore_last_error(), "missing") != NULL);
    CHECK(out == &sentinel && out_len == 12345);
    EXPECT(dstore_delete(node, "missing"), DSTORE_NOT_FOUND);
    bool has = true;
    EXPECT(dstore_has(node, "missing", &has), DSTORE_OK);
    CHECK(!has);

    /* Deleted keys are missing too; deleting twice is NOT_FOUND. */
    store_str(node, "doomed", "x", false);
    EXPECT(dstore_delete(node, "doomed"), DSTORE_OK);
    EXPECT(dstore_delete(node, "doomed"), DSTORE_NOT_FOUND);
    EXPECT(dstore_get(node, "doomed", &out, &out_len), DSTORE_NOT_FOUND);

    /* Overwrite, then list: keys in byte order, array freed with its strings. */
    store_str(node, "b", "first", true);
    store_str(node, "b", "second", false);
    store_str(node, "a", "alpha", true);
    EXPECT(dstore_get(node, "b", &out, &out_len), DSTORE_OK);
    CHECK(out_len == 6 && memcmp(out, "second", 6) == 0);
    dstore_bytes_free(out, out_len);
    char **keys = NULL;
    size_t count = 0;
    EXPECT(dstore_keys(node, &keys, &count), DSTORE_OK);
    CHECK(count == 3);
    CHECK(strcmp(keys[0], "a") == 0 && strcmp(keys[1], "b") == 0 && strcmp(keys[2], "empty") == 0);
    dstore_keys_free(keys, count);

    /* Pages: by prefix, after a key, at most `limit`; bad arguments are refused. */
    EXPECT(dstore_list(node, "", "a", 1, &keys, &count), DSTORE_OK);
    CHECK(count == 1 && strcmp(keys[0], "b") == 0);
    dstore_keys_free(keys, count);
    EXPECT(dstore_list(node, "e", "", 10, &keys, &count), DSTORE_OK);
    CHECK(count == 1 && strcmp(keys[0], "empty") == 0);
    dstore_keys_free(keys, count);
    EXPECT(dstore_list(node, "zz", "", 10, &keys, &count), DSTORE_OK);
    CHECK(count == 0 && keys != NULL);
    dstore_keys_free(keys, count);
    EXPECT(dstore_list(node, "", "", 0, &keys, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_list(node, NULL, "", 10, &keys, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_list(node, "", NULL, 10, &keys, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_list(NULL, "", "", 10, &keys, &count), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_list(node, "", "", 10, NULL, &count), DSTORE_INVALID_ARGUMENT);
}

/* ---- ranges ----------------------------------------------------------------------------- */

static void test_ranges(void) {
    /* 50,000 bytes over 4 KiB chunks: spans within one chunk, across several and past the
     * end, which is cut off. */
    char root[4096];
    path_in_scratch(root, sizeof root, "ranges");
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    EXPECT(dstore_options_set_chunk_size(opts, 4096), DSTORE_OK);
    dstore_node *node = NULL;
    EXPECT(dstore_new(opts, &node), DSTORE_OK);
    dstore_options_free(opts);
    static uint8_t value[50000];
    for (size_t i = 0; i < sizeof value; i++) value[i] = (uint8_t)(i * 7 + i / 251);
    EXPECT(dstore_store(node, "ranged", value, sizeof value, true), DSTORE_OK);
    const struct { uint64_t offset, length; size_t want; } spans[] = {
        {0, 10, 10}, {4000, 100, 100}, {4090, 20000, 20000}, {49990, 100, 10},
        {50000, 1, 0}, {UINT64_MAX, UINT64_MAX, 0}, {0, UINT64_MAX, 50000},
    };
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        EXPECT(dstore_get_range(node, "ranged", spans[i].offset, spans[i].length, &out, &out_len),
               DSTORE_OK);
        CHECK(out != NULL && out_len == spans[i].want);
        if (out_len) CHECK(memcmp(out, value + spans[i].offset, out_len) == 0);
        dstore_bytes_free(out, out_len);
    }
    uint8_t sentinel = 0, *out = &sentinel;
    size_t out_len = 77;
    EXPECT(dstore_get_range(node, "missing", 0, 1, &out, &out_len), DSTORE_NOT_FOUND);
    CHECK(out == &sentinel && out_len == 77);
    EXPECT(dstore_get_range(NULL, "ranged", 0, 1, &out, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_range(node, NULL, 0, 1, &out, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_range(node, "ranged", 0, 1, NULL, &out_len), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_get_range(node, "ranged", 0, 1, &out, NULL), DSTORE_INVALID_ARGUMENT);
    dstore_free(node);
}

/* ---- streams: readers and writers -------------------------------------------------------- */

static void test_streams(void) {
    char root[4096];
    path_in_scratch(root, sizeof root, "streams");
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    EXPECT(dstore_options_set_chunk_size(opts, 4096), DSTORE_OK);
    dstore_node *node = NULL;
    EXPECT(dstore_new(opts, &node), DSTORE_OK);
    dstore_options_free(opts);
    static uint8_t value[90000];
    for (size_t i = 0; i < sizeof value; i++) value[i] = (uint8_t)(i * 13 + i / 509);

    /* Written in three pieces (and an empty one), stored by finish. */
    dstore_writer *w = NULL;
    EXPECT(dstore_writer_open(node, "streamed", true, &w), DSTORE_OK);
    EXPECT(dstore_writer_write(w, value, 30000), DSTORE_OK);
    EXPECT(dstore_writer_write(w, NULL, 0), DSTORE_OK);
    EXPECT(dstore_writer_write(w, value + 30000, 30000), DSTORE_OK);
    EXPECT(dstore_writer_write(w, value + 60000, 30000), DSTORE_OK);
    uint64_t stored = 0;
    EXPECT(dstore_writer_finish(w, &stored), DSTORE_OK);
    CHECK(stored == sizeof value);
    EXPECT(dstore_writer_write(w, value, 1), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_writer_finish(w, NULL), DSTORE_INVALID_ARGUMENT);
    dstore_writer_free(w);
    uint8_t *out = NULL;
    size_t out_len = 0;
    EXPECT(dstore_get(node, "streamed", &out, &out_len), DSTORE_OK);
    CHECK(out_len == sizeof value && memcmp(out, value, out_len) == 0);
    dstore_bytes_free(out, out_len);

    /* A writer freed before finishing stores nothing. */
    EXPECT(dstore_writer_open(node, "abandoned", false, &w), DSTORE_OK);
    EXPECT(dstore_writer_write(w, value, 20000), DSTORE_OK);
    dstore_writer_free(w);
    bool has = true;
    EXPECT(dstore_has(node, "abandoned", &has), DSTORE_OK);
    CHECK(!has);

    /* Read back in pieces of 1,000 bytes (a piece never crosses a chunk's end), then from a
     * position. */
    dstore_reader *r = NULL;
    EXPECT(dstore_reader_open(node, "streamed", &r), DSTORE_OK);
    uint64_t size = 0;
    EXPECT(dstore_reader_size(r, &size), DSTORE_OK);
    CHECK(size == sizeof value);
    static uint8_t back[sizeof value];
    size_t at = 0, n = 1;
    while (n != 0) {
        EXPECT(dstore_reader_read(r, back + at, at + 1000 <= sizeof back ? 1000 : sizeof back - at, &n),
               DSTORE_OK);
        CHECK(n <= 1000);
        at += n;
        if (at == sizeof back) break;
    }
    CHECK(at == sizeof value && memcmp(back, value, at) == 0);
    EXPECT(dstore_reader_read(r, back, sizeof back, &n), DSTORE_OK);
    CHECK(n == 0);
    EXPECT(dstore_reader_seek(r, 50000), DSTORE_OK);
    EXPECT(dstore_reader_read(r, back, 100, &n), DSTORE_OK);
    CHECK(n == 100 && memcmp(back, value + 50000, 100) == 0);
    EXPECT(dstore_reader_seek(r, UINT64_MAX), DSTORE_OK);
    EXPECT(dstore_reader_read(r, back, 100, &n), DSTORE_OK);
    CHECK(n == 0);
    EXPECT(dstore_reader_read(r, NULL, 100, &n), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_reader_read(r, back, 100, NULL), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_reader_read(NULL, back, 100, &n), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_reader_open(node, "missing", &r), DSTORE_NOT_FOUND);

    /* Streams that outlive their node fail cleanly. */
    dstore_writer *late = NULL;
    EXPECT(dstore_writer_open(node, "late", true, &late), DSTORE_OK);
    dstore_free(node);
    EXPECT(dstore_reader_seek(r, 0), DSTORE_OK); /* a chunk it has not read: fetched */
    EXPECT(dstore_reader_read(r, back, 100, &n), DSTORE_CLOSED);
    CHECK(dstore_writer_write(late, value, 10) != DSTORE_OK);
    dstore_reader_free(r);
    dstore_writer_free(late);
    dstore_reader_free(NULL);
    dstore_writer_free(NULL);
}

/* ---- files ---------------------------------------------------------------------------- */

static void test_files(dstore_node *node) {
    char in[4096], out[4096], missing[4096], no_dir[4096];
    path_in_scratch(in, sizeof in, "file-in");
    path_in_scratch(out, sizeof out, "file-out");
    path_in_scratch(missing, sizeof missing, "no-such-file");
    path_in_scratch(no_dir, sizeof no_dir, "no-such-dir/file");

    EXPECT(dstore_store_file(node, "f", missing, true), DSTORE_IO);
    CHECK(strstr(dstore_last_error(), "no-such-file") != NULL);
    EXPECT(dstore_get_file(node, "never-stored", out), DSTORE_NOT_FOUND);

    FILE *f = fopen(in, "wb");
    CHECK(f != NULL);
    CHECK(fputs("file body\n", f) >= 0);
    fclose(f);
    EXPECT(dstore_store_file(node, "f", in, true), DSTORE_OK);
    EXPECT(dstore_get_file(node, "f", no_dir), DSTORE_IO);
    EXPECT(dstore_get_file(node, "f", out), DSTORE_OK);
    char buf[64] = "";
    f = fopen(out, "rb");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    CHECK(n == 10 && memcmp(buf, "file body\n", 10) == 0);
}

/* ---- wrong data key ------------------------------------------------------------------- */

static void test_wrong_key(void) {
    dstore_node *writer = open_node("keyed", KEY_A, DSTORE_OK);
    store_str(writer, "sealed", "for A only", true);
    store_str(writer, "open", "for anyone", false);
    dstore_free(writer);

    dstore_node *reader = open_node("keyed", KEY_B, DSTORE_OK);
    uint8_t *out = NULL;
    size_t out_len = 0;
    EXPECT(dstore_get(reader, "sealed", &out, &out_len), DSTORE_WRONG_KEY);
    CHECK(out == NULL && out_len == 0);
    /* A plain value is sealed by its writer's data key too: another key's holder cannot
       tell it from a forgery by a holder of only the cluster secret, so it refuses it... */
    EXPECT(dstore_get(reader, "open", &out, &out_len), DSTORE_WRONG_KEY);
    CHECK(out == NULL && out_len == 0);
    dstore_free(reader);

    /* ...unless told to accept plain values not sealed with its key. */
    char root[4096];
    path_in_scratch(root, sizeof root, "keyed");
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    EXPECT(dstore_options_set_data_key(opts, KEY_B, 32), DSTORE_OK);
    EXPECT(dstore_options_set_accept_unsealed(opts, true), DSTORE_OK);
    EXPECT(dstore_options_set_accept_unsealed(NULL, true), DSTORE_INVALID_ARGUMENT);
    EXPECT(dstore_new(opts, &reader), DSTORE_OK);
    dstore_options_free(opts);
    EXPECT(dstore_get(reader, "open", &out, &out_len), DSTORE_OK);
    CHECK(out_len == 10 && memcmp(out, "for anyone", 10) == 0);
    dstore_bytes_free(out, out_len);
    EXPECT(dstore_get(reader, "sealed", &out, &out_len), DSTORE_WRONG_KEY);
    dstore_free(reader);
}

/* ---- corruption on disk --------------------------------------------------------------- */

/* Flips byte `at` of every copy of `key`'s manifest in the catalog of root `dir` (the live one
   and any stale copy in a freed page), as rot would. The node must be closed: an open catalog
   serves pages from its cache. A stored manifest starts with the disk format's byte (2), the
   key's length (one byte, for a short key) and the key. Returns the copies found. */
static int flip_in_catalog(const char *dir, const char *key, size_t at) {
    char path[4096];
    snprintf(path, sizeof path, "%s/catalog.redb", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    CHECK(size > 0 && fseek(f, 0, SEEK_SET) == 0);
    unsigned char *data = malloc((size_t)size);
    CHECK(data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size);
    size_t klen = strlen(key);
    CHECK(klen < 251);
    unsigned char start[256];
    start[0] = 2;
    start[1] = (unsigned char)klen;
    memcpy(start + 2, key, klen);
    int found = 0;
    for (size_t i = 0; i + klen + 2 <= (size_t)size; i++) {
        if (memcmp(data + i, start, klen + 2) == 0 && i + at < (size_t)size) {
            data[i + at] ^= 0x01;
            found++;
        }
    }
    CHECK(fseek(f, 0, SEEK_SET) == 0 && fwrite(data, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    free(data);
    return found;
}

static void test_integrity(void) {
    dstore_node *node = open_node("corrupt", NULL, DSTORE_OK);
    store_str(node, "plain", "plain bytes on disk", false);
    store_str(node, "sealed", "encrypted bytes on disk", true);
    dstore_free(node);

    /* Values this small live inside their manifests, in the catalog. */
    char root[4096];
    path_in_scratch(root, sizeof root, "corrupt");
    CHECK(flip_in_catalog(root, "plain", 30) >= 1);
    CHECK(flip_in_catalog(root, "sealed", 30) >= 1);
    node = open_node("corrupt", NULL, DSTORE_OK);

    uint8_t *out = NULL;
    size_t out_len = 0;
    EXPECT(dstore_get(node, "plain", &out, &out_len), DSTORE_INTEGRITY);
    CHECK(strstr(dstore_last_error(), "integrity") != NULL);
    EXPECT(dstore_get(node, "sealed", &out, &out_len), DSTORE_INTEGRITY);
    CHECK(out == NULL && out_len == 0);
    /* The corrupt manifest was set aside; it is never served, so the next read fails too
       (not "not found"), until the key is deleted or written again. */
    EXPECT(dstore_get(node, "plain", &out, &out_len), DSTORE_INTEGRITY);
    EXPECT(dstore_delete(node, "plain"), DSTORE_OK);
    EXPECT(dstore_get(node, "plain", &out, &out_len), DSTORE_NOT_FOUND);
    store_str(node, "sealed", "written again", true);
    EXPECT(dstore_get(node, "sealed", &out, &out_len), DSTORE_OK);
    CHECK(out_len == 13 && memcmp(out, "written again", 13) == 0);
    dstore_bytes_free(out, out_len);
    dstore_free(node);
}

/* ---- one node, eight threads ---------------------------------------------------------- */

enum { THREADS = 8, ROUNDS = 25 };

struct worker {
    dstore_node *node;
    int id;
};

static void *work(void *arg) {
    const struct worker *w = arg;
    char key[64], value[64], missing[64];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(key, sizeof key, "thread-%d/%d", w->id, i);
        snprintf(value, sizeof value, "value of thread %d, round %d", w->id, i);
        store_str(w->node, key, value, i % 2 == 0);
        uint8_t *out = NULL;
        size_t out_len = 0;
        EXPECT(dstore_get(w->node, key, &out, &out_len), DSTORE_OK);
        CHECK(out_len == strlen(value) && memcmp(out, value, out_len) == 0);
        dstore_bytes_free(out, out_len);
        /* Each thread's last error is its own, whatever the others do meanwhile. */
        snprintf(missing, sizeof missing, "missing-%d-%d", w->id, i);
        EXPECT(dstore_get(w->node, missing, &out, &out_len), DSTORE_NOT_FOUND);
        CHECK(strstr(dstore_last_error(), missing) != NULL);
    }
    return NULL;
}

static void test_threads(void) {
    dstore_node *node = open_node("threads", NULL, DSTORE_OK);
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t] = (struct worker){node, t};
        CHECK(pthread_create(&threads[t], NULL, work, &workers[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
    }
    char **keys = NULL;
    size_t count = 0;
    EXPECT(dstore_keys(node, &keys, &count), DSTORE_OK);
    CHECK(count == THREADS * ROUNDS);
    dstore_keys_free(keys, count);
    dstore_free(node);
}

/* ---- fork ----------------------------------------------------------------------------- */

/* dstore's worker threads do not survive fork(): a child of a process that used dstore gets
 * DSTORE_RUNTIME instead of a hang. */
static void test_fork(dstore_node *node) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        bool has = false;
        if (dstore_has(node, "a", &has) != DSTORE_RUNTIME ||
            strstr(dstore_last_error(), "fork") == NULL) {
            fprintf(stderr, "child: dstore_has: %s\n", dstore_last_error());
            _exit(1);
        }
        dstore_options *opts = dstore_options_new();
        dstore_options_set_root(opts, scratch);
        dstore_node *other = NULL;
        if (dstore_new(opts, &other) != DSTORE_RUNTIME || other != NULL) {
            fprintf(stderr, "child: dstore_new: %s\n", dstore_last_error());
            _exit(1);
        }
        _exit(0); /* skip the parent's atexit handlers and LeakSanitizer */
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent is unaffected. */
    bool has = false;
    EXPECT(dstore_has(node, "a", &has), DSTORE_OK);
    CHECK(has);
}

/* ---- names and versions --------------------------------------------------------------- */

static void test_names(void) {
    CHECK(strcmp(dstore_version(), DSTORE_VERSION) == 0);
    CHECK(strcmp(dstore_status_name(DSTORE_OK), "DSTORE_OK") == 0);
    CHECK(strcmp(dstore_status_name(DSTORE_NOT_FOUND), "DSTORE_NOT_FOUND") == 0);
    CHECK(strcmp(dstore_status_name(DSTORE_RUNTIME), "DSTORE_RUNTIME") == 0);
    CHECK(strcmp(dstore_status_name(DSTORE_UNAVAILABLE), "DSTORE_UNAVAILABLE") == 0);
    CHECK(strcmp(dstore_status_name((dstore_status)1234), "DSTORE_UNKNOWN_STATUS") == 0);
    CHECK(DSTORE_OK == 0 && DSTORE_INVALID_ARGUMENT == 1 && DSTORE_NOT_FOUND == 2 &&
          DSTORE_INTEGRITY == 3 && DSTORE_WRONG_KEY == 4 && DSTORE_IO == 5 &&
          DSTORE_LOCKED == 6 && DSTORE_CLOSED == 7 && DSTORE_PANIC == 8 && DSTORE_RUNTIME == 9 &&
          DSTORE_UNAVAILABLE == 10);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    scratch = argv[1];
    CHECK(dstore_last_error()[0] == '\0');

    test_names();
    test_options();
    test_maintenance();
    test_open();
    dstore_node *node = open_node("main", NULL, DSTORE_OK);
    test_arguments(node);
    test_values(node);
    test_ranges();
    test_streams();
    test_files(node);
    test_wrong_key();
    test_integrity();
    test_threads();
    test_fork(node);
    dstore_free(node);

    printf("ffi_edge_cases: %u checks passed\n", atomic_load(&checks));
    return 0;
}
