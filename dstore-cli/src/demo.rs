//! `dstore demo`: the seed project's demo, made honest. Three storage nodes run as separate
//! `dstore node` processes on 127.0.0.1 and this process joins them as a fourth node. It
//! stores files through its node, removes that node's local copies and reads them back over
//! the network, kills a node with SIGKILL and reads again. Every step checks what it claims;
//! every process it starts is stopped, whatever happens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dstore_core::{Config, Error, Node, Redundancy, StoreOptions};

use crate::procs::{fast, spawn_node, Processes, FAST};
use crate::AnyResult;

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn chunk_files(n: usize) -> String {
    format!("{n} chunk file{}", if n == 1 { "" } else { "s" })
}

fn check(ok: bool, what: &str) -> AnyResult {
    if ok {
        Ok(())
    } else {
        Err(format!("demo check failed: {what}").into())
    }
}

fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

pub async fn run() -> AnyResult {
    let dir = tempfile::tempdir()?;
    let secret = hex::encode(dstore_core::crypto::random_bytes::<32>());
    let key = dstore_core::crypto::random_bytes::<32>();
    let key_hex = hex::encode(key);
    println!(
        "dstore demo: a local cluster on 127.0.0.1, in {}\n",
        dir.path().display()
    );

    let mut procs = Processes(Vec::new());
    let first = spawn_node(&dir.path().join("node-1"), None, &secret, &key_hex, &FAST)?;
    let seed = first.1.clone();
    procs.0.push(first);
    for i in 2..=3 {
        procs.0.push(spawn_node(
            &dir.path().join(format!("node-{i}")),
            Some(&seed),
            &secret,
            &key_hex,
            &FAST,
        )?);
    }
    let mut config = Config::new(dir.path().join("node-here"));
    config.listen = Some("127.0.0.1:0".into());
    config.peers = vec![seed.clone()];
    config.secret = Some(secret.into_bytes());
    config.data_key = Some(key);
    config.replicas = 3;
    fast(&mut config);
    let node = Node::open(config).await?;
    let members = node.settle(Duration::from_secs(15)).await?;
    println!("1. Started 3 storage nodes as separate processes:");
    for (i, (child, addr)) in procs.0.iter().enumerate() {
        println!("     node-{} pid {} at {addr}", i + 1, child.id());
    }
    println!(
        "   and a 4th node in this process at {}. It found {members} peers from one address.",
        node.addr().unwrap_or_default()
    );
    check(members == 3, "4 members")?;

    let photo = noise(3 << 20, 0x9E37_79B9_7F4A_7C15);
    let notes = b"Buy milk. Call mom about the best picture.".to_vec();
    node.store(
        "photos/moms-best-picture.jpg",
        &photo,
        StoreOptions {
            encrypt: true,
            redundancy: Redundancy::Default,
        },
    )
    .await?;
    node.store(
        "notes/todo.txt",
        &notes,
        StoreOptions {
            encrypt: false,
            redundancy: Redundancy::Default,
        },
    )
    .await?;
    println!(
        "2. Stored photos/moms-best-picture.jpg (3 MiB, encrypted) and notes/todo.txt (plain)"
    );
    println!(
        "   through this node. Each chunk went to 3 of the 4 nodes, chosen by rendezvous hashing"
    );
    println!("   (the store returned once 2 of them had it on disk); the notes, being small, live");
    println!("   inside their manifest, with no chunk:");
    tokio::time::sleep(Duration::from_millis(500)).await; // let the third copies land
    for name in ["node-1", "node-2", "node-3", "node-here"] {
        let n = files_under(&dir.path().join(name).join("chunks")).len();
        println!("     {name:<10} holds {}", chunk_files(n));
    }

    let mine = files_under(&dir.path().join("node-here/chunks"));
    for f in &mine {
        std::fs::remove_file(f)?;
    }
    println!(
        "3. Deleted this node's local copies ({}).",
        chunk_files(mine.len())
    );
    let back = node.get("photos/moms-best-picture.jpg").await?;
    check(back == photo, "photo read back over the network")?;
    check(
        node.get("notes/todo.txt").await? == notes,
        "notes read back",
    )?;
    println!("   Read both back anyway, over the network from the other owners: identical.");

    let (mut victim, addr) = procs.0.remove(0);
    victim.kill()?;
    victim.wait()?;
    println!("4. Killed node-1 ({addr}) with SIGKILL.");
    let back = node.get("photos/moms-best-picture.jpg").await?;
    check(back == photo, "read after a node died")?;
    println!("   Read the photo again: identical, served by the owners still alive.");
    let keys = node.keys("").await?;
    println!("   The cluster lists: {}", keys.join(", "));
    check(keys.len() == 2, "two keys listed")?;

    // With node-1 gone, the three survivors own everything: repair gives each the photo's 3
    // chunks (the notes are small enough to live in their manifest).
    let started = std::time::Instant::now();
    let held = |s: &dstore_core::Stats| s.chunks == 3 && s.keys == 2;
    loop {
        let others = node.member_stats().await;
        if others.len() == 2
            && others.iter().all(|(_, s)| s.is_some_and(|s| held(&s)))
            && held(&node.stats()?)
        {
            break;
        }
        check(
            started.elapsed() < Duration::from_secs(60),
            "repair within a minute",
        )?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "5. The others declared node-1 dead after 3 s of silence and repaired: {:.1} s after the",
        started.elapsed().as_secs_f64()
    );
    println!("   kill, each of the 3 survivors holds every chunk and manifest again:");
    for name in ["node-2", "node-3", "node-here"] {
        let n = files_under(&dir.path().join(name).join("chunks")).len();
        println!("     {name:<10} holds {}", chunk_files(n));
    }

    match node.get("photos/no-such-picture.jpg").await {
        Err(e @ Error::NotFound(_)) => {
            println!("6. A key nobody stored is reported at once: \"{e}\".")
        }
        other => {
            return Err(format!(
                "demo check failed: missing key gave {:?}",
                other.map(|v| v.len())
            )
            .into())
        }
    }

    let _ = node.close().await;
    drop(procs);
    println!(
        "\nDone. Everything above was checked; every node is stopped and the files are removed."
    );
    Ok(())
}
