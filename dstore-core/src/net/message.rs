//! What nodes say to each other once a session is open: one serde enum of requests, one of
//! responses, each frame an `Envelope` with the request id that pairs them, so one connection
//! carries many requests at once, in both directions.

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, NodeId};
use crate::version::Version;

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
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
        data: Vec<u8>,
    },
    GetChunk {
        id: ChunkId,
    },
    /// Store an encoded manifest if it is newer than what the receiver holds. The receiver
    /// checks its cluster MAC first.
    PutManifest {
        manifest: Vec<u8>,
    },
    GetManifest {
        key: String,
    },
    /// Every key the receiver holds a manifest of, with version and whether it is deleted.
    Keys,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Pong { members: Vec<MemberInfo> },
    Stored,
    Chunk(Vec<u8>),
    Manifest(Option<Vec<u8>>),
    Keys(Vec<KeyState>),
    Failed { kind: FailureKind, message: String },
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    pub key: String,
    pub version: Version,
    pub deleted: bool,
}
