//! The handshake, and the encrypted session it opens.
//!
//! ```text
//! initiator                                        responder
//!   Hello{magic, version, id, identity, dh, nonce, role}  ->
//!                                              <-  Hello{magic, version, id, identity, dh, nonce, role}
//!   T = SHA-256("dstore handshake v3" | len | hello_i | len | hello_r)
//!   Proof_i = HMAC(K_hs, "initiator" | T) | Sig(identity_i, T) [| Sig(member key, T)]  ->
//!                                              <-  Proof_r (the same, "responder"),
//!                                                  or an empty frame if Proof_i failed
//!   every later frame: AES-256-GCM under HMAC(K_sess, direction | T | X25519(dh_i, dh_r)),
//!   nonce = sequence number
//! ```
//!
//! What each part proves (see `crypto::ClusterKey` for the credentials):
//! - the HMAC: the side holds the client credential (is a client or member of this cluster);
//! - the identity signature: the side holds the private key whose public key hashes to the
//!   node id in its hello, so no one speaks as another node;
//! - the optional member signature: the side holds the cluster secret itself. A hello that
//!   says `Role::Member` without it is refused; a client with it may ask a member to leave.
//!
//! Proofs cover both fresh nonces and ephemeral keys, so a recorded handshake replayed to a
//! node fails. The responder proves itself only to an initiator that has proved itself first,
//! so an outsider learns nothing from a node but its hello. Session keys depend on an
//! ephemeral Diffie-Hellman secret, so traffic recorded by a holder of the client credential
//! cannot be read. Hellos carry no key names or data.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::{queue_frame, read_frame, write_frame, MAX_FRAME};
use super::NetError;
use crate::codec;
use crate::crypto::{self, ClusterKey, Ephemeral, FrameKey, Identity};
use crate::ids::NodeId;

pub const MAGIC: [u8; 8] = *b"dstore\0\0";
/// 2: members say their incarnation in the hello, and depart with `Request::Depart`.
/// 3: node identities, client and member credentials, ephemeral Diffie-Hellman, bounded
///    collections, a disk format byte on manifests.
/// 4: manifests of disk format 2 (small values inline).
/// 5: `PutManifest` is answered `Held` (the version held before), not `Stored`.
/// 6: erasure-coded manifests, `PutShard`, repair stats of rebuilt shards.
pub const PROTOCOL_VERSION: u32 = 6;
/// The whole handshake must complete within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Hellos are small; a larger one is garbage.
const MAX_HELLO: usize = 4096;
/// A proof: the credential HMAC, the identity signature, and an optional member signature.
const PROOF_LEN: usize = 32 + 64;
const MEMBER_PROOF_LEN: usize = PROOF_LEN + 64;

/// What a connecting process is to the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A storage node, reachable at `addr`, that may own data. `incarnation` is random per
    /// start of the node: a member that departed comes back only with a new one, so the
    /// connections it opens while it drains do not make it an owner again.
    Member {
        addr: String,
        zone: Option<String>,
        incarnation: u64,
    },
    /// A short-lived client: reads and writes through members, never owns data.
    Client,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 8],
    pub version: u32,
    pub node: NodeId,
    /// The node's Ed25519 public key; `node` must be its hash.
    pub identity: [u8; 32],
    /// The X25519 public key of this handshake.
    pub dh: [u8; 32],
    pub nonce: [u8; 32],
    pub role: Role,
    /// Whether the peer proved it holds the cluster secret (the member key). Set by the
    /// handshake once checked; never read from the wire.
    #[serde(skip)]
    pub holds_secret: bool,
}

impl Hello {
    /// Whether this peer may act as a member (answer and ask repair questions, depart): it
    /// said so and proved the member key.
    pub fn is_member(&self) -> bool {
        self.holds_secret && matches!(self.role, Role::Member { .. })
    }
}

/// Sends frames sealed under one direction's key, numbering them from 0.
pub struct SealedWriter<W> {
    inner: W,
    key: FrameKey,
    seq: u64,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    /// Seals `body` in place (see `FrameKey::seal_in_place`) and sends it.
    pub async fn send(&mut self, body: Vec<u8>) -> Result<(), NetError> {
        self.queue(body).await?;
        self.flush().await
    }

    /// Seals `body` and writes it to the buffer; it leaves with the next `flush` (or sooner,
    /// once the buffer is full).
    pub async fn queue(&mut self, body: Vec<u8>) -> Result<(), NetError> {
        let sealed = self.key.seal_in_place(self.seq, body);
        self.seq += 1;
        queue_frame(&mut self.inner, &sealed).await
    }

    pub async fn flush(&mut self) -> Result<(), NetError> {
        Ok(self.inner.flush().await?)
    }
}

/// Receives frames sealed under the other direction's key, expecting them in order.
pub struct SealedReader<R> {
    inner: R,
    key: FrameKey,
    seq: u64,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    /// The next frame's plaintext. Any frame that is not the next one the peer sealed, unaltered,
    /// is an error, after which the connection must be closed.
    pub async fn recv(&mut self, idle: Option<Duration>) -> Result<Vec<u8>, NetError> {
        let sealed = read_frame(&mut self.inner, MAX_FRAME, idle).await?;
        let body = self
            .key
            .open_in_place(self.seq, sealed)
            .map_err(|e| NetError::Protocol(e.to_string()))?;
        self.seq += 1;
        Ok(body)
    }
}

/// An authenticated, encrypted connection to `peer`.
pub struct Session<R, W> {
    pub peer: Hello,
    pub reader: SealedReader<R>,
    pub writer: SealedWriter<W>,
}

/// Decodes a peer's hello and checks that it speaks this protocol, is not this node, and
/// names the node id of its identity key.
fn check_hello(bytes: &[u8], me: NodeId) -> Result<Hello, NetError> {
    let peer: Hello =
        codec::decode(bytes, "hello").map_err(|e| NetError::Protocol(e.to_string()))?;
    if peer.magic != MAGIC {
        return Err(NetError::Protocol("not a dstore peer".into()));
    }
    if peer.version != PROTOCOL_VERSION {
        return Err(NetError::Protocol(format!(
            "peer speaks protocol version {}, this node {PROTOCOL_VERSION}",
            peer.version
        )));
    }
    if peer.node == me {
        return Err(NetError::Protocol("connected to itself".into()));
    }
    if peer.node.0 != Identity::id_of(&peer.identity) {
        return Err(NetError::Auth(
            "the peer's node id is not that of its identity key".into(),
        ));
    }
    Ok(peer)
}

/// This side's proof over `transcript`.
fn prove(cluster: &ClusterKey, me: &Identity, side: &str, transcript: &[u8; 32]) -> Vec<u8> {
    let mut proof = cluster.handshake_proof(side, transcript).to_vec();
    proof.extend_from_slice(&me.sign(side, transcript));
    if let Some(sig) = cluster.member_signature(side, transcript) {
        proof.extend_from_slice(&sig);
    }
    proof
}

/// Checks the peer's proof; on success marks whether it proved the member key. A peer that
/// says it is a member must prove it.
fn check_proof(
    cluster: &ClusterKey,
    peer: &mut Hello,
    side: &str,
    transcript: &[u8; 32],
    proof: &[u8],
) -> Result<(), NetError> {
    if proof.len() != PROOF_LEN && proof.len() != MEMBER_PROOF_LEN {
        return Err(NetError::Protocol(format!(
            "a proof of {} bytes",
            proof.len()
        )));
    }
    if !crypto::ct_eq(&proof[..32], &cluster.handshake_proof(side, transcript)) {
        return Err(NetError::Auth(
            "the peer does not know the cluster secret".into(),
        ));
    }
    let identity: [u8; 64] = proof[32..96].try_into().expect("64 bytes");
    if !Identity::verify(&peer.identity, side, transcript, &identity) {
        return Err(NetError::Auth(
            "the peer does not hold the key of the node id it claims".into(),
        ));
    }
    peer.holds_secret = match proof.get(96..) {
        Some(sig) if sig.len() == 64 => {
            let sig: [u8; 64] = sig.try_into().expect("64 bytes");
            if !cluster.is_member_signature(side, transcript, &sig) {
                return Err(NetError::Auth("the peer's member proof is forged".into()));
            }
            true
        }
        _ => false,
    };
    if matches!(peer.role, Role::Member { .. }) && !peer.holds_secret {
        return Err(NetError::Auth(
            "the peer says it is a member but holds only a client credential".into(),
        ));
    }
    Ok(())
}

/// Runs the handshake over a stream's two halves, as the side that connected (`initiator`) or
/// the side that accepted.
pub async fn handshake<R, W>(
    reader: R,
    writer: W,
    cluster: &ClusterKey,
    me: &Identity,
    role: Role,
    initiator: bool,
) -> Result<Session<R, W>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        run(reader, writer, cluster, me, role, initiator),
    )
    .await
    .map_err(|_| NetError::Timeout("in the handshake"))?
}

async fn run<R, W>(
    mut reader: R,
    mut writer: W,
    cluster: &ClusterKey,
    me: &Identity,
    role: Role,
    initiator: bool,
) -> Result<Session<R, W>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if matches!(role, Role::Member { .. }) && !cluster.is_member() {
        return Err(NetError::Auth(
            "a member needs the cluster secret, not a client credential".into(),
        ));
    }
    let me_id = NodeId(me.id());
    let ephemeral = Ephemeral::new();
    let mine = codec::encode(&Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        node: me_id,
        identity: me.public(),
        dh: ephemeral.public(),
        nonce: crypto::random_bytes(),
        role,
        holds_secret: false,
    });
    // The responder checks the initiator's hello before sending its own, so garbage and
    // other protocols get nothing back.
    let theirs = if initiator {
        write_frame(&mut writer, &mine).await?;
        read_frame(&mut reader, MAX_HELLO, None).await?
    } else {
        read_frame(&mut reader, MAX_HELLO, None).await?
    };
    let mut peer = check_hello(&theirs, me_id)?;
    let shared = ephemeral
        .agree(&peer.dh)
        .ok_or_else(|| NetError::Protocol("the peer's ephemeral key is degenerate".into()))?;
    if !initiator {
        write_frame(&mut writer, &mine).await?;
    }
    let (hello_i, hello_r) = if initiator {
        (&mine, &theirs)
    } else {
        (&theirs, &mine)
    };
    let transcript = crypto::sha256(&[
        b"dstore handshake v3",
        &(hello_i.len() as u32).to_be_bytes(),
        hello_i,
        &(hello_r.len() as u32).to_be_bytes(),
        hello_r,
    ]);
    let (my_side, their_side) = if initiator {
        ("initiator", "responder")
    } else {
        ("responder", "initiator")
    };
    let proof = prove(cluster, me, my_side, &transcript);
    if initiator {
        write_frame(&mut writer, &proof).await?;
        // An empty frame is a refusal; a connection closed without one is not (an overloaded
        // responder evicts sockets still in the handshake), so the caller may try again.
        let got = read_frame(&mut reader, MEMBER_PROOF_LEN, None).await?;
        if got.is_empty() {
            return Err(NetError::Auth(
                "the peer refused our proof (another cluster secret?)".into(),
            ));
        }
        check_proof(cluster, &mut peer, their_side, &transcript, &got)?;
    } else {
        let got = read_frame(&mut reader, MEMBER_PROOF_LEN, None).await?;
        if let Err(e) = check_proof(cluster, &mut peer, their_side, &transcript, &got) {
            // Says only what closing would: the initiator's proof is wrong.
            let _ = write_frame(&mut writer, &[]).await;
            return Err(e);
        }
        write_frame(&mut writer, &proof).await?;
    }
    let i2r = cluster.session_key("initiator to responder", &transcript, &shared);
    let r2i = cluster.session_key("responder to initiator", &transcript, &shared);
    let (send, recv) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
    Ok(Session {
        peer,
        reader: SealedReader {
            inner: reader,
            key: recv,
            seq: 0,
        },
        writer: SealedWriter {
            inner: writer,
            key: send,
            seq: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, split, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

    type Half = (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>);
    type S = Session<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

    fn member(port: u16) -> Role {
        Role::Member {
            addr: format!("127.0.0.1:{port}"),
            zone: None,
            incarnation: 1,
        }
    }

    fn ident(i: u8) -> Identity {
        Identity::from_seed(&[i; 32])
    }

    fn id(i: u8) -> NodeId {
        NodeId(ident(i).id())
    }

    async fn shake(
        (ka, ra): (ClusterKey, Role),
        (kb, rb): (ClusterKey, Role),
    ) -> (Result<S, NetError>, Result<S, NetError>) {
        let (a, b) = duplex(1 << 20);
        let (ar, aw): Half = split(a);
        let (br, bw): Half = split(b);
        let (ia, ib) = (ident(1), ident(2));
        tokio::join!(
            handshake(ar, aw, &ka, &ia, ra, true),
            handshake(br, bw, &kb, &ib, rb, false),
        )
    }

    async fn pair(secret_a: &[u8], secret_b: &[u8]) -> (Result<S, NetError>, Result<S, NetError>) {
        shake(
            (ClusterKey::new(secret_a), member(1)),
            (ClusterKey::new(secret_b), Role::Client),
        )
        .await
    }

    /// A client credential opens sessions as a client, and the peer knows it holds only
    /// that; it cannot say it is a member. A client given the secret proves it holds it.
    #[tokio::test]
    async fn a_client_credential_is_a_client_and_never_a_member() {
        let credential = ClusterKey::new(b"s").client_credential();
        let client = ClusterKey::from_credential(credential.as_bytes()).unwrap();
        assert!(!client.is_member());
        let (m, c) = shake(
            (ClusterKey::new(b"s"), member(1)),
            (client.clone(), Role::Client),
        )
        .await;
        let (m, c) = (m.unwrap(), c.unwrap());
        assert!(!m.peer.holds_secret && !m.peer.is_member());
        assert!(c.peer.holds_secret && c.peer.is_member());
        let (a, _) = shake((client, member(1)), (ClusterKey::new(b"s"), Role::Client)).await;
        assert!(matches!(a, Err(NetError::Auth(_))), "{:?}", a.err());
        let (_, b) = shake(
            (ClusterKey::new(b"s"), Role::Client),
            (ClusterKey::new(b"s"), Role::Client),
        )
        .await;
        assert!(b.unwrap().peer.holds_secret);
        // Another cluster's credential, or a garbled one, is refused.
        let other = ClusterKey::new(b"other").client_credential();
        let other = ClusterKey::from_credential(other.as_bytes()).unwrap();
        let (a, b) = shake((other, Role::Client), (ClusterKey::new(b"s"), member(2))).await;
        assert!(a.is_err() && matches!(b, Err(NetError::Auth(_))));
        assert!(ClusterKey::from_credential(b"dstore-client:abcd").is_err());
    }

    /// A hello that claims a node id not derived from its identity key is refused, and so
    /// is one whose identity signature is not by that key (a peer claiming another's id).
    #[tokio::test]
    async fn a_node_id_cannot_be_claimed_without_its_key() {
        let (a, b) = duplex(1 << 16);
        let (mut ar, mut aw) = split(a);
        let (br, bw) = split(b);
        let responder = tokio::spawn(async move {
            handshake(br, bw, &ClusterKey::new(b"s"), &ident(2), member(2), false).await
        });
        // The victim's id and key, and this impostor's own ephemeral key.
        let eph = Ephemeral::new();
        let forged = codec::encode(&Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            node: id(1),
            identity: ident(1).public(),
            dh: eph.public(),
            nonce: [7; 32],
            role: Role::Client,
            holds_secret: false,
        });
        write_frame(&mut aw, &forged).await.unwrap();
        let hello_r = read_frame(&mut ar, MAX_HELLO, None).await.unwrap();
        let transcript = crypto::sha256(&[
            b"dstore handshake v3",
            &(forged.len() as u32).to_be_bytes(),
            &forged,
            &(hello_r.len() as u32).to_be_bytes(),
            &hello_r,
        ]);
        // It knows the secret, but signs with its own key, not the victim's.
        let proof = prove(&ClusterKey::new(b"s"), &ident(9), "initiator", &transcript);
        write_frame(&mut aw, &proof).await.unwrap();
        let r = responder.await.unwrap();
        assert!(
            matches!(&r, Err(NetError::Auth(m)) if m.contains("key of the node id")),
            "{:?}",
            r.err()
        );
        // A hello whose id is not its key's hash fails at once.
        let mut wrong = Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            node: id(1),
            identity: ident(3).public(),
            dh: eph.public(),
            nonce: [7; 32],
            role: Role::Client,
            holds_secret: false,
        };
        assert!(matches!(
            check_hello(&codec::encode(&wrong), id(2)),
            Err(NetError::Auth(_))
        ));
        wrong.identity = ident(1).public();
        assert!(check_hello(&codec::encode(&wrong), id(2)).is_ok());
    }

    #[tokio::test]
    async fn same_secret_opens_an_encrypted_session_both_ways() {
        let (a, b) = pair(b"s", b"s").await;
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.peer.role, Role::Client);
        assert_eq!(b.peer.node, id(1));
        assert_eq!(b.peer.role, member(1));
        for i in 0..3u8 {
            a.writer.send(vec![i; 100]).await.unwrap();
            assert_eq!(b.reader.recv(None).await.unwrap(), [i; 100]);
            b.writer.send(b"back".to_vec()).await.unwrap();
            assert_eq!(a.reader.recv(None).await.unwrap(), b"back");
        }
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let (a, b) = pair(b"right", b"wrong").await;
        assert!(matches!(b, Err(NetError::Auth(_))), "{:?}", b.err());
        assert!(matches!(a, Err(NetError::Auth(_))), "{:?}", a.err());
    }

    /// A valid hello of node 9, for a test playing the responder by hand.
    fn fake_responder_hello() -> Vec<u8> {
        codec::encode(&Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            node: id(9),
            identity: ident(9).public(),
            dh: Ephemeral::new().public(),
            nonce: [0; 32],
            role: Role::Client,
            holds_secret: false,
        })
    }

    /// A responder that drops the socket after the initiator's proof (an overloaded node
    /// evicts sockets still in the handshake) has not refused it: the error is not `Auth`,
    /// which callers take as final, so they try again.
    #[tokio::test]
    async fn a_connection_cut_in_the_handshake_is_not_a_refusal() {
        let (a, b) = duplex(1 << 16);
        let (ar, aw) = split(a);
        let (mut br, mut bw) = split(b);
        let initiator = tokio::spawn(async move {
            handshake(ar, aw, &ClusterKey::new(b"s"), &ident(1), member(1), true).await
        });
        let _hello_i = read_frame(&mut br, MAX_HELLO, None).await.unwrap();
        let hello_r = fake_responder_hello();
        write_frame(&mut bw, &hello_r).await.unwrap();
        read_frame(&mut br, MEMBER_PROOF_LEN, None).await.unwrap();
        drop((br, bw));
        let got = initiator.await.unwrap();
        assert!(matches!(got, Err(NetError::Io(_))), "{:?}", got.err());
    }

    /// The initiator's half of a real handshake, recorded by a fake responder, replayed to a
    /// real one: the fresh responder nonce changes the transcript, so the proof fails.
    #[tokio::test]
    async fn a_replayed_handshake_is_refused() {
        let key = ClusterKey::new(b"s");
        let (a, b) = duplex(1 << 16);
        let (ar, aw) = split(a);
        let (mut br, mut bw) = split(b);
        let initiator = tokio::spawn(async move {
            let key = ClusterKey::new(b"s");
            let _ = handshake(ar, aw, &key, &ident(1), member(1), true).await;
        });
        let hello_i = read_frame(&mut br, MAX_HELLO, None).await.unwrap();
        let fake = fake_responder_hello();
        write_frame(&mut bw, &fake).await.unwrap();
        let proof_i = read_frame(&mut br, MEMBER_PROOF_LEN, None).await.unwrap();
        drop((br, bw));
        let _ = initiator.await;

        let (c, d) = duplex(1 << 16);
        let (mut cr, mut cw) = split(c);
        let (dr, dw) = split(d);
        let responder =
            tokio::spawn(async move { handshake(dr, dw, &key, &ident(2), member(2), false).await });
        write_frame(&mut cw, &hello_i).await.unwrap();
        let _hello_r = read_frame(&mut cr, MAX_HELLO, None).await.unwrap();
        write_frame(&mut cw, &proof_i).await.unwrap();
        assert!(matches!(responder.await.unwrap(), Err(NetError::Auth(_))));
    }

    #[tokio::test]
    async fn tampered_replayed_and_reordered_frames_are_refused() {
        // Tampered: flip a byte of the sealed frame on the wire.
        let (a, b) = duplex(1 << 16);
        let (ar, mut aw) = split(a);
        let (br, bw) = split(b);
        let key = ClusterKey::new(b"s");
        let frame_key = key.session_key("initiator to responder", &[0; 32], &[0; 32]);
        let mut reader = SealedReader {
            inner: br,
            key: key.session_key("initiator to responder", &[0; 32], &[0; 32]),
            seq: 0,
        };
        let mut sealed = frame_key.seal(0, b"hello");
        sealed[2] ^= 1;
        write_frame(&mut aw, &sealed).await.unwrap();
        assert!(matches!(
            reader.recv(None).await,
            Err(NetError::Protocol(_))
        ));
        drop((ar, bw));

        // Replayed or reordered: frame 1 arriving where frame 0 is expected.
        let (a, b) = duplex(1 << 16);
        let (_ar, mut aw) = split(a);
        let (br, _bw) = split(b);
        let mut reader = SealedReader {
            inner: br,
            key: key.session_key("x", &[0; 32], &[0; 32]),
            seq: 0,
        };
        let k = key.session_key("x", &[0; 32], &[0; 32]);
        write_frame(&mut aw, &k.seal(1, b"second")).await.unwrap();
        assert!(reader.recv(None).await.is_err());
    }

    #[tokio::test]
    async fn garbage_and_oversized_lengths_are_protocol_errors() {
        for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0, 0, 0, 3, 1, 2, 3][..]] {
            let (a, b) = duplex(1 << 16);
            let (br, bw) = split(b);
            let (_ar, mut aw) = split(a);
            aw.write_all(garbage).await.unwrap();
            aw.shutdown().await.unwrap();
            let r = handshake(
                br,
                bw,
                &ClusterKey::new(b"s"),
                &ident(2),
                Role::Client,
                false,
            )
            .await;
            assert!(
                matches!(r, Err(NetError::Protocol(_)) | Err(NetError::Io(_))),
                "{:?}",
                r.err()
            );
        }
        // A length of 4 GiB is refused before any allocation.
        let (a, b) = duplex(1 << 16);
        let (mut br, _bw) = split(b);
        let (_ar, mut aw) = split(a);
        aw.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let r = read_frame(&mut br, MAX_FRAME, None).await;
        assert!(matches!(r, Err(NetError::Protocol(_))));
    }

    #[tokio::test]
    async fn a_silent_or_trickling_peer_times_out() {
        let (a, b) = duplex(1 << 16);
        let (br, bw) = split(b);
        let (_ar, mut aw) = split(a);
        // Announces a 100-byte hello, then sends 3 bytes and stalls.
        aw.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.unwrap();
        let r = handshake(
            br,
            bw,
            &ClusterKey::new(b"s"),
            &ident(2),
            Role::Client,
            false,
        )
        .await;
        assert!(matches!(r, Err(NetError::Timeout(_))), "{:?}", r.err());
    }
}
