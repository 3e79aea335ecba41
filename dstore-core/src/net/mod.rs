//! The network: bounded frames over TCP, an authenticated handshake, and encrypted sessions.
//! See DESIGN.md §3.

pub mod conn;
pub mod frame;
pub mod handshake;
pub mod message;

/// Why a connection was closed. Each is logged with the peer's address; none stops the node.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something the protocol does not allow (garbage, an oversized frame, a
    /// frame that fails authentication, another protocol version).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer could not prove it knows the cluster secret, or refused our proof.
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The connection was closed (by either side) before the call completed.
    #[error("connection closed")]
    Closed,
}
