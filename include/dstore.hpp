// dstore.hpp: a header-only C++17 wrapper over the C API in dstore.h. Handles are RAII
// objects (a Node closes its storage root in its destructor) and failures throw
// dstore::Error, or the subclass named after the status (dstore::NotFound, ...).
//
//     dstore::Node node(dstore::Options().root("./data"));
//     node.store("greeting", std::string("hello"));
//     std::string value = node.get_string("greeting");
//
// Link with -ldstore, as for C. Nothing here is needed to use dstore from C++: dstore.h is
// C++-compatible; this header only adds ownership and exceptions.
//
// Cluster: a node is standalone unless its Options say otherwise. listen() makes it a member
// that holds data for its peers, client() a client that reads and writes through the members;
// either joins the members given to add_peer(), with the cluster's secret(). A client calls
// settle() before its first request. The other calls work the same on every kind of node and
// throw Unavailable when too few members answer; a Node's destructor stops all its network
// activity and closes its port.
//
//     dstore::Node client(dstore::Options().root("./client").secret("s").client()
//                             .add_peer("10.0.0.5:7000"));
//     client.settle(std::chrono::seconds(10));
//
// Members repair, scrub and collect garbage in the background; Options sets how often and how
// fast (repair_interval(), scrub(), gc_grace()), and the quorums and failure detection of
// reads and writes (write_quorum(), read_quorum(), timeouts()). Node::stats() reports it.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dstore.h"

namespace dstore {

// ---- Errors -------------------------------------------------------------------------------

// Every failure of a dstore call. what() is the message of dstore_last_error(), prefixed with
// the status name; status() is the code, to branch on without parsing text.
class Error : public std::runtime_error {
public:
    Error(dstore_status status, const std::string& message)
        : std::runtime_error(std::string(dstore_status_name(status)) + ": " + message),
          status_(status) {}

    dstore_status status() const noexcept { return status_; }

private:
    dstore_status status_;
};

// One class per status, so callers can catch the cases they handle.
#define DSTORE_HPP_ERROR_CLASS(Name)                                                          \
    class Name : public Error {                                                               \
    public:                                                                                   \
        using Error::Error;                                                                   \
    };
DSTORE_HPP_ERROR_CLASS(InvalidArgument)  // DSTORE_INVALID_ARGUMENT
DSTORE_HPP_ERROR_CLASS(NotFound)         // DSTORE_NOT_FOUND: the key has no value
DSTORE_HPP_ERROR_CLASS(IntegrityError)   // DSTORE_INTEGRITY: corrupt or tampered data
DSTORE_HPP_ERROR_CLASS(WrongKey)         // DSTORE_WRONG_KEY: another data key or secret
DSTORE_HPP_ERROR_CLASS(IoError)          // DSTORE_IO: the operating system refused
DSTORE_HPP_ERROR_CLASS(Locked)           // DSTORE_LOCKED: the root is open elsewhere
DSTORE_HPP_ERROR_CLASS(Closed)           // DSTORE_CLOSED: the node was closed
DSTORE_HPP_ERROR_CLASS(Panic)            // DSTORE_PANIC: a bug in dstore
DSTORE_HPP_ERROR_CLASS(RuntimeError)     // DSTORE_RUNTIME: called where dstore cannot run
DSTORE_HPP_ERROR_CLASS(Unavailable)      // DSTORE_UNAVAILABLE: too few nodes answered; retry
#undef DSTORE_HPP_ERROR_CLASS

namespace detail {

// Throws the exception for `status`, with the calling thread's last error, which must be read
// before any other dstore call replaces it.
[[noreturn]] inline void throw_status(dstore_status status) {
    const std::string message = dstore_last_error();
    switch (status) {
    case DSTORE_INVALID_ARGUMENT: throw InvalidArgument(status, message);
    case DSTORE_NOT_FOUND: throw NotFound(status, message);
    case DSTORE_INTEGRITY: throw IntegrityError(status, message);
    case DSTORE_WRONG_KEY: throw WrongKey(status, message);
    case DSTORE_IO: throw IoError(status, message);
    case DSTORE_LOCKED: throw Locked(status, message);
    case DSTORE_CLOSED: throw Closed(status, message);
    case DSTORE_PANIC: throw Panic(status, message);
    case DSTORE_RUNTIME: throw RuntimeError(status, message);
    case DSTORE_UNAVAILABLE: throw Unavailable(status, message);
    case DSTORE_OK: break;
    }
    throw Error(status, message);  // a status newer than this header
}

inline void check(dstore_status status) {
    if (status != DSTORE_OK) {
        throw_status(status);
    }
}

// A C string for the C API. std::string may hold a NUL, which would silently cut the key or
// path short in C; refuse it instead.
inline const char* c_str(const std::string& s, const char* what) {
    if (s.find('\0') != std::string::npos) {
        throw InvalidArgument(DSTORE_INVALID_ARGUMENT,
                              std::string(what) + " contains a NUL byte");
    }
    return s.c_str();
}

// A duration for the C API, in whole milliseconds; negative ones are refused.
inline std::uint64_t millis(std::chrono::milliseconds d, const char* what) {
    if (d.count() < 0) {
        throw InvalidArgument(DSTORE_INVALID_ARGUMENT, std::string(what) + " is negative");
    }
    return static_cast<std::uint64_t>(d.count());
}

}  // namespace detail

// ---- Options ------------------------------------------------------------------------------

// How a node is set up; each setter returns *this so calls chain. Only root() is required.
class Options {
public:
    Options() : opts_(dstore_options_new()) {
        if (opts_ == nullptr) {
            throw Panic(DSTORE_PANIC, dstore_last_error());
        }
    }
    ~Options() { dstore_options_free(opts_); }
    Options(Options&& other) noexcept : opts_(std::exchange(other.opts_, nullptr)) {}
    Options& operator=(Options&& other) noexcept {
        std::swap(opts_, other.opts_);
        return *this;
    }
    Options(const Options&) = delete;
    Options& operator=(const Options&) = delete;

    // The storage root, a directory created if missing. Required.
    Options& root(const std::string& path) {
        detail::check(dstore_options_set_root(opts_, detail::c_str(path, "root path")));
        return *this;
    }
    // The 32-byte data key; without one the key kept in the root is used.
    Options& data_key(const std::array<std::uint8_t, 32>& key) {
        return data_key(key.data(), key.size());
    }
    Options& data_key(const std::uint8_t* key, std::size_t len) {
        detail::check(dstore_options_set_data_key(opts_, key, len));
        return *this;
    }
    // The cluster secret (non-empty); without one the secret kept in the root is used.
    Options& secret(std::string_view secret) {
        detail::check(dstore_options_set_secret(
            opts_, reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()));
        return *this;
    }
    // Plaintext bytes per chunk, 64 to 8 MiB (1 MiB by default).
    Options& chunk_size(std::size_t bytes) {
        detail::check(dstore_options_set_chunk_size(opts_, bytes));
        return *this;
    }

    // Cluster options (see the top of this file and dstore.h for each).
    // Be a member listening on "host:port" ("127.0.0.1:0": any free port; see Node::addr).
    Options& listen(const std::string& addr) {
        detail::check(dstore_options_set_listen(opts_, detail::c_str(addr, "listen address")));
        return *this;
    }
    // The "host:port" peers should dial, if not the listen address.
    Options& advertise(const std::string& addr) {
        detail::check(
            dstore_options_set_advertise(opts_, detail::c_str(addr, "advertise address")));
        return *this;
    }
    // A member to join through, "host:port"; call once per peer.
    Options& add_peer(const std::string& addr) {
        detail::check(dstore_options_add_peer(opts_, detail::c_str(addr, "peer address")));
        return *this;
    }
    // Copies kept of every value, 1 to 255 (3 by default).
    Options& replicas(std::size_t n) {
        detail::check(dstore_options_set_replicas(opts_, n));
        return *this;
    }
    // Keep values erasure-coded by default: k data + m parity shards per chunk on k + m
    // members (needs that many live members), instead of replicas.
    Options& erasure(std::size_t k, std::size_t m) {
        detail::check(dstore_options_set_erasure(opts_, k, m));
        return *this;
    }
    // This member's failure domain (a rack, a region).
    Options& zone(const std::string& zone) {
        detail::check(dstore_options_set_zone(opts_, detail::c_str(zone, "zone")));
        return *this;
    }
    // Join as a client: never listens, never holds the cluster's data.
    Options& client(bool client = true) {
        detail::check(dstore_options_set_client(opts_, client));
        return *this;
    }

    // Durability and background work of a member (see dstore.h for each).
    // Owners that must have a write before it returns, 1 to replicas (0: a majority).
    Options& write_quorum(std::size_t n) {
        detail::check(dstore_options_set_write_quorum(opts_, n));
        return *this;
    }
    // Owners a read waits for, 1 to replicas (0: a majority).
    Options& read_quorum(std::size_t n) {
        detail::check(dstore_options_set_read_quorum(opts_, n));
        return *this;
    }
    // Failure detection: silent this long, a member is suspect, then dead; one request to a
    // peer may take `call`. A zero duration keeps that timeout as it is.
    Options& timeouts(std::chrono::milliseconds suspect_after,
                      std::chrono::milliseconds dead_after,
                      std::chrono::milliseconds call = std::chrono::milliseconds::zero()) {
        detail::check(dstore_options_set_timeouts_ms(
            opts_, detail::millis(suspect_after, "suspect_after"),
            detail::millis(dead_after, "dead_after"), detail::millis(call, "call")));
        return *this;
    }
    // Period of the repair pass (30 s by default).
    Options& repair_interval(std::chrono::milliseconds interval) {
        detail::check(dstore_options_set_repair_interval_ms(
            opts_, detail::millis(interval, "repair interval")));
        return *this;
    }
    // A full scrub every `interval`, reading at most `rate_bytes_per_sec` (0: no scrubbing).
    Options& scrub(std::chrono::milliseconds interval, std::uint64_t rate_bytes_per_sec) {
        detail::check(dstore_options_set_scrub(opts_, detail::millis(interval, "scrub interval"),
                                               rate_bytes_per_sec));
        return *this;
    }
    // How long an unnamed chunk, and the record of a delete, are kept.
    Options& gc_grace(std::chrono::milliseconds gc_grace,
                      std::chrono::milliseconds tombstone_grace) {
        detail::check(dstore_options_set_gc_grace_ms(
            opts_, detail::millis(gc_grace, "gc grace"),
            detail::millis(tombstone_grace, "tombstone grace")));
        return *this;
    }

    // How long close() of a member may take to hand what it holds to the other
    // owners, and leave() may go without progress (30 s by default).
    Options& drain_timeout(std::chrono::milliseconds timeout) {
        detail::check(dstore_options_set_drain_timeout_ms(
            opts_, detail::millis(timeout, "drain timeout")));
        return *this;
    }

    // Read plain values and deletes not sealed with this node's data key (refused by
    // default: a holder of only the cluster secret could have written them).
    Options& accept_unsealed(bool accept) {
        detail::check(dstore_options_set_accept_unsealed(opts_, accept));
        return *this;
    }

    const dstore_options* get() const noexcept { return opts_; }

private:
    dstore_options* opts_;
};

// ---- Node ---------------------------------------------------------------------------------

// A live member of the cluster, as Node::peers() lists it.
struct Peer {
    std::string id;                   // 64 hex digits
    std::string addr;                 // "host:port"
    std::optional<std::string> zone;  // none if the member has no zone
};

// An open node. Move-only; the destructor closes it and releases the root. A Node may be used
// from many threads at once, but must outlive every call made on it.
class Node {
public:
    explicit Node(const Options& options) {
        detail::check(dstore_new(options.get(), &node_));
    }
    explicit Node(const std::string& root) : Node(Options().root(root)) {}
    ~Node() { dstore_free(node_); }
    Node(Node&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
    Node& operator=(Node&& other) noexcept {
        if (this != &other) {
            dstore_free(node_);
            node_ = std::exchange(other.node_, nullptr);
        }
        return *this;
    }
    Node(const Node&) = delete;
    Node& operator=(const Node&) = delete;

    // Closes the node now rather than in the destructor. A member first hands what it holds
    // to the other owners: throws Unavailable if that did not finish within the
    // drain timeout (the node is closed all the same). Calls after this throw InvalidArgument
    // (the handle is gone).
    void close() { end(dstore_close); }

    // Leaves the cluster for good (see dstore_leave), then closes as close() does; afterwards
    // the root can be deleted. Throws Unavailable if the hand-off stalled (closed all the same).
    void leave() { end(dstore_leave); }

    // Stores a value under `key`, replacing any older one; encrypted unless told otherwise.
    void store(const std::string& key, const void* data, std::size_t len, bool encrypt = true) {
        detail::check(dstore_store(node_, detail::c_str(key, "key"),
                                   static_cast<const std::uint8_t*>(data), len, encrypt));
    }
    void store(const std::string& key, std::string_view value, bool encrypt = true) {
        store(key, value.data(), value.size(), encrypt);
    }
    void store(const std::string& key, const std::vector<std::uint8_t>& value,
               bool encrypt = true) {
        store(key, value.data(), value.size(), encrypt);
    }

    // The value of `key`; throws NotFound if it has none.
    std::vector<std::uint8_t> get(const std::string& key) {
        Buffer buffer;
        fetch(key, buffer);
        return std::vector<std::uint8_t>(buffer.data, buffer.data + buffer.len);
    }
    std::string get_string(const std::string& key) {
        Buffer buffer;
        fetch(key, buffer);
        return std::string(reinterpret_cast<const char*>(buffer.data), buffer.len);
    }

    // Bytes `offset` to `offset + length` of the value of `key` (fewer if it ends first);
    // only the chunks covering them are fetched. Throws NotFound if it has none.
    std::vector<std::uint8_t> get_range(const std::string& key, std::uint64_t offset,
                                        std::uint64_t length) {
        Buffer buffer;
        detail::check(dstore_get_range(node_, detail::c_str(key, "key"), offset, length,
                                       &buffer.data, &buffer.len));
        return std::vector<std::uint8_t>(buffer.data, buffer.data + buffer.len);
    }

    // Deletes `key`; throws NotFound if it has no value.
    void remove(const std::string& key) {
        detail::check(dstore_delete(node_, detail::c_str(key, "key")));
    }

    bool has(const std::string& key) {
        bool found = false;
        detail::check(dstore_has(node_, detail::c_str(key, "key"), &found));
        return found;
    }

    // The keys that have a value, in byte order.
    std::vector<std::string> keys() {
        KeyList list;
        detail::check(dstore_keys(node_, &list.keys, &list.count));
        return std::vector<std::string>(list.keys, list.keys + list.count);
    }

    // One page of the keys starting with `prefix`, after `start_after`, at most `limit`;
    // a page shorter than `limit` is the last.
    std::vector<std::string> list(const std::string& prefix = "",
                                  const std::string& start_after = "",
                                  std::size_t limit = 1000) {
        KeyList list;
        detail::check(dstore_list(node_, detail::c_str(prefix, "prefix"),
                                  detail::c_str(start_after, "start_after"), limit,
                                  &list.keys, &list.count));
        return std::vector<std::string>(list.keys, list.keys + list.count);
    }

    // Streams a file into the store, or a value out to a file (replaced atomically).
    void store_file(const std::string& key, const std::string& path, bool encrypt = true) {
        detail::check(dstore_store_file(node_, detail::c_str(key, "key"),
                                        detail::c_str(path, "path"), encrypt));
    }
    void get_file(const std::string& key, const std::string& path) {
        detail::check(
            dstore_get_file(node_, detail::c_str(key, "key"), detail::c_str(path, "path")));
    }

    // The node's id: 64 hex digits.
    std::string id() {
        char buf[65];
        detail::check(dstore_node_id(node_, buf, sizeof buf));
        return std::string(buf, 64);
    }

    // The address peers dial to reach this member; none for a standalone node or a client.
    std::optional<std::string> addr() const {
        // An address is short; a longer one is retried with a buffer that fits it. With a
        // valid handle and buffer, DSTORE_INVALID_ARGUMENT can only mean "too small".
        std::vector<char> buf(64);
        for (;;) {
            const dstore_status status = dstore_node_addr(node_, buf.data(), buf.size());
            if (status == DSTORE_OK) {
                return std::string(buf.data());
            }
            if (status == DSTORE_NOT_FOUND) {
                return std::nullopt;
            }
            if (status != DSTORE_INVALID_ARGUMENT || node_ == nullptr || buf.size() >= 65536) {
                detail::throw_status(status);
            }
            buf.resize(buf.size() * 4);
        }
    }

    // The live members other than this node, in order of id.
    std::vector<Peer> peers() {
        PeerList list;
        detail::check(dstore_peers(node_, &list.peers, &list.count));
        std::vector<Peer> out;
        out.reserve(list.count);
        for (std::size_t i = 0; i < list.count; ++i) {
            const dstore_peer& p = list.peers[i];
            out.push_back(Peer{std::string(p.id), std::string(p.addr),
                               p.zone ? std::optional<std::string>(p.zone) : std::nullopt});
        }
        return out;
    }

    // Waits up to `timeout` (0 to UINT32_MAX ms) until the node sees its cluster; returns the
    // number of live peers. Throws Unavailable if no member answered or all refused the secret.
    std::size_t settle(std::chrono::milliseconds timeout) {
        if (timeout.count() < 0 || static_cast<unsigned long long>(timeout.count()) >
                                       std::numeric_limits<std::uint32_t>::max()) {
            throw InvalidArgument(DSTORE_INVALID_ARGUMENT,
                                  "settle timeout must be 0 to 4294967295 ms");
        }
        std::size_t live = 0;
        detail::check(
            dstore_settle(node_, static_cast<std::uint32_t>(timeout.count()), &live));
        return live;
    }

    // What the node holds, what it has done for callers, and its repair, scrubbing and
    // garbage collection so far (the fields of dstore_stats in dstore.h).
    dstore_stats stats() const {
        dstore_stats stats{};
        detail::check(dstore_node_stats(node_, &stats, sizeof stats));
        return stats;
    }

    // The C handle, for calls this wrapper does not cover. Still owned by this Node.
    dstore_node* native_handle() const noexcept { return node_; }

private:
    // Owners of what the C API hands out, so that it is freed even if copying it throws.
    struct Buffer {
        std::uint8_t* data = nullptr;
        std::size_t len = 0;
        Buffer() = default;
        Buffer(const Buffer&) = delete;
        Buffer& operator=(const Buffer&) = delete;
        ~Buffer() { dstore_bytes_free(data, len); }
    };
    struct KeyList {
        char** keys = nullptr;
        std::size_t count = 0;
        KeyList() = default;
        KeyList(const KeyList&) = delete;
        KeyList& operator=(const KeyList&) = delete;
        ~KeyList() { dstore_keys_free(keys, count); }
    };
    struct PeerList {
        dstore_peer* peers = nullptr;
        std::size_t count = 0;
        PeerList() = default;
        PeerList(const PeerList&) = delete;
        PeerList& operator=(const PeerList&) = delete;
        ~PeerList() { dstore_peers_free(peers, count); }
    };

    void fetch(const std::string& key, Buffer& buffer) {
        detail::check(dstore_get(node_, detail::c_str(key, "key"), &buffer.data, &buffer.len));
    }

    // Runs `how` (dstore_close or dstore_leave), frees the handle whatever it returned, then
    // throws what it returned.
    void end(dstore_status (*how)(dstore_node*)) {
        if (node_ == nullptr) {
            return;
        }
        dstore_status status = how(node_);
        try {
            detail::check(status);
        } catch (...) {
            dstore_free(std::exchange(node_, nullptr));
            throw;
        }
        dstore_free(std::exchange(node_, nullptr));
    }

    dstore_node* node_ = nullptr;
};

// The version of the loaded library; compare with DSTORE_VERSION, the header's.
inline std::string version() { return dstore_version(); }

}  // namespace dstore
