/*
 * The C API in a cluster, as a C program uses it. Run by tests/test_c_cluster.py under
 * AddressSanitizer, LeakSanitizer and UBSan against `dstore node` processes:
 *
 *   cluster_client PEER SECRET DATA_KEY_HEX
 *
 * PEER is "host:port" of a member of a running cluster of at least 3 members, SECRET its
 * cluster secret and DATA_KEY_HEX the 64-hex-digit data key the test reads values back with.
 *
 * 1. Joins as a client, settles, lists the peers, and stores, reads, lists, checks and
 *    deletes values. It leaves VALUE_KEY (encrypted; bytes from value_byte()) in the cluster
 *    for the test to read with the `dstore` command.
 * 2. Opens a member in this process (listening on 127.0.0.1:0), which reads the client's value,
 *    and checks that dstore_free closes the member's port.
 *
 * Prints "OK" last. The first failed check prints its line, the call and dstore_last_error(),
 * and exits with status 1. Each node's root is a mkdtemp() directory in $TMPDIR (or /tmp),
 * removed at the end.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dstore.h"

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
    } while (0)

static void expect_status(dstore_status got, dstore_status want, const char *call, int line) {
    if (got != want) {
        fprintf(stderr, "%s:%d: %s\n  returned %s, expected %s\n  last error: \"%s\"\n",
                __FILE__, line, call, dstore_status_name(got), dstore_status_name(want),
                dstore_last_error());
        exit(1);
    }
}

/* The key the test reads back with the CLI, and its value: VALUE_LEN bytes of value_byte(i),
 * more than one 1 MiB chunk, NULs included. tests/test_c_cluster.py knows both. */
#define VALUE_KEY "from-c/encrypted.bin"
#define PLAIN_KEY "from-c/plain.txt"
#define VALUE_LEN ((size_t)1500007)

static uint8_t value_byte(size_t i) { return (uint8_t)((i * 31 + 7) % 251); }

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Makes a new directory "$TMPDIR/dstore-<what>-XXXXXX" for a node's root, into `buf`. */
static void make_root(char *buf, size_t size, const char *what) {
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(buf, size, "%s/dstore-%s-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp", what);
    CHECK(n > 0 && (size_t)n < size);
    CHECK(mkdtemp(buf) != NULL);
}

/* Removes a mkdtemp() root and everything in it. */
static void remove_tree(const char *dir) {
    CHECK(nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

static void parse_key(const char *hex, uint8_t key[32]) {
    CHECK(strlen(hex) == 64);
    for (size_t i = 0; i < 32; i++) {
        unsigned int byte = 0;
        CHECK(sscanf(hex + 2 * i, "%2x", &byte) == 1);
        key[i] = (uint8_t)byte;
    }
}

/* Options for a node of this cluster on `root`; the caller frees them. */
static dstore_options *cluster_options(const char *root, const char *peer, const char *secret,
                                       const uint8_t key[32]) {
    dstore_options *opts = dstore_options_new();
    CHECK(opts != NULL);
    EXPECT(dstore_options_set_root(opts, root), DSTORE_OK);
    EXPECT(dstore_options_add_peer(opts, peer), DSTORE_OK);
    EXPECT(dstore_options_set_secret(opts, (const uint8_t *)secret, strlen(secret)), DSTORE_OK);
    EXPECT(dstore_options_set_data_key(opts, key, 32), DSTORE_OK);
    return opts;
}

/* Reads `key` through `node` and checks it holds `len` bytes equal to `want` (or, with `want`
 * NULL, to value_byte()). */
static void expect_value(dstore_node *node, const char *key, const uint8_t *want, size_t len) {
    uint8_t *got = NULL;
    size_t got_len = 0;
    EXPECT(dstore_get(node, key, &got, &got_len), DSTORE_OK);
    CHECK(got != NULL && got_len == len);
    for (size_t i = 0; i < len; i++) {
        if (got[i] != (want != NULL ? want[i] : value_byte(i))) {
            fprintf(stderr, "%s: byte %zu differs\n", key, i);
            exit(1);
        }
    }
    dstore_bytes_free(got, got_len);
}

static bool has_key(dstore_node *node, const char *key) {
    bool found = false;
    EXPECT(dstore_has(node, key, &found), DSTORE_OK);
    return found;
}

/* The client: settle, peers, and every value call. */
static void as_client(const char *peer, const char *secret, const uint8_t key[32]) {
    char root[4096];
    make_root(root, sizeof root, "client");
    dstore_options *opts = cluster_options(root, peer, secret, key);
    EXPECT(dstore_options_set_client(opts, true), DSTORE_OK);
    dstore_node *client = NULL;
    EXPECT(dstore_new(opts, &client), DSTORE_OK);
    dstore_options_free(opts);

    size_t live = 0;
    EXPECT(dstore_settle(client, 20000, &live), DSTORE_OK);
    printf("settled: %zu peers\n", live);
    CHECK(live >= 3);

    char addr[256] = "untouched";
    EXPECT(dstore_node_addr(client, addr, sizeof addr), DSTORE_NOT_FOUND);
    CHECK(strcmp(addr, "untouched") == 0);

    dstore_peer *peers = NULL;
    size_t count = 0;
    EXPECT(dstore_peers(client, &peers, &count), DSTORE_OK);
    CHECK(peers != NULL && count >= 3);
    bool peer_listed = false;
    for (size_t i = 0; i < count; i++) {
        CHECK(strlen(peers[i].id) == 64 && strspn(peers[i].id, "0123456789abcdef") == 64);
        CHECK(peers[i].addr != NULL && peers[i].addr[0] != '\0');
        CHECK(i == 0 || strcmp(peers[i - 1].id, peers[i].id) < 0);
        printf("peer %s %s zone %s\n", peers[i].id, peers[i].addr,
               peers[i].zone != NULL ? peers[i].zone : "-");
        peer_listed = peer_listed || strcmp(peers[i].addr, peer) == 0;
    }
    CHECK(peer_listed);
    dstore_peers_free(peers, count);

    uint8_t *value = malloc(VALUE_LEN);
    CHECK(value != NULL);
    for (size_t i = 0; i < VALUE_LEN; i++) {
        value[i] = value_byte(i);
    }
    EXPECT(dstore_store(client, VALUE_KEY, value, VALUE_LEN, true), DSTORE_OK);
    free(value);
    const char *plain = "a plain value, through the C client";
    EXPECT(dstore_store(client, PLAIN_KEY, (const uint8_t *)plain, strlen(plain), false),
           DSTORE_OK);
    printf("stored %s (%zu bytes, encrypted) and %s (plain)\n", VALUE_KEY, VALUE_LEN, PLAIN_KEY);

    expect_value(client, VALUE_KEY, NULL, VALUE_LEN);
    expect_value(client, PLAIN_KEY, (const uint8_t *)plain, strlen(plain));
    printf("read both back\n");

    char **keys = NULL;
    EXPECT(dstore_keys(client, &keys, &count), DSTORE_OK);
    bool listed_value = false, listed_plain = false;
    for (size_t i = 0; i < count; i++) {
        listed_value = listed_value || strcmp(keys[i], VALUE_KEY) == 0;
        listed_plain = listed_plain || strcmp(keys[i], PLAIN_KEY) == 0;
    }
    dstore_keys_free(keys, count);
    CHECK(listed_value && listed_plain);
    printf("listed %zu keys\n", count);

    CHECK(has_key(client, PLAIN_KEY));
    EXPECT(dstore_delete(client, PLAIN_KEY), DSTORE_OK);
    CHECK(!has_key(client, PLAIN_KEY));
    CHECK(has_key(client, VALUE_KEY));
    uint8_t *gone = (uint8_t *)0x1;
    size_t gone_len = 7;
    EXPECT(dstore_get(client, PLAIN_KEY, &gone, &gone_len), DSTORE_NOT_FOUND);
    CHECK(gone == (uint8_t *)0x1 && gone_len == 7);
    EXPECT(dstore_delete(client, PLAIN_KEY), DSTORE_NOT_FOUND);
    printf("deleted %s\n", PLAIN_KEY);

    dstore_free(client);
    remove_tree(root);
}

/* Whether something listens on 127.0.0.1:`port`: binding it (with SO_REUSEADDR, so that the
 * TIME_WAIT of closed connections does not count) and listening fails only then. */
static bool port_in_use(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int on = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool in_use = bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1) != 0;
    close(fd);
    return in_use;
}

/* A member in this process: its address, and the client's value read through it. */
static void as_member(const char *peer, const char *secret, const uint8_t key[32]) {
    char root[4096];
    make_root(root, sizeof root, "member");
    dstore_options *opts = cluster_options(root, peer, secret, key);
    EXPECT(dstore_options_set_listen(opts, "127.0.0.1:0"), DSTORE_OK);
    dstore_node *member = NULL;
    EXPECT(dstore_new(opts, &member), DSTORE_OK);
    dstore_options_free(opts);

    char addr[256];
    EXPECT(dstore_node_addr(member, addr, sizeof addr), DSTORE_OK);
    CHECK(addr[0] != '\0');
    const char *colon = strrchr(addr, ':');
    CHECK(strncmp(addr, "127.0.0.1:", 10) == 0 && colon != NULL);
    int port = atoi(colon + 1);
    CHECK(port > 0);
    printf("member listening on %s\n", addr);
    char small[4] = "abc";
    EXPECT(dstore_node_addr(member, small, sizeof small), DSTORE_INVALID_ARGUMENT);
    CHECK(strstr(dstore_last_error(), "bytes") != NULL && strcmp(small, "abc") == 0);
    CHECK(port_in_use(port));

    size_t live = 0;
    EXPECT(dstore_settle(member, 20000, &live), DSTORE_OK);
    CHECK(live >= 3);
    expect_value(member, VALUE_KEY, NULL, VALUE_LEN);
    CHECK(!has_key(member, PLAIN_KEY));
    printf("member read %s\n", VALUE_KEY);

    dstore_free(member);
    CHECK(!port_in_use(port));
    printf("member left; port %d closed\n", port);
    remove_tree(root);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PEER SECRET DATA_KEY_HEX\n", argv[0]);
        return 2;
    }
    uint8_t key[32];
    parse_key(argv[3], key);
    as_client(argv[1], argv[2], key);
    as_member(argv[1], argv[2], key);
    printf("OK\n");
    return 0;
}
