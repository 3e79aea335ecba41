//! Checked conversions of what C passes in: handles, strings, byte buffers and output pointers.
//! Each check that can fail names the argument in its message. What cannot be checked (that a
//! non-NULL pointer is valid, that a length matches its buffer) is the caller's promise, stated
//! in the header; these functions are `unsafe` because they rely on it.

use std::ffi::{c_char, CStr};
use std::ptr::NonNull;

use crate::status::{Failure, Result};

/// Borrows the object behind a handle for the length of one call.
///
/// # Safety
/// `ptr` is NULL or came from the matching `_new` and has not been freed.
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller promises a non-NULL `ptr` points to a live `T`.
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::invalid(format!("`{name}` is NULL")))
}

/// Like [`handle`], for the few calls that change the object (options setters).
///
/// # Safety
/// As for [`handle`], and no other thread uses the object during the call.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: as above, and the caller promises exclusive use.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::invalid(format!("`{name}` is NULL")))
}

/// Moves `value` to the heap and hands it to C as a handle.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back and drops a handle from [`into_handle`]; NULL is ignored.
///
/// # Safety
/// `ptr` is NULL or came from [`into_handle`] and is not used again.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the caller promises `ptr` came from `Box::into_raw` and is given up.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// A NUL-terminated string that must be UTF-8 (keys and paths alike).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises NUL termination.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::invalid(format!(
            "`{name}` is not valid UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A byte buffer of `len` bytes at `ptr`. `ptr` may be NULL only when `len` is 0.
///
/// # Safety
/// A non-NULL `ptr` points to `len` readable bytes that outlive `'a` and that nobody writes
/// during the call.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    // `slice::from_raw_parts` requires this; a larger `len` is a bug such as a negative
    // length converted to size_t.
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "the length of `{name}` is {len}, larger than any buffer can be"
        )));
    }
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Failure::invalid(format!(
                "`{name}` is NULL but its length is {len}"
            )))
        };
    }
    // SAFETY: non-NULL, `len` is in range, and the caller promises `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Where an export writes a result, checked for NULL before any work is done and written only
/// once the call has succeeded.
pub(crate) struct Output<T>(NonNull<T>);

/// # Safety
/// `ptr` is NULL or valid for writing a `T` (it need not hold one already) until the call ends.
pub(crate) unsafe fn output<T>(ptr: *mut T, name: &str) -> Result<Output<T>> {
    NonNull::new(ptr)
        .map(Output)
        .ok_or_else(|| Failure::invalid(format!("`{name}` is NULL")))
}

impl<T> Output<T> {
    pub fn write(self, value: T) {
        // SAFETY: `output`'s caller promised the pointer is writable; `write` does not read or
        // drop what was there, which may be uninitialized.
        unsafe { self.0.as_ptr().write(value) }
    }

    /// Writes the first `len` bytes of `value`: for a caller compiled with an older, shorter
    /// version of a struct that only ever grows at its end. The copy is untyped, so padding is
    /// copied as it is.
    ///
    /// # Safety
    /// `len` is at most `size_of::<T>()`, and the pointer given to [`output`] is valid for
    /// writing `len` bytes.
    pub unsafe fn write_prefix(self, value: &T, len: usize) {
        debug_assert!(len <= size_of::<T>());
        // SAFETY: `value` has `size_of::<T>()` >= `len` readable bytes, the caller promises
        // `len` writable ones, and a `&T` cannot overlap memory we were handed to write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (value as *const T).cast::<u8>(),
                self.0.as_ptr().cast::<u8>(),
                len,
            )
        }
    }
}
