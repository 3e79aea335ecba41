//! The panic boundary. A Rust panic must never unwind into C (that is undefined behaviour),
//! so the body of every export runs inside [`boundary`]: a panic is caught and becomes
//! DSTORE_PANIC (or NULL, or nothing, for the exports that return no status), with a message
//! in dstore_last_error(). This is the only `catch_unwind` in the crate.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::last_error;
use crate::status::{dstore_status, Failure};

/// What an export's body returns, and how that reaches C.
pub(crate) trait Outcome {
    /// The C return type.
    type C;
    /// Turns a completed body into the return value, recording or clearing the last error.
    fn finish(self, function: &str) -> Self::C;
    /// What to return when the body panicked.
    fn panicked() -> Self::C;
}

/// Fallible exports: `Ok` is DSTORE_OK and clears the last error, `Err` sets it.
impl Outcome for Result<(), Failure> {
    type C = dstore_status;

    fn finish(self, function: &str) -> dstore_status {
        match self {
            Ok(()) => {
                last_error::clear();
                dstore_status::DSTORE_OK
            }
            Err(failure) => {
                last_error::set(&format!("{function}: {}", failure.message));
                failure.status
            }
        }
    }

    fn panicked() -> dstore_status {
        dstore_status::DSTORE_PANIC
    }
}

/// `_free` functions: nothing to report; the last error changes only if they panic.
impl Outcome for () {
    type C = ();

    fn finish(self, _function: &str) {}

    fn panicked() {}
}

/// Constructors and static strings: NULL after a panic.
impl<T> Outcome for *mut T {
    type C = *mut T;

    fn finish(self, _function: &str) -> *mut T {
        self
    }

    fn panicked() -> *mut T {
        std::ptr::null_mut()
    }
}

impl<T> Outcome for *const T {
    type C = *const T;

    fn finish(self, _function: &str) -> *const T {
        self
    }

    fn panicked() -> *const T {
        std::ptr::null()
    }
}

/// Runs the body of the export `function`. Fallible bodies spell out their return type
/// (`|| -> Result { ... }`) so that `?` knows what to convert into.
///
/// `AssertUnwindSafe`: after a panic nothing the body touched is used again by this call, and
/// the state a handle shares between calls stays consistent when a call panics (the core's
/// locks are released on unwind, and its index ignores poisoning for that reason).
pub(crate) fn boundary<O: Outcome>(function: &str, body: impl FnOnce() -> O) -> O::C {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => outcome.finish(function),
        Err(payload) => {
            last_error::set(&format!(
                "{function}: internal error (a bug in dstore; please report it): {}",
                panic_message(payload.as_ref())
            ));
            // A payload's destructor may itself panic; that must not escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            O::panicked()
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic with a non-string payload"
    }
}
