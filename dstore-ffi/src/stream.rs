//! `dstore_reader` and `dstore_writer`: a value read or written a piece at a time, so that
//! neither side holds it whole in memory. Each wraps the core's `ValueReader` or
//! `ValueWriter` and runs its calls on its node's runtime, which it shares: a stream freed
//! after its node fails its calls with DSTORE_CLOSED instead of touching freed memory.

use std::ffi::c_char;
use std::sync::{Arc, Mutex};

use dstore_core::{Redundancy, StoreOptions, ValueReader, ValueWriter};

use crate::args::{self, free_handle, handle, into_handle, output};
use crate::boundary::boundary;
use crate::node::dstore_node;
use crate::runtime::{self, Runtime};
use crate::status::{dstore_status, Failure, Result};

/// A value being read, from dstore_reader_open(); free it with dstore_reader_free().
///
/// One thread at a time: calls on one reader from several threads at once are serialised.
pub struct dstore_reader {
    reader: Mutex<ValueReader>,
    runtime: Option<Arc<Runtime>>,
}

/// A value being written, from dstore_writer_open(); free it with dstore_writer_free().
///
/// One thread at a time: calls on one writer from several threads at once are serialised.
pub struct dstore_writer {
    /// `None` once finished or failed.
    writer: Mutex<Option<ValueWriter>>,
    runtime: Option<Arc<Runtime>>,
}

// SAFETY (for every `args` call in this file): as in node.rs, the header states each
// pointer's contract and `args` checks the rest.

/// Opens the value of `key` for reading: the version current now, read with
/// dstore_reader_read() from the start, or from where dstore_reader_seek() puts it. Only the
/// chunks read are fetched. On success `*out` receives a reader that the caller frees with
/// dstore_reader_free(); on failure it is left unchanged. DSTORE_NOT_FOUND: no such key.
#[no_mangle]
pub unsafe extern "C" fn dstore_reader_open(
    node: *mut dstore_node,
    key: *const c_char,
    out: *mut *mut dstore_reader,
) -> dstore_status {
    boundary("dstore_reader_open", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let out = unsafe { output(out, "out") }?;
        let reader = node.run(node.node.reader(key))?;
        out.write(into_handle(dstore_reader {
            reader: Mutex::new(reader),
            runtime: node.own_runtime(),
        }));
        Ok(())
    })
}

/// Sets `*size` to the size in bytes of the value `reader` reads.
#[no_mangle]
pub unsafe extern "C" fn dstore_reader_size(
    reader: *const dstore_reader,
    size: *mut u64,
) -> dstore_status {
    boundary("dstore_reader_size", || -> Result {
        let reader = unsafe { handle(reader, "reader") }?;
        let size = unsafe { output(size, "size") }?;
        size.write(lock(&reader.reader).size());
        Ok(())
    })
}

/// Reads up to `capacity` bytes into `buf` from the reader's position, and moves it on;
/// `*read` receives how many: fewer than asked at the end of a chunk, 0 only at the end of
/// the value. Every byte is checked before it is given. On failure `*read` is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn dstore_reader_read(
    reader: *mut dstore_reader,
    buf: *mut u8,
    capacity: usize,
    read: *mut usize,
) -> dstore_status {
    boundary("dstore_reader_read", || -> Result {
        let r = unsafe { handle(reader, "reader") }?;
        let read = unsafe { output(read, "read") }?;
        // Not made a slice: the caller's buffer may be uninitialised.
        if capacity > isize::MAX as usize || (buf.is_null() && capacity != 0) {
            return Err(Failure::invalid(format!(
                "`buf` is {} with a capacity of {capacity}",
                if buf.is_null() { "NULL" } else { "given" }
            )));
        }
        let mut guard = lock(&r.reader);
        let reader = &mut *guard;
        let piece = runtime::run_on(r.runtime.as_deref(), reader.read_some(capacity))?;
        if !piece.is_empty() {
            // SAFETY: `buf` holds `capacity` writable bytes (the header's contract, checked
            // above as far as it can be), and `piece` is at most `capacity` long, so it is
            // not NULL here.
            unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), buf, piece.len()) };
        }
        read.write(piece.len());
        Ok(())
    })
}

/// Moves the reader to `offset` bytes from the start of the value; reads past its end give
/// 0 bytes.
#[no_mangle]
pub unsafe extern "C" fn dstore_reader_seek(
    reader: *mut dstore_reader,
    offset: u64,
) -> dstore_status {
    boundary("dstore_reader_seek", || -> Result {
        let reader = unsafe { handle(reader, "reader") }?;
        lock(&reader.reader).seek_to(std::io::SeekFrom::Start(offset))?;
        Ok(())
    })
}

/// Frees a reader. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn dstore_reader_free(reader: *mut dstore_reader) {
    boundary("dstore_reader_free", || {
        // SAFETY: the header requires NULL or a reader from dstore_reader_open, not yet freed.
        unsafe { free_handle(reader) }
    })
}

/// Starts a new value of `key`, given with dstore_writer_write() in pieces, in order, and
/// stored by dstore_writer_finish(); `encrypt` as for dstore_store. The pieces are written
/// while they come, and nothing is stored unless dstore_writer_finish() succeeds: a writer
/// freed before, or whose node closes meanwhile, stores nothing. On success `*out` receives
/// a writer that the caller frees with dstore_writer_free(); on failure it is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn dstore_writer_open(
    node: *mut dstore_node,
    key: *const c_char,
    encrypt: bool,
    out: *mut *mut dstore_writer,
) -> dstore_status {
    boundary("dstore_writer_open", || -> Result {
        let node = unsafe { handle(node, "node") }?;
        let key = unsafe { args::string(key, "key") }?;
        let out = unsafe { output(out, "out") }?;
        let opts = StoreOptions {
            encrypt,
            redundancy: Redundancy::Default,
        };
        let writer = node.run(node.node.writer(key, opts))?;
        out.write(into_handle(dstore_writer {
            writer: Mutex::new(Some(writer)),
            runtime: node.own_runtime(),
        }));
        Ok(())
    })
}

/// Gives the next `len` bytes of the value (`data` may be NULL when `len` is 0). A failure
/// means the write failed, says why, and stores nothing; every later call on the writer
/// fails too.
#[no_mangle]
pub unsafe extern "C" fn dstore_writer_write(
    writer: *mut dstore_writer,
    data: *const u8,
    len: usize,
) -> dstore_status {
    boundary("dstore_writer_write", || -> Result {
        let w = unsafe { handle(writer, "writer") }?;
        let data = unsafe { args::bytes(data, len, "data") }?;
        let mut guard = lock(&w.writer);
        let writer = guard.as_mut().ok_or_else(finished)?;
        let outcome = runtime::run_on(w.runtime.as_deref(), writer.write(data));
        if outcome.is_err() {
            *guard = None;
        }
        outcome
    })
}

/// Ends the value and stores it; returns once it is durable, with its size in `*stored`
/// (which may be NULL). The writer still needs dstore_writer_free(); every other call on it
/// fails from now on.
#[no_mangle]
pub unsafe extern "C" fn dstore_writer_finish(
    writer: *mut dstore_writer,
    stored: *mut u64,
) -> dstore_status {
    boundary("dstore_writer_finish", || -> Result {
        let w = unsafe { handle(writer, "writer") }?;
        let writer = lock(&w.writer).take().ok_or_else(finished)?;
        let n = runtime::run_on(w.runtime.as_deref(), writer.finish())?;
        if let Ok(stored) = unsafe { output(stored, "stored") } {
            stored.write(n);
        }
        Ok(())
    })
}

/// Frees a writer; one not finished stores nothing. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn dstore_writer_free(writer: *mut dstore_writer) {
    boundary("dstore_writer_free", || {
        // SAFETY: the header requires NULL or a writer from dstore_writer_open, not yet freed.
        unsafe { free_handle(writer) }
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn finished() -> Failure {
    Failure::invalid("the writer has finished or failed already".to_owned())
}
