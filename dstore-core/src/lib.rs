//! dstore-core: a content-addressed, encrypted store. This crate is the node; the C library
//! (`dstore-ffi`), the Python module (`dstore-py`) and the `dstore` command are thin layers
//! over [`Node`].
//!
//! ```no_run
//! # async fn demo() -> dstore_core::Result<()> {
//! use dstore_core::{Config, Node, StoreOptions};
//! let node = Node::open(Config::new("./data")).await?;
//! node.store("hello.txt", b"hello", StoreOptions::default()).await?;
//! assert_eq!(node.get("hello.txt").await?, b"hello");
//! # Ok(()) }
//! ```
//!
//! The design, and why, is in DESIGN.md at the top of the repository.

pub mod cluster;
#[doc(hidden)] // for tests that craft frames; not part of the API
pub mod codec;
pub mod crypto;
mod engine;
/// Reed-Solomon coding of chunks into shards (the erasure policy's codec).
pub mod erasure;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
#[doc(hidden)] // for tests that forge manifests; not part of the API
pub mod manifest;
mod metrics;
pub mod net;
mod node;
mod stats;
mod tasks;
#[doc(hidden)]
pub mod version;

pub use engine::path;
pub use engine::path::{PathTransform, SeedSha1, Sharded};
pub use error::{Error, Result};
pub use ids::{ChunkId, KeyId, NodeId};
pub use manifest::{validate_key, INLINE_MAX, MAX_KEY_LEN};
pub use net::message::{MemberInfo as Peer, MAX_PAGE};
pub use node::{
    Config, Ended, Erasure, Maintenance, Node, Redundancy, StoreOptions, ValueInfo, ValueReader,
    ValueWriter, DEFAULT_CHUNK_SIZE, DEFAULT_SEGMENT_MAX, ERASURE_MIN_SHARD, MAX_CHUNK_SIZE,
    MAX_LIST, MAX_SEGMENT_MAX, MIN_CHUNK_SIZE, REFUSED,
};
pub use stats::{DrainStats, GcStats, RepairStats, ScrubStats, Stats};
pub use version::Clock;

/// The version of this crate, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
