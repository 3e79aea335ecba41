//! The local content-addressed store of one node: chunks and manifests under one root, with
//! reference counts so that a chunk lives exactly as long as something names it.
//!
//! ```text
//! root/
//!   LOCK          held (flock) while a node has the root open
//!   node_id       hex, made once
//!   data.key      hex, made once if the node was given no data key (mode 0600)
//!   cluster.secret                    likewise for the cluster secret
//!   cluster.id    a public fingerprint of the cluster secret; another secret is refused
//!   catalog.redb  every manifest held, small values inside them (see `catalog.rs`)
//!   segments/<number>.seg             small chunks, packed (see `segments.rs`)
//!   chunks/<transform(chunk id)>      a larger chunk's stored bytes (ciphertext when encrypted)
//!   tmp/          staging for atomic writes; emptied at open
//!   quarantine/   corrupt files and manifests set aside, never served
//! ```
//!
//! A root of the layout before the catalog (`manifests/<transform(key id)>`, a file per
//! manifest) is migrated when it is opened: every manifest moves into the catalog. A root of
//! the layout before segments (`journal`, small chunks as files) is read as it is: its chunk
//! files stay where they are, and its journal is replayed into segments once and removed.
//!
//! All methods block on disk I/O; the async `Node` calls them from `spawn_blocking`.
//!
//! Reference counting: a chunk is referenced while a manifest here names it (counted in the
//! catalog, in the transaction that commits the manifest) or a write in flight has pinned it
//! (counted in memory). A writer pins every chunk before checking whether its file exists,
//! and a chunk is deleted only under the index lock when both counts are zero, so a
//! delete can never remove a chunk out from under a concurrent write, and a manifest never
//! names a chunk that is not on disk.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::ClusterKey;
use crate::engine::catalog::{Catalog, Entry, Op};
use crate::engine::path::{self, PathTransform};
use crate::engine::segments::{self, Kind, Place, Segments};
use crate::erasure::ShardOf;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, write_atomic};
use crate::ids::{ChunkId, KeyId};
use crate::manifest::Manifest;
use crate::version::Version;

/// What the names of manifests set aside in `quarantine/` start with.
const MANIFEST_ASIDE: &str = "manifest-";

/// Manifests moved into the catalog per transaction when a root is migrated.
const MIGRATE_BATCH: usize = 1000;

/// The largest manifest file read (see `codec::MAX_DECODE`).
const MAX_MANIFEST_FILE: u64 = crate::codec::MAX_DECODE;
/// The largest chunk file read: a chunk of `MAX_CHUNK_SIZE` plus its IV.
const MAX_CHUNK_FILE: u64 = (crate::node::MAX_CHUNK_SIZE + crate::crypto::IV_LEN) as u64;

pub(crate) struct Store {
    chunks_dir: PathBuf,
    /// Where manifests were kept before the catalog; migrated at open.
    manifests_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    root: PathBuf,
    transform: Arc<dyn PathTransform>,
    cluster: ClusterKey,
    catalog: Catalog,
    index: Mutex<Index>,
    /// Whether chunks nothing here names are deleted. True for a standalone node; false in a
    /// cluster, where a chunk this node holds may be named by a manifest on another node, and
    /// only a cluster-wide collection (with a grace period) may remove it.
    collect: bool,
    /// Small chunks, packed (see `segments.rs`).
    segments: Segments,
    /// Chunks of at most this many stored bytes go into segments; larger ones into files.
    segment_max: usize,
    /// Chunks being appended to a segment now: a second writer of the same chunk waits for
    /// the first and then finds it held, instead of appending a second copy.
    appending: Mutex<HashSet<ChunkId>>,
    appended: std::sync::Condvar,
    /// Held open for its flock; dropping the store releases the root.
    _lock: File,
}

/// What the store keeps in memory: writes in flight and the chunk files it found. What it
/// knows of manifests is in the catalog, on disk.
#[derive(Default)]
struct Index {
    /// Chunks pinned by writes in flight (see the module doc), by number of pins.
    pins: HashMap<ChunkId, u32>,
    /// Every chunk held here, in a segment or a file, named or not (in a cluster a node
    /// holds chunks it owns whose manifests live elsewhere).
    held: HashSet<ChunkId>,
    /// Chunks found to match their id, and what they looked like then: a chunk that changed
    /// since (another file, another place) is hashed again before it counts as held (see
    /// `verified`).
    verified: HashMap<ChunkId, Stamp>,
    /// Keys whose manifest was found corrupt and set aside since the root was opened, until
    /// a version of them is held again: a standalone node says "corrupt" for them, not
    /// "not found" (see `set_aside_since_open`).
    set_aside_keys: HashSet<String>,
}

/// What a chunk looked like when it was last found good: its file's length and modification
/// time, or its place and its segment's modification time (a segment changed by anything
/// but an append is as suspect as a changed file; an append, to the active segment, only
/// costs a hash of the next deduplicated record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    File(u64, std::time::SystemTime),
    Placed(u32, u64, std::time::SystemTime),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp::File(meta.len(), meta.modified().ok()?))
}

/// A chunk being appended (see `Store::start_appending`); dropped, even by a panic, it lets
/// the writers waiting for it go on.
struct AppendingGuard<'a> {
    store: &'a Store,
    id: ChunkId,
}

impl Drop for AppendingGuard<'_> {
    fn drop(&mut self) {
        self.store
            .appending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        self.store.appended.notify_all();
    }
}

/// Whether a failed read of a chunk's copy means the copy is bad (set aside), not that the
/// read failed for a passing reason (no descriptor left, an I/O error): such a copy stays.
fn copy_is_bad(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}

/// Where a chunk's bytes are.
enum Found {
    Placed(Place),
    File(PathBuf),
}

impl Found {
    fn stamp(&self, segments: &Segments) -> Option<Stamp> {
        match self {
            Found::Placed(p) => {
                let modified = fs::metadata(segments.path(p.segment))
                    .ok()?
                    .modified()
                    .ok()?;
                Some(Stamp::Placed(p.segment, p.offset, modified))
            }
            Found::File(path) => stamp(path),
        }
    }
}

/// A deduplicated write renews the time of a packed chunk (a catalog commit) only when it is
/// older than this: the time only has to stay well inside garbage collection's grace period.
const RENEW_AFTER: u64 = 60;

/// A segment is compacted once less than this fraction of it is live...
const COMPACT_LIVE: f64 = 0.5;
/// ...and at least this much of it is dead.
const COMPACT_MIN_DEAD: u64 = 4 << 20;
/// Bytes of records moved per append and catalog commit while compacting.
const COMPACT_BATCH: u64 = 4 << 20;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub keys: u64,
    pub chunks: u64,
}

impl Store {
    /// Bytes of the files in the root (chunks, segments, the catalog, quarantine): a walk
    /// of the root, for metrics.
    pub fn disk_bytes(&self) -> u64 {
        fsutil::bytes_under(&self.root)
    }

    /// Opens the root, taking its lock before anything else is read. `secret` is the
    /// cluster secret; `None` uses the one kept in the root, made on first open.
    pub fn open(
        root: &Path,
        transform: Arc<dyn PathTransform>,
        secret: Option<&[u8]>,
        collect: bool,
        segment_max: usize,
    ) -> Result<Self> {
        fsutil::create_dir_durable(root).context(|| format!("creating {}", root.display()))?;
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked(root.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).context(|| format!("locking {}", lock_path.display()))
            }
        }
        let tmp_dir = root.join("tmp");
        for dir in ["chunks", "tmp", "quarantine"].map(|d| root.join(d)) {
            fsutil::create_dir_durable(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        let cluster = match secret {
            Some(s) => ClusterKey::from_credential(s)?,
            None => {
                let generated = || hex::encode(crate::crypto::random_bytes::<32>());
                ClusterKey::new(
                    persistent_file(root, &tmp_dir, "cluster.secret", generated)?.as_bytes(),
                )
            }
        };
        let fingerprint = hex::encode(cluster.fingerprint());
        let kept = persistent_file(root, &tmp_dir, "cluster.id", || fingerprint.clone())?;
        if kept != fingerprint {
            return Err(Error::WrongKey(format!(
                "{} belongs to a cluster with another secret; nothing was changed",
                root.display()
            )));
        }
        let catalog_path = root.join("catalog.redb");
        let catalog = Catalog::open(&catalog_path).map_err(|e| match e {
            Error::Integrity(why) => Error::Integrity(format!(
                "{why}. A cluster member can be opened with {} moved aside: repair brings back \
                 its manifests from the other owners",
                catalog_path.display()
            )),
            other => other,
        })?;
        let segments_dir = root.join("segments");
        let segments = Segments::open(&segments_dir)
            .context(|| format!("opening {}", segments_dir.display()))?;
        // Segments but no places: a catalog moved aside (or lost) with the segments kept.
        // Without this every record would look dead, the newest segment would be cut to
        // nothing and the others compacted away.
        let listed = segments.list().context(|| "listing segments".to_string())?;
        if !listed.is_empty() && !catalog.has_places()? {
            rebuild_places(&catalog, &segments, &listed)?;
        }
        // The newest segment's tail past the last record with a place was never
        // acknowledged: cut off before anything is appended after it.
        if let Some(&(newest, _)) = listed.last() {
            let end = catalog
                .places_in(newest)?
                .iter()
                .map(|(_, p)| segments::record_end(p))
                .max()
                .unwrap_or(0);
            let cut = segments
                .cut(newest, end)
                .context(|| format!("cutting segment {newest}"))?;
            if cut > 0 {
                tracing::warn!(
                    segment = newest,
                    bytes = cut,
                    "cut an unacknowledged tail off the newest segment"
                );
            }
        }
        let store = Self {
            chunks_dir: root.join("chunks"),
            manifests_dir: root.join("manifests"),
            tmp_dir,
            quarantine_dir: root.join("quarantine"),
            root: root.to_path_buf(),
            transform,
            cluster,
            catalog,
            index: Mutex::new(Index::default()),
            collect,
            segments,
            segment_max: segment_max.min(segments::MAX_RECORD),
            appending: Mutex::default(),
            appended: std::sync::Condvar::new(),
            _lock: lock,
        };
        store.recover()?;
        if let Err(e) = store.catalog.compact_if_sparse() {
            tracing::warn!(error = %e, "could not compact the catalog");
        }
        if let Err(e) = store.compact_segments() {
            tracing::warn!(error = %e, "could not compact the segments");
        }
        Ok(store)
    }

    /// Makes the root usable after a clean stop or a crash: drops staged temp files, moves
    /// manifests of the layout before the catalog into it, finds the chunks, replays the
    /// journal of a root from before segments, and removes chunks that no manifest names (left by writes that crashed before
    /// their manifest was committed, or by deletes that crashed before their chunks were
    /// removed).
    fn recover(&self) -> Result<()> {
        let ctx = |p: &Path| format!("scanning {}", p.display());
        for f in fsutil::walk_files(&self.tmp_dir).context(|| ctx(&self.tmp_dir))? {
            let _ = fs::remove_file(f);
        }
        let set_aside = self.migrate()?;
        self.load_held()?;
        self.replay_journal()?;
        if !self.collect {
            return Ok(());
        }
        let aside = fs::read_dir(&self.quarantine_dir)
            .context(|| ctx(&self.quarantine_dir))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(MANIFEST_ASIDE));
        let mut index = self.lock_index();
        if set_aside > 0 || aside {
            // The chunks of a manifest set aside (corrupt, or unreadable when the root was
            // opened, perhaps for a passing reason) look unreferenced, but may be all that is
            // left of its value: keep every chunk until the manifest is restored from
            // quarantine/ (or removed from it) or the value is written again.
            tracing::warn!(
                set_aside,
                "manifests are set aside in quarantine/; not removing unreferenced chunks"
            );
            return Ok(());
        }
        let held: Vec<ChunkId> = index.held.iter().copied().collect();
        let mut unnamed = Vec::new();
        for id in held {
            if self.catalog.refs(&id)? == 0 {
                tracing::debug!(chunk = %id, "removing unreferenced chunk");
                unnamed.push(id);
            }
        }
        self.remove_chunks(&mut index, &unnamed);
        Ok(())
    }

    /// Moves the manifest files of the layout before the catalog (`manifests/`) into it, a
    /// batch per transaction, each file removed once its batch is committed; so a crash
    /// part way leaves the rest to the next open, and a manifest moved twice is kept once
    /// (an equal version changes nothing). Corrupt, misplaced, too large or unreadable files
    /// are set aside. Returns how many were.
    fn migrate(&self) -> Result<usize> {
        if !self.manifests_dir.is_dir() {
            return Ok(0);
        }
        let files = fsutil::walk_files(&self.manifests_dir)
            .context(|| format!("scanning {}", self.manifests_dir.display()))?;
        if !files.is_empty() {
            tracing::info!(
                manifests = files.len(),
                "moving the manifests of this root into its catalog"
            );
        }
        let mut set_aside = 0;
        for batch in files.chunks(MIGRATE_BATCH) {
            let mut ops = Vec::with_capacity(batch.len());
            let mut moved = Vec::with_capacity(batch.len());
            for file in batch {
                let loaded = fsutil::read_bounded(file, MAX_MANIFEST_FILE)
                    .context(|| format!("reading {}", file.display()))
                    .and_then(|bytes| Manifest::from_bytes(&bytes, &self.cluster));
                match loaded {
                    Ok(m) if self.legacy_manifest_path(&m.body.key).ok().as_ref() == Some(file) => {
                        ops.push(Op::Put {
                            manifest: m,
                            verified_for: None,
                        });
                        moved.push(file);
                    }
                    Ok(_) => {
                        tracing::warn!(file = %file.display(), "manifest is misplaced; set aside");
                        self.set_aside_manifest(file);
                        set_aside += 1;
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "manifest is unreadable; set aside");
                        self.set_aside_manifest(file);
                        set_aside += 1;
                    }
                }
            }
            for outcome in self.catalog.apply_all(ops) {
                if let Err(e) = outcome {
                    if !matches!(e, Error::Integrity(_)) {
                        return Err(e);
                    }
                }
            }
            for file in moved {
                fs::remove_file(file).context(|| format!("removing {}", file.display()))?;
            }
        }
        fs::remove_dir_all(&self.manifests_dir)
            .context(|| format!("removing {}", self.manifests_dir.display()))?;
        fsutil::sync_dir(&self.root).context(|| format!("syncing {}", self.root.display()))?;
        Ok(set_aside)
    }

    /// The journal of a root from before segments (group commit of small chunks written in
    /// place without fsync): every object whose record is in it is written again durably
    /// (acknowledged writes whose files may not have reached the disk before a crash), the
    /// file system synced, and the journal removed.
    fn replay_journal(&self) -> Result<()> {
        let path = self.root.join("journal");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
        };
        // Read a record at a time (a journal of any size is no allocation); a failure to
        // restore one stops the replay, and the journal stays for the next open.
        let mut replayed = 0;
        let mut failed = None;
        let scanned = segments::scan(&file, |r, _| {
            let restored = match r.kind {
                Kind::Chunk => {
                    let id = ChunkId(r.id);
                    if ChunkId::of(&r.payload) != id || self.verified(&id) {
                        return Ok(());
                    }
                    self.hold_chunk(id, &r.payload)
                }
                Kind::Manifest => match Manifest::from_bytes(&r.payload, &self.cluster) {
                    Ok(m) if KeyId::of(&m.body.key).0 == r.id => self.adopt(&m).map(|_| ()),
                    _ => return Ok(()),
                },
            };
            replayed += 1;
            restored.map_err(|e| {
                let stop = std::io::Error::other(e.to_string());
                failed = Some(e);
                stop
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        scanned.context(|| format!("reading {}", path.display()))?;
        if replayed > 0 {
            tracing::info!(replayed, "objects restored from the journal");
        }
        // Chunks the journal held were written in place without fsync: made durable before
        // the journal goes.
        let root = File::open(&self.root).context(|| format!("opening {}", self.root.display()))?;
        segments::sync_file_system(&root).context(|| format!("syncing {}", self.root.display()))?;
        fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
        fsutil::sync_dir(&self.root).context(|| format!("syncing {}", self.root.display()))?;
        Ok(())
    }

    /// Finds every chunk: those in segments from the catalog, then the chunk files. A file's
    /// id is its name for transforms that keep it (the default); otherwise (the seed's SHA-1
    /// transform) the file is hashed. A file that is neither is set aside.
    fn load_held(&self) -> Result<()> {
        let files = fsutil::walk_files(&self.chunks_dir)
            .context(|| format!("scanning {}", self.chunks_dir.display()))?;
        let placed = self.catalog.placed()?;
        let mut held = HashSet::with_capacity(files.len() + placed.len());
        held.extend(placed);
        for file in files {
            let by_name = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(ChunkId::from_hex)
                .filter(|id| self.chunk_path(id).ok().as_ref() == Some(&file));
            let id = by_name.or_else(|| {
                let id = ChunkId::of(&fsutil::read_bounded(&file, MAX_CHUNK_FILE).ok()?);
                (self.chunk_path(&id).ok().as_ref() == Some(&file)).then_some(id)
            });
            match id {
                Some(id) => {
                    held.insert(id);
                }
                None => {
                    tracing::warn!(file = %file.display(), "chunk file is corrupt or misplaced; set aside");
                    self.set_aside(&file);
                }
            }
        }
        self.lock_index().held = held;
        Ok(())
    }

    /// The key of the cluster MAC on manifests.
    pub fn cluster(&self) -> &ClusterKey {
        &self.cluster
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves the index as consistent as any single step
        // leaves it (every mutation is a few in-memory map updates), so poisoning is ignored.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chunk_path(&self, id: &ChunkId) -> Result<PathBuf> {
        path::resolve(self.transform.as_ref(), &self.chunks_dir, &id.to_hex())
    }

    /// Where the layout before the catalog kept `key`'s manifest.
    fn legacy_manifest_path(&self, key: &str) -> Result<PathBuf> {
        path::resolve(
            self.transform.as_ref(),
            &self.manifests_dir,
            &KeyId::of(key).to_hex(),
        )
    }

    /// Reads `root/name`, or creates it: see [`persistent_file`].
    pub fn persistent_file(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        persistent_file(&self.root, &self.tmp_dir, name, make)
    }

    /// Pins `id` for a write in flight and makes sure its bytes are on disk, durably. The
    /// caller owns one pin per call and must either hand it to a manifest (`commit`) or
    /// release it (`unpin`).
    pub fn put_chunk(&self, id: ChunkId, stored: &[u8]) -> Result<()> {
        *self.lock_index().pins.entry(id).or_insert(0) += 1;
        // Pinned first, so a chunk found on disk (deduplicated) cannot be deleted under us.
        self.hold_chunk(id, stored)
            .inspect_err(|_| self.unpin(&[id]))
    }

    /// `hold_chunk` for shard `id` of an erasure-coded chunk, recording first what it
    /// belongs to (so repair never takes it for a replicated chunk). The caller vouches that
    /// `stored` hashes to `id` and that `of` passed `ShardOf::check`.
    pub fn hold_shard(&self, id: ChunkId, stored: &[u8], of: &ShardOf) -> Result<()> {
        self.catalog.apply(Op::Shard { id, of: of.clone() })?;
        self.hold_chunk(id, stored)
    }

    /// What each of `ids` is a shard of, if it is a shard held here.
    pub fn shards_of(&self, ids: &[ChunkId]) -> Result<Vec<Option<ShardOf>>> {
        self.catalog.shards(ids)
    }

    /// Pins chunks for a write in flight that stores them elsewhere (a cluster write): while
    /// pinned they count as referenced when garbage collection asks. Released by `unpin`.
    pub fn pin(&self, ids: &[ChunkId]) {
        let mut index = self.lock_index();
        for id in ids {
            *index.pins.entry(*id).or_insert(0) += 1;
        }
    }

    /// Makes sure the bytes of chunk `id` are on disk, durably, writing them unless they
    /// already are. No pin. The caller vouches that `stored` hashes to `id` (bytes from a
    /// peer are checked where they arrive). A chunk already here has its modification time
    /// renewed: garbage collection spares chunks written to within its grace period, which
    /// covers a write in flight that names a chunk already stored.
    ///
    /// A file already here counts only once it is found to match `id` (a rotten one used to
    /// be trusted: the write was acknowledged and the value unreadable); a bad one is set
    /// aside and replaced by `stored`.
    pub fn hold_chunk(&self, id: ChunkId, stored: &[u8]) -> Result<()> {
        if self.verified(&id) {
            self.renew(&id);
            self.lock_index().held.insert(id);
            return Ok(());
        }
        let found = if stored.len() <= self.segment_max {
            let Some(_appending) = self.start_appending(id) else {
                // The other writer's copy, unless its append failed.
                return self.hold_chunk(id, stored);
            };
            Found::Placed(self.append_chunk(id, stored)?)
        } else {
            let path = self.chunk_path(&id)?;
            write_atomic(&self.tmp_dir, &path, stored).context(|| format!("writing chunk {id}"))?;
            Found::File(path)
        };
        let mut index = self.lock_index();
        index.held.insert(id);
        if let Some(s) = found.stamp(&self.segments) {
            index.verified.insert(id, s);
        }
        Ok(())
    }

    /// Marks chunk `id` as being appended, until the guard is dropped; `None` (after
    /// waiting for it) if another writer was appending it.
    fn start_appending(&self, id: ChunkId) -> Option<AppendingGuard<'_>> {
        let mut appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        if !appending.contains(&id) {
            appending.insert(id);
            return Some(AppendingGuard { store: self, id });
        }
        while appending.contains(&id) {
            appending = self
                .appended
                .wait(appending)
                .unwrap_or_else(|e| e.into_inner());
        }
        None
    }

    /// Appends a chunk to the active segment and commits its place.
    fn append_chunk(&self, id: ChunkId, stored: &[u8]) -> Result<Place> {
        let appended = self
            .segments
            .append(&[(&id.0, stored)])
            .context(|| format!("writing chunk {id}"))?;
        let place = appended.places[0];
        let op = Op::Place {
            id,
            place,
            expect: None,
        };
        self.catalog.apply(op)?;
        drop(appended); // committed: no longer pending in its segment
        Ok(place)
    }

    /// Marks chunk `id` as wanted now (garbage collection spares chunks written to within its
    /// grace period): a file's modification time, a place's time (when not recent).
    fn renew(&self, id: &ChunkId) {
        match self.find(id) {
            Some(Found::File(path)) => {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
            }
            Some(Found::Placed(p)) if p.written + RENEW_AFTER < segments::now_secs() => {
                let op = Op::Place {
                    id: *id,
                    place: Place {
                        written: segments::now_secs(),
                        ..p
                    },
                    expect: Some(p),
                };
                if let Err(e) = self.catalog.apply(op) {
                    tracing::warn!(chunk = %id, error = %e, "could not renew a chunk's time");
                }
            }
            _ => {}
        }
    }

    /// Where chunk `id`'s bytes are, if here: its place in a segment, else its file. A
    /// catalog that cannot be read is logged and taken to say "not in a segment".
    fn find(&self, id: &ChunkId) -> Option<Found> {
        match self.catalog.place(id) {
            Ok(Some(p)) => return Some(Found::Placed(p)),
            Ok(None) => {}
            Err(e) => tracing::warn!(chunk = %id, error = %e, "could not read a chunk's place"),
        }
        let path = self.chunk_path(id).ok()?;
        path.exists().then_some(Found::File(path))
    }

    /// The bytes at `found`, bounded.
    fn read_found(&self, found: &Found) -> std::io::Result<Vec<u8>> {
        match found {
            Found::Placed(p) => self.segments.read(p),
            Found::File(path) => fsutil::read_bounded(path, MAX_CHUNK_FILE),
        }
    }

    /// Whether chunk `id` is here and matches its id: at once if it has not changed since
    /// it was last found good, else by hashing it. A copy that does not match is set aside,
    /// and the chunk is not held any more.
    fn verified(&self, id: &ChunkId) -> bool {
        let Some(found) = self.find(id) else {
            return false;
        };
        let Some(now) = found.stamp(&self.segments) else {
            return false;
        };
        if self.lock_index().verified.get(id) == Some(&now) {
            return true;
        }
        let bytes = self.read_found(&found);
        if bytes.as_ref().is_ok_and(|b| ChunkId::of(b) == *id) {
            self.lock_index().verified.insert(*id, now);
            return true;
        }
        if let Err(e) = &bytes {
            if !copy_is_bad(e) {
                // Moved or removed meanwhile, or a passing failure: not held for now (a
                // writer writes it again), but not set aside.
                tracing::debug!(chunk = %id, error = %e, "could not read a chunk");
                return false;
            }
        }
        tracing::warn!(chunk = %id, "chunk does not match its id; set aside");
        self.set_aside_chunk(id, &found, bytes.ok().as_deref());
        false
    }

    /// Sets a bad copy of chunk `id` aside in `quarantine/` (a file is moved there, a
    /// segment record's bytes copied, the rest of its segment untouched), so it is never
    /// served again and is no longer held.
    fn set_aside_chunk(&self, id: &ChunkId, found: &Found, bytes: Option<&[u8]>) {
        let mut index = self.lock_index();
        index.held.remove(id);
        index.verified.remove(id);
        match found {
            Found::File(path) => self.set_aside(path),
            Found::Placed(p) => {
                if let Some(bytes) = bytes {
                    let name = format!(
                        "chunk-{}-{}",
                        id.to_hex(),
                        hex::encode(crate::crypto::random_bytes::<4>())
                    );
                    let kept = write_atomic(&self.tmp_dir, &self.quarantine_dir.join(name), bytes);
                    if let Err(e) = kept {
                        tracing::warn!(chunk = %id, error = %e, "could not keep a corrupt chunk in quarantine/");
                    }
                }
                let op = Op::Unplace {
                    id: *id,
                    at: Some(*p),
                };
                if let Err(e) = self.catalog.apply(op) {
                    tracing::warn!(chunk = %id, error = %e, "could not forget a corrupt chunk's place");
                }
            }
        }
    }

    /// Every chunk held here.
    pub fn chunk_ids(&self) -> Vec<ChunkId> {
        self.lock_index().held.iter().copied().collect()
    }

    /// Whether a manifest held here, or a write in flight through this node, names `id`. A
    /// catalog that cannot be read says yes: nothing is collected on its account.
    pub fn is_referenced(&self, id: &ChunkId) -> bool {
        let index = self.lock_index();
        self.referenced(&index, id)
    }

    /// `is_referenced`, for a caller that holds the index lock (so no write can pin `id` or
    /// commit a manifest naming it, which pins it first, between the check and a delete).
    fn referenced(&self, index: &Index, id: &ChunkId) -> bool {
        index.pins.get(id).is_some_and(|n| *n > 0) || self.catalog.refs(id).map_or(true, |n| n > 0)
    }

    /// How long since chunk `id` was last written (or rewritten by a deduplicated write).
    pub fn chunk_age(&self, id: &ChunkId) -> Option<std::time::Duration> {
        match self.find(id)? {
            Found::Placed(p) => Some(std::time::Duration::from_secs(
                segments::now_secs().saturating_sub(p.written),
            )),
            Found::File(path) => {
                let modified = fs::metadata(path).ok()?.modified().ok()?;
                Some(modified.elapsed().unwrap_or_default())
            }
        }
    }

    /// Removes chunk `id` if nothing here names it (garbage collection, after the cluster
    /// agreed that nothing else does). Under the index lock, so a write that pins it first
    /// keeps it. Returns whether it was removed.
    pub fn collect_chunk(&self, id: &ChunkId) -> bool {
        let mut index = self.lock_index();
        if self.referenced(&index, id) {
            return false;
        }
        index.pins.remove(id);
        self.remove_chunk(&mut index, id)
    }

    /// Removes this node's copy of chunk `id`, which it no longer owns and whose owners have
    /// it (hand-off after a membership change). Local references do not keep it: in a cluster
    /// reads fetch chunks from their owners.
    pub fn drop_chunk(&self, id: &ChunkId) -> bool {
        let mut index = self.lock_index();
        self.remove_chunk(&mut index, id)
    }

    /// Removes chunk `id`: its place (its record becomes garbage, for compaction) or its
    /// file. Under the index lock (the caller's), so no writer finds it between the check
    /// that nothing names it and its removal.
    fn remove_chunk(&self, index: &mut Index, id: &ChunkId) -> bool {
        self.remove_chunks(index, &[*id]) > 0
    }

    /// `remove_chunk` for many, with one catalog commit for all their places; how many were
    /// here.
    fn remove_chunks(&self, index: &mut Index, ids: &[ChunkId]) -> usize {
        let mut ops = Vec::new();
        for id in ids {
            index.held.remove(id);
            index.verified.remove(id);
            // Wherever it is: a compaction may be moving it.
            ops.push(Op::Unplace { id: *id, at: None });
        }
        let mut removed = 0;
        for outcome in self.catalog.apply_all(ops) {
            match outcome {
                Ok(changed) => removed += usize::from(changed.is_some()),
                Err(e) => tracing::warn!(error = %e, "could not remove a chunk"),
            }
        }
        for id in ids {
            match self.chunk_path(id).map(fs::remove_file) {
                Ok(Ok(())) => removed += 1,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(Err(e)) => tracing::warn!(chunk = %id, error = %e, "could not remove a chunk"),
                Err(_) => {}
            }
        }
        removed
    }

    /// Removes this node's manifest of `key` if it is still at `version`: hand-off of a
    /// manifest this node no longer owns, or collection of an old tombstone. The chunks it
    /// named lose a reference.
    pub fn forget_manifest(&self, key: &str, version: Version) -> Result<bool> {
        let op = Op::Remove {
            key: key.to_owned(),
            version: Some(version),
        };
        let Some(released) = self.catalog.apply(op)? else {
            return Ok(false);
        };
        self.delete_unreferenced(&released);
        Ok(true)
    }

    /// Sets the manifest of `key` aside in `quarantine/` if it is still at `version` (one
    /// stamped from the far future: see `Node::open`). Its chunks stay until the next open,
    /// which decides on them as for any unnamed chunk.
    pub fn quarantine_manifest(&self, key: &str, version: Version) -> Result<bool> {
        let bytes = self.catalog.manifest(key)?;
        let op = Op::Remove {
            key: key.to_owned(),
            version: Some(version),
        };
        if self.catalog.apply(op)?.is_none() {
            return Ok(false);
        }
        if let Some(bytes) = bytes {
            self.keep_aside(key, &bytes);
        }
        Ok(true)
    }

    /// Whether a good copy of chunk `id` is here (verified, see `hold_chunk`): what this
    /// node tells peers that ask, so a rotten copy never counts toward replication. Reads
    /// the file when it changed since it was last found good.
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.verified(id)
    }

    /// Whether a copy of chunk `id` is here, good or not: a cheap first look before a read
    /// that checks it anyway.
    pub fn may_hold_chunk(&self, id: &ChunkId) -> bool {
        self.find(id).is_some()
    }

    /// Commits a manifest that came from elsewhere (a peer, or this node's own cluster
    /// write): its chunks need not be here. Returns whether it was newer than what was held.
    pub fn adopt(&self, manifest: &Manifest) -> Result<bool> {
        self.adopt_reporting(manifest).map(|(newer, _)| newer)
    }

    /// `adopt`, also answering with the version of the key held before (the newer of the two
    /// is held after): what a writer needs to know to stamp its write again after a newer
    /// one (see `Remote::put_manifest`).
    pub fn adopt_reporting(&self, manifest: &Manifest) -> Result<(bool, Option<Version>)> {
        self.pin(manifest.stored());
        let committed = self.commit_reporting(manifest);
        if !matches!(committed, Ok((true, _))) {
            self.unpin(manifest.stored());
        }
        committed
    }

    /// Releases pins, deleting chunks nobody names any more.
    pub fn unpin(&self, ids: &[ChunkId]) {
        let mut doomed = Vec::new();
        {
            let mut index = self.lock_index();
            for id in ids {
                if let Some(n) = index.pins.get_mut(id) {
                    debug_assert!(*n > 0, "unpinning a chunk nobody pinned");
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        index.pins.remove(id);
                        doomed.push(*id);
                    }
                }
            }
        }
        self.delete_unreferenced(&doomed);
    }

    /// Deletes those of `ids` that nothing references now (standalone only: in a cluster a
    /// chunk may be named by a manifest on another node). Under the index lock, so no writer
    /// can pin one between the check and the unlink.
    fn delete_unreferenced(&self, ids: &[ChunkId]) {
        if !self.collect || ids.is_empty() {
            return;
        }
        let mut index = self.lock_index();
        let unnamed: Vec<ChunkId> = ids
            .iter()
            .filter(|id| !self.referenced(&index, id))
            .copied()
            .collect();
        self.remove_chunks(&mut index, &unnamed);
    }

    /// Makes `manifest` the key's current version if it is newer than what is held, durably
    /// (in the catalog's next group commit). On `Ok(true)` the manifest has taken over the
    /// caller's pins on its chunks; on `Ok(false)` (an equal or newer version was already
    /// here) the caller keeps them. A newer version that may not replace a sealed one
    /// (`Manifest::may_replace`) is an `Integrity` error.
    pub fn commit(&self, manifest: &Manifest) -> Result<bool> {
        self.commit_reporting(manifest).map(|(newer, _)| newer)
    }

    /// `commit`, also answering with the version of the key held before (read once, for the
    /// seal check too).
    fn commit_reporting(&self, manifest: &Manifest) -> Result<(bool, Option<Version>)> {
        let key = &manifest.body.key;
        // The seal is checked (a signature, tens of microseconds) before the commit, for the
        // sealing key of the version held now; the commit checks it again only if another
        // version came in between.
        let held = self.catalog.entry(key).unwrap_or_else(|e| {
            tracing::warn!(key, error = %e, "catalog entry is unreadable");
            None
        });
        let before = held.as_ref().map(|e| e.version);
        let mut verified_for = None;
        if let Some(Entry {
            version,
            sealed_by: Some(p),
            ..
        }) = held
        {
            if version < manifest.body.version {
                manifest.may_replace(&p)?;
                verified_for = Some(p);
            }
        }
        let op = Op::Put {
            manifest: manifest.clone(),
            verified_for,
        };
        let Some(released) = self.catalog.apply(op)? else {
            return Ok((false, before));
        };
        self.lock_index().set_aside_keys.remove(key);
        // The catalog's references took over the pins. Released through `unpin`, which
        // deletes what nothing names: a newer version may already have replaced this one
        // and released these chunks while the pins still held them.
        self.unpin(manifest.stored());
        self.delete_unreferenced(&released);
        Ok((true, before))
    }

    /// Loads the current manifest of `key` from the catalog and checks its cluster MAC.
    pub fn manifest(&self, key: &str) -> Result<Manifest> {
        let Some(bytes) = self.catalog.manifest(key)? else {
            return Err(Error::NotFound(key.to_owned()));
        };
        let checked = Manifest::from_bytes(&bytes, &self.cluster).and_then(|m| {
            if m.body.key == key {
                Ok(m)
            } else {
                Err(Error::Integrity(format!(
                    "the manifest stored for {key:?} names {:?}",
                    m.body.key
                )))
            }
        });
        if let Err(Error::Integrity(why)) = &checked {
            // Never served again: set aside, and no longer held, so that repair brings a good
            // copy back from another owner. Its chunks lose the references it held, but stay
            // (for a standalone node they may be all that is left of the value): nothing is
            // collected at open while a manifest is in quarantine/.
            tracing::warn!(key, error = %why, "manifest is corrupt; set aside");
            self.keep_aside(key, &bytes);
            let removed = self.catalog.apply(Op::Remove {
                key: key.to_owned(),
                version: None,
            });
            if let Err(e) = removed {
                tracing::warn!(key, error = %e, "could not remove a corrupt manifest");
            }
            self.lock_index().set_aside_keys.insert(key.to_owned());
        }
        checked
    }

    /// Whether `key`'s manifest was found corrupt and set aside since the root was opened,
    /// and no version of it is held since.
    pub fn set_aside_since_open(&self, key: &str) -> bool {
        self.lock_index().set_aside_keys.contains(key)
    }

    /// Reads a chunk and checks it against its id. A chunk that fails is moved to quarantine
    /// (never served again) and reported as an integrity error.
    pub fn chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        // Again if a packed chunk's segment went (compaction moved it) between finding its
        // place and reading it.
        for _ in 0..8 {
            let Some(found) = self.find(id) else {
                break;
            };
            let (why, bytes) = match self.read_found(&found) {
                Ok(b) if ChunkId::of(&b) == *id => return Ok(b),
                Ok(b) => (format!("chunk {id} does not match its hash"), Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    (format!("chunk {id}: its segment is cut short"), None)
                }
                Err(e) if copy_is_bad(&e) => (format!("chunk {id}: {e}"), None),
                Err(e) => return Err(e).context(|| format!("reading chunk {id}")),
            };
            tracing::warn!(chunk = %id, why, "corrupt chunk; set aside");
            self.set_aside_chunk(id, &found, bytes.as_deref());
            return Err(Error::Integrity(why));
        }
        let mut index = self.lock_index();
        index.held.remove(id);
        index.verified.remove(id);
        Err(Error::Integrity(format!("chunk {id} is missing")))
    }

    /// Rewrites the segments that are mostly garbage (deleted or replaced chunks, torn
    /// appends; at least `COMPACT_MIN_DEAD` bytes of it): their live records are appended to the active segment, their places moved
    /// in the catalog (only where a chunk is still at its old place: a concurrent delete or
    /// rewrite wins), and once no place points into a segment, it is removed. Crash-safe at
    /// every step: a record is durable in its new segment before its place moves, and a
    /// segment goes only after every move out of it is committed. Returns the bytes given
    /// back to the file system.
    pub fn compact_segments(&self) -> Result<u64> {
        let ctx = || "compacting segments".to_string();
        let live = self.catalog.segment_live()?;
        let mut freed = 0;
        for (segment, size) in self.segments.list().context(ctx)? {
            let alive = live.get(&segment).copied().unwrap_or(0);
            let dead = size.saturating_sub(alive);
            if dead < COMPACT_MIN_DEAD || alive as f64 >= COMPACT_LIVE * size as f64 {
                continue;
            }
            // The segment appended to is closed first (its live records go to a new one), and
            // writes still committing places into it are waited for: after that, the places
            // in it are all there will be.
            self.segments.settle(segment);
            let started = std::time::Instant::now();
            let places = self.catalog.places_in(segment)?;
            let mut moved = 0usize;
            let mut batch: Vec<(ChunkId, Place, Vec<u8>)> = Vec::new();
            let mut batch_bytes = 0;
            for (i, (id, place)) in places.iter().enumerate() {
                match self.segments.read(place) {
                    Ok(bytes) if ChunkId::of(&bytes) == *id => {
                        batch_bytes += bytes.len() as u64;
                        batch.push((*id, *place, bytes));
                    }
                    Ok(bytes) => {
                        tracing::warn!(chunk = %id, "corrupt chunk found by compaction; set aside");
                        self.set_aside_chunk(id, &Found::Placed(*place), Some(&bytes));
                    }
                    Err(e) if copy_is_bad(&e) => {
                        tracing::warn!(chunk = %id, error = %e, "unreadable chunk found by compaction; set aside");
                        self.set_aside_chunk(id, &Found::Placed(*place), None);
                    }
                    // A passing failure: the record stays where it is, and so does its
                    // segment (below).
                    Err(e) => {
                        tracing::warn!(chunk = %id, error = %e, "could not read a chunk to compact")
                    }
                }
                if batch_bytes >= COMPACT_BATCH || (i + 1 == places.len() && !batch.is_empty()) {
                    moved += self.move_records(std::mem::take(&mut batch))?;
                    batch_bytes = 0;
                }
            }
            // Only the places themselves prove it empty: every move above was conditional.
            if !self.catalog.places_in(segment)?.is_empty() {
                tracing::warn!(
                    segment,
                    "a segment still holds live chunks after compaction; kept"
                );
                continue;
            }
            self.segments.remove(segment).context(ctx)?;
            self.catalog.forget_segment(segment)?;
            freed += size;
            tracing::info!(
                segment,
                size,
                moved,
                ms = started.elapsed().as_millis() as u64,
                "compacted a segment"
            );
        }
        Ok(freed)
    }

    /// Appends `records` to the active segment (one fsync) and moves their places there,
    /// each only if its chunk is still at its old place. Returns how many moved.
    fn move_records(&self, records: Vec<(ChunkId, Place, Vec<u8>)>) -> Result<usize> {
        let chunks: Vec<(&[u8; 32], &[u8])> = records
            .iter()
            .map(|(id, _, b)| (&id.0, b.as_slice()))
            .collect();
        let appended = self
            .segments
            .append(&chunks)
            .context(|| "compacting segments".to_string())?;
        let ops = records
            .iter()
            .zip(appended.places.iter().copied())
            .map(|((id, from, _), to)| Op::Place {
                id: *id,
                place: Place {
                    written: from.written,
                    ..to
                },
                expect: Some(*from),
            })
            .collect();
        let mut moved = 0;
        for outcome in self.catalog.apply_all(ops) {
            moved += usize::from(outcome?.is_some());
        }
        Ok(moved)
    }

    /// Sets a manifest file aside. While any is in `quarantine/`, opening the root removes no
    /// unnamed chunk: they may be all that is left of its value.
    fn set_aside_manifest(&self, file: &Path) {
        self.set_aside_as(file, MANIFEST_ASIDE);
    }

    /// Keeps the stored bytes of `key`'s manifest in `quarantine/`, as `set_aside_manifest`
    /// does for a file.
    fn keep_aside(&self, key: &str, bytes: &[u8]) {
        let name = format!(
            "{MANIFEST_ASIDE}{}-{}",
            KeyId::of(key).to_hex(),
            hex::encode(crate::crypto::random_bytes::<4>())
        );
        if let Err(e) = write_atomic(&self.tmp_dir, &self.quarantine_dir.join(name), bytes) {
            tracing::warn!(key, error = %e, "could not keep a corrupt manifest in quarantine/");
        }
    }

    fn set_aside(&self, file: &Path) {
        self.set_aside_as(file, "");
    }

    fn set_aside_as(&self, file: &Path, prefix: &str) {
        let name = format!(
            "{prefix}{}-{}",
            file.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            hex::encode(crate::crypto::random_bytes::<4>())
        );
        if let Err(e) = fs::rename(file, self.quarantine_dir.join(name)) {
            tracing::warn!(file = %file.display(), error = %e, "could not quarantine corrupt file");
        }
    }

    /// Every key held, with its version and whether it is deleted.
    pub fn key_states(&self) -> Result<Vec<crate::net::message::KeyState>> {
        self.catalog.page("", "", usize::MAX)
    }

    /// The newest version held of `key`, tombstones included. A catalog that cannot be read
    /// says none (logged): a peer asking is then sent a copy, which changes nothing here.
    pub fn version_of(&self, key: &str) -> Option<Version> {
        match self.catalog.entry(key) {
            Ok(e) => e.map(|e| e.version),
            Err(e) => {
                tracing::warn!(key, error = %e, "catalog entry is unreadable");
                None
            }
        }
    }

    /// One page of `key_states`: keys starting with `prefix` and after `start_after`, in byte
    /// order, at most `limit`.
    pub fn key_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<crate::net::message::KeyState>> {
        self.catalog.page(prefix, start_after, limit)
    }

    /// The newest version time held, within `horizon`: versions stamped beyond it (a peer's
    /// poisoned clock, before such clocks were refused) are set aside first, or no later
    /// write could ever replace those keys. Reads every entry only when there is one.
    pub fn newest_within(&self, horizon: u64) -> Result<u64> {
        let newest = self.catalog.newest()?;
        if newest <= horizon {
            return Ok(newest);
        }
        let mut within = 0;
        for s in self.key_states()? {
            if s.version.time <= horizon {
                within = within.max(s.version.time);
            } else {
                tracing::warn!(
                    key = s.key,
                    "manifest stamped from the far future; set aside"
                );
                self.quarantine_manifest(&s.key, s.version)?;
            }
        }
        self.catalog.lower_newest(within)?;
        Ok(within)
    }

    /// Rewrites the catalog if most of its file is waste; the bytes given back to the file
    /// system. Other catalog calls wait while it runs (see `Catalog::compact_if_sparse`).
    pub fn compact_catalog(&self) -> Result<u64> {
        self.catalog.compact_if_sparse()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            keys: self.catalog.live(),
            chunks: self.lock_index().held.len() as u64,
        }
    }
}

/// Finds every intact chunk record in `listed` segments and records its place: for a root
/// whose catalog lost its places (moved aside, lost) but kept its segments. Chunks nothing
/// names then are collected as usual (at once on a standalone node, by the cluster's
/// collection on a member, whose manifests repair brings back).
fn rebuild_places(catalog: &Catalog, segments: &Segments, listed: &[(u32, u64)]) -> Result<()> {
    tracing::warn!(
        segments = listed.len(),
        "the catalog has no places for the segments here; finding them in the segments"
    );
    let written = segments::now_secs();
    let mut found = 0u64;
    for &(segment, size) in listed {
        let path = segments.path(segment);
        let file = File::open(&path).context(|| format!("opening {}", path.display()))?;
        let mut ops = Vec::new();
        let commit = |ops: &mut Vec<Op>| -> Result<()> {
            for outcome in catalog.apply_all(std::mem::take(ops)) {
                outcome?;
            }
            Ok(())
        };
        let end = segments::scan(&file, |record, offset| {
            if record.kind == Kind::Chunk && ChunkId::of(&record.payload).0 == record.id {
                let place = Place {
                    segment,
                    offset,
                    len: record.payload.len() as u32,
                    written,
                };
                ops.push(Op::Place {
                    id: ChunkId(record.id),
                    place,
                    expect: None,
                });
                found += 1;
            }
            if ops.len() >= 4096 {
                commit(&mut ops).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            Ok(())
        })
        .context(|| format!("reading {}", path.display()))?;
        commit(&mut ops)?;
        if end < size {
            tracing::warn!(
                segment,
                bytes = size - end,
                "a segment ends in a damaged record"
            );
        }
    }
    tracing::info!(chunks = found, "places found in the segments");
    Ok(())
}

/// Reads `root/name`, or creates it with `make()` (durably, owner-only) if absent: the node id
/// and generated keys, made once and kept for the life of the root.
fn persistent_file(
    root: &Path,
    tmp_dir: &Path,
    name: &str,
    make: impl FnOnce() -> String,
) -> Result<String> {
    let path = root.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => return Ok(s.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(|| format!("reading {}", path.display()))
        }
        Err(_) => {}
    }
    let value = make();
    write_atomic(tmp_dir, &path, format!("{value}\n").as_bytes())
        .context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .context(|| format!("restricting {}", path.display()))?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::path::Sharded;

    /// Compaction while writers append and deleters remove (as on a member, where it runs
    /// between scrub passes): every chunk written and not removed reads back, also after
    /// reopening, and compaction removed segments meanwhile. (The race it guards against, a
    /// place committed into a segment just removed, is too narrow to hit here: `settle`,
    /// which closes it, has its own test in `segments.rs`.)
    #[test]
    fn compaction_alongside_writes_and_deletes_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), Arc::new(Sharded), Some(b"s"), false, 256 << 10).unwrap();
        let chunk = |i: u32| -> Vec<u8> {
            let mut v = vec![(i % 251) as u8; 8 << 10];
            v[..4].copy_from_slice(&i.to_le_bytes());
            v
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut freed = 0;
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..4u32)
                .map(|t| {
                    let (store, chunk) = (&store, &chunk);
                    s.spawn(move || {
                        for i in (t..4000).step_by(4) {
                            let bytes = chunk(i);
                            store.hold_chunk(ChunkId::of(&bytes), &bytes).unwrap();
                            // Two in three are removed again soon after.
                            if i % 3 != 0 && i >= 8 {
                                store.drop_chunk(&ChunkId::of(&chunk(i - 8)));
                            }
                        }
                    })
                })
                .collect();
            let compactor = s.spawn(|| {
                let mut freed = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    freed += store.compact_segments().unwrap();
                }
                freed
            });
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            freed = compactor.join().unwrap();
        });
        freed += store.compact_segments().unwrap();
        assert!(freed > 0, "compaction ran and removed segments");
        // Chunk i is dropped by the same writer at i + 8 (one writer per residue mod 4).
        let kept = |i: u32| i + 8 >= 4000 || (i + 8).is_multiple_of(3);
        for i in 0..4000 {
            let bytes = chunk(i);
            let id = ChunkId::of(&bytes);
            if kept(i) {
                assert_eq!(store.chunk(&id).unwrap(), bytes, "chunk {i}");
            } else {
                assert!(!store.has_chunk(&id), "chunk {i} was removed");
            }
        }
        drop(store);
        let store =
            Store::open(dir.path(), Arc::new(Sharded), Some(b"s"), false, 256 << 10).unwrap();
        for i in (0..4000).filter(|i| kept(*i)) {
            let bytes = chunk(i);
            assert_eq!(
                store.chunk(&ChunkId::of(&bytes)).unwrap(),
                bytes,
                "chunk {i} after reopening"
            );
        }
    }

    /// A root from before segments: chunks acknowledged through its journal (written in
    /// place without fsync, so perhaps lost) are replayed into segments at open, read back,
    /// and the journal is gone; a torn record at its end is not replayed.
    #[test]
    fn a_journal_from_before_segments_is_replayed_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..50u32)
            .map(|i| [i.to_le_bytes().as_slice(), &[3; 20 << 10]].concat())
            .collect();
        let mut journal = Vec::new();
        for c in &chunks {
            journal.extend(segments::encode(Kind::Chunk, &ChunkId::of(c).0, c));
        }
        let torn = segments::encode(Kind::Chunk, &[9; 32], b"never acknowledged");
        journal.extend(&torn[..torn.len() - 5]);
        std::fs::write(dir.path().join("journal"), journal).unwrap();
        let store =
            Store::open(dir.path(), Arc::new(Sharded), Some(b"s"), false, 256 << 10).unwrap();
        assert!(!dir.path().join("journal").exists());
        assert_eq!(store.stats().chunks, 50);
        for c in &chunks {
            assert_eq!(&store.chunk(&ChunkId::of(c)).unwrap(), c);
            assert!(store.catalog.place(&ChunkId::of(c)).unwrap().is_some());
        }
    }

    /// A member opened with its catalog moved aside (what the error for an unreadable
    /// catalog advises) keeps its packed chunks: their places are found again in the
    /// segments, instead of every record looking dead (cut off, compacted away).
    #[test]
    fn a_catalog_moved_aside_keeps_the_chunks_in_segments() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || Store::open(dir.path(), Arc::new(Sharded), Some(b"s"), false, 256 << 10).unwrap();
        let store = open();
        let chunks: Vec<Vec<u8>> = (0..600u32)
            .map(|i| [i.to_le_bytes().as_slice(), &[7; 16 << 10]].concat())
            .collect();
        for c in &chunks {
            store.hold_chunk(ChunkId::of(c), c).unwrap();
        }
        drop(store);
        let catalog = dir.path().join("catalog.redb");
        std::fs::rename(&catalog, dir.path().join("catalog.redb.aside")).unwrap();
        let store = open();
        assert_eq!(store.stats().chunks, 600);
        for c in &chunks {
            assert_eq!(&store.chunk(&ChunkId::of(c)).unwrap(), c);
        }
    }
}
