//! The cluster part of `dstore bench`: three `dstore node` processes on 127.0.0.1 and, in
//! this process, a client (never an owner, so every read is through a non-owner) that
//! stores and reads with 1, 2 and 3 replicas.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dstore_core::{Config, Node, Redundancy, StoreOptions};

use super::{large, median, row, small, Args, Limits, Memory, Source, MIB};
use crate::procs::{fast, spawn_node, Processes, FAST};
use crate::AnyResult;

pub(crate) async fn run(args: &Args, reps: usize, limits: &Limits, dir: &Path) -> AnyResult {
    let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
    let key = dstore_core::crypto::random_bytes::<32>();
    let key_hex = hex::encode(key);
    let mut procs = Processes(Vec::new());
    let first = spawn_node(&dir.join("node-1"), None, &secret, &key_hex, &[])?;
    let seed = first.1.clone();
    procs.0.push(first);
    for i in 2..=3 {
        procs.0.push(spawn_node(
            &dir.join(format!("node-{i}")),
            Some(&seed),
            &secret,
            &key_hex,
            &[],
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
        small(&client, args, reps, limits).await?;
        let _ = client.close().await;
    }
    drop(procs);
    Ok(())
}

/// Repair after the permanent loss of a node: four node processes keeping 2 copies, a
/// client stores `large_mib` MiB in 64 MiB values, one node is killed with SIGKILL and its
/// root deleted, and the survivors are watched (through `stats`, as `dstore status` does)
/// until every chunk and manifest has two copies again.
pub(crate) async fn repair(args: &Args, dir: &Path) -> AnyResult {
    let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
    let key = dstore_core::crypto::random_bytes::<32>();
    let key_hex = hex::encode(key);
    // Failure detection and the repair period shortened, so the figure is repair itself;
    // the repair rate is the default cap.
    let flags: Vec<&str> = ["--replicas", "2"].into_iter().chain(FAST).collect();
    let mut procs = Processes(Vec::new());
    let first = spawn_node(&dir.join("node-1"), None, &secret, &key_hex, &flags)?;
    let seed = first.1.clone();
    procs.0.push(first);
    for i in 2..=4 {
        let root = dir.join(format!("node-{i}"));
        procs
            .0
            .push(spawn_node(&root, Some(&seed), &secret, &key_hex, &flags)?);
    }
    let mut c = Config::new(dir.join("client"));
    c.client = true;
    c.peers = vec![seed.clone()];
    c.secret = Some(secret.clone().into_bytes());
    c.data_key = Some(key);
    c.replicas = 2;
    fast(&mut c);
    let client = Node::open(c).await?;
    client.settle(Duration::from_secs(15)).await?;
    println!(
        "
== Repair: 4 node processes, replicas 2, one lost for good =="
    );
    let values = args.large_mib.div_ceil(64).max(1);
    for v in 0..values {
        client
            .store_reader(
                &format!("repair/{v}"),
                Source::numbered_from(64 << 20, v << 32),
                StoreOptions::default(),
            )
            .await?;
    }
    let copies = |stats: &[(dstore_core::Peer, Option<dstore_core::Stats>)]| {
        stats.iter().fold((0, 0, 0), |(c, k, b), (_, s)| match s {
            Some(s) => (c + s.chunks, k + s.keys, b + s.repair.bytes_pushed),
            None => (c, k, b),
        })
    };
    let (chunks, keys, _) = copies(&client.member_stats().await);
    let (mut lost, lost_addr) = procs.0.pop().expect("four nodes");
    let _ = lost.kill();
    let _ = lost.wait();
    std::fs::remove_dir_all(dir.join("node-4"))?;
    let killed = Instant::now();
    let mut detected = None;
    let before = copies(&client.member_stats().await).2;
    let repaired = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if detected.is_none() && client.peers().iter().all(|p| p.addr != lost_addr) {
            detected = Some(killed.elapsed());
        }
        let stats = client.member_stats().await;
        let (c, k, _) = copies(&stats);
        if detected.is_some() && stats.len() == 3 && c == chunks && k == keys {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(600) {
            return Err("repair did not finish within 10 minutes".into());
        }
    };
    let moved = copies(&client.member_stats().await).2 - before;
    let detected = detected.unwrap_or_default();
    row(
        "dead node detected (by the client)",
        format!("{:.1} s", detected.as_secs_f64()),
        "dead after 3 s of silence".into(),
    );
    row(
        &format!("{} MiB back to 2 copies", values * 64),
        format!("{:.1} s after the kill", repaired.as_secs_f64()),
        format!(
            "{:.1} s of repair, {:.0} MiB moved, {:.0} MB/s",
            (repaired - detected).as_secs_f64(),
            moved as f64 / (1 << 20) as f64,
            moved as f64 / (1 << 20) as f64 / (repaired - detected).as_secs_f64()
        ),
    );
    let _ = client.close().await;
    drop(procs);
    Ok(())
}

/// Members that come and go: three node processes and a member in this process (replicas 3),
/// which stores `large_mib` MiB, closes (handing off what it acknowledged), opens again and
/// leaves for good (handing off everything it holds). Before that, from a client, the cost
/// of reading a key that does not exist against one that does (both read only the manifest:
/// `has`), in a settled cluster; and after, while the change is recent.
pub(crate) async fn churn(args: &Args, dir: &Path) -> AnyResult {
    let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
    let key = dstore_core::crypto::random_bytes::<32>();
    let key_hex = hex::encode(key);
    let mut procs = Processes(Vec::new());
    let first = spawn_node(&dir.join("node-1"), None, &secret, &key_hex, &FAST)?;
    let seed = first.1.clone();
    procs.0.push(first);
    for i in 2..=3 {
        let root = dir.join(format!("node-{i}"));
        procs
            .0
            .push(spawn_node(&root, Some(&seed), &secret, &key_hex, &FAST)?);
    }
    let config = |root: &str, client: bool| {
        let mut c = Config::new(dir.join(root));
        c.client = client;
        c.listen = (!client).then(|| "127.0.0.1:0".to_owned());
        c.peers = vec![seed.clone()];
        c.secret = Some(secret.clone().into_bytes());
        c.data_key = Some(key);
        fast(&mut c);
        c
    };
    println!("\n== Churn: 3 node processes and a member in this process, replicas 3 ==");
    let client = Node::open(config("client", true)).await?;
    client.settle(Duration::from_secs(15)).await?;
    client
        .store("present", b"here", StoreOptions::default())
        .await?;
    // Past the client's start: a settled cluster, no recent change in its view.
    tokio::time::sleep(Duration::from_secs(3)).await;
    missing_key_reads(&client, "settled").await?;

    // One member closes and another leaves, each after storing `large_mib` MiB of its own
    // (a member that closed and came back would have little left to hand off).
    for (name, leave) in [("closing", false), ("leaving", true)] {
        let member = Node::open(config(name, false)).await?;
        member.settle(Duration::from_secs(15)).await?;
        let values = args.large_mib.div_ceil(64).max(1);
        for v in 0..values {
            let source = Source::numbered_from(64 << 20, (v << 32) | (u64::from(leave) << 48));
            member
                .store_reader(&format!("{name}/{v}"), source, StoreOptions::default())
                .await?;
        }
        let held = member.stats()?.chunks;
        let (took, sent) = timed_hand_off(&member, leave).await?;
        let what = if leave { "leave()" } else { "close()" };
        row(
            &format!("{what} of a member holding {held} MiB"),
            format!("{:.2} s", took.as_secs_f64()),
            format!(
                "{:.0} MiB sent, {:.0} MB/s ({} MiB stored through it)",
                sent as f64 / (1 << 20) as f64,
                sent as f64 / (1 << 20) as f64 / took.as_secs_f64(),
                values * 64
            ),
        );
    }
    missing_key_reads(&client, "right after a change").await?;
    let _ = client.close().await;
    drop(procs);
    Ok(())
}

/// Closes (or leaves with) `node`, watching its hand-off counters as it goes: the time it
/// took and the bytes it sent.
async fn timed_hand_off(node: &Node, leave: bool) -> AnyResult<(Duration, u64)> {
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (node, done) = (node.clone(), done.clone());
        tokio::spawn(async move {
            // The last figures before the store closes are the hand-off's totals; `stats`
            // also fails for a moment while close waits for calls in flight.
            let mut sent = 0;
            while !done.load(Ordering::Acquire) {
                if let Ok(s) = node.stats() {
                    sent = s.drain.bytes;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        })
    };
    let result = if leave {
        node.leave().await
    } else {
        node.close().await
    };
    let took = started.elapsed();
    done.store(true, Ordering::Release);
    result?;
    Ok((took, watcher.await?))
}

/// Median latency of `has` on a key that exists and on one that does not, and requests.
async fn missing_key_reads(client: &Node, when: &str) -> AnyResult {
    let times = |present: bool| {
        let client = client.clone();
        async move {
            let mut v = Vec::new();
            for i in 0..200 {
                let key = if present {
                    "present".to_owned()
                } else {
                    format!("missing/{i}")
                };
                let t = Instant::now();
                let found = client.has(&key).await?;
                v.push(t.elapsed().as_secs_f64() * 1e6);
                assert_eq!(found, present);
            }
            AnyResult::Ok(super::median(v))
        }
    };
    let present = times(true).await?;
    let missing = times(false).await?;
    row(
        &format!("read of a missing key, {when}"),
        format!("{missing:.0} us"),
        format!(
            "{:.2}x a key that exists ({present:.0} us: R owners asked)",
            missing / present
        ),
    );
    Ok(())
}

/// Erasure coding against replicas, each in a cluster of its own: 7 node processes and a
/// client that keeps values as 3 replicas, then as 4+2 (both survive two lost members).
/// Per policy: store and get of `reps` values of up to 256 MiB, the bytes the roots grew by
/// per byte stored, gets with 2 of the 7 nodes stopped (SIGSTOP), and repair after one node
/// is lost for good (time, and bytes read and sent to restore it).
pub(crate) async fn erasure(args: &Args, reps: usize, dir: &Path) -> AnyResult {
    let len = args.large_mib.min(256) << 20;
    let policies = [
        ("replicas 3", Redundancy::Replicas),
        ("erasure 4+2", Redundancy::Erasure("4+2".parse()?)),
    ];
    for (p, (name, redundancy)) in policies.into_iter().enumerate() {
        let dir = dir.join(format!("policy-{p}"));
        let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
        let key = dstore_core::crypto::random_bytes::<32>();
        let key_hex = hex::encode(key);
        let mut procs = Processes(Vec::new());
        let first = spawn_node(&dir.join("node-1"), None, &secret, &key_hex, &FAST)?;
        let seed = first.1.clone();
        procs.0.push(first);
        for i in 2..=7 {
            let root = dir.join(format!("node-{i}"));
            procs
                .0
                .push(spawn_node(&root, Some(&seed), &secret, &key_hex, &FAST)?);
        }
        let mut c = Config::new(dir.join("client"));
        c.client = true;
        c.peers = vec![seed.clone()];
        c.secret = Some(secret.clone().into_bytes());
        c.data_key = Some(key);
        fast(&mut c);
        let client = Node::open(c).await?;
        live(&client, 7).await?;
        println!(
            "\n== 7 node processes, a client, {name}: {reps} values of {} MiB, encrypted ==",
            len >> 20
        );
        let roots: Vec<_> = (1..=7).map(|i| dir.join(format!("node-{i}"))).collect();
        let before = roots.iter().map(|r| dir_bytes(r)).sum::<u64>();
        let (mut puts, mut gets) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let key = format!("ec/{rep}");
            let source = Source::numbered_from(len, ((p as u64) << 48) | ((rep as u64) << 32));
            let opts = StoreOptions {
                encrypt: true,
                redundancy,
            };
            let t = Instant::now();
            client.store_reader(&key, source, opts).await?;
            puts.push(len as f64 / MIB / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let n = client.get_writer(&key, tokio::io::sink()).await?;
            gets.push(n as f64 / MIB / t.elapsed().as_secs_f64());
        }
        // The copies beyond the write quorum finish in the background.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let grown = roots.iter().map(|r| dir_bytes(r)).sum::<u64>() - before;
        row("store", format!("{:.0} MB/s", median(puts)), String::new());
        row("get", format!("{:.0} MB/s", median(gets)), String::new());
        row(
            "bytes on disk per byte stored",
            format!("{:.2}", grown as f64 / (reps as u64 * len) as f64),
            "all 7 roots, catalogs included".into(),
        );

        // Two nodes stopped: reads go to the others once the stopped ones are slow to answer.
        let stopped: Vec<u32> = procs.0[5..].iter().map(|(c, _)| c.id()).collect();
        signal(&stopped, "-STOP")?;
        let mut degraded = Vec::new();
        for rep in 0..reps {
            let t = Instant::now();
            let n = client
                .get_writer(&format!("ec/{rep}"), tokio::io::sink())
                .await;
            degraded.push((n, t.elapsed()));
        }
        signal(&stopped, "-CONT")?;
        let mut rates = Vec::new();
        for (n, took) in degraded {
            rates.push(n? as f64 / MIB / took.as_secs_f64());
        }
        row(
            "get, 2 of 7 nodes stopped",
            format!("{:.0} MB/s", median(rates)),
            "SIGSTOP: no answers, no closed connections".into(),
        );
        live(&client, 7).await?;

        // One node lost for good: back to what the cluster held, counted object by object.
        let totals = |stats: &[(dstore_core::Peer, Option<dstore_core::Stats>)]| {
            stats.iter().fold((0, 0, 0, 0, 0), |t, (_, s)| match s {
                Some(s) => (
                    t.0 + s.chunks,
                    t.1 + s.keys,
                    t.2 + s.repair.bytes_pushed,
                    t.3 + s.repair.rebuild_bytes_read,
                    t.4 + s.repair.shards_rebuilt,
                ),
                None => t,
            })
        };
        let held = totals(&client.member_stats().await);
        // Every chunk's copies (or shards) and every manifest's 3 copies. (What members hold
        // at the kill may include a copy more, on its way to its owner.)
        let per_chunk = if p == 0 { 3 } else { 6 };
        let whole = (reps as u64 * (len >> 20) * per_chunk, 3 * reps as u64);
        let (mut lost, _) = procs.0.remove(0);
        let _ = lost.kill();
        let _ = lost.wait();
        let lost_bytes = dir_bytes(&roots[0]);
        std::fs::remove_dir_all(&roots[0])?;
        let killed = Instant::now();
        let repaired = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let stats = client.member_stats().await;
            let now = totals(&stats);
            if stats.len() == 6 && now.0 >= whole.0 && now.1 >= whole.1 {
                break (killed.elapsed(), now);
            }
            if killed.elapsed() > Duration::from_secs(600) {
                return Err(format!(
                    "{name}: repair did not finish within 10 minutes: {} objects held of {}, \
                     {} manifests of {}, {} members",
                    now.0,
                    whole.0,
                    now.1,
                    whole.1,
                    stats.len()
                )
                .into());
            }
        };
        let (took, now) = repaired;
        let mib = |b: u64| b as f64 / MIB;
        row(
            "one node lost: back to full redundancy",
            format!("{:.1} s after the kill", took.as_secs_f64()),
            format!(
                "its root held {:.0} MiB; {:.0} MiB sent, {:.0} MiB read to rebuild {} shards",
                mib(lost_bytes),
                mib(now.2 - held.2),
                mib(now.3 - held.3),
                now.4 - held.4
            ),
        );
        let _ = client.close().await;
        drop(procs);
    }
    Ok(())
}

/// Waits (up to 30 s) until `client` sees `n` live members.
async fn live(client: &Node, n: usize) -> AnyResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.peers().len() != n {
        if Instant::now() > deadline {
            return Err(format!("{} of {n} members live after 30 s", client.peers().len()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Sends a signal (`-STOP`, `-CONT`) to processes.
fn signal(pids: &[u32], which: &str) -> AnyResult {
    let status = std::process::Command::new("kill")
        .arg(which)
        .args(pids.iter().map(|p| p.to_string()))
        .status()?;
    if !status.success() {
        return Err(format!("kill {which} failed").into());
    }
    Ok(())
}

/// Bytes of the files under `path`.
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
