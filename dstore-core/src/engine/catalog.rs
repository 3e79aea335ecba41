//! The catalog: every manifest this node holds (small values inside them, see
//! `manifest::INLINE_MAX`), in one embedded database, `root/catalog.redb` (redb: ACID,
//! copy-on-write B-trees, one fsync per commit, a stable file format).
//!
//! Tables:
//! - `manifests`: key → the manifest's stored bytes (MACed: checked on every read);
//! - `entries`: key → what the node needs without reading the manifest (version, tombstone,
//!   the chunks it names, the data key that sealed it), checksummed; ordered by key, so a
//!   listing page is one range read, and nothing of the keys is kept in memory;
//! - `chunk_refs`: chunk id → how many manifests here name it, kept in the same transaction
//!   as the manifests, so opening a root counts nothing;
//! - `places`: chunk id → where a chunk packed into a segment is (see `segments.rs`), and
//!   `segment_live`: segment → the bytes of it that places point at (for compaction);
//! - `shards`: chunk id → what a held erasure-coded shard belongs to (`erasure::ShardOf`):
//!   written before its bytes, removed with them;
//! - `meta`: the number of live keys, the newest version time held (the clock starts
//!   after it), and the bytes of keys and values in the tables (for compaction).
//!
//! Group commit: writers queue their operations; one of them (the leader) applies the whole
//! queue in one write transaction and one fsync, while the next queue fills. So concurrent
//! small writes share a commit, as they shared the journal's fsync before.
//!
//! All methods block on disk I/O; the store calls them from the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::engine::segments::Place;
use crate::erasure::ShardOf;
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::manifest::Manifest;
use crate::net::message::KeyState;
use crate::version::Version;

const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
const REFS: TableDefinition<&[u8; 32], u32> = TableDefinition::new("chunk_refs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// A place: segment, offset, length, time written.
type PlaceRow = (u32, u64, u32, u64);
const PLACES: TableDefinition<&[u8; 32], PlaceRow> = TableDefinition::new("places");
const SEGMENT_LIVE: TableDefinition<u32, u64> = TableDefinition::new("segment_live");
const SHARDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("shards");
const LIVE: &str = "live keys";
const NEWEST: &str = "newest version time";
/// Bytes of keys and values in the tables: what a packed file would hold (see compaction).
const DATA: &str = "data bytes";
/// A row of `chunk_refs`: the id and the count.
const REF_ROW: u64 = 32 + 4;
/// A row of `places`.
const PLACE_ROW: u64 = 32 + 24;

fn place_of(row: PlaceRow) -> Place {
    let (segment, offset, len, written) = row;
    Place {
        segment,
        offset,
        len,
        written,
    }
}

fn row_of(p: &Place) -> PlaceRow {
    (p.segment, p.offset, p.len, p.written)
}

/// Memory the database may use for pages read and written; the rest comes from the file
/// system's cache. Bounds the node's memory whatever the number of keys.
const CACHE_BYTES: usize = 16 << 20;
/// The most chunks one entry names: a value of the largest size at the smallest chunk size.
const MAX_ENTRY_CHUNKS: usize = 1 << 20;
const ENTRY_CHECKSUM: usize = 16;

/// Why a newer version raced in as the held one was replaced (see `Op::Put`).
pub(crate) const SEALED: &str =
    "a newer version is not sealed by the data key that sealed the one held";

/// What the node knows of a key without reading its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub version: Version,
    pub deleted: bool,
    #[serde(deserialize_with = "codec::bounded::<MAX_ENTRY_CHUNKS, _, _>")]
    pub chunks: Vec<ChunkId>,
    /// The seal key of the data key that sealed it, if sealed: a newer version must be
    /// sealed by the same key (`Manifest::may_replace`).
    pub sealed_by: Option<[u8; 32]>,
}

impl Entry {
    pub fn of(m: &Manifest) -> Self {
        Self {
            version: m.body.version,
            deleted: m.body.deleted,
            chunks: m.stored().to_vec(),
            sealed_by: m.sealed_by(),
        }
    }

    /// The stored form: the disk format's encoding, then a checksum of it (an entry is not
    /// MACed like the manifest it describes, and a rotten one must not move reference counts).
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = codec::encode_stored(self);
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..ENTRY_CHECKSUM]);
        out
    }

    fn from_bytes(bytes: &[u8], key: &str) -> Result<Self> {
        let what = || format!("the catalog entry of {key:?}");
        let Some(split) = bytes.len().checked_sub(ENTRY_CHECKSUM) else {
            return Err(Error::Integrity(format!("{} is truncated", what())));
        };
        let (body, sum) = bytes.split_at(split);
        if blake3::hash(body).as_bytes()[..ENTRY_CHECKSUM] != *sum {
            return Err(Error::Integrity(format!("{} fails its checksum", what())));
        }
        codec::decode_stored(body, &what())
    }
}

/// One change to the catalog, applied in a group commit.
pub(crate) enum Op {
    /// Makes `manifest` the key's version if it is newer than the one held. `verified_for`
    /// is the seal key the caller already checked it against (outside the commit: a
    /// signature costs tens of microseconds); another one held by now is checked here.
    Put {
        manifest: Manifest,
        verified_for: Option<[u8; 32]>,
    },
    /// Removes the key's manifest, if it is at `version` (any version for `None`).
    Remove {
        key: String,
        version: Option<Version>,
    },
    /// Records that chunk `id`'s bytes are at `place`, if they are at `expect` now (the same
    /// bytes, whatever the time; `None`: wherever they are, or nowhere).
    Place {
        id: ChunkId,
        place: Place,
        expect: Option<Place>,
    },
    /// Forgets where chunk `id`'s bytes are: if they are at `at` (a bad record set aside:
    /// not another copy written since), or wherever they are (`None`: a delete).
    Unplace { id: ChunkId, at: Option<Place> },
    /// Records what shard `id` belongs to, unless something is recorded already (the first
    /// writer's account stands; a shard's bytes and so its id are the same for every writer).
    Shard { id: ChunkId, of: ShardOf },
}

/// What an operation did: `Ok(None)` if it changed nothing (an equal or newer version is
/// held; or not at that version), else the chunks that no manifest here names any more.
pub(crate) type Outcome = Result<Option<Vec<ChunkId>>>;

pub(crate) struct Catalog {
    path: PathBuf,
    /// `None` after an I/O error: redb fails every later call of a database that met one
    /// (its state in memory may be ahead of the file), until it is opened again. The next
    /// call reopens it, which rolls back to the last whole commit (a full disk, say, does
    /// not stop the node for good once space is freed).
    db: RwLock<Option<Database>>,
    /// When the last reopening failed: the next waits `REOPEN_PAUSE`.
    failed_at: Mutex<Option<Instant>>,
    /// The `LIVE` count as last committed, so `live` (what `Node::stats` reports, which
    /// never waits) does not wait behind a compaction.
    live: AtomicU64,
    queue: Mutex<Queue>,
}

const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// Compaction. redb reuses pages that become wholly free, but a value replaced by a smaller
/// one (a deleted value by its tombstone) leaves its page mostly empty, and redb neither merges
/// such pages nor gives file space back on its own: after 90% of 100,000 values of 1 KB were
/// deleted, 40 MB of data sat in 285 MB of file, and `Database::compact` (which moves pages
/// but does not repack them) got it to 193 MB. So the catalog is rewritten into a new file in
/// key order (packed pages) once the file is more than `COMPACT_FACTOR` times its data (the
/// `DATA` count, kept by every commit: measuring the file walks all of it) and at least
/// `COMPACT_MIN_WASTE` larger. A file written in key order is about 1.7 times its data, one
/// written at random about 2.
const COMPACT_FACTOR: u64 = 3;
const COMPACT_MIN_WASTE: u64 = 8 << 20;
/// Entries copied per transaction while rewriting, so the rewrite's memory stays bounded.
const REWRITE_BATCH: usize = 4096;

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Op)>,
    next: u64,
    /// Whether a leader is committing now.
    committing: bool,
    finished: std::collections::HashMap<u64, Outcome>,
    /// Writers waiting while a leader commits, by the id of their first op. The leader wakes
    /// exactly those whose ops it finished, and one other to lead the next batch: waking
    /// them all (a condition variable's `notify_all`) woke every writer queued behind the
    /// batch too, only to sleep again, on every commit.
    sleeping: Vec<(u64, std::thread::Thread)>,
}

fn closed() -> Error {
    Error::Io {
        context: "catalog".into(),
        source: std::io::Error::other("closed by an earlier I/O error; reopening failed"),
    }
}

fn db_error(what: &str, e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Io(source) => Error::Io {
            context: format!("catalog: {what}"),
            source,
        },
        redb::Error::Corrupted(why) => corrupt(what, &why),
        other => Error::Io {
            context: format!("catalog: {what}"),
            source: std::io::Error::other(other),
        },
    }
}

fn corrupt(what: &str, why: &str) -> Error {
    Error::Integrity(format!("the catalog is corrupt ({what}): {why}"))
}

/// Runs `f`, turning a panic into an `Integrity` error. redb does not verify page checksums
/// on ordinary reads, and some malformed pages (a rotten disk, a file changed by hand) reach
/// an assertion or a slice index in it instead of an error (about 1 in 200 flipped bytes of a
/// catalog, measured with 4.6.0: `a_rotten_catalog_gives_errors_not_panics`). A panic must
/// not cross into the caller (the C ABI, Python) nor leave the group commit without a leader.
fn unpanicked<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a malformed page".into());
        tracing::error!(what, why, "the catalog is corrupt");
        Err(corrupt(what, &why))
    })
}

/// Opens (or creates) the database at `path` with every table. A catalog left by a crash is
/// checked and rolled back to its last whole commit by redb as it opens.
fn open_db(path: &Path) -> Result<Database> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| db_error(&format!("opening {}", path.display()), e))?;
    let create = || -> std::result::Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(MANIFESTS)?;
        txn.open_table(ENTRIES)?;
        txn.open_table(REFS)?;
        txn.open_table(META)?;
        txn.open_table(PLACES)?;
        txn.open_table(SEGMENT_LIVE)?;
        txn.open_table(SHARDS)?;
        Ok(txn.commit()?)
    };
    create().map_err(|e| db_error("creating tables", e))?;
    Ok(db)
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.close_db();
    }
}

impl Catalog {
    /// Opens (or creates) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        // Left by a rewrite that a crash cut short (see `compact_if_sparse`).
        let _ = std::fs::remove_file(path.with_extension("redb.new"));
        let catalog = Self {
            db: RwLock::new(Some(unpanicked("opening", || open_db(path))?)),
            path: path.to_owned(),
            failed_at: Mutex::new(None),
            live: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
        };
        // A reopening after an I/O error goes back to the last commit, whose count this is.
        catalog.live.store(catalog.meta(LIVE)?, Ordering::Relaxed);
        Ok(catalog)
    }

    /// Runs `f` on the database, reopening it first if an I/O error closed it; an I/O error
    /// or a panic in `f` closes it (redb's state in memory may be half changed).
    fn with_db<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Database) -> std::result::Result<T, redb::Error>,
    ) -> Result<T> {
        let mut guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            drop(guard);
            self.reopen()?;
            guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        }
        let Some(db) = guard.as_ref() else {
            return Err(closed());
        };
        // Closed after an I/O error or a panic, so that the next use opens it afresh.
        let mut close = true;
        let outcome = unpanicked(what, || {
            let r = f(db);
            close = matches!(r, Err(redb::Error::Io(_) | redb::Error::PreviousIo));
            r.map_err(|e| db_error(what, e))
        });
        drop(guard);
        if close {
            tracing::warn!(what, "the catalog failed; it is reopened on its next use");
            self.close_db();
        }
        outcome
    }

    /// Drops the database, to be reopened on the next use. Dropping one that met a malformed
    /// page can panic too (redb #1303).
    fn close_db(&self) {
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        let _ = unpanicked("closing", move || {
            drop(db);
            Ok(())
        });
    }

    fn reopen(&self) -> Result<()> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if db.is_some() {
            return Ok(()); // another caller did
        }
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed_at.is_some_and(|t| t.elapsed() < REOPEN_PAUSE) {
            return Err(closed());
        }
        match unpanicked("reopening", || open_db(&self.path)) {
            Ok(opened) => {
                tracing::info!("the catalog is open again");
                *db = Some(opened);
                *failed_at = None;
                Ok(())
            }
            Err(e) => {
                *failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Applies `op` in the next group commit, and returns once it is durable.
    pub fn apply(&self, op: Op) -> Outcome {
        self.apply_all(vec![op]).pop().expect("one outcome per op")
    }

    /// Applies `ops` (in order) in the next group commit; one outcome each.
    pub fn apply_all(&self, ops: Vec<Op>) -> Vec<Outcome> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let first = q.next;
        let n = ops.len() as u64;
        q.next += n;
        for (i, op) in ops.into_iter().enumerate() {
            q.waiting.push((first + i as u64, op));
        }
        let mine = |q: &Queue| (first..first + n).all(|id| q.finished.contains_key(&id));
        loop {
            if mine(&q) {
                return (first..first + n)
                    .map(|id| q.finished.remove(&id).expect("finished"))
                    .collect();
            }
            if q.committing {
                q.sleeping.push((first, std::thread::current()));
                drop(q);
                // Woken by the leader (an unpark before this park is not lost); a spurious
                // wake-up just looks again.
                std::thread::park();
                q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.sleeping.retain(|(id, _)| *id != first);
                continue;
            }
            // Lead: commit everything queued, ours included, while others queue behind.
            q.committing = true;
            let batch = std::mem::take(&mut q.waiting);
            drop(q);
            let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
            let outcomes = match self.commit(batch.into_iter().map(|(_, op)| op).collect()) {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    // The whole transaction failed: every op in it hears of it.
                    let message = e.to_string();
                    ids.iter()
                        .map(|_| {
                            Err(Error::Io {
                                context: "committing to the catalog".into(),
                                source: std::io::Error::other(message.clone()),
                            })
                        })
                        .collect()
                }
            };
            q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.finished.extend(ids.into_iter().zip(outcomes));
            q.committing = false;
            // A call's ops are queued together, so they are in one batch: its first op tells.
            let mut leader = q.waiting.is_empty();
            for (id, writer) in &q.sleeping {
                let done = q.finished.contains_key(id);
                if done || !leader {
                    leader |= !done;
                    writer.unpark();
                }
            }
        }
    }

    /// One write transaction for a batch of ops.
    fn commit(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let (outcomes, live) = self.with_db("writing", |db| commit_batch(db, ops))?;
        self.live.store(live, Ordering::Relaxed);
        Ok(outcomes)
    }
}

/// Copies every table of `db` into a new database at `path`, in key order, a batch per
/// transaction (made durable by the last commit).
fn rewrite(db: &Database, path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let new = open_db(path)?;
    let copied = (|| -> std::result::Result<(), redb::Error> {
        let txn = db.begin_read()?;
        copy(&txn.open_table(MANIFESTS)?, &new, MANIFESTS)?;
        copy(&txn.open_table(ENTRIES)?, &new, ENTRIES)?;
        copy(&txn.open_table(REFS)?, &new, REFS)?;
        copy(&txn.open_table(META)?, &new, META)?;
        copy(&txn.open_table(PLACES)?, &new, PLACES)?;
        copy(&txn.open_table(SEGMENT_LIVE)?, &new, SEGMENT_LIVE)?;
        copy(&txn.open_table(SHARDS)?, &new, SHARDS)?;
        let last = new.begin_write()?; // an empty commit, durable: makes the others durable
        Ok(last.commit()?)
    })();
    copied.map_err(|e| db_error("rewriting", e))
}

fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &impl ReadableTable<K, V>,
    to: &Database,
    table: TableDefinition<K, V>,
) -> std::result::Result<(), redb::Error> {
    let mut rows = from.iter()?.peekable();
    while rows.peek().is_some() {
        let mut txn = to.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut t = txn.open_table(table)?;
            for row in rows.by_ref().take(REWRITE_BATCH) {
                let (k, v) = row?;
                t.insert(k.value(), v.value())?;
            }
        }
        txn.commit()?;
    }
    Ok(())
}

/// The bytes of keys and values in the tables, counted once for a catalog that has no count
/// yet; later commits keep the count.
fn measure<T: ReadableTable<&'static str, &'static [u8]>>(
    manifests: &T,
    entries: &T,
    refs: &impl ReadableTable<&'static [u8; 32], u32>,
    places: &impl ReadableTable<&'static [u8; 32], PlaceRow>,
) -> std::result::Result<u64, redb::Error> {
    let mut data = REF_ROW * refs.len()? + PLACE_ROW * places.len()?;
    for table in [manifests, entries] {
        for row in table.iter()? {
            let (k, v) = row?;
            data += (k.value().len() + v.value().len()) as u64;
        }
    }
    Ok(data)
}

/// The outcome of each op, and the live keys after them.
fn commit_batch(
    db: &Database,
    ops: Vec<Op>,
) -> std::result::Result<(Vec<Outcome>, u64), redb::Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(ops.len());
    let live = {
        let mut manifests = txn.open_table(MANIFESTS)?;
        let mut entries = txn.open_table(ENTRIES)?;
        let mut refs = txn.open_table(REFS)?;
        let mut meta = txn.open_table(META)?;
        let mut places = txn.open_table(PLACES)?;
        let mut segment_live = txn.open_table(SEGMENT_LIVE)?;
        let mut shards = txn.open_table(SHARDS)?;
        let mut live = meta.get(LIVE)?.map_or(0, |v| v.value());
        let mut newest = meta.get(NEWEST)?.map_or(0, |v| v.value());
        let mut data = match meta.get(DATA)?.map(|v| v.value()) {
            Some(n) => n,
            None => measure(&manifests, &entries, &refs, &places)?,
        };
        let row = |key: &str, value: Option<redb::AccessGuard<&[u8]>>| {
            value.map_or(0, |v| (key.len() + v.value().len()) as u64)
        };
        for op in ops {
            let (key, version) = match op {
                Op::Put { ref manifest, .. } => (manifest.body.key.clone(), None),
                Op::Remove { ref key, version } => (key.clone(), version),
                Op::Place { id, place, expect } => {
                    let held = places.get(&id.0)?.map(|v| place_of(v.value()));
                    let changed = match (expect, held) {
                        (Some(e), Some(h)) => e.same_bytes(&h),
                        (Some(_), None) => false,
                        (None, _) => true,
                    };
                    if changed {
                        // A move keeps the newer time (a renew may have come in since the
                        // mover read the place).
                        let place = match (expect, held) {
                            (Some(_), Some(h)) => Place {
                                written: place.written.max(h.written),
                                ..place
                            },
                            _ => place,
                        };
                        places.insert(&id.0, row_of(&place))?;
                        match held {
                            Some(h) => shift_live(&mut segment_live, &h, false)?,
                            None => data += PLACE_ROW,
                        }
                        shift_live(&mut segment_live, &place, true)?;
                    }
                    outcomes.push(Ok(changed.then(Vec::new)));
                    continue;
                }
                Op::Unplace { id, at } => {
                    let held = places.get(&id.0)?.map(|v| place_of(v.value()));
                    let gone = held.filter(|h| at.is_none_or(|at| h.same_bytes(&at)));
                    if let Some(h) = gone {
                        places.remove(&id.0)?;
                        shift_live(&mut segment_live, &h, false)?;
                        data = data.saturating_sub(PLACE_ROW);
                    }
                    // A removal (not a bad record set aside, which is made again from the
                    // shard's siblings: what it belongs to says how).
                    if at.is_none() {
                        shards.remove(&id.0)?;
                    }
                    outcomes.push(Ok(gone.map(|_| Vec::new())));
                    continue;
                }
                Op::Shard { id, of } => {
                    let fresh = shards.get(&id.0)?.is_none();
                    if fresh {
                        shards.insert(&id.0, codec::encode_stored(&of).as_slice())?;
                    }
                    outcomes.push(Ok(fresh.then(Vec::new)));
                    continue;
                }
            };
            let held = match entries.get(key.as_str())? {
                None => None,
                Some(bytes) => match Entry::from_bytes(bytes.value(), &key) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        // Its chunks are unknown: their counts stay (a leak until the
                        // chunks are collected cluster-wide), never a premature delete.
                        tracing::warn!(key, error = %e, "catalog entry is corrupt; replaced");
                        None
                    }
                },
            };
            let outcome = match op {
                Op::Put {
                    manifest,
                    verified_for,
                } => {
                    if let Some(e) = &held {
                        if e.version >= manifest.body.version {
                            outcomes.push(Ok(None));
                            continue;
                        }
                        if let Some(p) = e.sealed_by.filter(|p| verified_for != Some(*p)) {
                            // Another version came in since the caller checked: writers of
                            // one key racing. Checked here, rarely.
                            if manifest.may_replace(&p).is_err() {
                                outcomes.push(Err(Error::Integrity(format!("{key:?}: {SEALED}"))));
                                continue;
                            }
                        }
                    }
                    let entry = Entry::of(&manifest);
                    let (m, e) = (manifest.to_bytes(), entry.to_bytes());
                    data += (2 * key.len() + m.len() + e.len()) as u64;
                    let old = row(&key, manifests.insert(key.as_str(), m.as_slice())?)
                        + row(&key, entries.insert(key.as_str(), e.as_slice())?);
                    data = data.saturating_sub(old);
                    for c in &entry.chunks {
                        let n = refs.get(&c.0)?.map_or(0, |v| v.value());
                        refs.insert(&c.0, n.saturating_add(1))?;
                        data += REF_ROW * u64::from(n == 0);
                    }
                    let was_live = held.as_ref().is_some_and(|e| !e.deleted);
                    live = live + u64::from(!entry.deleted) - u64::from(was_live);
                    newest = newest.max(entry.version.time);
                    let old = held.map(|e| e.chunks).unwrap_or_default();
                    Ok(Some(release(&mut refs, &old, &mut data)?))
                }
                Op::Place { .. } | Op::Unplace { .. } | Op::Shard { .. } => {
                    unreachable!("applied above")
                }
                Op::Remove { .. } => match held {
                    Some(e) if version.is_none_or(|v| v == e.version) => {
                        let old = row(&key, manifests.remove(key.as_str())?)
                            + row(&key, entries.remove(key.as_str())?);
                        data = data.saturating_sub(old);
                        live -= u64::from(!e.deleted).min(live);
                        Ok(Some(release(&mut refs, &e.chunks, &mut data)?))
                    }
                    None if version.is_none() => {
                        // A corrupt entry (or none): the manifest goes too.
                        let old = row(&key, manifests.remove(key.as_str())?)
                            + row(&key, entries.remove(key.as_str())?);
                        data = data.saturating_sub(old);
                        Ok(Some(Vec::new()))
                    }
                    _ => Ok(None),
                },
            };
            outcomes.push(outcome);
        }
        meta.insert(LIVE, live)?;
        meta.insert(NEWEST, newest)?;
        meta.insert(DATA, data)?;
        live
    };
    txn.commit()?;
    Ok((outcomes, live))
}

impl Catalog {
    /// Rewrites the catalog if most of its file is not data (see `COMPACT_MIN_WASTE`);
    /// returns the bytes given back to the file system. Every other use of the catalog waits
    /// while it runs. Crash-safe: the new file is complete and durable before it is renamed
    /// over the old one, and a half-written one is removed by the next rewrite or open.
    pub fn compact_if_sparse(&self) -> Result<u64> {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let before = size(&self.path);
        let data = self.meta_if_any(DATA)?;
        if data.is_none_or(|data| before < COMPACT_FACTOR * data + COMPACT_MIN_WASTE) {
            return Ok(0);
        }
        let started = Instant::now();
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        let Some(db) = guard.as_ref() else {
            return Ok(0);
        };
        let new = self.path.with_extension("redb.new");
        let rewritten = unpanicked("rewriting", || rewrite(db, &new));
        if let Err(e) = rewritten {
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
        // The old database is closed before the new file takes its name.
        let old = guard.take();
        let _ = unpanicked("closing", move || {
            drop(old);
            Ok(())
        });
        let renamed = std::fs::rename(&new, &self.path)
            .and_then(|()| crate::fsutil::sync_dir(self.path.parent().unwrap_or(Path::new("."))));
        // Opened again whatever happened: the old file, if the rename failed.
        *guard = Some(unpanicked("reopening", || open_db(&self.path))?);
        renamed.map_err(|e| Error::Io {
            context: format!("renaming {} over {}", new.display(), self.path.display()),
            source: e,
        })?;
        let after = size(&self.path);
        tracing::info!(
            before,
            after,
            ms = started.elapsed().as_millis() as u64,
            "compacted the catalog"
        );
        Ok(before.saturating_sub(after))
    }

    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::ReadTransaction) -> std::result::Result<T, redb::Error>,
    ) -> Result<T> {
        self.with_db(what, |db| f(&db.begin_read()?))
    }

    /// The stored bytes of `key`'s manifest, if held.
    pub fn manifest(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.read("reading a manifest", |txn| {
            let t = txn.open_table(MANIFESTS)?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// What is known of `key` without its manifest; a rotten entry is an integrity error.
    pub fn entry(&self, key: &str) -> Result<Option<Entry>> {
        let bytes = self.read("reading an entry", |txn| {
            let t = txn.open_table(ENTRIES)?;
            Ok(t.get(key)?.map(|v| v.value().to_vec()))
        })?;
        bytes.map(|b| Entry::from_bytes(&b, key)).transpose()
    }

    /// How many manifests here name chunk `id`.
    pub fn refs(&self, id: &ChunkId) -> Result<u32> {
        self.read("reading a reference count", |txn| {
            let t = txn.open_table(REFS)?;
            Ok(t.get(&id.0)?.map_or(0, |v| v.value()))
        })
    }

    /// Where chunk `id`'s bytes are, if packed into a segment.
    pub fn place(&self, id: &ChunkId) -> Result<Option<Place>> {
        self.read("reading a place", |txn| {
            let t = txn.open_table(PLACES)?;
            Ok(t.get(&id.0)?.map(|v| place_of(v.value())))
        })
    }

    /// What each of `ids` is a shard of, if it is one (`None` too for a record that does not
    /// decode: such a shard is left where it is, as a chunk would be).
    pub fn shards(&self, ids: &[ChunkId]) -> Result<Vec<Option<ShardOf>>> {
        self.read("reading shards", |txn| {
            let t = txn.open_table(SHARDS)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(t.get(&id.0)?.and_then(|v| {
                    codec::decode_stored::<ShardOf>(v.value(), "a shard's record")
                        .inspect_err(|e| tracing::warn!(shard = %id, error = %e, "unreadable"))
                        .ok()
                        .filter(|of| of.shards.get(usize::from(of.index)) == Some(id))
                }));
            }
            Ok(out)
        })
    }

    /// Whether any chunk is packed into a segment.
    pub fn has_places(&self) -> Result<bool> {
        self.read("reading places", |txn| {
            Ok(txn.open_table(PLACES)?.first()?.is_some())
        })
    }

    /// Every chunk packed into a segment.
    pub fn placed(&self) -> Result<Vec<ChunkId>> {
        self.read("reading places", |txn| {
            let t = txn.open_table(PLACES)?;
            // The stored length is not checksummed: a rotten one must not be an allocation.
            let mut out = Vec::with_capacity((t.len()? as usize).min(1 << 20));
            for row in t.iter()? {
                out.push(ChunkId(*row?.0.value()));
            }
            Ok(out)
        })
    }

    /// The chunks whose places are in `segment` (a walk of every place: compaction only).
    pub fn places_in(&self, segment: u32) -> Result<Vec<(ChunkId, Place)>> {
        self.read("reading places", |txn| {
            let t = txn.open_table(PLACES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let place = place_of(v.value());
                if place.segment == segment {
                    out.push((ChunkId(*k.value()), place));
                }
            }
            Ok(out)
        })
    }

    /// Forgets a removed segment's live count (a guide that drifted: nothing points into it).
    pub fn forget_segment(&self, segment: u32) -> Result<()> {
        self.with_db("writing", |db| {
            let txn = db.begin_write()?;
            txn.open_table(SEGMENT_LIVE)?.remove(segment)?;
            Ok(txn.commit()?)
        })
    }

    /// Each segment that places point into, with the bytes they point at.
    pub fn segment_live(&self) -> Result<std::collections::HashMap<u32, u64>> {
        self.read("reading segment counts", |txn| {
            let t = txn.open_table(SEGMENT_LIVE)?;
            let mut out = std::collections::HashMap::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.insert(k.value(), v.value());
            }
            Ok(out)
        })
    }

    /// Live keys held (tombstones not counted), as of the last commit.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The newest version time held.
    pub fn newest(&self) -> Result<u64> {
        self.meta(NEWEST)
    }

    /// Sets the newest version time held to `time`, after versions beyond it were set aside.
    pub fn lower_newest(&self, time: u64) -> Result<()> {
        self.with_db("writing", |db| {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(NEWEST, time)?;
            Ok(txn.commit()?)
        })
    }

    fn meta(&self, name: &str) -> Result<u64> {
        Ok(self.meta_if_any(name)?.unwrap_or(0))
    }

    fn meta_if_any(&self, name: &str) -> Result<Option<u64>> {
        self.read("reading counts", |txn| {
            let t = txn.open_table(META)?;
            Ok(t.get(name)?.map(|v| v.value()))
        })
    }

    /// Keys starting with `prefix` and after `start_after`, in byte order, at most `limit`,
    /// with their versions. Entries that fail their checksum are left out (and logged): the
    /// manifest read that follows any use of them sets the key aside.
    pub fn page(&self, prefix: &str, start_after: &str, limit: usize) -> Result<Vec<KeyState>> {
        use std::ops::Bound;
        self.read("listing keys", |txn| {
            let t = txn.open_table(ENTRIES)?;
            let from = if start_after >= prefix {
                Bound::Excluded(start_after)
            } else {
                Bound::Included(prefix)
            };
            let mut out = Vec::with_capacity(limit.min(1024));
            for item in t.range::<&str>((from, Bound::Unbounded))? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                match Entry::from_bytes(v.value(), key) {
                    Ok(e) => out.push(KeyState {
                        key: key.to_owned(),
                        version: e.version,
                        deleted: e.deleted,
                    }),
                    Err(e) => tracing::warn!(key, error = %e, "catalog entry is corrupt"),
                }
            }
            Ok(out)
        })
    }
}

/// Adds a place's record to its segment's live bytes, or takes it away; a segment with none
/// left has no row. A guide for compaction, not a proof: it removes a segment only once no
/// place points into it.
fn shift_live(
    table: &mut redb::Table<u32, u64>,
    place: &Place,
    add: bool,
) -> std::result::Result<(), redb::Error> {
    let now = table.get(place.segment)?.map_or(0, |v| v.value());
    let len = crate::engine::segments::record_bytes(place);
    let next = if add {
        now.saturating_add(len)
    } else {
        now.saturating_sub(len)
    };
    if next == 0 {
        table.remove(place.segment)?;
    } else {
        table.insert(place.segment, next)?;
    }
    Ok(())
}

/// Takes one reference from each of `chunks`; returns those no manifest names any more.
fn release(
    refs: &mut redb::Table<&[u8; 32], u32>,
    chunks: &[ChunkId],
    data: &mut u64,
) -> std::result::Result<Vec<ChunkId>, redb::Error> {
    let mut zero = Vec::new();
    for c in chunks {
        let n = refs.get(&c.0)?.map_or(0, |v| v.value());
        if n <= 1 {
            refs.remove(&c.0)?;
            if n == 1 {
                zero.push(*c);
                *data = data.saturating_sub(REF_ROW);
            }
        } else {
            refs.insert(&c.0, n - 1)?;
        }
    }
    Ok(zero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn id(w: u8, round: u32, i: u8) -> ChunkId {
        let mut b = [0u8; 32];
        b[0] = w;
        b[1..5].copy_from_slice(&round.to_le_bytes());
        b[5] = i;
        b[6] = 1;
        ChunkId(b)
    }

    /// Ops per call of writer `w` in `round`: 0 to 3 (1 to 4 in a single round).
    fn ops_of(w: u8, round: u32, rounds: u32) -> u8 {
        ((round + u32::from(w)) % 4) as u8 + u8::from(rounds == 1)
    }

    /// 16 writers started at once, `rounds` calls each; with `meddle`, another thread keeps
    /// waking them at random (as spurious wake-ups would). Every call must return, within a
    /// deadline (a lost wake-up hangs a writer), with one outcome per op.
    fn write_at_once(catalog: &Arc<Catalog>, tag: u8, rounds: u32, meddle: bool) {
        let (done, finished) = std::sync::mpsc::channel();
        let start = Arc::new(std::sync::Barrier::new(16));
        let writers: Vec<_> = (0..16u8)
            .map(|w| {
                let (catalog, done, start) = (catalog.clone(), done.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for round in 0..rounds {
                        let ops = (0..ops_of(w, round, rounds))
                            .map(|i| Op::Place {
                                id: id(w, round, i),
                                place: Place {
                                    segment: u32::from(tag),
                                    offset: u64::from(round),
                                    len: 10,
                                    written: 0,
                                },
                                expect: None,
                            })
                            .collect();
                        let outcomes = catalog.apply_all(ops);
                        assert_eq!(outcomes.len(), usize::from(ops_of(w, round, rounds)));
                        for o in outcomes {
                            o.unwrap();
                        }
                    }
                    done.send(()).unwrap();
                })
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let meddler = meddle.then(|| {
            let threads: Vec<_> = writers.iter().map(|h| h.thread().clone()).collect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    k = k.wrapping_mul(31).wrapping_add(7);
                    threads[k % threads.len()].unpark();
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        });
        for _ in 0..writers.len() {
            finished
                .recv_timeout(Duration::from_secs(60))
                .expect("a writer of the group commit never returned");
        }
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(m) = meddler {
            m.join().unwrap();
        }
    }

    /// Writers queued behind a commit are woken when their ops are done, and one of them to
    /// lead the next batch (one call each: no writer comes back to lead); with and without
    /// spurious wake-ups, every op is committed and nothing is left queued, finished or
    /// asleep.
    #[test]
    fn every_writer_of_a_group_commit_returns_with_its_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open(&dir.path().join("catalog.redb")).unwrap());
        for (tag, rounds, meddle) in [(1, 1, false), (2, 1, false), (3, 40, false), (4, 40, true)] {
            write_at_once(&catalog, tag, rounds, meddle);
            for w in 0..16u8 {
                for round in 0..rounds {
                    for i in 0..ops_of(w, round, rounds) {
                        let place = catalog.place(&id(w, round, i)).unwrap().unwrap();
                        assert_eq!(place.segment, u32::from(tag));
                    }
                }
            }
            let q = catalog.queue.lock().unwrap();
            assert!(q.waiting.is_empty() && q.finished.is_empty() && q.sleeping.is_empty());
            assert!(!q.committing);
        }
    }
}
