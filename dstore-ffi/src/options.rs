//! `dstore_options`: how a node is set up, built through setter functions on an opaque object
//! so that adding an option later adds a function and never changes a struct layout that
//! compiled programs depend on (librdkafka's `rd_kafka_conf_set` style).

use std::ffi::c_char;
use std::path::PathBuf;

use dstore_core::{Config, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

use crate::args::{self, free_handle, handle_mut, into_handle};
use crate::boundary::boundary;
use crate::status::{dstore_status, Failure, Result};

/// Length of a data key in bytes.
const DATA_KEY_LEN: usize = 32;

/// Settings for dstore_new(). Create with dstore_options_new(), change with the
/// dstore_options_set_* functions, free with dstore_options_free(). dstore_new() copies what it
/// needs, so one options object can open several nodes and be freed at any time after.
/// Not thread-safe: use an options object from one thread at a time.
pub struct dstore_options {
    /// The storage root. Required, with no default: a library should not pick a directory
    /// for its caller.
    root: Option<PathBuf>,
    /// `None`: the key kept in the root (made on first open), so only this root reads what it
    /// encrypts.
    data_key: Option<[u8; DATA_KEY_LEN]>,
    /// `None`: the secret kept in the root (a cluster of one).
    secret: Option<Vec<u8>>,
    /// Plaintext bytes per chunk.
    chunk_size: usize,
}

impl dstore_options {
    /// The core configuration these options describe.
    pub(crate) fn config(&self) -> Result<Config> {
        let root = self.root.clone().ok_or_else(|| {
            Failure::invalid("no storage root set; call dstore_options_set_root first")
        })?;
        let mut config = Config::new(root);
        config.data_key = self.data_key;
        config.secret = self.secret.clone();
        config.chunk_size = self.chunk_size;
        Ok(config)
    }
}

/// A new options object with the defaults: no root (one must be set), the data key and
/// cluster secret kept in the root, 1 MiB chunks. The caller owns it and frees it with
/// dstore_options_free(). Returns NULL only if dstore has a bug (see DSTORE_PANIC).
#[no_mangle]
pub extern "C" fn dstore_options_new() -> *mut dstore_options {
    boundary("dstore_options_new", || {
        into_handle(dstore_options {
            root: None,
            data_key: None,
            secret: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    })
}

/// Sets the storage root: a directory, created if missing, that one node at a time may open.
/// `path` is a NUL-terminated UTF-8 string, copied (the caller keeps it). Required.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_root(
    opts: *mut dstore_options,
    path: *const c_char,
) -> dstore_status {
    boundary("dstore_options_set_root", || -> Result {
        // SAFETY (for every `args` call in this file): the header states these pointer
        // contracts; `args` checks everything else.
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let path = unsafe { args::string(path, "path") }?;
        if path.is_empty() {
            return Err(Failure::invalid("`path` is empty"));
        }
        opts.root = Some(PathBuf::from(path));
        Ok(())
    })
}

/// Sets the 32-byte data key that encrypts values. Nodes given the same data key read each
/// other's encrypted values. Without one, the key kept in the root is used (made on first
/// open). `key` points to `key_len` bytes, copied; `key_len` must be 32.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_data_key(
    opts: *mut dstore_options,
    key: *const u8,
    key_len: usize,
) -> dstore_status {
    boundary("dstore_options_set_data_key", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let key = unsafe { args::bytes(key, key_len, "key") }?;
        let key: [u8; DATA_KEY_LEN] = key.try_into().map_err(|_| {
            Failure::invalid(format!(
                "`key_len` must be {DATA_KEY_LEN} (a data key is {DATA_KEY_LEN} bytes), not {key_len}"
            ))
        })?;
        opts.data_key = Some(key);
        Ok(())
    })
}

/// Sets the cluster secret, shared by every node of a cluster: `secret_len` bytes at `secret`,
/// copied, at least one byte. A root remembers its cluster: opening it with another secret
/// fails with DSTORE_WRONG_KEY. Without one, the secret kept in the root is used.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_secret(
    opts: *mut dstore_options,
    secret: *const u8,
    secret_len: usize,
) -> dstore_status {
    boundary("dstore_options_set_secret", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let secret = unsafe { args::bytes(secret, secret_len, "secret") }?;
        if secret.is_empty() {
            return Err(Failure::invalid(
                "`secret` is empty; a cluster secret needs bytes",
            ));
        }
        opts.secret = Some(secret.to_vec());
        Ok(())
    })
}

/// Sets how many plaintext bytes go into each chunk: 64 to 8388608 (8 MiB); 1048576 by
/// default. Memory use per call is a few chunks, whatever the size of the value.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_chunk_size(
    opts: *mut dstore_options,
    chunk_size: usize,
) -> dstore_status {
    boundary("dstore_options_set_chunk_size", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        // Checked here too (the core checks at open) so that the error points at this call.
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Failure::invalid(format!(
                "`chunk_size` must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}, not {chunk_size}"
            )));
        }
        opts.chunk_size = chunk_size;
        Ok(())
    })
}

/// Frees an options object. NULL is ignored. Nodes opened with it are not affected.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_free(opts: *mut dstore_options) {
    // SAFETY: the header requires `opts` to be NULL or from dstore_options_new, not yet freed.
    boundary("dstore_options_free", || unsafe { free_handle(opts) })
}
