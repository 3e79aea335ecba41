//! Several nodes in one process, talking over TCP on 127.0.0.1: replication, reads from any
//! node, storage-only nodes, peers that lie, and values lost to the whole cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chunk_copies, eventually, pattern, remove_chunks};
use dstore_core::cluster::{Cluster, ClusterConfig};
use dstore_core::crypto::ClusterKey;
use dstore_core::net::conn::{BoxFuture, Handler};
use dstore_core::net::handshake::Hello;
use dstore_core::net::message::{Request, Response};
use dstore_core::{Config, Error, Node, Redundancy, StoreOptions};

const CHUNK: usize = 4096;
const SECRET: &[u8] = b"test cluster secret";
const KEY: [u8; 32] = [42; 32];
const ENC: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Default,
};

fn config(root: &std::path::Path, peers: &[String]) -> Config {
    let mut c = Config::new(root);
    c.chunk_size = CHUNK;
    c.secret = Some(SECRET.to_vec());
    c.data_key = Some(KEY);
    c.listen = Some("127.0.0.1:0".into());
    c.peers = peers.to_vec();
    // Fake members that stall or lie never settle a hand-off: closing gives up sooner.
    c.drain_timeout = Duration::from_secs(3);
    c
}

/// A member run by `handler` instead of a store (to play a peer that lies or stalls).
async fn fake_member(handler: Arc<dyn Handler>, seed: &Node) -> Arc<Cluster> {
    let config = ClusterConfig {
        listen: Some("127.0.0.1:0".into()),
        peers: vec![seed.addr().unwrap()],
        ..Default::default()
    };
    Cluster::start(
        Arc::new(dstore_core::crypto::Identity::generate()),
        ClusterKey::new(SECRET),
        config,
        handler,
        Arc::new(dstore_core::Clock::default()),
    )
    .await
    .unwrap()
}

/// A client that joins through `seed` and holds no data of its own.
fn client_config(root: &std::path::Path, seed: &Node) -> Config {
    let mut c = config(root, &[seed.addr().unwrap()]);
    c.listen = None;
    c.client = true;
    c
}

/// `n` members, each knowing only the first; returns once every node sees all the others.
async fn cluster(dir: &std::path::Path, n: usize) -> Vec<Node> {
    let first = Node::open(config(&dir.join("n0"), &[])).await.unwrap();
    let seed = vec![first.addr().unwrap()];
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(
            Node::open(config(&dir.join(format!("n{i}")), &seed))
                .await
                .unwrap(),
        );
    }
    eventually("membership converges", || {
        nodes.iter().all(|x| x.peers().len() == n - 1)
    })
    .await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_stored_through_one_node_is_read_listed_and_deleted_through_others() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3).await;
    let data = pattern(1, 5 * CHUNK + 7);
    nodes[0].store("photos/a.jpg", &data, ENC).await.unwrap();
    nodes[0]
        .store(
            "notes/plain.txt",
            b"plain",
            StoreOptions {
                encrypt: false,
                redundancy: Redundancy::Default,
            },
        )
        .await
        .unwrap();
    for n in &nodes {
        assert_eq!(n.get("photos/a.jpg").await.unwrap(), data);
        assert_eq!(
            n.keys("").await.unwrap(),
            ["notes/plain.txt", "photos/a.jpg"]
        );
        assert!(n.has("photos/a.jpg").await.unwrap());
    }
    // With 3 replicas on 3 nodes every node holds every chunk: no broadcast beyond the owners.
    // The plain value is small enough to live in its manifest, with no chunk.
    for i in 0..3 {
        assert_eq!(chunk_copies(&dir.path().join(format!("n{i}"))).len(), 6);
    }
    nodes[1].delete("photos/a.jpg").await.unwrap();
    for n in &nodes {
        assert!(matches!(
            n.get("photos/a.jpg").await,
            Err(Error::NotFound(_))
        ));
        assert_eq!(n.keys("").await.unwrap(), ["notes/plain.txt"]);
    }
    assert!(matches!(
        nodes[2].get("never-stored").await,
        Err(Error::NotFound(_))
    ));
    for n in nodes {
        let _ = n.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_outlive_their_writer_and_placement_is_not_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 5).await;
    let data = pattern(2, 20 * CHUNK);
    nodes[0].store("big", &data, ENC).await.unwrap();
    // 20 chunks, 2 of 3 replicas needed per write, 5 nodes: no node holds everything, every
    // chunk is on at least 2 nodes.
    let held = || -> Vec<usize> {
        (0..5)
            .map(|i| chunk_copies(&dir.path().join(format!("n{i}"))).len())
            .collect()
    };
    // The write returned after 2 of 3 copies; the third lands in the background.
    eventually("3 copies of 20 chunks", || {
        held().iter().sum::<usize>() == 60
    })
    .await;
    let held = held();
    assert!(held.iter().all(|h| *h < 20), "{held:?}");
    let writer = nodes.remove(0);
    let _ = writer.close().await;
    drop(writer);
    for n in &nodes {
        assert_eq!(n.get("big").await.unwrap(), data);
    }
    for n in nodes {
        let _ = n.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_data_key_stores_and_serves_but_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Node::open(config(&dir.path().join("owner"), &[]))
        .await
        .unwrap();
    let mut storage_config = config(&dir.path().join("storage"), &[owner.addr().unwrap()]);
    storage_config.data_key = Some([7; 32]);
    storage_config.replicas = 2;
    let storage = Node::open(storage_config).await.unwrap();
    eventually("joined", || {
        owner.peers().len() == 1 && storage.peers().len() == 1
    })
    .await;
    let data = pattern(3, 3 * CHUNK);
    owner.store("secret", &data, ENC).await.unwrap();
    assert!(matches!(
        storage.get("secret").await,
        Err(Error::WrongKey(_))
    ));
    // The storage node's disk has the chunks, none of them readable as the plaintext.
    let chunks = chunk_copies(&dir.path().join("storage"));
    assert_eq!(chunks.len(), 3);
    for c in chunks {
        let bytes = c.bytes();
        assert!(!bytes.windows(32).any(|w| data.windows(32).any(|d| d == w)));
    }
    // The owner's own copies gone, it reads through the storage node.
    remove_chunks(&dir.path().join("owner"));
    assert_eq!(owner.get("secret").await.unwrap(), data);
    let _ = owner.close().await;
    let _ = storage.close().await;
}

/// A member that acknowledges every write, keeps nothing, and answers every chunk read with
/// garbage. Readers must notice and use the honest owners.
struct Liar;
impl Handler for Liar {
    fn handle(&self, _: &Hello, request: Request) -> BoxFuture<Response> {
        Box::pin(async move {
            match request {
                Request::GetChunk { .. } => Response::Chunk(vec![0xEE; 4112]),
                Request::GetManifest { .. } => Response::Manifest(None),
                Request::List { .. } => Response::Keys(vec![]),
                _ => Response::Stored,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_wrong_bytes_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3).await;
    let liar = fake_member(Arc::new(Liar), &nodes[0]).await;
    eventually("the liar is a member", || {
        nodes.iter().all(|n| n.peers().len() == 3)
    })
    .await;
    let data = pattern(4, 30 * CHUNK);
    nodes[0].store("v", &data, ENC).await.unwrap();
    // A reader with no copies of its own: it must fetch every chunk, and the liar owns some.
    let client = client_config(&dir.path().join("client"), &nodes[1]);
    let client = Node::open(client).await.unwrap();
    eventually("the client sees the members", || client.peers().len() == 4).await;
    assert_eq!(client.get("v").await.unwrap(), data);
    // Storage nodes themselves lose their copies too: reads still succeed via the others.
    remove_chunks(&dir.path().join("n1"));
    assert_eq!(nodes[1].get("v").await.unwrap(), data);
    liar.shutdown().await;
    let _ = client.close().await;
    for n in nodes.drain(..) {
        let _ = n.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_lost_to_the_whole_cluster_is_not_found_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3).await;
    nodes[0]
        .store("doomed", &pattern(5, 2 * CHUNK), ENC)
        .await
        .unwrap();
    for i in 0..3 {
        remove_chunks(&dir.path().join(format!("n{i}")));
    }
    let started = std::time::Instant::now();
    let r = nodes[2].get("doomed").await;
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    // Every owner answered at once that it has no copy; nothing waited for a timeout.
    assert!(started.elapsed() < dstore_core::cluster::membership::Timeouts::default().call);
    for n in nodes {
        let _ = n.close().await;
    }
}

/// Copies `from` to `to`, appending every byte to `log`.
async fn pipe(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    log: Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        log.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}

/// Forwards every connection made to the returned address to `target`, recording both
/// directions in `log`.
async fn recording_proxy(target: String, log: Arc<std::sync::Mutex<Vec<u8>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(pipe(ir, ow, log.clone()));
            tokio::spawn(pipe(or, iw, log.clone()));
        }
    });
    addr
}

/// Every byte between two nodes passes a recording proxy. The capture holds no key name and
/// no 16-byte run of any value, encrypted or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_the_traffic_holds_no_key_name_and_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Reserve each node's port first, so its proxy can be advertised in its place.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let mut proxies = Vec::new();
    for p in &ports {
        proxies.push(recording_proxy(format!("127.0.0.1:{p}"), log.clone()).await);
    }
    let node = |i: usize, peers: Vec<String>| {
        let mut c = config(&dir.path().join(format!("n{i}")), &peers);
        c.listen = Some(format!("127.0.0.1:{}", ports[i]));
        c.advertise = Some(proxies[i].clone());
        c.replicas = 2;
        c
    };
    let a = Node::open(node(0, vec![])).await.unwrap();
    let b = Node::open(node(1, vec![proxies[0].clone()])).await.unwrap();
    eventually("joined", || a.peers().len() == 1 && b.peers().len() == 1).await;
    let secret_value = pattern(6, 3 * CHUNK);
    let plain_value = pattern(7, 3 * CHUNK);
    b.store("key-name-that-must-not-leak", &secret_value, ENC)
        .await
        .unwrap();
    b.store(
        "plain-key-that-must-not-leak",
        &plain_value,
        StoreOptions {
            encrypt: false,
            redundancy: Redundancy::Default,
        },
    )
    .await
    .unwrap();
    // Make the values cross the wire again, in the other direction.
    remove_chunks(&dir.path().join("n0"));
    assert_eq!(
        a.get("key-name-that-must-not-leak").await.unwrap(),
        secret_value
    );
    assert_eq!(
        a.get("plain-key-that-must-not-leak").await.unwrap(),
        plain_value
    );
    assert_eq!(a.keys("").await.unwrap().len(), 2);
    let _ = a.close().await;
    let _ = b.close().await;

    let captured = log.lock().unwrap().clone();
    assert!(
        captured.len() > 6 * CHUNK,
        "the capture saw the values cross: {} bytes",
        captured.len()
    );
    for needle in [
        &b"key-name-that-must-not-leak"[..],
        b"plain-key-that-must-not-leak",
        b"must-not-leak",
    ] {
        assert!(!captured.windows(needle.len()).any(|w| w == needle));
    }
    let runs: std::collections::HashSet<&[u8]> = secret_value
        .chunks(16)
        .chain(plain_value.chunks(16))
        .collect();
    assert!(
        !captured.windows(16).any(|w| runs.contains(w)),
        "plaintext crossed the wire"
    );
}

/// A member that acknowledges writes and never answers a read.
struct Staller;
impl Handler for Staller {
    fn handle(&self, _: &Hello, request: Request) -> BoxFuture<Response> {
        Box::pin(async move {
            match request {
                Request::GetChunk { .. } | Request::GetManifest { .. } => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Request::List { .. } => Response::Keys(vec![]),
                _ => Response::Stored,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_is_skipped_after_the_call_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3).await;
    let staller = fake_member(Arc::new(Staller), &nodes[0]).await;
    eventually("the staller is a member", || {
        nodes.iter().all(|n| n.peers().len() == 3)
    })
    .await;
    let data = pattern(8, 16 * CHUNK);
    nodes[0].store("v", &data, ENC).await.unwrap();
    let mut c = client_config(&dir.path().join("client"), &nodes[1]);
    c.timeouts.call = Duration::from_millis(300);
    let client = Node::open(c).await.unwrap();
    eventually("the client sees the members", || client.peers().len() == 4).await;
    assert_eq!(client.get("v").await.unwrap(), data);
    staller.shutdown().await;
    let _ = client.close().await;
    for n in nodes.drain(..) {
        let _ = n.close().await;
    }
}

/// Collects what is written, and fires `on_first_write` the first time.
struct Tripwire {
    got: Vec<u8>,
    on_first_write: Option<tokio::sync::oneshot::Sender<()>>,
}

impl tokio::io::AsyncWrite for Tripwire {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(t) = self.on_first_write.take() {
            let _ = t.send(());
        }
        self.got.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// An owner goes away while a read is part way through: the first chunk has been delivered,
/// others are in flight to it. The read finishes from the other owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_leaves_mid_transfer_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 4).await;
    let data = pattern(9, 60 * CHUNK);
    nodes[0].store("v", &data, ENC).await.unwrap();
    let c = client_config(&dir.path().join("client"), &nodes[0]);
    let client = Node::open(c).await.unwrap();
    eventually("the client sees the members", || client.peers().len() == 4).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let leaving = nodes.remove(1);
    let leaver = tokio::spawn(async move {
        rx.await.unwrap();
        let _ = leaving.close().await;
    });
    let mut out = Tripwire {
        got: Vec::new(),
        on_first_write: Some(tx),
    };
    client.get_writer("v", &mut out).await.unwrap();
    leaver.await.unwrap();
    assert_eq!(out.got, data);
    let _ = client.close().await;
    for n in nodes.drain(..) {
        let _ = n.close().await;
    }
}

/// Listing is paged (issue 9, item 7): each member answers one page at a time, so listing
/// the whole cluster works however many keys there are. Before, each member's whole key
/// list was one reply: 17,000 keys of 1 KB were over the frame limit, the reply was dropped,
/// and `ls` printed nothing and succeeded. Now every key comes back, in byte order, and pages
/// from `list` join up to `keys`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_paged_and_complete_whatever_the_number_of_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let seed: Vec<String> = nodes.iter().map(|n: &Node| n.addr().unwrap()).collect();
        let mut c = config(&dir.path().join(format!("n{i}")), &seed);
        c.replicas = 1; // each key on one member: the listing must merge both
        nodes.push(Node::open(c).await.unwrap());
    }
    eventually("membership", || nodes.iter().all(|n| n.peers().len() == 1)).await;
    let pad = "x".repeat(990);
    let keys: Vec<String> = (0..17_000).map(|i| format!("big/{i:06}/{pad}")).collect();
    let mut writes = tokio::task::JoinSet::new();
    for (i, chunk) in keys.chunks(17_000 / 32).enumerate() {
        let (node, chunk) = (nodes[i % 2].clone(), chunk.to_vec());
        writes.spawn(async move {
            for k in chunk {
                node.store(&k, b"", ENC).await.unwrap();
            }
        });
    }
    while let Some(w) = writes.join_next().await {
        w.unwrap();
    }
    for extra in ["a", "big", "bigger", "c/1"] {
        nodes[0].store(extra, b"v", ENC).await.unwrap();
    }
    nodes[1].delete(&keys[5]).await.unwrap();
    let mut expected: Vec<String> = keys.clone();
    expected.remove(5);

    let all = nodes[1].keys("big/").await.unwrap();
    assert_eq!(all.len(), expected.len());
    assert!(all == expected, "every key, in order, none deleted");
    let page = nodes[0].list("big/", &keys[10], 3).await.unwrap();
    assert_eq!(page, keys[11..14].to_vec());
    let page = nodes[0].list("", "big/", 2).await.unwrap();
    assert_eq!(page, vec![keys[0].clone(), keys[1].clone()]);
    let tail = nodes[0].list("", &keys[16_999], 10).await.unwrap();
    assert_eq!(tail, ["bigger", "c/1"]);
    assert_eq!(
        nodes[0].list("zzz", "", 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(matches!(
        nodes[0].list("", "", 0).await,
        Err(Error::InvalidArgument(_))
    ));
    for n in nodes {
        let _ = n.close().await;
    }
}

/// Answers pings and nothing else: a member whose listing never comes.
struct SilentLister;
impl Handler for SilentLister {
    fn handle(&self, _: &Hello, request: Request) -> BoxFuture<Response> {
        Box::pin(async move {
            if let Request::List { .. } = request {
                std::future::pending::<()>().await;
            }
            Response::Stored
        })
    }
}

/// A member that does not answer a listing fails it when it may hold keys no other member
/// has (issue 9, item 7): before, its keys were left out and the listing succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_list_fails_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir.path().join("a"), &[]);
    c.timeouts.call = Duration::from_millis(500);
    // One copy acknowledges a write: any member's keys may be on it alone.
    c.replicas = 2;
    c.write_quorum = Some(1);
    let node = Node::open(c).await.unwrap();
    node.store("k", b"v", ENC).await.unwrap();
    let silent = fake_member(Arc::new(SilentLister), &node).await;
    eventually("the silent member is live", || node.peers().len() == 1).await;
    let listed = node.list("", "", 10).await;
    assert!(
        matches!(&listed, Err(Error::Unavailable(m)) if m.contains("did not answer")),
        "{listed:?}"
    );
    silent.shutdown().await;
    let _ = node.close().await;
}

/// A live owner that stalls reads costs a read the hedge delay, not the call timeout (issue
/// 9, item 10). Before, owners were asked one at a time, each with the whole call timeout:
/// with a 60 s timeout, a 16-chunk value whose chunks the staller ranks first for took
/// minutes. Now the next owner is asked once the hedge delay passes, and the staller is
/// asked last from then on. The read must finish well inside one call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_owner_that_stalls_reads_is_hedged_around() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 3).await;
    let staller = fake_member(Arc::new(Staller), &nodes[0]).await;
    eventually("the staller is a member", || {
        nodes.iter().all(|n| n.peers().len() == 3)
    })
    .await;
    let values: Vec<Vec<u8>> = (0..4).map(|i| pattern(20 + i, 16 * CHUNK)).collect();
    for (i, v) in values.iter().enumerate() {
        nodes[0].store(&format!("v{i}"), v, ENC).await.unwrap();
    }
    let mut c = client_config(&dir.path().join("client"), &nodes[1]);
    c.timeouts.call = Duration::from_secs(60);
    let client = Node::open(c).await.unwrap();
    eventually("the client sees the members", || client.peers().len() == 4).await;
    let started = std::time::Instant::now();
    for (i, v) in values.iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(30), client.get(&format!("v{i}")))
            .await
            .expect("a read waited out the call timeout of a stalling owner");
        assert_eq!(&got.unwrap(), v);
    }
    eprintln!(
        "4 reads of 16 chunks with a stalling owner: {:?}",
        started.elapsed()
    );
    staller.shutdown().await;
    let _ = client.close().await;
    for n in nodes.drain(..) {
        let _ = n.close().await;
    }
}

/// 256 callers of one embedded member and of one client, each storing and reading a small
/// value and a two-chunk one at once, all over the same connections: none is refused. Each
/// connection answers 64 requests at once and says "busy" past that; callers used to send
/// past it, so 64 concurrent callers of `dstore bench` failed with "busy" at 2 replicas.
/// Now a caller waits for one of its connection's 64 slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_share_a_connection_without_busy_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 3).await;
    let client = Node::open(client_config(&dir.path().join("client"), &nodes[0]))
        .await
        .unwrap();
    client.settle(Duration::from_secs(10)).await.unwrap();
    for (who, writer) in [("member", &nodes[0]), ("client", &client)] {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..256 {
            let w = writer.clone();
            let key = format!("{who}/{i}");
            let value = pattern(i, if i % 2 == 0 { 100 } else { CHUNK + 1 });
            calls.spawn(async move {
                w.store(&key, &value, ENC).await?;
                let back = w.get(&key).await?;
                assert_eq!(back, value, "{key}");
                Ok::<_, Error>(())
            });
        }
        let mut failed = Vec::new();
        while let Some(r) = calls.join_next().await {
            if let Err(e) = r.unwrap() {
                failed.push(e.to_string());
            }
        }
        assert!(
            failed.is_empty(),
            "{who}: {} of 256 failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
    }
    client.close().await.unwrap();
    for n in nodes {
        n.close().await.unwrap();
    }
}

/// Issue 10: 100,000 keys across a cluster (3 embedded members, each key on one of them, so
/// every page merges all three; and a client), written through all four, list back through the client in pages of 1,000 from the
/// ordered key index: each page in byte order and continuing where the last ended, together
/// every live key under the prefix once, none of its neighbours, no deleted key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_keys_list_in_pages_in_key_order() {
    const KEYS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let mut c = config(&dir.path().join("n0"), &[]);
        c.replicas = 1;
        Node::open(c).await.unwrap()
    };
    let mut nodes = vec![first.clone()];
    for i in 1..3 {
        let mut c = config(&dir.path().join(format!("n{i}")), &[first.addr().unwrap()]);
        c.replicas = 1;
        nodes.push(Node::open(c).await.unwrap());
    }
    let mut c = client_config(&dir.path().join("client"), &first);
    c.replicas = 1;
    let client = Node::open(c).await.unwrap();
    eventually("membership", || {
        nodes.iter().all(|n| n.peers().len() == 2) && client.peers().len() == 3
    })
    .await;
    // Written in an order unrelated to key order, by 64 callers over the four nodes.
    let key = |i: usize| format!("p/{:06}", (i * 7919) % KEYS);
    let writers: Vec<Node> = nodes.iter().cloned().chain([client.clone()]).collect();
    let mut writes = tokio::task::JoinSet::new();
    for w in 0..64 {
        let node = writers[w % writers.len()].clone();
        writes.spawn(async move {
            for i in (w..KEYS).step_by(64) {
                node.store(&key(i), b"v", ENC).await.unwrap();
            }
        });
    }
    while let Some(w) = writes.join_next().await {
        w.unwrap();
    }
    for neighbour in ["p", "p.", "o/1", "q/0", "p0"] {
        client.store(neighbour, b"n", ENC).await.unwrap();
    }
    let deleted: Vec<String> = [0, 1, 4_999, 50_000, KEYS - 1]
        .iter()
        .map(|i| format!("p/{i:06}"))
        .collect();
    for k in &deleted {
        nodes[1].delete(k).await.unwrap();
    }
    let expected: Vec<String> = (0..KEYS)
        .map(|i| format!("p/{i:06}"))
        .filter(|k| !deleted.contains(k))
        .collect();

    let (mut listed, mut after, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = client.list("p/", &after, 1000).await.unwrap();
        pages += 1;
        assert!(page.len() <= 1000);
        assert!(
            page.windows(2).all(|w| w[0] < w[1]),
            "page {pages} in order"
        );
        assert!(
            page.first().is_none_or(|k| *k > after),
            "page {pages} continues"
        );
        match page.last() {
            Some(last) => after = last.clone(),
            None => break,
        }
        let full = page.len() == 1000;
        listed.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(listed.len(), expected.len());
    assert!(listed == expected, "every live key once, in order");
    assert!(pages >= expected.len() / 1000);
    assert_eq!(nodes[2].keys("p/").await.unwrap(), expected);
    client.close().await.unwrap();
    for n in nodes {
        let _ = n.close().await;
    }
}

/// An owner that says it holds a newer version than each write it is sent, `ahead_ms` ahead
/// of the wall clock, `times` times per key (then it stores, keeping nothing), recording the
/// key and version of every manifest it is sent.
#[derive(Default)]
struct Ahead {
    mode: std::sync::Mutex<(usize, u64)>,
    sent: std::sync::Mutex<Vec<(String, dstore_core::version::Version)>>,
}

fn hlc_now() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    dstore_core::version::hlc_of_ms(ms as u64)
}

impl Handler for Ahead {
    fn handle(&self, _: &Hello, request: Request) -> BoxFuture<Response> {
        let answer = match request {
            Request::PutManifest { manifest } => {
                let cluster = ClusterKey::new(SECRET);
                let m = dstore_core::manifest::Manifest::from_bytes(&manifest, &cluster).unwrap();
                let (times, ahead_ms) = *self.mode.lock().unwrap();
                let mut sent = self.sent.lock().unwrap();
                let before = sent.iter().filter(|(k, _)| *k == m.body.key).count();
                sent.push((m.body.key.clone(), m.body.version));
                if before < times {
                    Response::Held(Some(dstore_core::version::Version {
                        time: hlc_now() + dstore_core::version::hlc_of_ms(ahead_ms),
                        node: dstore_core::NodeId([9; 32]),
                    }))
                } else {
                    Response::Held(None)
                }
            }
            Request::GetManifest { .. } => Response::Manifest(None),
            Request::List { .. } => Response::Keys(vec![]),
            _ => Response::Stored,
        };
        Box::pin(async move { answer })
    }
}

/// Writes no longer read the key's version from its owners before they stamp theirs: an
/// owner that holds a newer version answers the write with it, and the writer stamps the
/// write again after it and sends it once more. Seen here from an embedded member whose
/// co-owner claims a version 20 s ahead: the write is sent twice, the second stamped after
/// that version, and it is stored; an owner that claims a newer version again (a concurrent
/// writer) does not make the writer loop; and one that claims a version beyond the drift
/// allowed is a failed owner, not a reason to move the writer's clock. A client of the
/// member, with no copy of its own, is stamped again the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_a_newer_version_on_an_owner_is_stamped_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir.path().join("member"), &[]);
    c.replicas = 2;
    let member = Node::open(c).await.unwrap();
    let ahead = Arc::new(Ahead::default());
    let fake = fake_member(ahead.clone(), &member).await;
    eventually("the fake owner is a member", || member.peers().len() == 1).await;
    let sent_for = |key: &str| -> Vec<u64> {
        let sent = ahead.sent.lock().unwrap();
        sent.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.time)
            .collect()
    };
    for (times, ahead_ms) in [(1, 20_000), (usize::MAX, 30_000)] {
        *ahead.mode.lock().unwrap() = (times, ahead_ms);
        let key = format!("behind-{ahead_ms}");
        let before = hlc_now();
        member.store(&key, b"the value", ENC).await.unwrap();
        let sent = sent_for(&key);
        assert_eq!(sent.len(), 2, "{sent:?}");
        // The first stamp is behind the version the owner claims (for the second key, this
        // member's clock already follows the version it was told of for the first).
        assert!(sent[0] < before + dstore_core::version::hlc_of_ms(ahead_ms));
        assert!(
            sent[1] > before + dstore_core::version::hlc_of_ms(ahead_ms),
            "the second stamp follows the owner's version: {sent:?}"
        );
        assert_eq!(member.get(&key).await.unwrap(), b"the value");
    }
    // The same through a client of the member, which holds no copy of its own.
    let mut c = client_config(&dir.path().join("client"), &member);
    c.replicas = 2;
    let client = Node::open(c).await.unwrap();
    eventually("the client sees both members", || client.peers().len() == 2).await;
    *ahead.mode.lock().unwrap() = (1, 40_000);
    let before = hlc_now();
    client
        .store("behind-client", b"through a client", ENC)
        .await
        .unwrap();
    let sent = sent_for("behind-client");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0] < before + dstore_core::version::hlc_of_ms(40_000));
    assert!(sent[1] > before + dstore_core::version::hlc_of_ms(40_000));
    assert_eq!(
        client.get("behind-client").await.unwrap(),
        b"through a client"
    );
    let _ = client.close().await;
    // Two hours ahead is beyond the hour of drift allowed: that owner has failed the write.
    *ahead.mode.lock().unwrap() = (usize::MAX, 2 * 3_600_000);
    let r = member.store("too-far", b"v", ENC).await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    assert_eq!(sent_for("too-far").len(), 1);
    fake.shutdown().await;
    let _ = member.close().await;
}

/// A member that keeps nothing: it takes manifest writes (saying it held nothing) or, while
/// `failing`, refuses them; it answers reads of keys under `held/` with a tombstone stamped
/// at `held`, as a holder of a write that others may not have would.
struct Holder {
    failing: std::sync::atomic::AtomicBool,
    held: std::sync::Mutex<dstore_core::version::Version>,
    sent: std::sync::Mutex<Vec<(String, u64)>>,
    reads: std::sync::atomic::AtomicUsize,
}
impl Handler for Holder {
    fn handle(&self, _: &Hello, request: Request) -> BoxFuture<Response> {
        use std::sync::atomic::Ordering::SeqCst;
        let cluster = ClusterKey::new(SECRET);
        let answer = match request {
            Request::PutManifest { manifest } => {
                let m = dstore_core::manifest::Manifest::from_bytes(&manifest, &cluster).unwrap();
                let mut sent = self.sent.lock().unwrap();
                sent.push((m.body.key.clone(), m.body.version.time));
                if self.failing.load(SeqCst) {
                    Response::Failed {
                        kind: dstore_core::net::message::FailureKind::Refused,
                        message: "disk full".into(),
                    }
                } else {
                    Response::Held(None)
                }
            }
            Request::GetManifest { key } => {
                self.reads.fetch_add(1, SeqCst);
                Response::Manifest(key.starts_with("held/").then(|| {
                    let held = *self.held.lock().unwrap();
                    dstore_core::manifest::Manifest::tombstone(&key, held, None, &cluster)
                        .to_bytes()
                }))
            }
            Request::List { .. } => Response::Keys(vec![]),
            _ => Response::Stored,
        };
        Box::pin(async move { answer })
    }
}

/// A manifest write is acknowledged without a read only when the places that answered it
/// meet every place an acknowledged write may rest on (with 4 members and 3 replicas: 3 of
/// the 4). An embedded member writes among three fakes. All taking the write: no read.
/// Two refusing it ("disk full"): the write still has W = 2 copies (the member's and one
/// fake's), but those two answers cannot meet a write that rests on the two refusing
/// members, so the writer reads the key from all four, finds their newer version (a
/// tombstone 20 s ahead), and stamps its write again after it; it then reads back. The same
/// through a client (the fakes then holding a version 60 s ahead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_cannot_meet_every_holder_reads_before_it_is_acknowledged() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let member = Node::open(config(&dir.path().join("member"), &[]))
        .await
        .unwrap();
    let held = dstore_core::version::Version {
        time: hlc_now() + dstore_core::version::hlc_of_ms(20_000),
        node: dstore_core::NodeId([8; 32]),
    };
    let mut fakes = Vec::new();
    for _ in 0..3 {
        let holder = Arc::new(Holder {
            failing: false.into(),
            held: held.into(),
            sent: Default::default(),
            reads: 0.into(),
        });
        fakes.push((holder.clone(), fake_member(holder, &member).await));
    }
    eventually("the fakes are members", || member.peers().len() == 3).await;
    let reads = || {
        fakes
            .iter()
            .map(|(h, _)| h.reads.load(SeqCst))
            .sum::<usize>()
    };
    let sent_for = |key: &str| -> Vec<u64> {
        let mut all = Vec::new();
        for (h, _) in &fakes {
            let sent = h.sent.lock().unwrap();
            all.extend(sent.iter().filter(|(k, _)| k == key).map(|(_, t)| *t));
        }
        all
    };

    member.store("met", b"v", ENC).await.unwrap();
    assert_eq!(reads(), 0, "a write that met every holder read first");
    assert!(sent_for("met").len() >= 2);

    fakes[0].0.failing.store(true, SeqCst);
    fakes[1].0.failing.store(true, SeqCst);
    // The versions of `key` fake 2 took from the writer (not the fakes' tombstone at `held`,
    // which read repair may send it), each once (read repair may send the second again).
    let taken = |key: &str, held: u64| -> Vec<u64> {
        let mut t: Vec<u64> = fakes[2]
            .0
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, t)| k == key && *t != held)
            .map(|(_, t)| *t)
            .collect();
        t.dedup();
        t
    };
    let before = hlc_now();
    member.store("held/unmet", b"the value", ENC).await.unwrap();
    assert!(
        reads() > 0,
        "a write that could not meet every holder did not read"
    );
    let mine = taken("held/unmet", held.time);
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine[0] < held.time && before < held.time);
    assert!(
        mine[1] > held.time,
        "the second stamp follows the newer version"
    );
    assert_eq!(member.get("held/unmet").await.unwrap(), b"the value");

    // The same through a client, the fakes now holding a version 60 s ahead.
    let held = dstore_core::version::Version {
        time: hlc_now() + dstore_core::version::hlc_of_ms(60_000),
        node: dstore_core::NodeId([8; 32]),
    };
    for (h, _) in &fakes {
        *h.held.lock().unwrap() = held;
    }
    let client = Node::open(client_config(&dir.path().join("client"), &member))
        .await
        .unwrap();
    eventually("the client sees the members", || client.peers().len() == 4).await;
    let reads_before = reads();
    client
        .store("held/client", b"through a client", ENC)
        .await
        .unwrap();
    assert!(reads() > reads_before, "the client's write did not read");
    let mine = taken("held/client", held.time);
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine[0] < held.time && mine[1] > held.time, "{mine:?}");
    assert_eq!(
        client.get("held/client").await.unwrap(),
        b"through a client"
    );
    let _ = client.close().await;
    for (_, fake) in fakes {
        fake.shutdown().await;
    }
    let _ = member.close().await;
}
