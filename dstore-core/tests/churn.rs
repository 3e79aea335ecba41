//! Members that come and go: embedded members that write and close, members that join while
//! values are written, a member that leaves for good, and a close whose hand-off cannot
//! finish. In every case each acknowledged write must read back, right, through the nodes
//! that stay, at once (not after repair). The same against `dstore node` processes and
//! Python embedders is in tests/test_churn.py.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, pattern};
use dstore_core::{Config, Error, Node, Redundancy, StoreOptions};

const CHUNK: usize = 16 << 10;
const SECRET: &[u8] = b"churn test secret";
const KEY: [u8; 32] = [9; 32];
const ENC: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Default,
};
/// Sizes that cover a tiny value, one small chunk, several chunks and a partial last chunk.
const SIZES: [usize; 4] = [100, 4096, 70_000, 110_000];

fn config(root: &Path, peers: &[String]) -> Config {
    let mut c = common::fast_member(root, peers, SECRET, KEY, CHUNK);
    c.drain_timeout = Duration::from_secs(20);
    c
}

async fn member(dir: &Path, name: &str, seed: &[String]) -> Node {
    Node::open(config(&dir.join(name), seed)).await.unwrap()
}

async fn converged(nodes: &[&Node]) {
    let n = nodes.len();
    eventually("membership converges", || {
        nodes.iter().all(|x| x.peers().len() == n - 1)
    })
    .await;
}

fn value(writer: usize, i: usize) -> (String, Vec<u8>) {
    let size = SIZES[i % SIZES.len()];
    (
        format!("w{writer}/v{i}"),
        pattern((writer * 100_000 + i) as u64, size),
    )
}

/// Reads every value through `via`; returns (lost, wrong).
async fn check(via: &Node, values: &[(String, Vec<u8>)]) -> (usize, usize) {
    let (mut lost, mut wrong) = (0, 0);
    for (key, want) in values {
        match via.get(key).await {
            Ok(got) if &got == want => {}
            Ok(_) => wrong += 1,
            Err(Error::NotFound(_)) => lost += 1,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }
    (lost, wrong)
}

/// The defect of issue 8: three embedded members write in parallel and close; every value
/// they acknowledged reads back through each node that stays, at once. Before the fix the
/// copies beyond the write quorum were dropped by `close`, and a writer counted its own copy,
/// so values whose other owners also closed were on no member that stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_members_that_close_strand_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let first = member(dir.path(), "s0", &[]).await;
    let seed = vec![first.addr().unwrap()];
    let mut stay = vec![first];
    for i in 1..3 {
        stay.push(member(dir.path(), &format!("s{i}"), &seed).await);
    }
    let mut writers = Vec::new();
    for i in 0..3 {
        writers.push(member(dir.path(), &format!("w{i}"), &seed).await);
    }
    let all: Vec<&Node> = stay.iter().chain(&writers).collect();
    converged(&all).await;

    const PER_WRITER: usize = 60;
    let mut tasks = Vec::new();
    for (w, node) in writers.iter().enumerate() {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PER_WRITER {
                let (key, data) = value(w, i);
                node.store(&key, &data, ENC).await.unwrap();
                acked.push((key, data));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // All three close at once, as an application's processes would at exit.
    let closes: Vec<_> = writers
        .iter()
        .map(|w| {
            let w = w.clone();
            tokio::spawn(async move { w.close().await })
        })
        .collect();
    for c in closes {
        c.await
            .unwrap()
            .expect("each drain completes while three members stay");
    }
    for (i, via) in stay.iter().enumerate() {
        let (lost, wrong) = check(via, &acked).await;
        println!(
            "through stayer {i}: {} values, lost {lost}, wrong {wrong}",
            acked.len()
        );
        assert_eq!((lost, wrong), (0, 0));
    }
    for n in stay {
        let _ = n.close().await;
    }
}

/// Members join while a writer stores values; each value reads back through the newest
/// member immediately after it was acknowledged, although the writer may have placed it
/// on owners the newest member does not count among the owners any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_reads_back_through_a_member_that_just_joined() {
    let dir = tempfile::tempdir().unwrap();
    let first = member(dir.path(), "m0", &[]).await;
    let seed = vec![first.addr().unwrap()];
    let mut members = vec![first];
    members.push(member(dir.path(), "m1", &seed).await);
    members.push(member(dir.path(), "m2", &seed).await);
    converged(&members.iter().collect::<Vec<_>>()).await;
    let mut c = config(&dir.path().join("writer"), &seed);
    c.listen = None;
    c.client = true;
    let writer = Node::open(c).await.unwrap();
    writer.settle(Duration::from_secs(5)).await.unwrap();

    let (mut checked, mut lost, mut wrong) = (0, 0, 0);
    for round in 0..4 {
        let newest = member(dir.path(), &format!("m{}", members.len()), &seed).await;
        for i in 0..25 {
            let (key, data) = value(round, i);
            writer.store(&key, &data, ENC).await.unwrap();
            match newest.get(&key).await {
                Ok(got) if got == data => {}
                Ok(_) => wrong += 1,
                Err(Error::NotFound(why)) => {
                    println!("{key} not found through the newest member: {why}");
                    lost += 1
                }
                Err(e) => panic!("reading {key} through the newest member: {e}"),
            }
            checked += 1;
        }
        members.push(newest);
    }
    println!("{checked} values read through the newest member: lost {lost}, wrong {wrong}");
    assert_eq!((lost, wrong), (0, 0));
    let _ = writer.close().await;
    for n in members {
        let _ = n.close().await;
    }
}

/// One of five members leaves for good; its root is deleted and another member is lost with
/// its disk: every value reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_left_can_be_deleted_and_another_lost() {
    let dir = tempfile::tempdir().unwrap();
    let first = member(dir.path(), "m0", &[]).await;
    let seed = vec![first.addr().unwrap()];
    let mut members = vec![first];
    for i in 1..5 {
        members.push(member(dir.path(), &format!("m{i}"), &seed).await);
    }
    converged(&members.iter().collect::<Vec<_>>()).await;
    let mut values = Vec::new();
    for i in 0..80 {
        let (key, data) = value(i % 5, i);
        members[i % 5].store(&key, &data, ENC).await.unwrap();
        values.push((key, data));
    }
    let leaving = members.remove(2);
    assert!(
        leaving.stats().unwrap().chunks > 0,
        "it holds data to hand off"
    );
    leaving.leave().await.expect("the member leaves");
    assert!(matches!(leaving.get("w0/v0").await, Err(Error::Closed)));
    std::fs::remove_dir_all(dir.path().join("m2")).unwrap();
    // The others stop counting it at once: no member waits `dead_after` for it.
    for m in &members {
        assert_eq!(
            m.peers().len(),
            3,
            "the member that left is not a peer any more"
        );
    }
    // Lose another member, as a crash would (nothing handed off), and its disk.
    let lost = members.remove(0);
    lost.halt().await;
    std::fs::remove_dir_all(dir.path().join("m0")).unwrap();
    for (i, via) in members.iter().enumerate() {
        let (lost, wrong) = check(via, &values).await;
        println!(
            "through member {i}: {} values, lost {lost}, wrong {wrong}",
            values.len()
        );
        assert_eq!((lost, wrong), (0, 0));
    }
    for n in members {
        let _ = n.close().await;
    }
}

/// A member whose other owners have all failed cannot hand off: its close says so, and
/// closes all the same; nothing it acknowledged is lost once they return. When they all
/// closed cleanly instead, the whole cluster is stopping: that close succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_finish_is_reported_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = member(dir.path(), "a", &[]).await;
    let seed = vec![a.addr().unwrap()];
    let b = member(dir.path(), "b", &seed).await;
    let w = member(dir.path(), "w", &seed).await;
    converged(&[&a, &b, &w]).await;
    let mut values = Vec::new();
    for i in 0..20 {
        let (key, data) = value(0, i);
        w.store(&key, &data, ENC).await.unwrap();
        values.push((key, data));
    }
    // They fail (a clean close would be a planned stop of the whole cluster, which keeps
    // what it holds in the roots and is not a failed hand-off).
    a.halt().await;
    b.halt().await;
    let drained = w.close().await;
    println!("close with every other owner stopped: {drained:?}");
    assert!(
        matches!(&drained, Err(Error::Unavailable(m)) if m.contains("hand-off did not finish")),
        "{drained:?}"
    );
    assert!(matches!(w.get("w0/v0").await, Err(Error::Closed)));
    // They come back, without the writer: every value is there.
    let a = member(dir.path(), "a", &[]).await;
    let b = member(dir.path(), "b", &[a.addr().unwrap()]).await;
    converged(&[&a, &b]).await;
    let (lost, wrong) = check(&b, &values).await;
    println!("after the others returned: lost {lost}, wrong {wrong}");
    assert_eq!((lost, wrong), (0, 0));
    // A planned stop of the whole cluster: the last member keeps what it holds.
    a.close().await.unwrap();
    b.close()
        .await
        .expect("every other member departed: nothing to hand off to");
}

/// A member that closed comes back as a new incarnation: its peers count it as an owner
/// again, and it serves what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_closed_is_an_owner_again_when_it_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let a = member(dir.path(), "a", &[]).await;
    let seed = vec![a.addr().unwrap()];
    let b = member(dir.path(), "b", &seed).await;
    let c = member(dir.path(), "c", &seed).await;
    converged(&[&a, &b, &c]).await;
    c.store("k", b"v", ENC).await.unwrap();
    c.close().await.unwrap();
    // Departed at once: no wait for `dead_after`.
    assert_eq!(a.peers().len(), 1);
    assert_eq!(b.peers().len(), 1);
    let c = member(dir.path(), "c", &seed).await;
    converged(&[&a, &b, &c]).await;
    assert_eq!(a.get("k").await.unwrap(), b"v");
    assert_eq!(c.get("k").await.unwrap(), b"v");
    let all = Arc::new([a, b, c]);
    for n in all.iter() {
        let _ = n.close().await;
    }
}
