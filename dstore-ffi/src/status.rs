//! Status codes: the enum every fallible export returns, its names, and the one function that
//! maps the core's errors to it.

use std::ffi::{c_char, c_uint, CStr};

use dstore_core::Error;

use crate::boundary::boundary;

/// What a dstore function did. DSTORE_OK is 0; every other value is a failure, explained by
/// dstore_last_error(). The numbers are part of the ABI: they never change, and a code that is
/// retired stays reserved (listed here as a comment) so it is never reused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum dstore_status {
    /// Success.
    DSTORE_OK = 0,
    /// An argument is unusable: a NULL pointer, a string that is not UTF-8, a length out of
    /// range, a key that is empty or longer than 1024 bytes, a missing option. The message
    /// names the argument.
    DSTORE_INVALID_ARGUMENT = 1,
    /// The key has no value (never stored, or deleted).
    DSTORE_NOT_FOUND = 2,
    /// Stored bytes failed their hash or MAC: corruption or tampering. Corrupt data is never
    /// returned.
    DSTORE_INTEGRITY = 3,
    /// The value was encrypted under another data key than this node's, or the storage root
    /// belongs to a cluster with another secret.
    DSTORE_WRONG_KEY = 4,
    /// The operating system refused an operation (missing file, permissions, disk full, ...).
    DSTORE_IO = 5,
    /// Another node, in this process or another, has the storage root open.
    DSTORE_LOCKED = 6,
    /// The node was closed. Reserved: the C API closes a node only in dstore_free, so this
    /// version does not return it.
    DSTORE_CLOSED = 7,
    /// A bug in dstore: a Rust panic was caught at the boundary. The message says where;
    /// please report it. The handle stays usable.
    DSTORE_PANIC = 8,
    /// dstore cannot run here: the call came from a thread of a tokio runtime (where it must
    /// not block), or from a child forked after the parent had used dstore.
    DSTORE_RUNTIME = 9,
    /// Too few of the nodes that hold the data answered (down, unreachable, or refusing). The
    /// call may succeed later; a write that fails this way may still have reached some nodes.
    DSTORE_UNAVAILABLE = 10,
}

/// A `dstore_status` as C passes it in. A C enum variable can hold any integer, while a Rust
/// enum holding an undefined value is undefined behaviour, so exports that take a status take
/// this and check it with `dstore_status::from_raw`. cbindgen.toml writes it as
/// `dstore_status` in the header (rename, and exclude from the typedefs), which has the same
/// size and passing convention.
pub type dstore_status_raw = c_uint;

/// Every status, in numeric order.
pub(crate) const ALL_STATUSES: [dstore_status; 11] = [
    dstore_status::DSTORE_OK,
    dstore_status::DSTORE_INVALID_ARGUMENT,
    dstore_status::DSTORE_NOT_FOUND,
    dstore_status::DSTORE_INTEGRITY,
    dstore_status::DSTORE_WRONG_KEY,
    dstore_status::DSTORE_IO,
    dstore_status::DSTORE_LOCKED,
    dstore_status::DSTORE_CLOSED,
    dstore_status::DSTORE_PANIC,
    dstore_status::DSTORE_RUNTIME,
    dstore_status::DSTORE_UNAVAILABLE,
];

impl dstore_status {
    pub fn from_raw(raw: dstore_status_raw) -> Option<Self> {
        ALL_STATUSES
            .into_iter()
            .find(|s| *s as dstore_status_raw == raw)
    }

    pub fn name(self) -> &'static CStr {
        match self {
            Self::DSTORE_OK => c"DSTORE_OK",
            Self::DSTORE_INVALID_ARGUMENT => c"DSTORE_INVALID_ARGUMENT",
            Self::DSTORE_NOT_FOUND => c"DSTORE_NOT_FOUND",
            Self::DSTORE_INTEGRITY => c"DSTORE_INTEGRITY",
            Self::DSTORE_WRONG_KEY => c"DSTORE_WRONG_KEY",
            Self::DSTORE_IO => c"DSTORE_IO",
            Self::DSTORE_LOCKED => c"DSTORE_LOCKED",
            Self::DSTORE_CLOSED => c"DSTORE_CLOSED",
            Self::DSTORE_PANIC => c"DSTORE_PANIC",
            Self::DSTORE_RUNTIME => c"DSTORE_RUNTIME",
            Self::DSTORE_UNAVAILABLE => c"DSTORE_UNAVAILABLE",
        }
    }
}

/// Why an export failed: the status it returns and the message dstore_last_error() gives.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Never DSTORE_OK.
    pub status: dstore_status,
    /// What went wrong, naming the argument or the object; the boundary prefixes the name of
    /// the function.
    pub message: String,
}

/// The result of an export's body; `Ok` becomes DSTORE_OK.
pub(crate) type Result<T = (), E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub fn new(status: dstore_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(dstore_status::DSTORE_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Failure {
    /// The one mapping of core errors to status codes. Exhaustive on purpose: a new core error
    /// does not compile until someone decides its status here.
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::NotFound(_) => dstore_status::DSTORE_NOT_FOUND,
            Error::Integrity(_) => dstore_status::DSTORE_INTEGRITY,
            Error::WrongKey(_) => dstore_status::DSTORE_WRONG_KEY,
            Error::InvalidArgument(_) => dstore_status::DSTORE_INVALID_ARGUMENT,
            Error::Locked(_) => dstore_status::DSTORE_LOCKED,
            Error::Unavailable(_) => dstore_status::DSTORE_UNAVAILABLE,
            Error::Closed => dstore_status::DSTORE_CLOSED,
            Error::Io { .. } => dstore_status::DSTORE_IO,
        };
        Self::new(status, error.to_string())
    }
}

/// The name of a status as a static string, e.g. "DSTORE_NOT_FOUND"; never NULL, never freed.
/// A value that is not a dstore_status gives "DSTORE_UNKNOWN_STATUS".
#[no_mangle]
pub extern "C" fn dstore_status_name(status: dstore_status_raw) -> *const c_char {
    boundary("dstore_status_name", || {
        dstore_status::from_raw(status)
            .map_or(c"DSTORE_UNKNOWN_STATUS", dstore_status::name)
            .as_ptr()
    })
}
