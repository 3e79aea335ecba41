//! The cluster part of `dstore bench`: three `dstore node` processes on 127.0.0.1 and, in
//! this process, a client (never an owner, so every read is through a non-owner) that
//! stores and reads with 1, 2 and 3 replicas.

use std::path::Path;
use std::time::Duration;

use dstore_core::{Config, Node};

use super::{large, small, Args, Limits, Memory};
use crate::procs::{spawn_node, Processes};
use crate::AnyResult;

pub(crate) async fn run(args: &Args, reps: usize, limits: &Limits, dir: &Path) -> AnyResult {
    let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
    let key = dstore_core::crypto::random_bytes::<32>();
    let key_hex = hex::encode(key);
    let mut procs = Processes(Vec::new());
    let first = spawn_node(&dir.join("node-1"), None, &secret, &key_hex)?;
    let seed = first.1.clone();
    procs.0.push(first);
    for i in 2..=3 {
        procs.0.push(spawn_node(
            &dir.join(format!("node-{i}")),
            Some(&seed),
            &secret,
            &key_hex,
        )?);
    }
    let memory = Memory::Processes(procs.0.iter().map(|(c, _)| c.id()).collect());
    for replicas in 1..=3 {
        let mut c = Config::new(dir.join(format!("client-{replicas}")));
        c.client = true;
        c.peers = vec![seed.clone()];
        c.secret = Some(secret.clone().into_bytes());
        c.data_key = Some(key);
        c.replicas = replicas;
        let client = Node::open(c).await?;
        let members = client.settle(Duration::from_secs(15)).await?;
        println!(
            "\n== 3 node processes, a client in this process, replicas {replicas} ({members} members) =="
        );
        large(&client, args, reps, limits, &memory, "each node").await?;
        small(&client, args, reps).await?;
        client.close().await;
    }
    drop(procs);
    Ok(())
}
