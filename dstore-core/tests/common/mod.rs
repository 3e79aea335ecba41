//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dstore_core::{Config, Node};

/// The interesting sizes for a chunk size of `c`: empty, one byte, around one chunk, many.
pub fn interesting_sizes(c: usize) -> Vec<usize> {
    vec![0, 1, c - 1, c, c + 1, 2 * c, 7 * c + 3]
}

/// Deterministic, incompressible-looking bytes derived from a seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A cluster member on 127.0.0.1 (port 0) with failure detection and repair sped up for
/// tests: suspect after 0.6 s, dead after 1.5 s, calls of 3 s, repair every 0.3 s, no
/// scrubbing. Callers adjust the rest.
pub fn fast_member(
    root: &Path,
    peers: &[String],
    secret: &[u8],
    key: [u8; 32],
    chunk_size: usize,
) -> Config {
    use std::time::Duration;
    let mut c = Config::new(root);
    c.chunk_size = chunk_size;
    c.secret = Some(secret.to_vec());
    c.data_key = Some(key);
    c.listen = Some("127.0.0.1:0".into());
    c.peers = peers.to_vec();
    c.timeouts.suspect_after = Duration::from_millis(600);
    c.timeouts.dead_after = Duration::from_millis(1500);
    c.timeouts.call = Duration::from_secs(3);
    c.maintenance.repair_interval = Duration::from_millis(300);
    c.maintenance.scrub_rate = 0;
    c
}

pub async fn open(root: &Path, chunk_size: usize) -> Node {
    let mut config = Config::new(root);
    config.chunk_size = chunk_size;
    Node::open(config).await.expect("open node")
}

/// Copies the tree at `from` to `to` (created).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Every regular file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn flip_byte(file: &Path, at: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    let i = at % bytes.len();
    bytes[i] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

/// One stored copy of a chunk: a file under `chunks/`, or a record in a segment file under
/// `segments/` (found by parsing the record format of DESIGN.md §2 here, independently of the
/// core; dead records, left by deletes until compaction, are listed too).
#[derive(Clone, Debug)]
pub struct ChunkCopy {
    pub file: PathBuf,
    pub offset: u64,
    pub len: usize,
}

impl ChunkCopy {
    pub fn bytes(&self) -> Vec<u8> {
        let all = std::fs::read(&self.file).unwrap();
        all[self.offset as usize..self.offset as usize + self.len].to_vec()
    }

    /// Flips byte `at` (modulo the length) of this copy, as rot on disk would.
    pub fn flip(&self, at: usize) {
        let mut all = std::fs::read(&self.file).unwrap();
        all[self.offset as usize + at % self.len] ^= 0x40;
        std::fs::write(&self.file, all).unwrap();
    }
}

/// Every chunk copy under `root`: chunk files, then segment records in order.
pub fn chunk_copies(root: &Path) -> Vec<ChunkCopy> {
    let mut out: Vec<ChunkCopy> = files_under(&root.join("chunks"))
        .into_iter()
        .map(|file| ChunkCopy {
            len: std::fs::metadata(&file).unwrap().len() as usize,
            file,
            offset: 0,
        })
        .collect();
    let mut segments = files_under(&root.join("segments"));
    segments.sort();
    for file in segments {
        let bytes = std::fs::read(&file).unwrap();
        let mut at = 0;
        // len: u32 LE (kind, id, payload) | kind | id: 32 | payload | checksum: 32
        while at + 4 + 33 + 32 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len < 33 || at + 4 + len + 32 > bytes.len() {
                break;
            }
            out.push(ChunkCopy {
                file: file.clone(),
                offset: (at + 4 + 33) as u64,
                len: len - 33,
            });
            at += 4 + len + 32;
        }
    }
    out
}

/// The chunks a closed root holds, each with its copy: chunk files (named by their id), and
/// the places of packed chunks as its catalog records them (read with redb here, by the
/// table's name and layout). Dead segment records are not listed.
pub fn live_copies(root: &Path) -> Vec<(dstore_core::ChunkId, ChunkCopy)> {
    use redb::{ReadableDatabase, ReadableTable};
    let mut out: Vec<_> = files_under(&root.join("chunks"))
        .into_iter()
        .map(|file| {
            let id = dstore_core::ChunkId::from_hex(file.file_name().unwrap().to_str().unwrap())
                .expect("a chunk file named by its id");
            let len = std::fs::metadata(&file).unwrap().len() as usize;
            (
                id,
                ChunkCopy {
                    file,
                    offset: 0,
                    len,
                },
            )
        })
        .collect();
    let places: redb::TableDefinition<&[u8; 32], (u32, u64, u32, u64)> =
        redb::TableDefinition::new("places");
    let db = redb::Database::open(root.join("catalog.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(places).unwrap();
    for row in table.iter().unwrap() {
        let (id, place) = row.unwrap();
        let (segment, offset, len, _) = place.value();
        out.push((
            dstore_core::ChunkId(*id.value()),
            ChunkCopy {
                file: root.join("segments").join(format!("{segment:08}.seg")),
                offset,
                len: len as usize,
            },
        ));
    }
    out
}

/// Loses every chunk copy under `root`: chunk files are removed, segment files emptied (a
/// node may have one open to append to).
pub fn remove_chunks(root: &Path) {
    for f in files_under(&root.join("chunks")) {
        std::fs::remove_file(f).unwrap();
    }
    for f in files_under(&root.join("segments")) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// Flips byte `at` (counted from its start) of every copy of `key`'s manifest in the catalog
/// of the root at `root` (the live one and any stale copy in a freed page), as rot on disk
/// would. Returns how many copies it found. The node must be closed: an open catalog serves
/// pages from its cache. A stored manifest starts with the disk format's byte, the key's
/// length (one byte below 251) and the key.
pub fn flip_in_catalog(root: &Path, key: &str, at: usize) -> usize {
    assert!(key.len() < 251, "a short key, so its length is one byte");
    let file = root.join("catalog.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let mut start = vec![dstore_core::codec::DISK_FORMAT, key.len() as u8];
    start.extend_from_slice(key.as_bytes());
    let found: Vec<usize> = bytes
        .windows(start.len())
        .enumerate()
        .filter(|(_, w)| *w == start.as_slice())
        .map(|(i, _)| i)
        .collect();
    for i in &found {
        bytes[i + at] ^= 0x40;
    }
    std::fs::write(&file, bytes).unwrap();
    found.len()
}

/// Waits up to 20 s for `cond`; a liveness bound, not a performance claim.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}
