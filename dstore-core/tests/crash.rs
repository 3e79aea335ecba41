//! Crash safety: a writer process is killed with SIGKILL in the middle of a stream of stores,
//! overwrites and deletes, several times over the same root. After each kill the root must
//! reopen with every acknowledged value intact, no value torn, and no chunk held that no
//! manifest names.
//!
//! The writer is this same test binary re-run with `DSTORE_CRASH_ROOT` set, filtered to the
//! `crash_writer_child` test; run without that variable, that test only checks that the
//! variable is absent.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{chunk_copies, copy_tree, files_under, live_copies, open, pattern};
use dstore_core::ChunkId;
use dstore_core::{Error, Redundancy, StoreOptions};

const CHUNK: usize = 4096;

fn value_for(key_index: u64, generation: u64) -> Vec<u8> {
    // Sizes from 0 to 5 chunks, varying with the generation so overwrites change shape.
    let seed = key_index * 1_000_003 + generation;
    pattern(
        seed,
        ((seed * 2654435761) % (5 * CHUNK as u64 + 1)) as usize,
    )
}

/// The child: stores generation `g` of key `k{g % 40}` for g = start.., deleting every
/// seventh, printing `ack <g>` after each call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Ok(root) = std::env::var("DSTORE_CRASH_ROOT") else {
        return;
    };
    let start: u64 = std::env::var("DSTORE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let node = open(std::path::Path::new(&root), CHUNK).await;
    for g in start.. {
        let key = format!("k{}", g % 40);
        if g.is_multiple_of(7) {
            match node.delete(&key).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => panic!("{e}"),
            }
        } else {
            node.store(
                &key,
                &value_for(g % 40, g),
                StoreOptions {
                    encrypt: g % 2 == 0,
                    redundancy: Redundancy::Default,
                },
            )
            .await
            .unwrap();
        }
        println!("ack {g}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_nothing_acknowledged() {
    crash_rounds(4, false).await;
}

/// Small chunks are appended to segments (group commit). A crash in the middle of an append
/// leaves a torn record at the end of the newest segment: after each kill half a record is
/// added there too. Opening cuts the tail off at the last whole record (appends go on from
/// there), and every acknowledged value is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_segment_tail_is_cut_off_and_nothing_acknowledged_is_lost() {
    crash_rounds(3, true).await;
}

/// Runs the writer child `rounds` times over one root, killing it each time; with `tear`,
/// half a record is appended to the newest segment after each kill.
async fn crash_rounds(rounds: u64, tear: bool) {
    let dir = tempfile::tempdir().unwrap();
    // The latest acknowledged generation of each key: Some(g) stored, None deleted.
    let mut expected: std::collections::HashMap<u64, Option<u64>> = Default::default();
    let mut next = 1u64;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DSTORE_CRASH_ROOT", dir.path())
            .env("DSTORE_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it acknowledge a varying number of operations, then kill it mid-stream.
        let target = 60 + round * 37;
        let mut record = |line: String| {
            let g: u64 = line.strip_prefix("ack ")?.parse().ok()?;
            expected.insert(g % 40, (!g.is_multiple_of(7)).then_some(g));
            next = g + 1;
            Some(())
        };
        let mut acked = 0;
        while acked < target {
            let line = lines.next().expect("writer exited early").unwrap();
            acked += u64::from(record(line).is_some());
        }
        // SIGKILL; anything acknowledged between our last read and the kill counts too.
        child.kill().unwrap();
        for line in lines.map_while(Result::ok) {
            record(line);
        }
        child.wait().unwrap();
        // One operation may have been in flight (not acknowledged) when it died: its key may
        // show either its previous or its new state, never anything else.
        let in_flight = next;
        let newest = {
            let mut segments = files_under(&dir.path().join("segments"));
            segments.sort();
            segments.pop().expect("the writer made a segment")
        };
        if tear {
            let mut record = 5000u32.to_le_bytes().to_vec();
            record.extend_from_slice(&[1; 100]);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&newest)
                .unwrap();
            std::io::Write::write_all(&mut f, &record).unwrap();
        }

        let node = open(dir.path(), CHUNK).await;
        for (k, state) in &expected {
            let key = format!("k{k}");
            let got = node.get(&key).await;
            let ok_old = match (state, &got) {
                (Some(g), Ok(v)) => *v == value_for(*k, *g),
                (None, Err(Error::NotFound(_))) => true,
                _ => false,
            };
            let ok_new = in_flight % 40 == *k
                && match &got {
                    Ok(v) => *v == value_for(*k, in_flight),
                    Err(Error::NotFound(_)) => in_flight.is_multiple_of(7),
                    Err(_) => false,
                };
            assert!(
                ok_old || ok_new,
                "round {round}: {key} expected {state:?}, got {:?}",
                got.map(|v| v.len())
            );
        }
        let named = node.stats().unwrap().chunks;
        node.close().await.unwrap();
        // The newest segment ends at its last whole record.
        let end = chunk_copies(dir.path())
            .iter()
            .filter(|c| c.file == newest)
            .map(|c| c.offset + c.len as u64 + 32)
            .max()
            .unwrap_or(0);
        assert_eq!(
            std::fs::metadata(&newest).unwrap().len(),
            end,
            "round {round}"
        );
        // What the catalog says is held is exactly what manifests name, and all of it good.
        let live = live_copies(dir.path());
        assert_eq!(live.len() as u64, named, "orphan chunks after crash");
        for (id, copy) in live {
            assert_eq!(ChunkId::of(&copy.bytes()), id);
        }
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        println!(
            "round {round}: {} keys checked after kill -9 at generation {in_flight}",
            expected.len()
        );
    }
}

/// The child for compaction: opens the root it is given (whose catalog is mostly waste, so
/// opening rewrites it: see `Catalog::compact_if_sparse`) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_child() {
    let Ok(root) = std::env::var("DSTORE_COMPACT_ROOT") else {
        return;
    };
    let node = open(std::path::Path::new(&root), CHUNK).await;
    println!("open");
    node.close().await.unwrap();
}

/// kill -9 while the catalog is being rewritten (at varying points of the open that rewrites
/// it): the next open has every value that was there, and none of the deleted ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_compaction_loses_nothing() {
    const N: usize = 30_000;
    let value = |i: usize| pattern(i as u64, 1000);
    let template = tempfile::tempdir().unwrap();
    let node = open(template.path(), CHUNK).await;
    for pass in 0..2 {
        let mut calls = tokio::task::JoinSet::new();
        for first in 0..64 {
            let node = node.clone();
            calls.spawn(async move {
                for i in (first..N).step_by(64) {
                    let key = format!("k{i:05}");
                    if pass == 0 {
                        let opts = StoreOptions {
                            encrypt: true,
                            redundancy: Redundancy::Default,
                        };
                        node.store(&key, &value(i), opts).await.unwrap();
                    } else if i % 10 != 0 {
                        node.delete(&key).await.unwrap();
                    }
                }
            });
        }
        calls.join_all().await;
    }
    node.close().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let mut mid_rewrite = 0;
    for round in 0..8u64 {
        let _ = std::fs::remove_dir_all(&root);
        let copied = Command::new("cp")
            .args(["-a".as_ref(), template.path().as_os_str(), root.as_os_str()])
            .status()
            .unwrap();
        assert!(copied.success());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["compaction_child", "--exact", "--nocapture"])
            .env("DSTORE_COMPACT_ROOT", &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round * 40));
        mid_rewrite += u32::from(root.join("catalog.redb.new").exists());
        child.kill().unwrap();
        child.wait().unwrap();

        let node = open(&root, CHUNK).await;
        assert_eq!(node.stats().unwrap().keys, (N / 10) as u64, "round {round}");
        for i in 0..N {
            let got = node.get(&format!("k{i:05}")).await;
            match got {
                Ok(v) => assert!(i % 10 == 0 && v == value(i), "round {round}: k{i:05}"),
                Err(Error::NotFound(_)) => assert!(i % 10 != 0, "round {round}: k{i:05} lost"),
                Err(e) => panic!("round {round}: k{i:05}: {e}"),
            }
        }
        node.close().await.unwrap();
        assert!(!root.join("catalog.redb.new").exists());
    }
    println!("{mid_rewrite} of 8 kills came while a rewritten catalog was being written");
}

/// The child for segment compaction: opens the root it is given (whose segments are mostly
/// garbage, so opening compacts them: see `Store::compact_segments`) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_compaction_child() {
    let Ok(root) = std::env::var("DSTORE_SEGMENTS_ROOT") else {
        return;
    };
    let node = open(std::path::Path::new(&root), CHUNK).await;
    println!("open");
    node.close().await.unwrap();
}

/// kill -9 while segments are being compacted (at varying points of the open that moves the
/// live records of a mostly dead segment and removes it): the next open has every value that
/// was there and none of the deleted ones, and what the catalog holds is exactly what is
/// named, every copy good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_segment_compaction_loses_nothing() {
    const N: usize = 1000;
    // 8 chunks each: 32 MiB of records, of which 60% are then deleted.
    let value = |i: usize| pattern(i as u64 + 77, 8 * CHUNK);
    let kept = |i: usize| i % 5 < 2;
    let template = tempfile::tempdir().unwrap();
    let node = open(template.path(), CHUNK).await;
    for pass in 0..2 {
        let mut calls = tokio::task::JoinSet::new();
        for first in 0..32 {
            let node = node.clone();
            calls.spawn(async move {
                for i in (first..N).step_by(32) {
                    let key = format!("k{i:04}");
                    if pass == 0 {
                        let opts = StoreOptions {
                            encrypt: i % 2 == 0,
                            redundancy: Redundancy::Default,
                        };
                        node.store(&key, &value(i), opts).await.unwrap();
                    } else if !kept(i) {
                        node.delete(&key).await.unwrap();
                    }
                }
            });
        }
        calls.join_all().await;
    }
    node.close().await.unwrap();
    let segments = |root: &std::path::Path| files_under(&root.join("segments"));
    let [old] = &segments(template.path())[..] else {
        panic!("one segment")
    };
    let old = old.file_name().unwrap().to_owned();
    let full = std::fs::metadata(template.path().join("segments").join(&old))
        .unwrap()
        .len();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let mut mid_compaction = 0;
    for round in 0..8u64 {
        let _ = std::fs::remove_dir_all(&root);
        copy_tree(template.path(), &root);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["segment_compaction_child", "--exact", "--nocapture"])
            .env("DSTORE_SEGMENTS_ROOT", &root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(round * 30));
        let names = segments(&root);
        mid_compaction += u32::from(names.len() > 1);
        child.kill().unwrap();
        child.wait().unwrap();

        let node = open(&root, CHUNK).await;
        let live = (0..N).filter(|i| kept(*i)).count() as u64;
        assert_eq!(node.stats().unwrap().keys, live, "round {round}");
        for i in 0..N {
            match node.get(&format!("k{i:04}")).await {
                Ok(v) => assert!(kept(i) && v == value(i), "round {round}: k{i:04}"),
                Err(Error::NotFound(_)) => assert!(!kept(i), "round {round}: k{i:04} lost"),
                Err(e) => panic!("round {round}: k{i:04}: {e}"),
            }
        }
        let named = node.stats().unwrap().chunks;
        node.close().await.unwrap();
        let copies = live_copies(&root);
        assert_eq!(copies.len() as u64, named, "round {round}");
        for (id, copy) in copies {
            assert_eq!(ChunkId::of(&copy.bytes()), id, "round {round}");
        }
        // Compacted by now (this open finished what the killed one began): the old segment
        // is gone and its space given back.
        assert!(!root.join("segments").join(&old).exists(), "round {round}");
        let now: u64 = segments(&root)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(now < full / 2, "round {round}: {now} of {full} bytes");
    }
    println!("{mid_compaction} of 8 kills came while a segment was being compacted");
}
