//! What nodes say to each other once a session is open: one serde enum of requests, one of
//! responses, each frame an `Envelope` with the request id that pairs them, so one connection
//! carries many requests at once, in both directions.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::ids::{ChunkId, NodeId};
use crate::version::Version;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    /// The sender's hybrid logical clock; the receiver observes it (see `version::Clock`).
    pub clock: u64,
    pub body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Body {
    Request(Request),
    Response(Response),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Heartbeat. The answer carries the responder's live members (peer exchange).
    Ping,
    /// Store a chunk durably. The receiver checks `data` against `id` first.
    PutChunk {
        id: ChunkId,
        // serde_bytes: a byte string is one copy, not a sequence of a million u8s.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    GetChunk {
        id: ChunkId,
    },
    /// Store a shard of an erasure-coded chunk durably (read back with `GetChunk`), and what
    /// it belongs to. The receiver checks `data` against `id` and `of` against both first.
    PutShard {
        id: ChunkId,
        of: crate::erasure::ShardOf,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Store an encoded manifest if it is newer than what the receiver holds. The receiver
    /// checks its cluster MAC first, and answers `Held` with the version it held before.
    PutManifest {
        #[serde(with = "serde_bytes")]
        manifest: Vec<u8>,
    },
    GetManifest {
        key: String,
    },
    /// One page of the keys the receiver holds a manifest of (tombstones included), in
    /// byte order: those starting with `prefix` and after `start_after`, at most `limit`
    /// (capped at `MAX_PAGE`), each with its version and whether it is deleted.
    List {
        prefix: String,
        start_after: String,
        limit: u32,
    },
    /// The version held of each key (tombstones included), for repair.
    Versions {
        #[serde(deserialize_with = "codec::bounded::<MAX_BATCH, _, _>")]
        keys: Vec<String>,
    },
    /// Whether the receiver holds each chunk, for repair.
    HasChunks {
        #[serde(deserialize_with = "codec::bounded::<MAX_BATCH, _, _>")]
        ids: Vec<ChunkId>,
    },
    /// Whether a live manifest the receiver holds, or a write in flight through it, names
    /// each chunk: garbage collection removes a chunk only if no member does.
    Referenced {
        #[serde(deserialize_with = "codec::bounded::<MAX_BATCH, _, _>")]
        ids: Vec<ChunkId>,
    },
    /// The receiver's `Stats`, for `dstore status`.
    Stats,
    /// The sender departs: for good (`permanent`, after `Node::leave` moved what it held),
    /// or until it opens again (`Node::close`). The receiver stops counting it as an owner
    /// at once, instead of after `dead_after`. Only a member may say this, of itself.
    Depart {
        permanent: bool,
    },
    /// Asks the receiver to leave the cluster for good (`dstore leave`): it moves what it
    /// holds to the other members, departs, and closes. Answered once it has departed.
    Leave,
}

impl Request {
    /// The request's kind, as metrics label it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::PutChunk { .. } => "put_chunk",
            Request::GetChunk { .. } => "get_chunk",
            Request::PutShard { .. } => "put_shard",
            Request::PutManifest { .. } => "put_manifest",
            Request::GetManifest { .. } => "get_manifest",
            Request::List { .. } => "list",
            Request::Versions { .. } => "versions",
            Request::HasChunks { .. } => "has_chunks",
            Request::Referenced { .. } => "referenced",
            Request::Stats => "stats",
            Request::Depart { .. } => "depart",
            Request::Leave => "leave",
        }
    }

    /// Bytes of object data the request brings (chunks and shards to keep).
    pub fn data_len(&self) -> usize {
        match self {
            Request::PutChunk { data, .. } | Request::PutShard { data, .. } => data.len(),
            Request::PutManifest { manifest } => manifest.len(),
            _ => 0,
        }
    }
}

/// At most this many ids or keys in one repair or collection request.
pub const MAX_BATCH: usize = 1024;
/// At most this many keys in one page of a listing: 1,000 keys of 1 KiB fit a frame easily.
pub const MAX_PAGE: usize = 1000;
/// At most this many members in one answer to a ping (a larger cluster is not supported).
pub const MAX_MEMBERS: usize = 1024;
/// At most this many departures in one answer to a ping.
pub const MAX_DEPARTURES: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Pong {
        #[serde(deserialize_with = "codec::bounded::<MAX_MEMBERS, _, _>")]
        members: Vec<MemberInfo>,
        /// Members that departed recently, so that one that missed a `Depart` (cut off at the
        /// time) learns it too.
        #[serde(deserialize_with = "codec::bounded::<MAX_DEPARTURES, _, _>")]
        departed: Vec<Departure>,
    },
    Stored,
    /// To `PutManifest`: the version of the key the receiver held before (none: `None`); it
    /// now holds the newer of that and the one sent. A writer told of a newer one stamps its
    /// write again after it (see `Remote::put_manifest`).
    Held(Option<Version>),
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    Manifest(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    Keys(#[serde(deserialize_with = "codec::bounded::<MAX_PAGE, _, _>")] Vec<KeyState>),
    Versions(#[serde(deserialize_with = "codec::bounded::<MAX_BATCH, _, _>")] Vec<Option<Version>>),
    /// One flag per id asked about (`HasChunks`, `Referenced`).
    Flags(#[serde(deserialize_with = "codec::bounded::<MAX_BATCH, _, _>")] Vec<bool>),
    Stats(crate::stats::Stats),
    Failed {
        kind: FailureKind,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    NotFound,
    /// The request carried bytes that fail their hash or MAC.
    Integrity,
    /// The receiver cannot do this (it is a client, it is closing, its disk refused).
    Refused,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: String,
    pub zone: Option<String>,
}

/// That one incarnation of a member departed (for good, if `permanent`). It applies only to
/// that incarnation: a member that opens again says hello with a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    pub id: NodeId,
    pub incarnation: u64,
    pub permanent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    pub key: String,
    pub version: Version,
    pub deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ClusterKey;
    use crate::net::frame::read_frame;
    use crate::net::handshake::{handshake, Hello, Role};
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever a peer sends inside a session, decoding it is an answer or an error.
        #[test]
        fn envelopes_and_hellos_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = codec::decode::<Envelope>(&bytes, "message");
            let _ = codec::decode::<Hello>(&bytes, "hello");
        }

        /// Valid envelopes survive a round trip; any cut of one is refused.
        #[test]
        fn envelope_round_trip_and_truncation(id in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<usize>()) {
            let e = Envelope { id, clock: 7, body: Body::Request(Request::PutChunk { id: crate::ChunkId([1; 32]), data }) };
            let bytes = codec::encode(&e);
            let back: Envelope = codec::decode(&bytes, "message").unwrap();
            prop_assert_eq!(back.id, id);
            let cut = cut % bytes.len();
            prop_assert!(codec::decode::<Envelope>(&bytes[..cut], "message").is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Frames: arbitrary bytes give a frame, an error, or end of input; never an
        /// allocation past the limit or a panic.
        #[test]
        fn frames_from_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            runtime().block_on(async {
                let mut r = &bytes[..];
                while let Ok(f) = read_frame(&mut r, 16, None).await {
                    assert!(f.len() <= 16);
                }
            });
        }

        /// A handshake with a peer that sends garbage fails; it never panics or succeeds.
        #[test]
        fn handshake_against_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            runtime().block_on(async {
                let (sink, _keep) = tokio::io::duplex(1 << 16);
                let r = handshake(&bytes[..], sink, &ClusterKey::new(b"s"), &crate::crypto::Identity::from_seed(&[1; 32]), Role::Client, false).await;
                assert!(r.is_err());
            });
        }
    }
}
