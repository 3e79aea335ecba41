//! Erasure coding in a cluster of in-process members on 127.0.0.1 (embedded, as an
//! application runs one) and a client: what is kept on disk, reads with members lost, repair
//! that rebuilds exactly the lost shards, policies mixed and changed, garbage collection of
//! shards, and the scrubber rebuilding a rotten shard. The same against `dstore node`
//! processes, with stalled holders, is in tests/test_erasure.py.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{chunk_copies, eventually, pattern};
use dstore_core::{Config, Erasure, Node, Redundancy, StoreOptions};

const CHUNK: usize = 64 << 10;
const SECRET: &[u8] = b"erasure test secret";
const KEY: [u8; 32] = [5; 32];
const FOUR_TWO: Erasure = Erasure { data: 4, parity: 2 };
const EC: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Erasure(FOUR_TWO),
};
const REPLICAS: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Replicas,
};

/// A member that keeps values 4+2 by default, with background work sped up for tests.
fn config(root: &Path, peers: &[String]) -> Config {
    let mut c = common::fast_member(root, peers, SECRET, KEY, CHUNK);
    c.erasure = Some(FOUR_TWO);
    c
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

/// A client (no copy of its own) through `seed`, keeping values 4+2 by default.
async fn client(dir: &Path, seed: &Node) -> Node {
    let mut c = config(&dir.join("client"), &[seed.addr().unwrap()]);
    c.listen = None;
    c.client = true;
    let node = Node::open(c).await.unwrap();
    node.settle(Duration::from_secs(5)).await.unwrap();
    node
}

/// Objects (chunks and shards) held across `nodes`.
fn held(nodes: &[Node]) -> u64 {
    nodes.iter().map(|n| n.stats().unwrap().chunks).sum()
}

async fn close_all(nodes: impl IntoIterator<Item = Node>) {
    for n in nodes {
        let _ = n.close().await;
    }
}

/// 8 members, 4+2. Values written by an embedded member and by a client take about 1.5
/// times their size on disk, one shard per holder; with 2 members killed and their roots
/// deleted every value reads back; repair rebuilds exactly the lost shards on the members
/// now ranked for them; then with 2 more killed every value still reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_plus_two_survives_two_lost_members_twice_with_repair_between() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start(dir.path(), 8, |_| {}).await;
    let client = client(dir.path(), &nodes[0]).await;
    let size = 3 * CHUNK + 1000;
    let values: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("ec/{i}"), pattern(i, size)))
        .collect();
    for (i, (key, value)) in values.iter().enumerate() {
        let writer = if i % 2 == 0 { &nodes[0] } else { &client };
        writer.store(key, value, EC).await.unwrap();
    }
    let shards = (values.len() * 4 * 6) as u64;
    eventually("every shard is on its holder", || held(&nodes) == shards).await;
    let on_disk: usize = (0..8)
        .flat_map(|i| chunk_copies(&dir.path().join(format!("n{i}"))))
        .map(|c| c.len)
        .sum();
    let stored = (values.len() * size) as f64;
    let ratio = on_disk as f64 / stored;
    assert!(
        (1.45..1.65).contains(&ratio),
        "{on_disk} bytes on disk for {stored}: {ratio:.3}x"
    );

    let check = |readers: Vec<Node>| {
        let values = values.clone();
        async move {
            for r in readers {
                for (key, value) in &values {
                    assert_eq!(&r.get(key).await.unwrap(), value, "{key}");
                }
            }
        }
    };
    for lost in [7, 6] {
        nodes.remove(lost).halt().await;
        std::fs::remove_dir_all(dir.path().join(format!("n{lost}"))).unwrap();
    }
    eventually("the lost members are dead to the others", || {
        nodes.iter().all(|n| n.peers().len() == 5)
    })
    .await;
    check(vec![nodes[0].clone(), client.clone(), nodes[3].clone()]).await;
    eventually("repair rebuilds the lost shards", || held(&nodes) == shards).await;
    let rebuilt: u64 = nodes
        .iter()
        .map(|n| n.stats().unwrap().repair.shards_rebuilt)
        .sum();
    // Each lost member held one shard of about 3/4 of the chunks (6 of 8 places).
    assert!((8..=48).contains(&rebuilt), "{rebuilt} shards rebuilt");

    for lost in [5, 4] {
        nodes.remove(lost).halt().await;
        std::fs::remove_dir_all(dir.path().join(format!("n{lost}"))).unwrap();
    }
    eventually(
        "the lost members are dead to the others and the client",
        || nodes.iter().all(|n| n.peers().len() == 3) && client.peers().len() == 4,
    )
    .await;
    check(vec![nodes[0].clone(), client.clone()]).await;
    // Fewer live members than shards: a write says so.
    let refused = client.store("late", &pattern(9, size), EC).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("4 are live")),
        "{refused:?}"
    );
    client.close().await.unwrap();
    close_all(nodes).await;
}

/// Replicated and erasure-coded values side by side; a value rewritten from replicas to
/// erasure coding and back reads right each time (a range across two chunks too), and what the old version kept is collected;
/// a value too small for worthwhile shards is replicated; deleting the last value lets every
/// shard go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_policies_rewrites_and_collection_of_shards() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start(dir.path(), 6, |c| {
        c.maintenance.gc_grace = Duration::from_millis(800);
        c.maintenance.tombstone_grace = Duration::from_millis(1500);
    })
    .await;
    let client = client(dir.path(), &nodes[0]).await;
    let three = 3 * CHUNK;
    // 3 chunks kept 3 times, then 3 chunks of 6 shards, then 3 chunks again.
    let steps: [(StoreOptions, u64); 3] = [(REPLICAS, 9), (EC, 18), (REPLICAS, 9)];
    for (round, (opts, objects)) in steps.into_iter().enumerate() {
        let value = pattern(round as u64, three);
        let writer = if round % 2 == 0 { &nodes[1] } else { &client };
        writer.store("flip", &value, opts).await.unwrap();
        assert_eq!(nodes[4].get("flip").await.unwrap(), value);
        assert_eq!(client.get("flip").await.unwrap(), value);
        let range = client
            .get_range("flip", CHUNK as u64 + 5, CHUNK as u64)
            .await;
        assert_eq!(range.unwrap(), value[CHUNK + 5..2 * CHUNK + 5]);
        eventually("only the current version's objects are kept", || {
            held(&nodes) == objects
        })
        .await;
    }
    // 5+1 makes shards of at least 4 KiB only for values of 20 KiB or more: one of 18 KiB
    // (larger than an inline value) is replicated, 3 copies.
    let small = pattern(7, 18 << 10);
    let five_one = StoreOptions {
        encrypt: true,
        redundancy: Redundancy::Erasure(Erasure::new(5, 1).unwrap()),
    };
    nodes[2].store("small", &small, five_one).await.unwrap();
    eventually("the small value is replicated", || held(&nodes) == 9 + 3).await;
    assert_eq!(client.get("small").await.unwrap(), small);
    // The node's default (4+2) for a store without a policy of its own.
    let default = pattern(8, CHUNK);
    client
        .store("default", &default, StoreOptions::default())
        .await
        .unwrap();
    eventually("the default is erasure coding", || {
        held(&nodes) == 9 + 3 + 6
    })
    .await;
    for key in ["flip", "small", "default"] {
        nodes[0].delete(key).await.unwrap();
    }
    eventually("every shard and chunk is collected", || held(&nodes) == 0).await;
    client.close().await.unwrap();
    close_all(nodes).await;
}

/// A shard that rots on disk: the scrubber sets it aside and makes it again from its
/// siblings; and a read that meets rot before the scrubber does still gives the value
/// (another shard stands in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrubber_rebuilds_a_rotten_shard() {
    let dir = tempfile::tempdir().unwrap();
    // Repair off: its questions would find the rotten shard too, and have it rebuilt first.
    let quiet = |c: &mut Config| c.maintenance.repair_interval = Duration::ZERO;
    let mut nodes = start(dir.path(), 6, quiet).await;
    let value = pattern(3, 2 * CHUNK);
    nodes[0].store("rot", &value, EC).await.unwrap();
    eventually("every shard is on its holder", || held(&nodes) == 12).await;
    let seed = [nodes[0].addr().unwrap()];
    let reopen = |i: usize, scrub: bool| {
        let mut c = config(&dir.path().join(format!("n{i}")), &seed);
        quiet(&mut c);
        if scrub {
            c.maintenance.scrub_rate = 1 << 30;
            c.maintenance.scrub_interval = Duration::from_millis(200);
        }
        Node::open(c)
    };
    nodes.remove(3).close().await.unwrap();
    let copies = chunk_copies(&dir.path().join("n3"));
    assert_eq!(copies.len(), 2, "one shard of each chunk");
    let good = copies[0].bytes();
    copies[0].flip(1234);
    let back = reopen(3, true).await.unwrap();
    eventually("the scrubber rebuilds the shard", || {
        let s = back.stats().unwrap();
        s.scrub.bad >= 1 && s.scrub.restored >= 1 && s.repair.shards_rebuilt >= 1
    })
    .await;
    assert_eq!(back.get("rot").await.unwrap(), value);
    back.close().await.unwrap();
    let after = chunk_copies(&dir.path().join("n3"));
    assert!(
        after.iter().any(|c| c.bytes() == good),
        "the rebuilt shard is the one lost"
    );

    // Both of node 4's shards rot, and it reads before any scrub.
    nodes.remove(3).close().await.unwrap();
    for c in chunk_copies(&dir.path().join("n4")) {
        c.flip(77);
    }
    let back = reopen(4, false).await.unwrap();
    eventually("node 4 is back", || back.peers().len() >= 4).await;
    assert_eq!(back.get("rot").await.unwrap(), value);
    back.close().await.unwrap();
    close_all(nodes).await;
}
