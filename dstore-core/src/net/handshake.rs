//! The handshake, and the encrypted session it opens.
//!
//! ```text
//! initiator                                   responder
//!   Hello{magic, version, node id, nonce, role}  ->
//!                                            <-  Hello{magic, version, node id, nonce, role}
//!   T = SHA-256("dstore handshake v1" | len | hello_i | len | hello_r)
//!   HMAC(K_hs, "initiator" | T)                  ->   checked before anything else is sent
//!                                            <-  HMAC(K_hs, "responder" | T)
//!   every later frame: AES-256-GCM under HMAC(K_sess, direction | T), nonce = sequence number
//! ```
//!
//! Both proofs cover both fresh nonces, so a recorded handshake replayed to a node fails its
//! proof. The responder proves itself only to an initiator that has proved itself first, so an
//! outsider learns nothing from a node but its hello. Hellos carry no key names or data.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{read_frame, write_frame, MAX_FRAME};
use super::NetError;
use crate::codec;
use crate::crypto::{self, ClusterKey, FrameKey};
use crate::ids::NodeId;

pub const MAGIC: [u8; 8] = *b"dstore\0\0";
/// 2: members say their incarnation in the hello, and depart with `Request::Depart`.
pub const PROTOCOL_VERSION: u32 = 2;
/// The whole handshake must complete within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Hellos are small; a larger one is garbage.
const MAX_HELLO: usize = 4096;

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
    pub nonce: [u8; 32],
    pub role: Role,
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
        let sealed = self.key.seal_in_place(self.seq, body);
        self.seq += 1;
        write_frame(&mut self.inner, &sealed).await
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

/// Decodes a peer's hello and checks that it speaks this protocol and is not this node.
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
    Ok(peer)
}

/// Runs the handshake over a stream's two halves, as the side that connected (`initiator`) or
/// the side that accepted.
pub async fn handshake<R, W>(
    reader: R,
    writer: W,
    cluster: &ClusterKey,
    me: NodeId,
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
    me: NodeId,
    role: Role,
    initiator: bool,
) -> Result<Session<R, W>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mine = codec::encode(&Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        node: me,
        nonce: crypto::random_bytes(),
        role,
    });
    // The responder checks the initiator's hello before sending its own, so garbage and
    // other protocols get nothing back.
    let theirs = if initiator {
        write_frame(&mut writer, &mine).await?;
        read_frame(&mut reader, MAX_HELLO, None).await?
    } else {
        read_frame(&mut reader, MAX_HELLO, None).await?
    };
    let peer = check_hello(&theirs, me)?;
    if !initiator {
        write_frame(&mut writer, &mine).await?;
    }
    let (hello_i, hello_r) = if initiator {
        (&mine, &theirs)
    } else {
        (&theirs, &mine)
    };
    let transcript = crypto::sha256(&[
        b"dstore handshake v1",
        &(hello_i.len() as u32).to_be_bytes(),
        hello_i,
        &(hello_r.len() as u32).to_be_bytes(),
        hello_r,
    ]);
    let proof_i = cluster.handshake_proof("initiator", &transcript);
    let proof_r = cluster.handshake_proof("responder", &transcript);
    let refused = || NetError::Auth("the peer does not know the cluster secret".into());
    if initiator {
        write_frame(&mut writer, &proof_i).await?;
        let got = read_frame(&mut reader, 32, None).await.map_err(|_| {
            NetError::Auth("the peer refused our proof (another cluster secret?)".into())
        })?;
        if !crypto::ct_eq(&got, &proof_r) {
            return Err(refused());
        }
    } else {
        let got = read_frame(&mut reader, 32, None).await?;
        if !crypto::ct_eq(&got, &proof_i) {
            return Err(refused());
        }
        write_frame(&mut writer, &proof_r).await?;
    }
    let i2r = cluster.session_key("initiator to responder", &transcript);
    let r2i = cluster.session_key("responder to initiator", &transcript);
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

    async fn pair(secret_a: &[u8], secret_b: &[u8]) -> (Result<S, NetError>, Result<S, NetError>) {
        let (a, b) = duplex(1 << 20);
        let (ar, aw): Half = split(a);
        let (br, bw): Half = split(b);
        let (ka, kb) = (ClusterKey::new(secret_a), ClusterKey::new(secret_b));
        tokio::join!(
            handshake(ar, aw, &ka, NodeId([1; 32]), member(1), true),
            handshake(br, bw, &kb, NodeId([2; 32]), Role::Client, false),
        )
    }

    #[tokio::test]
    async fn same_secret_opens_an_encrypted_session_both_ways() {
        let (a, b) = pair(b"s", b"s").await;
        let (mut a, mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.peer.role, Role::Client);
        assert_eq!(b.peer.node, NodeId([1; 32]));
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
        assert!(a.is_err());
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
            let _ = handshake(ar, aw, &key, NodeId([1; 32]), member(1), true).await;
        });
        let hello_i = read_frame(&mut br, MAX_HELLO, None).await.unwrap();
        let fake = codec::encode(&Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            node: NodeId([9; 32]),
            nonce: [0; 32],
            role: Role::Client,
        });
        write_frame(&mut bw, &fake).await.unwrap();
        let proof_i = read_frame(&mut br, 32, None).await.unwrap();
        drop((br, bw));
        let _ = initiator.await;

        let (c, d) = duplex(1 << 16);
        let (mut cr, mut cw) = split(c);
        let (dr, dw) = split(d);
        let responder = tokio::spawn(async move {
            handshake(dr, dw, &key, NodeId([2; 32]), member(2), false).await
        });
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
        let frame_key = key.session_key("initiator to responder", &[0; 32]);
        let mut reader = SealedReader {
            inner: br,
            key: key.session_key("initiator to responder", &[0; 32]),
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
            key: key.session_key("x", &[0; 32]),
            seq: 0,
        };
        let k = key.session_key("x", &[0; 32]);
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
                NodeId([2; 32]),
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
            NodeId([2; 32]),
            Role::Client,
            false,
        )
        .await;
        assert!(matches!(r, Err(NetError::Timeout(_))), "{:?}", r.err());
    }
}
