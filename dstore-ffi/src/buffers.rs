//! Memory handed to C: value buffers and key lists. Each is allocated by Rust's allocator and
//! must come back to the matching free function here, which rebuilds the exact Rust value
//! (a boxed slice of `len` items) and drops it. C's `free()` would be a different allocator.

use std::ffi::{c_char, CString};

use crate::boundary::boundary;
use crate::status::{dstore_status, Failure, Result};

/// Gives `value` to C as a pointer and a length. The pointer is never NULL: for an empty
/// value it is a dangling, well-aligned pointer that C may pass to `memcmp` with length 0.
pub(crate) fn bytes_to_c(value: Vec<u8>) -> (*mut u8, usize) {
    let boxed = value.into_boxed_slice(); // drops spare capacity, so `len` alone frees it
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Gives `keys` to C as an array of NUL-terminated strings and its length. Every key is
/// converted before anything is handed over, so a failure leaks nothing.
pub(crate) fn keys_to_c(keys: Vec<String>) -> Result<(*mut *mut c_char, usize)> {
    let strings = keys
        .into_iter()
        .map(|k| {
            CString::new(k).map_err(|e| {
                // Keys are checked for NUL when stored and when read from disk.
                Failure::new(
                    dstore_status::DSTORE_INTEGRITY,
                    format!("a stored key contains NUL: {:?}", e.into_vec()),
                )
            })
        })
        .collect::<Result<Vec<CString>>>()?;
    let array: Box<[*mut c_char]> = strings.into_iter().map(CString::into_raw).collect();
    let count = array.len();
    Ok((Box::into_raw(array).cast::<*mut c_char>(), count))
}

/// Frees a buffer returned by dstore_get(). `len` must be the length returned with it. NULL is
/// ignored; so is a `len` no buffer can have (over PTRDIFF_MAX), rather than freeing wrongly.
#[no_mangle]
pub unsafe extern "C" fn dstore_bytes_free(data: *mut u8, len: usize) {
    boundary("dstore_bytes_free", || {
        if data.is_null() || len > isize::MAX as usize {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(data, len);
        // SAFETY: the header requires `data` and `len` to be as returned by dstore_get, so
        // this is the boxed slice `bytes_to_c` gave away, given back once.
        drop(unsafe { Box::from_raw(slice) });
    })
}

/// Frees a key list returned by dstore_keys(): the strings and the array. `count` must be the
/// count returned with it. NULL is ignored; so is a `count` no array can have.
#[no_mangle]
pub unsafe extern "C" fn dstore_keys_free(keys: *mut *mut c_char, count: usize) {
    boundary("dstore_keys_free", || {
        if keys.is_null() || count > isize::MAX as usize / size_of::<*mut c_char>() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(keys, count);
        // SAFETY: the header requires `keys` and `count` to be as returned by dstore_keys, so
        // this is the boxed slice `keys_to_c` gave away, and each entry a `CString::into_raw`.
        let array = unsafe { Box::from_raw(slice) };
        for &key in array.iter() {
            if !key.is_null() {
                // SAFETY: as above; each string is given back once.
                drop(unsafe { CString::from_raw(key) });
            }
        }
    })
}
