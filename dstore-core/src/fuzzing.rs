//! Entry points for the fuzz targets in `fuzz/`: every decoder that reads bytes from a peer
//! or from disk, each run on arbitrary input. Not part of the API.

use crate::crypto::ClusterKey;
use crate::ids::NodeId;
use crate::net::handshake::{handshake, Role};
use crate::net::message::Envelope;

/// A message inside a session (after decryption).
pub fn decode_message(bytes: &[u8]) {
    let _ = crate::codec::decode::<Envelope>(bytes, "message");
}

/// A manifest from disk or from a peer, through the MAC and shape checks.
pub fn decode_manifest(bytes: &[u8]) {
    let _ = crate::manifest::Manifest::from_bytes(bytes, &ClusterKey::new(b"fuzz"));
}

/// The journal read back at open (a torn or damaged tail is expected there).
pub fn parse_journal(bytes: &[u8]) {
    let _ = crate::journal::parse(bytes);
}

/// A node answering a connection whose bytes are `bytes`: framing, hello, proof.
pub fn handshake_responder(bytes: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (sink, _keep) = tokio::io::duplex(1 << 16);
        let key = ClusterKey::new(b"fuzz");
        let r = handshake(bytes, sink, &key, NodeId([1; 32]), Role::Client, false).await;
        assert!(r.is_err(), "garbage must never complete a handshake");
    });
}
