//! Durability in a cluster of in-process nodes on 127.0.0.1: versions under clock skew,
//! quorums, read repair, stand-ins and hand-off, repair after loss, scrubbing, and garbage
//! collection of chunks and tombstones. The same faults against `dstore node` processes
//! (kill -9, partitions, full disks) are in tests/test_faults.py.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{chunk_copies, eventually, files_under, flip_in_catalog, pattern};
use dstore_core::cluster::placement::{self, Candidate};
use dstore_core::{Config, Error, KeyId, Node, Redundancy, StoreOptions};

const CHUNK: usize = 4096;
const SECRET: &[u8] = b"durability test secret";
const KEY: [u8; 32] = [7; 32];
const ENC: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Default,
};

/// A member with failure detection and background work sped up for tests.
fn config(root: &Path, peers: &[String]) -> Config {
    common::fast_member(root, peers, SECRET, KEY, CHUNK)
}

async fn start(dir: &Path, n: usize, tweak: impl Fn(&mut Config)) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let seed: Vec<String> = nodes.first().and_then(|f| f.addr()).into_iter().collect();
        let mut c = config(&dir.join(format!("n{i}")), &seed);
        tweak(&mut c);
        nodes.push(Node::open(c).await.unwrap());
    }
    eventually("membership converges", || {
        nodes.iter().all(|x| x.peers().len() == n - 1)
    })
    .await;
    nodes
}

async fn reopen(dir: &Path, i: usize, seed: &Node, tweak: impl Fn(&mut Config)) -> Node {
    let mut c = config(&dir.join(format!("n{i}")), &[seed.addr().unwrap()]);
    tweak(&mut c);
    Node::open(c).await.unwrap()
}

async fn close_all(nodes: impl IntoIterator<Item = Node>) {
    for n in nodes {
        let _ = n.close().await;
    }
}

/// A client whose wall clock is ten minutes behind writes after a member did: its write and
/// its delete still win, because every message carries the sender's hybrid clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_clock_cannot_make_an_older_write_win() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start(dir.path(), 3, |_| {}).await;
    let mut c = config(&dir.path().join("slow"), &[nodes[1].addr().unwrap()]);
    c.listen = None;
    c.client = true;
    c.clock_offset_ms = -600_000;
    let slow = Node::open(c).await.unwrap();
    slow.settle(Duration::from_secs(5)).await.unwrap();
    for round in 0..3u64 {
        let key = format!("k{round}");
        nodes[0].store(&key, b"first", ENC).await.unwrap();
        slow.store(&key, b"second, from the slow clock", ENC)
            .await
            .unwrap();
        for n in &nodes {
            assert_eq!(n.get(&key).await.unwrap(), b"second, from the slow clock");
        }
    }
    nodes[2].store("gone", b"live", ENC).await.unwrap();
    slow.delete("gone").await.unwrap();
    for n in &nodes {
        assert!(matches!(n.get("gone").await, Err(Error::NotFound(_))));
    }
    let _ = slow.close().await;
    close_all(nodes).await;
}

/// W = 3 of 3: a write fails (and says why) while one owner is down; with R = 1 a node
/// still reads its own copy. Quorums larger than `replicas` are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_read_quorums_are_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config(&dir.path().join("bad"), &[]);
    bad.write_quorum = Some(4);
    assert!(matches!(
        Node::open(bad).await,
        Err(Error::InvalidArgument(_))
    ));
    let mut nodes = start(dir.path(), 3, |c| {
        c.write_quorum = Some(3);
        c.read_quorum = Some(1);
    })
    .await;
    nodes[0].store("k", b"all three", ENC).await.unwrap();
    nodes.pop().unwrap().halt().await;
    let refused = nodes[0].store("k2", b"two of three", ENC).await;
    assert!(
        matches!(&refused, Err(Error::Unavailable(m)) if m.contains("2 of the 3")),
        "{refused:?}"
    );
    assert_eq!(nodes[1].get("k").await.unwrap(), b"all three");
    close_all(nodes).await;
}

/// An owner that missed a write is brought up to date by the next read that sees it stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repairs_a_stale_owner() {
    let dir = tempfile::tempdir().unwrap();
    // No repair passes: only the read may fix the stale copy.
    let slow_repair = |c: &mut Config| c.maintenance.repair_interval = Duration::ZERO;
    let mut nodes = start(dir.path(), 3, slow_repair).await;
    nodes[0].store("k", b"old", ENC).await.unwrap();
    nodes.pop().unwrap().halt().await;
    nodes[0].store("k", b"new", ENC).await.unwrap();
    let back = reopen(dir.path(), 2, &nodes[0], slow_repair).await;
    eventually("the member is back", || back.peers().len() == 2).await;
    // `back` asks itself first (old) and one other owner (new): the newest wins, and `back`
    // is sent it.
    assert_eq!(back.get("k").await.unwrap(), b"new");
    eventually("read repair", || {
        back.stats().unwrap().repair.read_repairs >= 1
    })
    .await;
    close_all(nodes).await;
    eventually("the others are seen dead", || back.peers().is_empty()).await;
    // Alone, `back` owns everything and reads only itself: it holds the new version.
    assert_eq!(back.get("k").await.unwrap(), b"new");
    let _ = back.close().await;
}

/// The owners of `key` among `nodes`, by the placement every node computes.
fn owners_of(key: &str, nodes: &[&Node], replicas: usize) -> Vec<dstore_core::NodeId> {
    let candidates: Vec<Candidate> = nodes
        .iter()
        .map(|n| Candidate {
            id: n.id(),
            zone: None,
        })
        .collect();
    placement::owners(&KeyId::of(key).0, &candidates, replicas)
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// While a member is down its share goes to the next members in rendezvous order; when it
/// returns, repair gives it back what it owns and the stand-ins drop their copies, so every
/// key ends up on exactly its owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_member_gets_back_what_it_missed_and_stand_ins_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path(), 4, |c| c.replicas = 2).await;
    let away = nodes.pop().unwrap();
    away.halt().await;
    eventually("the member is seen dead", || {
        nodes.iter().all(|n| n.peers().len() == 2)
    })
    .await;
    let keys: Vec<String> = (0..24).map(|i| format!("key-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        nodes[i % 3]
            .store(k, &pattern(i as u64, CHUNK + i), ENC)
            .await
            .unwrap();
    }
    let back = reopen(dir.path(), 3, &nodes[0], |c| c.replicas = 2).await;
    nodes.push(back);
    eventually("membership converges", || {
        nodes.iter().all(|n| n.peers().len() == 3)
    })
    .await;
    let all: Vec<&Node> = nodes.iter().collect();
    let owned_by_back = keys
        .iter()
        .filter(|k| owners_of(k, &all, 2).contains(&nodes[3].id()))
        .count();
    assert!(
        owned_by_back > 0,
        "placement gives the returning member a share"
    );
    eventually("every key sits on exactly its two owners", || {
        let held: u64 = nodes.iter().map(|n| n.stats().unwrap().keys).sum();
        nodes[3].stats().unwrap().keys == owned_by_back as u64 && held == 2 * keys.len() as u64
    })
    .await;
    let handed_off: u64 = nodes
        .iter()
        .map(|n| n.stats().unwrap().repair.handed_off)
        .sum();
    assert!(handed_off > 0, "stand-ins dropped what they held for it");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(nodes[3].get(k).await.unwrap(), pattern(i as u64, CHUNK + i));
    }
    close_all(nodes).await;
}

/// Replicas 2: lose a member for good, let repair run, lose another: every value survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_restores_the_replica_count_after_a_permanent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path(), 4, |c| c.replicas = 2).await;
    for i in 0..16u64 {
        nodes[0]
            .store(&format!("v{i}"), &pattern(i, 3 * CHUNK), ENC)
            .await
            .unwrap();
    }
    let lost = nodes.remove(1);
    lost.halt().await;
    std::fs::remove_dir_all(dir.path().join("n1")).unwrap();
    eventually("the loss is seen", || {
        nodes.iter().all(|n| n.peers().len() == 2)
    })
    .await;
    eventually("two copies of every key again", || {
        nodes.iter().map(|n| n.stats().unwrap().keys).sum::<u64>() == 32
    })
    .await;
    // Chunks: 16 values of 3 chunks each, 2 copies.
    eventually("two copies of every chunk again", || {
        nodes.iter().map(|n| n.stats().unwrap().chunks).sum::<u64>() == 96
    })
    .await;
    nodes.remove(0).halt().await;
    for i in 0..16u64 {
        assert_eq!(
            nodes[0].get(&format!("v{i}")).await.unwrap(),
            pattern(i, 3 * CHUNK)
        );
    }
    close_all(nodes).await;
}

/// Bytes flipped in a chunk and a manifest on one node: reads still give the right bytes,
/// and the scrubber sets the bad copies aside and brings back good ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrubber_replaces_rotten_copies() {
    let dir = tempfile::tempdir().unwrap();
    // Repair off: a peer's repair question would find the rotten chunk too (a chunk file is
    // hashed before it counts as held), and restore it before the scrubber could.
    let scrub = |c: &mut Config| {
        c.maintenance.scrub_rate = 1 << 30;
        c.maintenance.scrub_interval = Duration::from_millis(200);
        c.maintenance.repair_interval = Duration::ZERO;
    };
    let mut nodes = start(dir.path(), 3, scrub).await;
    let data = pattern(9, 3 * CHUNK);
    let key = "scrubbed/value";
    nodes[0].store(key, &data, ENC).await.unwrap();
    // The store returned once 2 of the 3 copies were down; the third lands in the background.
    eventually("every node holds every copy", || {
        nodes.iter().all(|n| {
            let s = n.stats().unwrap();
            s.keys == 1 && s.chunks == 3
        })
    })
    .await;
    // Rot while node 1 is down (an open catalog serves its pages from its cache).
    nodes.remove(1).close().await.unwrap();
    let root = dir.path().join("n1");
    // The three chunks are records of one segment; rot hits one of them.
    let copies = chunk_copies(&root);
    assert_eq!(copies.len(), 3);
    let good_chunk = copies[0].bytes();
    let neighbours: Vec<Vec<u8>> = copies[1..].iter().map(|c| c.bytes()).collect();
    copies[0].flip(100);
    assert!(flip_in_catalog(&root, key, 60) >= 1);
    nodes.insert(1, reopen(dir.path(), 1, &nodes[0], scrub).await);
    eventually("the scrubber restores both copies", || {
        let s = nodes[1].stats().unwrap();
        s.scrub.bad >= 2 && s.scrub.restored >= 2 && s.keys == 1 && s.chunks == 3
    })
    .await;
    assert!(files_under(&root.join("quarantine")).len() >= 2);
    // Only the damaged record was set aside: its neighbours in the segment are as they
    // were, and the good copy from another owner was appended.
    let after = chunk_copies(&root);
    assert_eq!(after.len(), 4);
    for (c, bytes) in after[1..3].iter().zip(&neighbours) {
        assert_eq!(&c.bytes(), bytes);
    }
    assert_eq!(after[3].bytes(), good_chunk);
    assert_eq!(nodes[1].get(key).await.unwrap(), data);
    // A read that meets rot before the scrubber does uses another copy.
    nodes.remove(2).close().await.unwrap();
    let root2 = dir.path().join("n2");
    for c in chunk_copies(&root2) {
        c.flip(7);
    }
    assert!(flip_in_catalog(&root2, key, 60) >= 1);
    let no_scrub = |c: &mut Config| {
        scrub(c);
        c.maintenance.scrub_rate = 0;
    };
    nodes.push(reopen(dir.path(), 2, &nodes[0], no_scrub).await);
    eventually("node 2 is back", || nodes[2].peers().len() == 2).await;
    assert_eq!(nodes[2].get(key).await.unwrap(), data);
    close_all(nodes).await;
}

/// Deleted values' chunks go after the grace period, on every node; chunks still named stay,
/// including ones a new write names again after they were condemned; tombstones go after
/// theirs, and the value does not come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_removes_only_what_nothing_names() {
    let dir = tempfile::tempdir().unwrap();
    let gc = |c: &mut Config| {
        c.maintenance.gc_grace = Duration::from_millis(800);
        c.maintenance.tombstone_grace = Duration::from_millis(1500);
    };
    let nodes = start(dir.path(), 3, gc).await;
    let (doomed, kept, again) = (
        pattern(1, 4 * CHUNK),
        pattern(2, 2 * CHUNK),
        pattern(3, 2 * CHUNK),
    );
    nodes[0].store("doomed", &doomed, ENC).await.unwrap();
    nodes[0].store("kept", &kept, ENC).await.unwrap();
    nodes[0].store("again", &again, ENC).await.unwrap();
    nodes[1].delete("doomed").await.unwrap();
    nodes[1].delete("again").await.unwrap();
    // Written again at once: the same chunks are named anew and must survive.
    nodes[2].store("again", &again, ENC).await.unwrap();
    eventually(
        "the deleted value's chunks are collected everywhere",
        || nodes.iter().all(|n| n.stats().unwrap().chunks == 4),
    )
    .await;
    eventually("tombstones collected", || {
        nodes
            .iter()
            .all(|n| n.stats().unwrap().gc.tombstones_collected >= 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // a few more passes
    for n in &nodes {
        assert_eq!(n.get("kept").await.unwrap(), kept);
        assert_eq!(n.get("again").await.unwrap(), again);
        assert!(matches!(n.get("doomed").await, Err(Error::NotFound(_))));
        assert_eq!(n.keys("").await.unwrap(), ["again", "kept"]);
        assert_eq!(n.stats().unwrap().chunks, 4);
    }
    let collected: u64 = nodes
        .iter()
        .map(|n| n.stats().unwrap().gc.chunks_collected)
        .sum();
    assert_eq!(collected, 3 * 4, "4 chunks on each of 3 nodes");
    close_all(nodes).await;
}
