//! Entry points for the fuzz targets in `fuzz/`: every decoder that reads bytes from a peer
//! or from disk, each run on arbitrary input. Not part of the API.

use crate::crypto::{ClusterKey, DataKey, Identity};
use crate::manifest::Manifest;
use crate::net::frame::write_frame;
use crate::net::handshake::{handshake, Hello, Role, MAGIC, PROTOCOL_VERSION};
use crate::net::message::Envelope;

/// A message inside a session (after decryption): every request and answer, with the
/// bounded collections.
pub fn decode_message(bytes: &[u8]) {
    let _ = crate::codec::decode::<Envelope>(bytes, "message");
}

/// A manifest from disk or from a peer. Arbitrary bytes almost never pass the MAC (checked
/// first, in constant time, so a fuzzer cannot learn it); so whatever decodes is also given
/// a valid MAC, and goes on through the shape checks and the data-key seal.
pub fn decode_manifest(bytes: &[u8]) {
    let cluster = ClusterKey::new(b"fuzz");
    let _ = Manifest::from_bytes(bytes, &cluster);
    if let Ok(mut m) = crate::codec::decode_stored::<Manifest>(bytes, "manifest") {
        m.remac(&cluster);
        if let Ok(checked) = Manifest::from_bytes(&m.to_bytes(), &cluster) {
            let key = DataKey::new(&[7; 32]);
            let _ = checked.check_seal(Some(&key), false);
            let _ = checked.check_seal(None, true);
            for i in 0..checked.body.chunks.len().min(4) {
                let _ = checked.chunk_len(i);
            }
        }
    }
}

/// The journal read back at open (a torn or damaged tail is expected there).
pub fn parse_journal(bytes: &[u8]) {
    let _ = crate::engine::segments::parse(bytes);
}

/// A client credential as an operator would paste it (`ClusterKey::from_credential`).
pub fn parse_credential(bytes: &[u8]) {
    let _ = ClusterKey::from_credential(bytes);
}

/// A node answering a connection. With the first byte odd, the input follows a valid
/// initiator hello (so the fuzzer starts past the hello check, at the proof and what follows
/// it); else it is the whole connection. No input may complete the handshake: a proof needs
/// the secret, the node's transcript and a signature by the hello's identity key.
pub fn handshake_responder(bytes: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut input = Vec::new();
        let rest = match bytes.split_first() {
            Some((first, rest)) if first % 2 == 1 => {
                let peer = Identity::from_seed(&[2; 32]);
                let hello = crate::codec::encode(&Hello {
                    magic: MAGIC,
                    version: PROTOCOL_VERSION,
                    node: crate::ids::NodeId(peer.id()),
                    identity: peer.public(),
                    dh: crate::crypto::Ephemeral::from_secret([4; 32]).public(),
                    nonce: [3; 32],
                    role: Role::Client,
                    holds_secret: false,
                });
                write_frame(&mut input, &hello).await.expect("to a Vec");
                rest
            }
            _ => bytes,
        };
        input.extend_from_slice(rest);
        let (sink, _keep) = tokio::io::duplex(1 << 16);
        let key = ClusterKey::new(b"fuzz");
        let me = Identity::from_seed(&[1; 32]);
        let r = handshake(&input[..], sink, &key, &me, Role::Client, false).await;
        assert!(r.is_err(), "garbage must never complete a handshake");
    });
}
