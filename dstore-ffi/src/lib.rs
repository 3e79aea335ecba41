//! libdstore: the C ABI of dstore. `include/dstore.h` is generated from this crate by cbindgen
//! (`make header`) and checked against it by `tests/header.rs`.
//!
//! This crate holds no storage logic: each export checks its arguments, runs one call of
//! [`dstore_core::Node`] on a tokio runtime (shared, or the node's own for a cluster node; see
//! `runtime`), and maps the outcome to a status code.
//!
//! The conventions, after rustls-ffi (the header's opening comment states them for C users):
//! - every name starts with `dstore_`; constructors end in `_new`, destructors in `_free`, and
//!   every `_free` accepts NULL;
//! - the handle comes first, then inputs, then outputs; a byte buffer is followed by its length;
//! - functions that can fail return a [`dstore_status`] and write their outputs only on
//!   success; [`dstore_last_error`] says why the last one on this thread failed;
//! - every export runs inside [`boundary::boundary`], so a panic becomes `DSTORE_PANIC` and
//!   never unwinds into C;
//! - memory handed to C is freed by the matching `dstore_*_free` function, never by `free()`.
//!
//! Modules are declared in the order their items appear in the header.

// Exported names are the C names, so C and Rust talk about the same things.
#![allow(non_camel_case_types)]
// Every export is `unsafe` because it trusts pointers from C; what each pointer must be is
// written in its doc comment, which cbindgen copies into the header. A `# Safety` heading on
// each would only repeat that in Rust's dialect.
#![allow(clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

// The modules that export functions, in the order cbindgen writes them into the header (it
// follows `mod` declarations in order; blank lines keep rustfmt from sorting them).
mod status;

mod last_error;

mod options;

mod node;

mod buffers;

mod cluster;

mod stream;

mod stats;

// Internals: argument checks, the panic boundary and the runtimes.
mod args;
mod boundary;
mod runtime;

#[cfg(test)]
mod tests;

pub use buffers::{dstore_bytes_free, dstore_keys_free};
pub use cluster::{dstore_node_addr, dstore_peer, dstore_peers, dstore_peers_free, dstore_settle};
pub use last_error::dstore_last_error;
pub use node::{
    dstore_close, dstore_delete, dstore_free, dstore_get, dstore_get_file, dstore_get_range,
    dstore_has, dstore_keys, dstore_leave, dstore_list, dstore_new, dstore_node, dstore_node_id,
    dstore_store, dstore_store_file,
};
pub use options::{
    dstore_options, dstore_options_add_peer, dstore_options_free, dstore_options_new,
    dstore_options_set_accept_unsealed, dstore_options_set_advertise,
    dstore_options_set_chunk_size, dstore_options_set_client, dstore_options_set_data_key,
    dstore_options_set_drain_timeout_ms, dstore_options_set_gc_grace_ms, dstore_options_set_listen,
    dstore_options_set_read_quorum, dstore_options_set_repair_interval_ms,
    dstore_options_set_replicas, dstore_options_set_root, dstore_options_set_scrub,
    dstore_options_set_secret, dstore_options_set_timeouts_ms, dstore_options_set_write_quorum,
    dstore_options_set_zone,
};
pub use stats::{dstore_node_stats, dstore_stats};
pub use status::{dstore_status, dstore_status_name};
pub use stream::{
    dstore_reader, dstore_reader_free, dstore_reader_open, dstore_reader_read, dstore_reader_seek,
    dstore_reader_size, dstore_writer, dstore_writer_finish, dstore_writer_free,
    dstore_writer_open, dstore_writer_write,
};

use std::ffi::{c_char, CStr};

/// The version of this library, NUL-terminated for C.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the crate version contains a NUL"),
    };

/// The version of the library actually loaded, e.g. "0.1.0": a static string, never freed.
/// Compare it with DSTORE_VERSION (the header's version) to detect a mismatch at run time.
#[no_mangle]
pub extern "C" fn dstore_version() -> *const c_char {
    boundary::boundary("dstore_version", || VERSION.as_ptr())
}
