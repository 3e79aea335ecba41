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
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
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

    const dstore_options* get() const noexcept { return opts_; }

private:
    dstore_options* opts_;
};

// ---- Node ---------------------------------------------------------------------------------

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

    // Closes the node now rather than in the destructor. Calls after this throw
    // InvalidArgument (the handle is gone).
    void close() noexcept {
        dstore_free(node_);
        node_ = nullptr;
    }

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

    void fetch(const std::string& key, Buffer& buffer) {
        detail::check(dstore_get(node_, detail::c_str(key, "key"), &buffer.data, &buffer.len));
    }

    dstore_node* node_ = nullptr;
};

// The version of the loaded library; compare with DSTORE_VERSION, the header's.
inline std::string version() { return dstore_version(); }

}  // namespace dstore
