//! The message of the last failure, one per thread, so that threads sharing a node never see
//! each other's errors and a message stays put until its own thread calls dstore again.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use crate::boundary::boundary;

thread_local! {
    /// Empty when the last status-returning call on this thread succeeded (or none was made).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records why a call failed. A NUL inside `message` (say, from a path) is written as `\0`
/// rather than cutting the message short.
pub(crate) fn set(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    // `try_with` fails only while this thread is being torn down, when nobody can read it.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = message);
}

/// Forgets the last failure: called when a status-returning call succeeds.
pub(crate) fn clear() {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

/// Why the last function that returned a dstore_status on this thread failed: a
/// NUL-terminated UTF-8 message, or "" if that call succeeded or none was made. Never NULL.
/// Owned by dstore: do not free it. It stays valid until this thread next calls a dstore
/// function that returns a dstore_status; copy it to keep it longer.
#[no_mangle]
pub extern "C" fn dstore_last_error() -> *const c_char {
    boundary("dstore_last_error", || {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}
