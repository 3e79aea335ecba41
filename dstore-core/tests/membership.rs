//! Membership through real TCP on 127.0.0.1: peer exchange, refusal of a wrong secret, and
//! failure detection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dstore_core::cluster::membership::Timeouts;
use dstore_core::cluster::{Cluster, ClusterConfig};
use dstore_core::crypto::ClusterKey;
use dstore_core::net::conn::{BoxFuture, Handler};
use dstore_core::net::handshake::Hello;
use dstore_core::net::message::{FailureKind, Request, Response};

use common::eventually;

struct Nothing;
impl Handler for Nothing {
    fn handle(&self, _: &Hello, _: Request) -> BoxFuture<Response> {
        Box::pin(async {
            Response::Failed {
                kind: FailureKind::Refused,
                message: "test node".into(),
            }
        })
    }
}

const FAST: Timeouts = Timeouts {
    suspect_after: Duration::from_millis(1500),
    dead_after: Duration::from_millis(3000),
    call: Duration::from_secs(5),
};

async fn member(secret: &[u8], peers: Vec<String>) -> Arc<Cluster> {
    let config = ClusterConfig {
        listen: Some("127.0.0.1:0".into()),
        peers,
        timeouts: FAST,
        ..Default::default()
    };
    Cluster::start(
        Arc::new(dstore_core::crypto::Identity::generate()),
        ClusterKey::new(secret),
        config,
        Arc::new(Nothing),
        Arc::new(dstore_core::Clock::default()),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_one_peer_learns_them_all() {
    let a = member(b"s", vec![]).await;
    let b = member(b"s", vec![a.addr().unwrap().to_string()]).await;
    let c = member(b"s", vec![b.addr().unwrap().to_string()]).await;
    let d = member(b"s", vec![c.addr().unwrap().to_string()]).await;
    let all = [&a, &b, &c, &d];
    eventually("every node sees the 3 others", || {
        all.iter().all(|n| n.peers().len() == 3)
    })
    .await;
    // Addresses are advertised with the real port, not 0.
    for n in all {
        assert!(!n.addr().unwrap().ends_with(":0"));
        assert_eq!(n.candidates().len(), 4);
    }
    for n in all {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_joins_nothing_and_the_cluster_keeps_serving() {
    let a = member(b"right", vec![]).await;
    let b = member(b"right", vec![a.addr().unwrap().to_string()]).await;
    let intruder = member(
        b"wrong",
        vec![a.addr().unwrap().to_string(), b.addr().unwrap().to_string()],
    )
    .await;
    eventually("a and b see each other", || {
        a.peers().len() == 1 && b.peers().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // several heartbeats of trying
    assert!(intruder.peers().is_empty());
    assert_eq!(a.peers().len(), 1);
    assert_eq!(b.peers().len(), 1);
    for n in [a, b, intruder] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_found_dead_and_found_again_when_back() {
    let a = member(b"s", vec![]).await;
    let b = member(b"s", vec![a.addr().unwrap().to_string()]).await;
    eventually("joined", || a.peers().len() == 1).await;
    b.shutdown().await;
    drop(b);
    eventually("a finds b dead", || a.peers().is_empty()).await;
    let c = member(b"s", vec![a.addr().unwrap().to_string()]).await;
    eventually("a newcomer is alive", || {
        a.peers().len() == 1 && c.peers().len() == 1
    })
    .await;
    a.shutdown().await;
    c.shutdown().await;
}

/// After shutdown the listening port is free at once, and nothing dials or is adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_the_port_and_stays_down() {
    let a = member(b"s", vec![]).await;
    let b = member(b"s", vec![a.addr().unwrap().to_string()]).await;
    eventually("joined", || a.peers().len() == 1).await;
    let addr = a.addr().unwrap().to_string();
    a.shutdown().await;
    // The port can be bound again right away: the listener is gone.
    std::net::TcpListener::bind(&addr).expect("the port is free after shutdown");
    tokio::time::sleep(Duration::from_secs(1)).await; // b keeps trying to reach a
    assert!(a.peers().len() <= 1);
    b.shutdown().await;
}
