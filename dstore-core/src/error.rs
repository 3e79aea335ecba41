//! The one error type of dstore. Each variant says what the caller can do about it; the C and
//! Python surfaces map these variants, once each, to status codes and exceptions.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key has no live value (never stored, or deleted).
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored or received bytes fail their hash or MAC: corruption or tampering. Never retried
    /// into wrong data; the caller may try another copy.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The value was encrypted under another data key than this node's, or the root belongs
    /// to a cluster with another secret.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// The caller passed something unusable (bad key, bad size, bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another process (or another open node) holds the storage root.
    #[error("storage root {} is locked by another node", .0.display())]
    Locked(PathBuf),
    /// Too few of the nodes that own the data answered (down, unreachable, or refusing). The
    /// call may succeed later; a write that fails this way may still have reached some owners.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node was closed; open a new one.
    #[error("node is closed")]
    Closed,
    /// The operating system refused an operation (disk full, permissions, ...).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to an I/O error, so messages name the file or step.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
