//! Hostile peers and rotten disks (issue 9): a test client that speaks dstore's handshake
//! and sends what a broken or malicious peer would, against real nodes on 127.0.0.1. Each
//! test says what it sends and what the node must do instead of what it did before.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dstore_core::crypto::ClusterKey;
use dstore_core::net::conn::{BoxFuture, Conn, Handler};
use dstore_core::net::handshake::{handshake, Hello, Role};
use dstore_core::net::message::{FailureKind, Request, Response};
use dstore_core::{Clock, Config, Node, NodeId, StoreOptions};
use tokio::io::BufWriter;
use tokio::net::TcpStream;

const SECRET: &[u8] = b"hostile test secret";
const KEY: [u8; 32] = [3; 32];
const ENC: StoreOptions = StoreOptions { encrypt: true };

fn member_config(root: &Path, peers: &[String]) -> Config {
    common::fast_member(root, peers, SECRET, KEY, 4096)
}

/// Answers nothing: the hostile client only asks.
struct Mute;
impl Handler for Mute {
    fn handle(&self, _: &Hello, _: Request) -> BoxFuture<Response> {
        Box::pin(async {
            Response::Failed {
                kind: FailureKind::Refused,
                message: "mute".into(),
            }
        })
    }
}

/// A session with the node at `addr`, as a client that knows the secret, whose every frame
/// carries the reading of `clock`.
async fn hostile_session(addr: &str, clock: Arc<Clock>) -> Arc<Conn> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (r, w) = stream.into_split();
    let session = handshake(
        r,
        BufWriter::new(w),
        &ClusterKey::new(SECRET),
        NodeId::random(),
        Role::Client,
        true,
    )
    .await
    .unwrap();
    Conn::spawn(session, Arc::new(Mute), clock)
}

/// Item 1, clock poisoning: a peer whose frames carry `clock = u64::MAX`. Before, the node
/// took it as its own clock and panicked ("attempt to add with overflow") stamping its
/// answer, so it never answered again. Now it refuses the reading, answers, and keeps
/// stamping its own writes at its wall clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_clock_at_the_end_of_time_is_refused_and_the_node_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(member_config(&dir.path().join("a"), &[]))
        .await
        .unwrap();
    let poisoned = Arc::new(Clock::new(0, u64::MAX));
    assert!(poisoned.observe(u64::MAX));
    let conn = hostile_session(&node.addr().unwrap(), poisoned).await;
    for _ in 0..3 {
        let answer = conn.call(Request::Ping, Duration::from_secs(5)).await;
        assert!(
            matches!(answer, Ok(Response::Pong { .. })),
            "the node still answers: {answer:?}"
        );
    }
    // Its own writes are stamped at its wall clock, and a later one still wins.
    node.store("k", b"first", ENC).await.unwrap();
    node.store("k", b"second", ENC).await.unwrap();
    assert_eq!(node.get("k").await.unwrap(), b"second");
    let _ = node.close().await;
}

/// Item 1, a member whose clock is a day ahead: its envelope clocks are not followed, and
/// the manifests it stamps are refused by the others, so its writes fail instead of
/// planting versions nothing later could replace. The others' clocks stay sane: a write
/// through them after it still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_ahead_cannot_plant_versions_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::open(member_config(&dir.path().join("a"), &[]))
        .await
        .unwrap();
    let seed = vec![a.addr().unwrap()];
    let b = Node::open(member_config(&dir.path().join("b"), &seed))
        .await
        .unwrap();
    let mut c = member_config(&dir.path().join("ahead"), &seed);
    c.clock_offset_ms = 24 * 3600 * 1000;
    let ahead = Node::open(c).await.unwrap();
    common::eventually("membership", || {
        [&a, &b, &ahead].iter().all(|n| n.peers().len() == 2)
    })
    .await;
    a.store("k", b"from a", ENC).await.unwrap();
    let planted = ahead.store("k", b"from the future", ENC).await;
    assert!(
        matches!(&planted, Err(dstore_core::Error::Unavailable(m)) if m.contains("drift")),
        "{planted:?}"
    );
    assert_eq!(b.get("k").await.unwrap(), b"from a");
    b.store("k", b"from b, later", ENC).await.unwrap();
    assert_eq!(a.get("k").await.unwrap(), b"from b, later");
    for n in [ahead, b, a] {
        let _ = n.close().await;
    }
}

/// Item 1, a root that already holds a version stamped at the end of time (written before
/// this fix): it used to make every later store on the root panic, even after a restart.
/// Now it is set aside when the root opens, and the key can be written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_holding_versions_from_the_far_future_is_usable_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut poisoned = Config::new(&root);
    poisoned.clock_offset_ms = i64::MAX / 2; // past the end of the 48-bit millisecond field
    let node = Node::open(poisoned).await.unwrap();
    node.store("k", b"stamped at the end of time", ENC)
        .await
        .unwrap();
    let _ = node.close().await;

    let node = Node::open(Config::new(&root)).await.unwrap();
    node.store("k", b"written now", ENC).await.unwrap();
    node.store("other", b"fine", ENC).await.unwrap();
    assert_eq!(node.get("k").await.unwrap(), b"written now");
    let quarantined = common::files_under(&root.join("quarantine"));
    assert_eq!(quarantined.len(), 1, "the far-future manifest is set aside");
    let _ = node.close().await;
}

/// Item 8, deduplication trusted a rotten chunk file: a value is stored, one byte of its
/// chunk file flips on disk, and the same bytes are stored under a second key. Before, the
/// second store counted the rotten file as held (acknowledged) and reading the second key
/// failed with IntegrityError; now the file is checked, set aside and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplication_checks_the_chunk_it_would_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::new(dir.path().join("root"));
    c.chunk_size = 4096;
    let node = Node::open(c).await.unwrap();
    let value = common::pattern(8, 4096);
    node.store("first", &value, ENC).await.unwrap();
    let chunk_files = common::files_under(&dir.path().join("root/chunks"));
    assert_eq!(chunk_files.len(), 1);
    common::flip_byte(&chunk_files[0], 100);
    node.store("second", &value, ENC).await.unwrap();
    assert_eq!(node.get("second").await.unwrap(), value);
    assert_eq!(
        node.get("first").await.unwrap(),
        value,
        "the shared chunk is good again"
    );
    let quarantined = common::files_under(&dir.path().join("root/quarantine"));
    assert_eq!(quarantined.len(), 1, "the rotten file was set aside");
    let _ = node.close().await;
}
