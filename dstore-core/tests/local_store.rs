//! The local store through the public `Node` API: round trips, deduplication, deletion and
//! garbage collection, corruption, keys, persistence, locking and concurrency.

mod common;

use common::{
    chunk_copies, copy_tree, files_under, flip_in_catalog, interesting_sizes, live_copies, open,
    pattern,
};
use dstore_core::{ChunkId, Config, Error, Node, Redundancy, StoreOptions};

const CHUNK: usize = 4096;
const ENC: StoreOptions = StoreOptions {
    encrypt: true,
    redundancy: Redundancy::Default,
};
const PLAIN: StoreOptions = StoreOptions {
    encrypt: false,
    redundancy: Redundancy::Default,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_at_interesting_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    for (i, size) in interesting_sizes(CHUNK).into_iter().enumerate() {
        for opts in [ENC, PLAIN] {
            let key = format!("v{i}-{}", opts.encrypt);
            let data = pattern(i as u64, size);
            node.store(&key, &data, opts).await.unwrap();
            assert_eq!(node.get(&key).await.unwrap(), data, "{key} ({size} bytes)");
            assert_eq!(node.size(&key).await.unwrap(), size as u64);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_chunk_size_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(Config::new(dir.path())).await.unwrap();
    let c = dstore_core::DEFAULT_CHUNK_SIZE;
    for size in [c - 1, c, c + 1, 3 * c + 17] {
        let data = pattern(size as u64, size);
        node.store("big", &data, ENC).await.unwrap();
        assert_eq!(node.get("big").await.unwrap(), data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces_and_frees_old_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    node.store("k", &pattern(1, 3 * CHUNK), ENC).await.unwrap();
    node.store("k", &pattern(2, 2 * CHUNK), ENC).await.unwrap();
    assert_eq!(node.get("k").await.unwrap(), pattern(2, 2 * CHUNK));
    assert_eq!(node.stats().unwrap().chunks, 2);
    node.close().await.unwrap();
    let live = live_copies(dir.path());
    assert_eq!(live.len(), 2);
    for (id, copy) in live {
        assert_eq!(ChunkId::of(&copy.bytes()), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_chunks_are_stored_once_also_when_encrypted() {
    for opts in [ENC, PLAIN] {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), CHUNK).await;
        let block = pattern(7, CHUNK);
        // Four identical chunks in one value, and the same value under a second key.
        let data = block.repeat(4);
        node.store("a", &data, opts).await.unwrap();
        node.store("b", &data, opts).await.unwrap();
        assert_eq!(node.stats().unwrap().chunks, 1);
        assert_eq!(chunk_copies(dir.path()).len(), 1);

        // Deleting one key keeps the chunk the other still names.
        node.delete("a").await.unwrap();
        assert_eq!(node.get("b").await.unwrap(), data);
        assert!(matches!(node.get("a").await, Err(Error::NotFound(_))));
        // Deleting the last one removes it from disk.
        node.delete("b").await.unwrap();
        assert_eq!(node.stats().unwrap().chunks, 0);
        node.close().await.unwrap();
        assert!(live_copies(dir.path()).is_empty());
    }
}

/// Two different 320-byte inputs with the same SHA-1 (the SHAttered prefixes). Content
/// addressing by SHA-1 would store them as one chunk; dstore's BLAKE3 ids keep them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha1_collision_pair_keeps_both_values() {
    const PREFIX: &str = "255044462d312e330a25e2e3cfd30a0a0a312030206f626a0a3c3c2f57696474682032203020522f4865696768742033203020522f547970652034203020522f537562747970652035203020522f46696c7465722036203020522f436f6c6f7253706163652037203020522f4c656e6774682038203020522f42697473506572436f6d706f6e656e7420383e3e0a73747265616d0affd8fffe00245348412d3120697320646561642121212121852fec092339759c39b1a1c63c4c97e1fffe01";
    const BLOCK_1: &str = "7f46dc93a6b67e013b029aaa1db2560b45ca67d688c7f84b8c4c791fe02b3df614f86db1690901c56b45c1530afedfb76038e972722fe7ad728f0e4904e046c230570fe9d41398abe12ef5bc942be33542a4802d98b5d70f2a332ec37fac3514e74ddc0f2cc1a874cd0c78305a21566461309789606bd0bf3f98cda8044629a1";
    const BLOCK_2: &str = "7346dc9166b67e118f029ab621b2560ff9ca67cca8c7f85ba84c79030c2b3de218f86db3a90901d5df45c14f26fedfb3dc38e96ac22fe7bd728f0e45bce046d23c570feb141398bb552ef5a0a82be331fea48037b8b5d71f0e332edf93ac3500eb4ddc0decc1a864790c782c76215660dd309791d06bd0af3f98cda4bc4629b1";
    let one = hex::decode(format!("{PREFIX}{BLOCK_1}")).unwrap();
    let two = hex::decode(format!("{PREFIX}{BLOCK_2}")).unwrap();
    assert_ne!(one, two);
    let sha1 = dstore_core::crypto::sha1_hex;
    assert_eq!(
        sha1(&one),
        sha1(&two),
        "the test vector must be a real SHA-1 collision"
    );

    // The same suffix keeps the collision (SHA-1 is Merkle-Damgård over 64-byte blocks) and
    // makes each value one chunk, too large to live in its manifest.
    let suffix = vec![b'%'; dstore_core::INLINE_MAX];
    let (one, two) = ([one, suffix.clone()].concat(), [two, suffix].concat());
    assert_eq!(sha1(&one), sha1(&two));

    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), 64 << 10).await;
    for opts in [PLAIN, ENC] {
        node.store("shattered-1", &one, opts).await.unwrap();
        node.store("shattered-2", &two, opts).await.unwrap();
        assert_eq!(node.get("shattered-1").await.unwrap(), one);
        assert_eq!(node.get("shattered-2").await.unwrap(), two);
    }
    assert_eq!(node.stats().unwrap().chunks, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_chunk_is_an_integrity_error() {
    for opts in [ENC, PLAIN] {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), CHUNK).await;
        let data = pattern(3, 3 * CHUNK);
        node.store("k", &data, opts).await.unwrap();
        chunk_copies(dir.path())[1].flip(100);
        assert!(matches!(node.get("k").await, Err(Error::Integrity(_))));
        // The bad copy was set aside, not left to be served again...
        assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
        // ...and storing the value again heals it.
        node.store("k2", &data, opts).await.unwrap();
        assert_eq!(node.get("k").await.unwrap(), data);
    }
}

/// Rot in a manifest (its format byte, its key, its body, deep in its inline value) is an
/// integrity error, never other bytes; the manifest is set aside, and the key reads as
/// corrupt until it is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_manifest_is_an_integrity_error() {
    for at in [0, 5, 60, 300] {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path(), CHUNK).await;
        node.store("the-key", &[7; 400], ENC).await.unwrap();
        node.close().await.unwrap();
        assert!(flip_in_catalog(dir.path(), "the-key", at) >= 1);
        let node = open(dir.path(), CHUNK).await;
        let got = node.get("the-key").await;
        assert!(
            matches!(got, Err(Error::Integrity(_))),
            "byte {at}: {got:?}"
        );
        assert!(matches!(
            node.get("the-key").await,
            Err(Error::Integrity(_))
        ));
        assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
        node.store("the-key", b"hello", ENC).await.unwrap();
        assert_eq!(node.get("the-key").await.unwrap(), b"hello");
        node.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_data_key_cannot_read_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"cluster secret".to_vec();
    let mut config = Config::new(dir.path());
    config.data_key = Some([1; 32]);
    config.secret = Some(secret.clone());
    let node = Node::open(config.clone()).await.unwrap();
    node.store("enc", b"top secret", ENC).await.unwrap();
    node.store("plain", b"public", PLAIN).await.unwrap();
    drop(node);

    config.data_key = Some([2; 32]);
    let other = Node::open(config.clone()).await.unwrap();
    assert!(matches!(other.get("enc").await, Err(Error::WrongKey(_))));
    // A plain value is sealed by its writer's data key too: another key's holder refuses
    // it (it cannot tell it from a forgery), unless told to accept unsealed manifests.
    assert!(matches!(other.get("plain").await, Err(Error::WrongKey(_))));
    drop(other);
    config.accept_unsealed = true;
    let lenient = Node::open(config).await.unwrap();
    assert_eq!(lenient.get("plain").await.unwrap(), b"public");
    assert!(matches!(lenient.get("enc").await, Err(Error::WrongKey(_))));
    drop(lenient);
    // Nothing on disk (the catalog holds the small value, encrypted) contains the plaintext.
    for f in files_under(dir.path()) {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"top secret"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_values_node_id_and_data_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    let id = node.id();
    for i in 0..20u64 {
        node.store(&format!("k{i}"), &pattern(i, i as usize * 700), ENC)
            .await
            .unwrap();
    }
    node.delete("k3").await.unwrap();
    drop(node);

    let node = open(dir.path(), CHUNK).await;
    assert_eq!(node.id(), id);
    assert_eq!(node.keys("").await.unwrap().len(), 19);
    assert!(!node.has("k3").await.unwrap());
    for i in (0..20u64).filter(|i| *i != 3) {
        assert_eq!(
            node.get(&format!("k{i}")).await.unwrap(),
            pattern(i, i as usize * 700)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_root_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    let second = Node::open(Config::new(dir.path())).await;
    assert!(
        matches!(second, Err(Error::Locked(_))),
        "{:?}",
        second.err()
    );
    let _ = node.close().await;
    let _ = node.close().await;
    assert!(matches!(node.get("x").await, Err(Error::Closed)));
    assert!(matches!(node.stats(), Err(Error::Closed)));
    Node::open(Config::new(dir.path())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_names_never_paths() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("root");
    let node = open(&root, CHUNK).await;
    let hostile = [
        "../x",
        "/abs",
        "../../etc/passwd",
        ".",
        "..",
        "a/../../b",
        "C:\\x",
        "é ✓ \u{202e}",
    ];
    for key in hostile {
        node.store(key, key.as_bytes(), PLAIN).await.unwrap();
        assert_eq!(node.get(key).await.unwrap(), key.as_bytes());
    }
    let mut keys = node.keys("").await.unwrap();
    keys.sort();
    let mut expected: Vec<_> = hostile.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // Nothing was written beside the root.
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("root")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    for key in [String::new(), "a\0b".into(), "x".repeat(1025)] {
        assert!(matches!(
            node.store(&key, b"v", ENC).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            node.get(&key).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    node.store(&"x".repeat(1024), b"v", ENC).await.unwrap();
    assert!(matches!(
        node.delete("missing").await,
        Err(Error::NotFound(_))
    ));
    let mut config = Config::new(dir.path().join("other"));
    config.chunk_size = 1;
    assert!(matches!(
        Node::open(config).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stream_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    let data = pattern(11, 50 * CHUNK + 5);
    let input = dir.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    assert_eq!(
        node.store_file("f", &input, ENC).await.unwrap(),
        data.len() as u64
    );
    let output = dir.path().join("out.bin");
    node.get_file("f", &output).await.unwrap();
    assert_eq!(std::fs::read(&output).unwrap(), data);

    // A failed read leaves nothing at the destination.
    let missing = dir.path().join("missing.bin");
    assert!(matches!(
        node.get_file("nope", &missing).await,
        Err(Error::NotFound(_))
    ));
    chunk_copies(dir.path())[0].flip(9);
    assert!(node.get_file("f", &missing).await.is_err());
    assert!(!missing.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("dstore-"))
        .collect();
    assert!(leftovers.is_empty());
    assert!(matches!(
        node.store_file("g", dir.path().join("absent"), ENC).await,
        Err(Error::Io { .. })
    ));
}

/// Many tasks store, read and delete overlapping keys whose values share chunks. Afterwards
/// every surviving key reads back right, and the chunks on disk are exactly those named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_readers_and_deleters() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    // Every value begins with the same chunk, so deletes and stores race on its count.
    fn value(t: u64, i: u64) -> Vec<u8> {
        [
            pattern(99, CHUNK),
            pattern(t * 1000 + i, (i as usize % 3) * CHUNK + 10),
        ]
        .concat()
    }
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..30u64 {
                let key = format!("t{t}-k{}", i % 10);
                node.store(&key, &value(t, i), if i % 2 == 0 { ENC } else { PLAIN })
                    .await
                    .unwrap();
                assert_eq!(node.get(&key).await.unwrap(), value(t, i));
                if i % 4 == 0 {
                    node.delete(&key).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..8u64 {
        for i in 20..30u64 {
            let key = format!("t{t}-k{}", i % 10);
            match node.get(&key).await {
                Ok(v) => assert_eq!(v, value(t, i)),
                Err(Error::NotFound(_)) => assert_eq!(i % 4, 0),
                Err(e) => panic!("{key}: {e}"),
            }
        }
    }
    let stats = node.stats().unwrap();
    drop(node);
    // Reopening recounts from the manifests; the in-memory count must have been the same.
    let node = open(dir.path(), CHUNK).await;
    assert_eq!(node.stats().unwrap().chunks, stats.chunks);
    node.close().await.unwrap();
    let live = live_copies(dir.path());
    assert_eq!(live.len() as u64, stats.chunks);
    for (id, copy) in live {
        assert_eq!(ChunkId::of(&copy.bytes()), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_path_transform_is_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.transform = std::sync::Arc::new(dstore_core::SeedSha1);
    config.chunk_size = CHUNK;
    config.segment_max = 0; // every chunk a file, where transforms apply
    let node = Node::open(config.clone()).await.unwrap();
    node.store("momsbestpicture", &pattern(5, 3 * CHUNK), ENC)
        .await
        .unwrap();
    drop(node);
    let node = Node::open(config).await.unwrap();
    assert_eq!(
        node.get("momsbestpicture").await.unwrap(),
        pattern(5, 3 * CHUNK)
    );
    // Paths are 8 blocks of 5 hex digits, then the 40-digit hash.
    assert_eq!(files_under(&dir.path().join("chunks")).len(), 3);
    for f in files_under(&dir.path().join("chunks")) {
        let rel = f.strip_prefix(dir.path().join("chunks")).unwrap();
        let parts: Vec<_> = rel.iter().map(|p| p.len()).collect();
        assert_eq!(parts, [5, 5, 5, 5, 5, 5, 5, 5, 40]);
    }
}

/// Opening a root with another cluster's secret must not take its manifests for corrupt (and
/// so collect their chunks): it is refused, and the right secret still reads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_secret_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let with_secret = |secret: &[u8]| {
        let mut c = Config::new(dir.path());
        c.secret = Some(secret.to_vec());
        c.chunk_size = CHUNK;
        c
    };
    let node = Node::open(with_secret(b"A")).await.unwrap();
    node.store("k", &pattern(1, 3 * CHUNK), ENC).await.unwrap();
    drop(node);
    let refused = Node::open(with_secret(b"B")).await;
    assert!(
        matches!(refused, Err(Error::WrongKey(_))),
        "{:?}",
        refused.err()
    );
    // A root made with a generated secret refuses an explicit one too.
    let node = Node::open(with_secret(b"A")).await.unwrap();
    assert_eq!(node.get("k").await.unwrap(), pattern(1, 3 * CHUNK));
    assert!(files_under(&dir.path().join("quarantine")).is_empty());
}

/// A manifest corrupted while the node was down is set aside when it is read, but the chunks
/// it named are kept (at that open and the next): they may be all that is left of the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_corrupted_at_rest_does_not_cost_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    node.store("the-key", &pattern(2, 4 * CHUNK), ENC)
        .await
        .unwrap();
    node.close().await.unwrap();
    assert!(flip_in_catalog(dir.path(), "the-key", 20) >= 1);
    let node = open(dir.path(), CHUNK).await;
    assert!(matches!(
        node.get("the-key").await,
        Err(Error::Integrity(_))
    ));
    // Lost here, not absent: `has` says so too rather than "no".
    assert!(matches!(
        node.has("the-key").await,
        Err(Error::Integrity(_))
    ));
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
    assert_eq!(node.stats().unwrap().chunks, 4);
    node.close().await.unwrap();
    assert_eq!(live_copies(dir.path()).len(), 4);
    let node = open(dir.path(), CHUNK).await;
    assert_eq!(node.stats().unwrap().chunks, 4);
    node.close().await.unwrap();
    assert_eq!(live_copies(dir.path()).len(), 4);
}

/// `close` waits for calls in flight, so the root is free the moment it returns, also after a
/// read that failed part way with other chunk reads still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_calls_and_frees_the_root() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let node = open(dir.path(), CHUNK).await;
        let data = pattern(round, 40 * CHUNK);
        let before = chunk_copies(dir.path()).len();
        node.store("k", &data, PLAIN).await.unwrap();
        // This round's copies: records are appended in order (older ones are garbage now).
        let chunks = chunk_copies(dir.path()).split_off(before);
        assert_eq!(chunks.len(), 40);
        chunks[round as usize % chunks.len()].flip(1);
        assert!(node.get("k").await.is_err());
        let reader = {
            let node = node.clone();
            tokio::spawn(async move { node.get("k").await })
        };
        let _ = node.close().await;
        Node::open(Config::new(dir.path()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .delete("k")
            .await
            .ok();
        let _ = reader.await.unwrap();
    }
}

/// Issue 9, item 11: one unreadable manifest (here a sparse file claiming a terabyte, which
/// reading whole would also have tried to allocate) made the node fail to open. Now it is
/// set aside, the node opens, and the other values read back. Such files are only read when
/// a root of the layout before the catalog is migrated (see
/// `a_root_of_the_layout_before_the_catalog_is_migrated`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_manifest_is_set_aside_and_the_node_opens() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    node.store("good", b"still here", ENC).await.unwrap();
    node.close().await.unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    let planted = dir.path().join("manifests").join("planted");
    std::fs::File::create(&planted)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let node = open(dir.path(), CHUNK).await;
    assert_eq!(node.get("good").await.unwrap(), b"still here");
    assert!(!planted.exists());
    assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
}

/// A root written by dstore before the catalog (by `dstore put` and `dstore rm --root` at
/// 675ae2e: a file per manifest under `manifests/`, small values inline, one chunk file) is
/// migrated when it is opened: every value reads back, the deleted one stays deleted,
/// `manifests/` is gone, and the root opens again as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_of_the_layout_before_the_catalog_is_migrated() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join("root-before-catalog");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture.join("root"), dir.path());
    assert_eq!(files_under(&dir.path().join("manifests")).len(), 4);
    for round in 0..2 {
        let node = Node::open(Config::new(dir.path())).await.unwrap();
        for (key, file) in [
            ("notes/small", "small.bin"),
            ("notes/plain", "plain.txt"),
            ("big/value", "big.bin"),
        ] {
            let want = std::fs::read(fixture.join("expected").join(file)).unwrap();
            assert_eq!(node.get(key).await.unwrap(), want, "round {round}: {key}");
        }
        assert!(matches!(node.get("gone").await, Err(Error::NotFound(_))));
        assert_eq!(
            node.keys("").await.unwrap(),
            ["big/value", "notes/plain", "notes/small"]
        );
        assert!(!dir.path().join("manifests").exists());
        assert_eq!(files_under(&dir.path().join("chunks")).len(), 1);
        node.close().await.unwrap();
    }
}

/// A byte flipped anywhere in the catalog (a rotten disk, a file changed by hand): opening
/// and every call give a value that is right or an error, never a wrong value and never a
/// panic (redb reaches assertions on some malformed pages; 9 of 1,795 flips did before the
/// catalog caught them). Every 200th non-zero byte of the file, so about 450 flips.
#[test]
fn a_rotten_catalog_gives_errors_not_panics() {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let value = |i: usize| pattern(i as u64, 100 + i * 150); // inline, and past one chunk
    let template = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let node = open(template.path(), CHUNK).await;
        for i in 0..60 {
            node.store(&format!("key-{i:03}"), &value(i), ENC)
                .await
                .unwrap();
        }
        node.close().await.unwrap();
    });
    let catalog = std::fs::read(template.path().join("catalog.redb")).unwrap();
    let (mut clean, mut refused, mut failed_reads) = (0, 0, 0);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    for at in (0..catalog.len()).filter(|&i| catalog[i] != 0).step_by(200) {
        let _ = std::fs::remove_dir_all(&root);
        // Copied in this process: a child forked while another test drops a node would hold
        // that root's lock (flock) until it execs, and the test's reopen would find it locked.
        copy_tree(template.path(), &root);
        let mut rotten = catalog.clone();
        rotten[at] ^= 0x5a;
        std::fs::write(root.join("catalog.redb"), &rotten).unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime().block_on(async {
                let mut config = Config::new(&root);
                config.chunk_size = CHUNK;
                let Ok(node) = Node::open(config).await else {
                    return None;
                };
                let _ = node.keys("").await;
                let mut errors = 0;
                for i in 0..60 {
                    match node.get(&format!("key-{i:03}")).await {
                        Ok(got) => assert!(got == value(i), "byte {at}: key-{i:03} is wrong"),
                        Err(_) => errors += 1,
                    }
                }
                let _ = node.store("another", b"value", ENC).await;
                let _ = node.close().await;
                Some(errors)
            })
        }));
        match outcome {
            Err(_) => panic!("byte {at} of the catalog flipped: a panic reached the caller"),
            Ok(None) => refused += 1,
            Ok(Some(0)) => clean += 1,
            Ok(Some(_)) => failed_reads += 1,
        }
    }
    eprintln!(
        "flips: {clean} harmless, {refused} refused at open, {failed_reads} with failed reads"
    );
    assert!(failed_reads > 0, "the flips reached the data");
}

/// Compaction: once 90% of 100,000 small values are deleted, the catalog gives their space
/// back to the file system (here when the root is next opened; members also between scrub
/// passes), and the rest read right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_most_small_values_gives_their_space_back() {
    const N: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.redb");
    let value = |i: usize| pattern(i as u64, 1000);
    let node = open(dir.path(), CHUNK).await;
    // 64 callers at once, each a stride of the keys.
    let mut calls = tokio::task::JoinSet::new();
    for first in 0..64 {
        let node = node.clone();
        calls.spawn(async move {
            for i in (first..N).step_by(64) {
                node.store(&format!("k{i:06}"), &value(i), ENC)
                    .await
                    .unwrap();
            }
        });
    }
    calls.join_all().await;
    let full = std::fs::metadata(&catalog).unwrap().len();
    let mut calls = tokio::task::JoinSet::new();
    for first in 0..64 {
        let node = node.clone();
        calls.spawn(async move {
            for i in (first..N).step_by(64).filter(|i| i % 10 != 0) {
                node.delete(&format!("k{i:06}")).await.unwrap();
            }
        });
    }
    calls.join_all().await;
    node.close().await.unwrap();
    let t = std::time::Instant::now();
    let node = open(dir.path(), CHUNK).await;
    let after = std::fs::metadata(&catalog).unwrap().len();
    eprintln!(
        "catalog: {full} bytes with {N} values, {after} after deleting 90% and reopening \
         (in {:?}, the rewrite included)",
        t.elapsed()
    );
    // What is left: the 10% kept, and a tombstone of a few hundred bytes per deleted key.
    assert!(after < full / 2, "{after} of {full} bytes left");
    assert_eq!(node.stats().unwrap().keys, (N / 10) as u64);
    for i in (0..N).step_by(10) {
        assert_eq!(node.get(&format!("k{i:06}")).await.unwrap(), value(i));
    }
    assert!(matches!(node.get("k000001").await, Err(Error::NotFound(_))));
}

/// Segment compaction: values of a few chunks are packed into segments; once 90% of them are
/// deleted, opening the root moves the live records out of the mostly dead segment and
/// removes it (members also do it between scrub passes), and the rest read right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_most_chunked_values_gives_their_segment_space_back() {
    const N: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let value = |i: usize| pattern(i as u64 + 5, 2 * CHUNK);
    let segment_bytes = || -> u64 {
        files_under(&dir.path().join("segments"))
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum()
    };
    let node = open(dir.path(), CHUNK).await;
    for pass in 0..2 {
        let mut calls = tokio::task::JoinSet::new();
        for first in 0..64 {
            let node = node.clone();
            calls.spawn(async move {
                for i in (first..N).step_by(64) {
                    let key = format!("k{i:05}");
                    if pass == 0 {
                        node.store(&key, &value(i), ENC).await.unwrap();
                    } else if i % 10 != 0 {
                        node.delete(&key).await.unwrap();
                    }
                }
            });
        }
        calls.join_all().await;
    }
    assert!(files_under(&dir.path().join("chunks")).is_empty());
    let full = segment_bytes();
    assert!(
        full >= (N * 2 * (CHUNK + 16)) as u64,
        "{full} bytes of segments"
    );
    node.close().await.unwrap();
    let t = std::time::Instant::now();
    let node = open(dir.path(), CHUNK).await;
    let after = segment_bytes();
    eprintln!(
        "segments: {full} bytes with {N} values, {after} after deleting 90% and reopening \
         (in {:?}, the compaction included)",
        t.elapsed()
    );
    assert!(after < full / 5, "{after} of {full} bytes left");
    assert_eq!(node.stats().unwrap().chunks, (2 * N / 10) as u64);
    for i in (0..N).step_by(10) {
        assert_eq!(node.get(&format!("k{i:05}")).await.unwrap(), value(i));
    }
    assert!(matches!(node.get("k00001").await, Err(Error::NotFound(_))));
    node.close().await.unwrap();
    let live = live_copies(dir.path());
    assert_eq!(live.len(), 2 * N / 10);
    for (id, copy) in live {
        assert_eq!(ChunkId::of(&copy.bytes()), id);
    }
}

/// Ranges: every span of a value of several chunks (and of an inline one) reads as the same
/// span of the whole, cut at the end; a reader seeks and reads the same bytes; and a range
/// touches only the chunks under it: with every other chunk rotten it still reads, while the
/// whole value is an integrity error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_read_only_the_chunks_under_them() {
    use std::io::SeekFrom;
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    let c = CHUNK as u64;
    for (i, (size, opts)) in [(10 * CHUNK + 123, ENC), (10 * CHUNK, PLAIN), (100, ENC)]
        .into_iter()
        .enumerate()
    {
        let key = format!("r{i}");
        let data = pattern(40 + i as u64, size);
        node.store(&key, &data, opts).await.unwrap();
        let n = size as u64;
        let spans = [
            (0, 0),
            (0, 1),
            (c - 1, 2),
            (c, c),
            (c + 7, 3 * c),
            (n - 1, 10),
            (n, 5),
            (n + 100, 5),
            (0, u64::MAX),
            (u64::MAX, u64::MAX),
        ];
        for (offset, len) in spans {
            let from = offset.min(n) as usize;
            let to = offset.saturating_add(len).min(n) as usize;
            let got = node.get_range(&key, offset, len).await.unwrap();
            assert_eq!(got, data[from..to], "{key}: {len} bytes at {offset}");
            let mut out = Vec::new();
            let written = node.get_range_writer(&key, offset, len, &mut out).await;
            assert_eq!((written.unwrap(), out), ((to - from) as u64, got));
        }
        let mut reader = node.reader(&key).await.unwrap();
        assert_eq!(reader.size(), n);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, data);
        for (to, expect) in [
            (SeekFrom::Start(c + 5), c + 5),
            (SeekFrom::End(-3), n - 3),
            (SeekFrom::Current(-(n as i64) + 3), 3),
            (SeekFrom::End(10), n + 10),
        ] {
            assert_eq!(reader.seek(to).await.unwrap(), expect);
            let mut piece = vec![0; 300];
            let mut got = 0;
            // Reads stop at a chunk's end; an empty one at the value's end (or a full buffer).
            loop {
                let k = reader.read(&mut piece[got..]).await.unwrap();
                if k == 0 {
                    break;
                }
                got += k;
            }
            let from = (expect as usize).min(size);
            assert_eq!(piece[..got], data[from..(from + 300).min(size)]);
        }
        assert!(reader
            .seek(SeekFrom::Current(-(n as i64) - 11))
            .await
            .is_err());
    }
    // Rot in every chunk of "r1" (plain, so a chunk's id is the hash of its bytes) except
    // chunks 3 and 4.
    let data = pattern(41, 10 * CHUNK);
    let keep: Vec<ChunkId> = (3..5)
        .map(|i| ChunkId::of(&data[i * CHUNK..(i + 1) * CHUNK]))
        .collect();
    node.close().await.unwrap();
    let mut rotten = 0;
    for (id, copy) in live_copies(dir.path()) {
        let ours = (0..10).any(|i| ChunkId::of(&data[i * CHUNK..(i + 1) * CHUNK]) == id);
        if ours && !keep.contains(&id) {
            copy.flip(9);
            rotten += 1;
        }
    }
    assert_eq!(rotten, 8);
    let node = open(dir.path(), CHUNK).await;
    let middle = node.get_range("r1", 3 * c + 10, 2 * c - 10).await.unwrap();
    assert_eq!(middle, data[3 * CHUNK + 10..5 * CHUNK]);
    assert!(matches!(node.get("r1").await, Err(Error::Integrity(_))));
    assert!(matches!(
        node.get_range("missing", 0, 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        node.reader("missing").await,
        Err(Error::NotFound(_))
    ));
    node.close().await.unwrap();
}

/// A value written in pieces is stored by `finish` and only then: a writer dropped part way
/// stores nothing (the old value stays), and one left waiting for its next piece does not
/// hold up `close`, which makes it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_written_in_pieces_is_stored_only_when_finished() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), CHUNK).await;
    let data = pattern(50, 10 * CHUNK + 5);
    let mut writer = node.writer("w", ENC).await.unwrap();
    for piece in data.chunks(3000) {
        writer.write(piece).await.unwrap();
    }
    writer.write(&[]).await.unwrap();
    assert_eq!(writer.finish().await.unwrap(), data.len() as u64);
    assert_eq!(node.get("w").await.unwrap(), data);

    let mut dropped = node.writer("w", PLAIN).await.unwrap();
    dropped.write(&data[..5000]).await.unwrap();
    drop(dropped);
    let mut tiny = node.writer("new", PLAIN).await.unwrap();
    tiny.write(b"x").await.unwrap();
    drop(tiny);
    // The dropped writers' stores fail as soon as they see the end; then nothing changed.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(node.get("w").await.unwrap(), data);
    assert!(!node.has("new").await.unwrap());
    assert!(matches!(
        node.writer("", ENC).await,
        Err(Error::InvalidArgument(_))
    ));

    let mut waiting = node.writer("late", ENC).await.unwrap();
    waiting.write(&data[..100]).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), node.close())
        .await
        .expect("close does not wait for a writer's caller")
        .unwrap();
    assert!(waiting.write(b"more").await.is_err());
    let node = open(dir.path(), CHUNK).await;
    assert!(!node.has("late").await.unwrap());
    assert_eq!(node.get("w").await.unwrap(), data);
    node.close().await.unwrap();
}
