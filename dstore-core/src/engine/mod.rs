//! The storage engine: how one node keeps bytes on disk. Everything above it (the node, the
//! cluster) speaks of keys, manifests and chunk ids, never of paths or files.
//!
//! - `store`: the root, its lock, reference counts, and where each object lives;
//! - `catalog`: every manifest, chunk reference counts and segment places, in redb;
//! - `segments`: small chunks packed into append-only files, under group commit;
//! - `path`: path transforms for chunks kept as files.

pub(crate) mod catalog;
pub mod path;
pub(crate) mod segments;
pub(crate) mod store;
