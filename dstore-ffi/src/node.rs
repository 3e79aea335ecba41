//! `dstore_node`: an open node, and the calls on it. Each export checks its arguments, runs one
//! core call on the shared runtime, and writes its outputs only if that call succeeded.

use std::ffi::c_char;
use std::sync::Arc;

use dstore_core::{Node, Redundancy, StoreOptions};

use crate::args::{self, free_handle, handle, into_handle, output};
use crate::boundary::boundary;
use crate::buffers;
use crate::options::dstore_options;
use crate::runtime::{self, Runtime};
use crate::status::{dstore_status, Failure, Result};

/// An open dstore node: one storage root, locked while the node is open. Open with
/// dstore_new(), close and free with dstore_free().
///
/// Thread-safe: any number of threads may call functions on one node at once. Freeing it
/// while another thread still uses it is a bug in the caller.
pub struct dstore_node {
    /// Shared with the runtime's tasks during a call; `Node` is `Send + Sync`, which is what
    /// makes the handle usable from many threads.
    pub(crate) node: Node,
    /// A cluster node's own runtime, which runs its background tasks and is dropped (ending
    /// them) in dstore_free; see runtime.rs. `None` for a standalone node, which has no
    /// background tasks and uses the shared runtime. Declared after `node`, so that dropping
    /// the handle drops the node before stopping its runtime.
    /// Shared with the node's readers and writers (stream.rs), which may outlive the handle.
    own_runtime: Option<Arc<Runtime>>,
}

impl dstore_node {
    /// Runs one core call of this node to completion, on its runtime.
    pub(crate) fn run<T>(
        &self,
        call: impl std::future::Future<Output = dstore_core::Result<T>>,
    ) -> Result<T> {
        runtime::run_on(self.own_runtime.as_deref(), call)
    }

    /// What runs this node's calls: its own runtime, or `None` for the shared one.
    pub(crate) fn own_runtime(&self) -> Option<Arc<Runtime>> {
        self.own_runtime.clone()
    }
}

// The header promises that one node may be used from many threads at once.
const _: () = {
    const fn thread_safe<T: Send + Sync>() {}
    thread_safe::<dstore_node>();
};

/// Length of a node id in hex digits.
pub(crate) const NODE_ID_HEX_LEN: usize = 64;

// SAFETY (for every `args` call in this file): the header states the contract of each pointer
// (NULL, or valid as described); `args` checks the rest and reports which argument failed.

/// Opens (or creates) the node whose storage root is set in `opts`. `opts` is read, not
/// consumed: the caller still owns and frees it. On success `*out` receives a new node that
/// the caller owns and frees with dstore_free(); on failure `*out` is left unchanged.
/// A cluster member is listening when this returns; it finds its peers in the background.
/// DSTORE_LOCKED: another node (in this or another process) has the root open.
/// DSTORE_WRONG_KEY: the root belongs to a cluster with another secret.
/// DSTORE_INVALID_ARGUMENT: also for options that do not go together (a client with a listen
/// address, peers without a listen address or client mode).
/// DSTORE_IO: also when the listen address cannot be bound (in use, not local).
#[no_mangle]
pub unsafe extern "C" fn dstore_new(
    opts: *const dstore_options,
    out: *mut *mut dstore_node,
) -> dstore_status {
    boundary("dstore_new", || -> Result {
        let config = unsafe { handle(opts, "opts") }?.config()?;
        let out = unsafe { output(out, "out") }?;
        let clustered = config.listen.is_some() || config.client || !config.peers.is_empty();
        let own_runtime = if clustered {
            Some(Arc::new(Runtime::for_cluster_node()?))
        } else {
            None
        };
        // The node's background tasks are spawned by `open`, so it runs on the node's runtime.
        // If it fails, dropping `own_runtime` stops whatever it had started.
        let node = match &own_runtime {
            Some(own) => own.run(Node::open(config))?,
            None => runtime::shared()?.run(Node::open(config))?,
        };
        out.write(into_handle(dstore_node { node, own_runtime }));
        Ok(())
    })
}

/// Closes the node and frees it: waits for calls in flight on other threads to finish,
/// releases the root's lock (another node may open it once this returns), and frees the
/// handle. A cluster node also leaves the cluster: its listener, connections, heartbeats and
/// any copies still being sent beyond the quorum of a finished write are stopped, and its
/// port is closed, before this returns. NULL is ignored. After this call `node` must not be
/// used, by any thread; calling it while other threads may still start calls on `node` is a
/// bug in the caller.
#[no_mangle]
pub unsafe extern "C" fn dstore_free(node: *mut dstore_node) {
    boundary("dstore_free", || {
        // SAFETY: the header requires `node` to be NULL or from dstore_new, not yet freed.
        if let Ok(n) = unsafe { handle(node, "node") } {
            // Where the runtime cannot run (a forked child, a tokio thread) there is nothing
            // to wait for: dropping the node below releases the root as well.
            let _ = n.run(n.node.close());
        }
        // SAFETY: as above; the handle is not used after this. Dropping it drops the node,
        // then stops a cluster node's runtime, which ends any task that outlived `close`
        // (and with it its sockets) and waits for their disk work.
        unsafe { free_handle(node) }
    })
}

/// Closes the node, and says how that went; the handle stays valid for dstore_free(), and
/// every other call on it fails with DSTORE_CLOSED. A cluster member first hands the data
/// it holds to the owners the cluster has without it (see
/// dstore_options_set_drain_timeout_ms): DSTORE_UNAVAILABLE if that did not finish in time,
/// with what was left in dstore_last_error() (the node is closed all the same, and what was
/// not handed off stays in its root). Closing a closed node is DSTORE_OK. dstore_free()
/// closes as well, without a status.
#[no_mangle]
pub unsafe extern "C" fn dstore_close(node: *mut dstore_node) -> dstore_status {
    boundary("dstore_close", || -> Result {
        // SAFETY: the header requires `node` to be NULL or from dstore_new, not yet freed.
        let n = unsafe { handle(node, "node") }?;
        n.run(n.node.close())?;
        Ok(())
    })
}

/// Leaves the cluster for good: hands everything the node holds to the owners the cluster
/// has without it, tells the members it has left, then closes (as dstore_close()). After
/// DSTORE_OK the node's root can be deleted. DSTORE_UNAVAILABLE if the hand-off made no
/// progress for the drain timeout (the node is closed all the same, its root intact);
/// DSTORE_INVALID_ARGUMENT for a standalone node or a client.
#[no_mangle]
pub unsafe extern "C" fn dstore_leave(node: *mut dstore_node) -> dstore_status {
    boundary("dstore_leave", || -> Result {
        // SAFETY: as for dstore_close.
        let n = unsafe { handle(node, "node") }?;
        n.run(n.node.leave())?;
        Ok(())
    })
}

/// Writes the node's id, 64 lowercase hex digits and a NUL, into `buf`, which the caller owns
/// and must have room for `buf_len` bytes. `buf_len` must be at least 65, else
/// DSTORE_INVALID_ARGUMENT and `buf` is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn dstore_node_id(
    node: *mut dstore_node,
    buf: *mut c_char,
    buf_len: usize,
) -> dstore_status {
    boundary("dstore_node_id", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        if buf.is_null() {
            return Err(Failure::invalid("`buf` is NULL"));
        }
        if buf_len < NODE_ID_HEX_LEN + 1 {
            return Err(Failure::invalid(format!(
                "`buf_len` is {buf_len}; a node id needs {} bytes (64 hex digits and a NUL)",
                NODE_ID_HEX_LEN + 1
            )));
        }
        let hex = node.node.id().to_hex();
        debug_assert_eq!(hex.len(), NODE_ID_HEX_LEN);
        // SAFETY: `buf` is non-NULL and the caller promises `buf_len` (>= 65) writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(hex.as_ptr(), buf.cast::<u8>(), NODE_ID_HEX_LEN);
            buf.add(NODE_ID_HEX_LEN).write(0);
        }
        Ok(())
    })
}

/// Stores `len` bytes at `data` as the value of `key`, replacing any older value, and returns
/// once the value is durable on disk. `key`: NUL-terminated UTF-8, 1 to 1024 bytes. `data` may
/// be NULL only if `len` is 0 (an empty value). Both are read during the call only; the caller
/// keeps them. `encrypt`: encrypt under the node's data key (plaintext values are still
/// authenticated and checked by hash).
#[no_mangle]
pub unsafe extern "C" fn dstore_store(
    node: *mut dstore_node,
    key: *const c_char,
    data: *const u8,
    len: usize,
    encrypt: bool,
) -> dstore_status {
    boundary("dstore_store", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let data = unsafe { args::bytes(data, len, "data") }?;
        node.run(node.node.store(
            key,
            data,
            StoreOptions {
                encrypt,
                redundancy: Redundancy::Default,
            },
        ))
    })
}

/// Reads the value of `key`, checking every byte. On success `*out` points to `*out_len`
/// bytes that the caller owns and frees with dstore_bytes_free(*out, *out_len); `*out` is not
/// NULL even for an empty value. On failure neither is written. DSTORE_NOT_FOUND: no such key.
/// DSTORE_WRONG_KEY: encrypted under another data key. DSTORE_INTEGRITY: corrupt on disk.
#[no_mangle]
pub unsafe extern "C" fn dstore_get(
    node: *mut dstore_node,
    key: *const c_char,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> dstore_status {
    boundary("dstore_get", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let (out, out_len) = unsafe { (output(out, "out")?, output(out_len, "out_len")?) };
        let value = node.run(node.node.get(key))?;
        let (ptr, len) = buffers::bytes_to_c(value);
        out.write(ptr);
        out_len.write(len);
        Ok(())
    })
}

/// Reads bytes `offset` to `offset + length` of the value of `key` (fewer if the value ends
/// first, none if it ends at or before `offset`), fetching only the chunks that cover them and
/// checking every byte. On success `*out` points to `*out_len` bytes that the caller owns and
/// frees with dstore_bytes_free(*out, *out_len); `*out` is not NULL even for an empty range.
/// On failure neither is written. Errors as for dstore_get.
#[no_mangle]
pub unsafe extern "C" fn dstore_get_range(
    node: *mut dstore_node,
    key: *const c_char,
    offset: u64,
    length: u64,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> dstore_status {
    boundary("dstore_get_range", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let (out, out_len) = unsafe { (output(out, "out")?, output(out_len, "out_len")?) };
        let value = node.run(node.node.get_range(key, offset, length))?;
        let (ptr, len) = buffers::bytes_to_c(value);
        out.write(ptr);
        out_len.write(len);
        Ok(())
    })
}

/// Sets `*out` to whether `key` has a value. A missing key is not an error: `*out` is false.
#[no_mangle]
pub unsafe extern "C" fn dstore_has(
    node: *mut dstore_node,
    key: *const c_char,
    out: *mut bool,
) -> dstore_status {
    boundary("dstore_has", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let out = unsafe { output(out, "out") }?;
        out.write(node.run(node.node.has(key))?);
        Ok(())
    })
}

/// Deletes `key`. DSTORE_NOT_FOUND if it has no value.
#[no_mangle]
pub unsafe extern "C" fn dstore_delete(
    node: *mut dstore_node,
    key: *const c_char,
) -> dstore_status {
    boundary("dstore_delete", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        node.run(node.node.delete(key))
    })
}

/// Lists the keys that have a value, in byte order. On success `*out_keys` points to
/// `*out_count` NUL-terminated UTF-8 strings; the caller owns the array and the strings and
/// frees both with one call, dstore_keys_free(*out_keys, *out_count). `*out_keys` is not NULL
/// even when there are no keys. On failure neither is written.
#[no_mangle]
pub unsafe extern "C" fn dstore_keys(
    node: *mut dstore_node,
    out_keys: *mut *mut *mut c_char,
    out_count: *mut usize,
) -> dstore_status {
    boundary("dstore_keys", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let (out_keys, out_count) = unsafe {
            (
                output(out_keys, "out_keys")?,
                output(out_count, "out_count")?,
            )
        };
        let keys = node.run(node.node.keys(""))?;
        let (ptr, count) = buffers::keys_to_c(keys)?;
        out_keys.write(ptr);
        out_count.write(count);
        Ok(())
    })
}

/// Lists one page of the keys that have a value (of the whole cluster, for a cluster node):
/// those starting with `prefix` and after `start_after` (both NUL-terminated UTF-8, "" for
/// none), in byte order, at most `limit` (1 to 100000). The next page starts after the last
/// key of this one; a page shorter than `limit` is the last. Output as for dstore_keys(),
/// freed with dstore_keys_free(). DSTORE_UNAVAILABLE if a cluster member cannot answer: a
/// listing never silently lacks a member's keys.
#[no_mangle]
pub unsafe extern "C" fn dstore_list(
    node: *mut dstore_node,
    prefix: *const c_char,
    start_after: *const c_char,
    limit: usize,
    out_keys: *mut *mut *mut c_char,
    out_count: *mut usize,
) -> dstore_status {
    boundary("dstore_list", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let prefix = unsafe { args::string(prefix, "prefix") }?;
        let start_after = unsafe { args::string(start_after, "start_after") }?;
        let (out_keys, out_count) = unsafe {
            (
                output(out_keys, "out_keys")?,
                output(out_count, "out_count")?,
            )
        };
        let keys = node.run(node.node.list(prefix, start_after, limit))?;
        let (ptr, count) = buffers::keys_to_c(keys)?;
        out_keys.write(ptr);
        out_count.write(count);
        Ok(())
    })
}

/// Stores the contents of the file at `path` (NUL-terminated UTF-8) as the value of `key`,
/// streaming it: memory use is a few chunks whatever the file's size. DSTORE_IO if the file
/// cannot be read.
#[no_mangle]
pub unsafe extern "C" fn dstore_store_file(
    node: *mut dstore_node,
    key: *const c_char,
    path: *const c_char,
    encrypt: bool,
) -> dstore_status {
    boundary("dstore_store_file", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let path = unsafe { args::string(path, "path") }?;
        node.run(node.node.store_file(
            key,
            path,
            StoreOptions {
                encrypt,
                redundancy: Redundancy::Default,
            },
        ))
        .map(|_size| ())
    })
}

/// Writes the value of `key` to the file at `path` (NUL-terminated UTF-8), replacing it. The
/// value goes to a temporary file in the same directory that is renamed to `path` once every
/// byte is verified, so `path` never holds a partial or corrupt value.
#[no_mangle]
pub unsafe extern "C" fn dstore_get_file(
    node: *mut dstore_node,
    key: *const c_char,
    path: *const c_char,
) -> dstore_status {
    boundary("dstore_get_file", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let path = unsafe { args::string(path, "path") }?;
        node.run(node.node.get_file(key, path)).map(|_size| ())
    })
}
