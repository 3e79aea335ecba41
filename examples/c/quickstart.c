/*
 * dstore from C, start to finish: open a node, store an encrypted and a plain value, read them
 * back, list keys, check and delete one, and store and fetch a file.
 *
 *   cc -I include examples/c/quickstart.c -L target/release -ldstore \
 *      -Wl,-rpath,target/release -o quickstart
 *   ./quickstart [ROOT]     # ROOT: the storage directory (default: a new temporary one)
 *
 * Every dstore call returns a dstore_status; on failure dstore_last_error() says why. Memory
 * that dstore returns (values, key lists, nodes) is freed with the matching dstore_*_free.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, mkstemp */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dstore.h"

/* Runs a dstore call; on failure prints what failed and why, and leaves main through `fail`. */
#define TRY(call)                                                                           \
    do {                                                                                    \
        dstore_status status_ = (call);                                                     \
        if (status_ != DSTORE_OK) {                                                         \
            fprintf(stderr, "%s failed: %s: %s\n", #call, dstore_status_name(status_),     \
                    dstore_last_error());                                                   \
            goto fail;                                                                      \
        }                                                                                   \
    } while (0)

/* Reads `key` and compares it with `expected`. Returns 0 if they match. */
static int check_value(dstore_node *node, const char *key, const char *expected) {
    uint8_t *data = NULL;
    size_t len = 0;
    if (dstore_get(node, key, &data, &len) != DSTORE_OK) {
        fprintf(stderr, "get %s: %s\n", key, dstore_last_error());
        return -1;
    }
    int same = len == strlen(expected) && memcmp(data, expected, len) == 0;
    printf("get %-14s -> \"%.*s\" (%zu bytes)%s\n", key, (int)len, (const char *)data, len,
           same ? "" : "  MISMATCH");
    dstore_bytes_free(data, len); /* dstore's buffers go back to dstore */
    return same ? 0 : -1;
}

int main(int argc, char **argv) {
    int exit_code = EXIT_FAILURE;
    dstore_options *opts = NULL;
    dstore_node *node = NULL;
    char **keys = NULL;
    size_t key_count = 0;
    char file_in[] = "/tmp/dstore-quickstart-in-XXXXXX";
    char file_out[sizeof file_in + 4] = "";
    int fd = -1;
    char temp_root[] = "/tmp/dstore-quickstart-XXXXXX";
    const char *root = argc > 1 ? argv[1] : mkdtemp(temp_root);
    if (root == NULL) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    printf("dstore %s, storage root %s\n", dstore_version(), root);

    /* 1. Open a node. Options are set one by one on an options object. */
    opts = dstore_options_new();
    TRY(dstore_options_set_root(opts, root));
    TRY(dstore_new(opts, &node));
    dstore_options_free(opts); /* the node keeps what it needs */
    opts = NULL;
    char id[65];
    TRY(dstore_node_id(node, id, sizeof id));
    printf("opened node %.16s...\n", id);

    /* 2. Store one encrypted and one plain value, then read both back. */
    const char *secret = "meet at noon";
    const char *notice = "hello, world";
    TRY(dstore_store(node, "notes/secret", (const uint8_t *)secret, strlen(secret), true));
    printf("stored notes/secret (encrypted)\n");
    TRY(dstore_store(node, "public/notice", (const uint8_t *)notice, strlen(notice), false));
    printf("stored public/notice (plain)\n");
    if (check_value(node, "notes/secret", secret) != 0 ||
        check_value(node, "public/notice", notice) != 0) {
        goto fail;
    }

    /* 3. List the keys. The array and its strings are freed with one call. */
    TRY(dstore_keys(node, &keys, &key_count));
    printf("keys (%zu):\n", key_count);
    for (size_t i = 0; i < key_count; i++) {
        printf("  %s\n", keys[i]);
    }
    dstore_keys_free(keys, key_count);
    keys = NULL;

    /* 4. has, delete, has again; a missing key is DSTORE_NOT_FOUND for get. */
    bool found = false;
    TRY(dstore_has(node, "public/notice", &found));
    printf("has public/notice: %s\n", found ? "yes" : "no");
    TRY(dstore_delete(node, "public/notice"));
    TRY(dstore_has(node, "public/notice", &found));
    printf("deleted public/notice; has public/notice: %s\n", found ? "yes" : "no");
    if (found) {
        goto fail;
    }
    uint8_t *missing = NULL;
    size_t missing_len = 0;
    dstore_status status = dstore_get(node, "public/notice", &missing, &missing_len);
    printf("get public/notice -> %s\n", dstore_status_name(status));
    if (status != DSTORE_NOT_FOUND) {
        goto fail;
    }

    /* 5. Files are streamed in and out, a few chunks in memory at a time. */
    const char *contents = "a file's contents\n";
    fd = mkstemp(file_in);
    if (fd < 0) {
        perror("mkstemp");
        goto fail;
    }
    snprintf(file_out, sizeof file_out, "%s.out", file_in);
    ssize_t written = write(fd, contents, strlen(contents));
    close(fd);
    if (written != (ssize_t)strlen(contents)) {
        perror("writing the input file");
        goto fail;
    }
    TRY(dstore_store_file(node, "files/example.txt", file_in, true));
    TRY(dstore_get_file(node, "files/example.txt", file_out));
    char copy[64] = "";
    FILE *f = fopen(file_out, "r");
    size_t copied = f ? fread(copy, 1, sizeof copy - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    if (copied != strlen(contents) || memcmp(copy, contents, copied) != 0) {
        fprintf(stderr, "the file read back differs\n");
        goto fail;
    }
    printf("stored %s as files/example.txt and read it back into %s: identical\n", file_in,
           file_out);

    printf("all done\n");
    exit_code = EXIT_SUCCESS;
fail:
    if (fd >= 0) { /* mkstemp made the input file */
        unlink(file_in);
        unlink(file_out);
    }
    dstore_keys_free(keys, key_count);
    dstore_options_free(opts);
    dstore_free(node); /* closes the node and unlocks the root */
    if (root == temp_root) {
        printf("(the temporary root %s is left for you to look at)\n", root);
    }
    return exit_code;
}
