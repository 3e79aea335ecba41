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
//!   chunks/<transform(chunk id)>      a chunk's stored bytes (ciphertext when encrypted)
//!   manifests/<transform(key id)>     the newest manifest this node has of a key
//!   tmp/          staging for atomic writes; emptied at open
//!   quarantine/   corrupt files set aside, never served
//! ```
//!
//! All methods block on disk I/O; the async `Node` calls them from `spawn_blocking`.
//!
//! Reference counting: `refs[chunk]` counts the manifests that name a chunk plus the writes in
//! flight that have pinned it. A writer pins every chunk before checking whether its file
//! exists, and a chunk file is deleted only under the index lock when its count is zero, so a
//! delete can never remove a chunk out from under a concurrent write, and a manifest never
//! names a chunk that is not on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::ClusterKey;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, write_atomic, Staged};
use crate::ids::{ChunkId, KeyId};
use crate::journal::{self, Journal, Kind};
use crate::manifest::Manifest;
use crate::path::{self, PathTransform};
use crate::version::Version;

/// What the names of manifests set aside in `quarantine/` start with.
const MANIFEST_ASIDE: &str = "manifest-";

/// Why a newer version raced in as the held one was replaced (see `commit`).
const SEALED: &str = "a newer version is not sealed by the data key that sealed the one held";

/// The largest manifest file read (see `codec::MAX_DECODE`).
const MAX_MANIFEST_FILE: u64 = crate::codec::MAX_DECODE;
/// The largest chunk file read: a chunk of `MAX_CHUNK_SIZE` plus its IV.
const MAX_CHUNK_FILE: u64 = (crate::node::MAX_CHUNK_SIZE + crate::crypto::IV_LEN) as u64;

pub(crate) struct Store {
    chunks_dir: PathBuf,
    manifests_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    root: PathBuf,
    transform: Arc<dyn PathTransform>,
    cluster: ClusterKey,
    index: Mutex<Index>,
    /// Whether chunks nothing here names are deleted. True for a standalone node; false in a
    /// cluster, where a chunk this node holds may be named by a manifest on another node, and
    /// only a cluster-wide collection (with a grace period) may remove it.
    collect: bool,
    /// Group commit for small objects (see `journal.rs`); `None` only while `recover` replays
    /// it, when every write is fsynced in place.
    journal: Option<Journal>,
    /// Held open for its flock; dropping the store releases the root.
    _lock: File,
}

/// What the store knows of its manifests, kept in memory so `has`, `keys` and reference
/// counts need no disk access. Reads still load the manifest from disk, to notice corruption.
#[derive(Default)]
struct Index {
    keys: BTreeMap<String, Entry>,
    refs: HashMap<ChunkId, u32>,
    /// Every chunk with a file here, named or not (in a cluster a node holds chunks it owns
    /// whose manifests live elsewhere).
    held: HashSet<ChunkId>,
    /// Chunk files found to match their id, with their length and modification time then:
    /// a file that changed since is hashed again before it counts as held (see `verified`).
    verified: HashMap<ChunkId, FileStamp>,
    /// Keys whose manifest was found corrupt and set aside since the root was opened, until
    /// a version of them is held again: a standalone node says "corrupt" for them, not
    /// "not found" (see `set_aside_since_open`).
    set_aside_keys: HashSet<String>,
}

/// What a chunk file looked like when it was last found good.
type FileStamp = (u64, std::time::SystemTime);

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

struct Entry {
    version: Version,
    deleted: bool,
    chunks: Vec<ChunkId>,
    /// The seal key of the data key that sealed it, if sealed: a newer version must be
    /// sealed by the same key (`Manifest::may_replace`).
    sealed_by: Option<[u8; 32]>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub keys: u64,
    pub chunks: u64,
}

impl Store {
    /// Opens the root, taking its lock before anything else is read. `secret` is the
    /// cluster secret; `None` uses the one kept in the root, made on first open.
    pub fn open(
        root: &Path,
        transform: Arc<dyn PathTransform>,
        secret: Option<&[u8]>,
        collect: bool,
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
        for dir in ["chunks", "manifests", "tmp", "quarantine"].map(|d| root.join(d)) {
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
        let mut store = Self {
            chunks_dir: root.join("chunks"),
            manifests_dir: root.join("manifests"),
            tmp_dir,
            quarantine_dir: root.join("quarantine"),
            root: root.to_path_buf(),
            transform,
            cluster,
            index: Mutex::new(Index::default()),
            collect,
            journal: None,
            _lock: lock,
        };
        store.recover()?;
        let journal_path = root.join("journal");
        store.journal = Some(
            Journal::open(&journal_path, root)
                .context(|| format!("opening {}", journal_path.display()))?,
        );
        Ok(store)
    }

    /// Rebuilds the index after a clean stop or a crash: drops staged temp files, loads every
    /// manifest (setting corrupt ones aside), and removes chunks that no manifest names
    /// (left by writes that crashed before their manifest was committed, or by deletes that
    /// crashed before their chunks were removed).
    fn recover(&self) -> Result<()> {
        let ctx = |p: &Path| format!("scanning {}", p.display());
        for f in fsutil::walk_files(&self.tmp_dir).context(|| ctx(&self.tmp_dir))? {
            let _ = fs::remove_file(f);
        }
        let mut index = self.lock_index();
        let mut set_aside = 0;
        for file in fsutil::walk_files(&self.manifests_dir).context(|| ctx(&self.manifests_dir))? {
            let loaded = fsutil::read_bounded(&file, MAX_MANIFEST_FILE)
                .context(|| format!("reading {}", file.display()))
                .and_then(|bytes| Manifest::from_bytes(&bytes, &self.cluster));
            let manifest = match loaded {
                Ok(m) if self.manifest_path(&m.body.key).ok().as_ref() == Some(&file) => m,
                // Corrupt, misplaced, too large or unreadable: one bad file must not keep the
                // node from opening. It is set aside (its chunks are kept, see below).
                Ok(_) => {
                    tracing::warn!(file = %file.display(), "manifest is misplaced; set aside");
                    self.set_aside_manifest(&file);
                    set_aside += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "manifest is unreadable; set aside");
                    self.set_aside_manifest(&file);
                    set_aside += 1;
                    continue;
                }
            };
            for c in &manifest.body.chunks {
                *index.refs.entry(*c).or_insert(0) += 1;
            }
            index
                .keys
                .insert(manifest.body.key.clone(), Entry::of(&manifest));
        }
        drop(index);
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
        let unnamed: Vec<ChunkId> = index
            .held
            .iter()
            .filter(|id| !index.refs.contains_key(id))
            .copied()
            .collect();
        for id in unnamed {
            tracing::debug!(chunk = %id, "removing unreferenced chunk");
            self.remove_chunk_file(&mut index, &id);
        }
        Ok(())
    }

    /// Writes again, durably, every object whose record is in the journal: acknowledged
    /// writes whose files may not have reached the disk before a crash.
    fn replay_journal(&self) -> Result<()> {
        let path = self.root.join("journal");
        let records = journal::replay(&path).context(|| format!("reading {}", path.display()))?;
        let mut replayed = 0;
        for r in records {
            match r.kind {
                Kind::Chunk => {
                    let id = ChunkId(r.id);
                    if ChunkId::of(&r.payload) != id {
                        continue;
                    }
                    let file = self.chunk_path(&id)?;
                    if fsutil::read_bounded(&file, MAX_CHUNK_FILE)
                        .is_ok_and(|b| ChunkId::of(&b) == id)
                    {
                        continue;
                    }
                    write_atomic(&self.tmp_dir, &file, &r.payload)
                        .context(|| format!("restoring chunk {id} from the journal"))?;
                    self.lock_index().held.insert(id);
                }
                Kind::Manifest => {
                    let Ok(m) = Manifest::from_bytes(&r.payload, &self.cluster) else {
                        continue;
                    };
                    if KeyId::of(&m.body.key).0 != r.id {
                        continue;
                    }
                    self.adopt(&m)?;
                }
            }
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(replayed, "objects restored from the journal");
        }
        Ok(())
    }

    /// Finds every chunk file. The id is the file name for transforms that keep it (the
    /// default); otherwise (the seed's SHA-1 transform) the file is hashed. A file that is
    /// neither is set aside.
    fn load_held(&self) -> Result<()> {
        let files = fsutil::walk_files(&self.chunks_dir)
            .context(|| format!("scanning {}", self.chunks_dir.display()))?;
        let mut held = HashSet::with_capacity(files.len());
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

    fn manifest_path(&self, key: &str) -> Result<PathBuf> {
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
        *self.lock_index().refs.entry(id).or_insert(0) += 1;
        // Pinned first, so a chunk found on disk (deduplicated) cannot be deleted under us.
        self.hold_chunk(id, stored)
            .inspect_err(|_| self.unpin(&[id]))
    }

    /// Pins chunks for a write in flight that stores them elsewhere (a cluster write): while
    /// pinned they count as referenced when garbage collection asks. Released by `unpin`.
    pub fn pin(&self, ids: &[ChunkId]) {
        let mut index = self.lock_index();
        for id in ids {
            *index.refs.entry(*id).or_insert(0) += 1;
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
        let path = self.chunk_path(&id)?;
        if self.verified(&id, &path) {
            if let Ok(f) = File::options().write(true).open(&path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            let mut index = self.lock_index();
            index.held.insert(id);
            if let Some(s) = stamp(&path) {
                index.verified.insert(id, s);
            }
            return Ok(());
        }
        match &self.journal {
            Some(j) if stored.len() <= journal::MAX_JOURNALED => {
                let parent = path.parent().expect("object paths have a parent");
                // No fsync for a new directory either: replay recreates it, and the next
                // checkpoint's syncfs makes it durable.
                fs::create_dir_all(parent)
                    .and_then(|()| {
                        j.write(Kind::Chunk, &id.0, stored, || {
                            Staged::write(&self.tmp_dir, stored, false)?.install(&path)
                        })
                    })
                    .context(|| format!("writing chunk {id}"))?;
            }
            _ => write_atomic(&self.tmp_dir, &path, stored)
                .context(|| format!("writing chunk {id}"))?,
        }
        let mut index = self.lock_index();
        index.held.insert(id);
        if let Some(s) = stamp(&path) {
            index.verified.insert(id, s);
        }
        Ok(())
    }

    /// Whether the file of chunk `id` is here and matches its id: at once if it has not
    /// changed since it was last found good, else by hashing it. A file that does not match
    /// is set aside, and the chunk is not held any more.
    fn verified(&self, id: &ChunkId, path: &Path) -> bool {
        let Some(now) = stamp(path) else {
            return false;
        };
        if self.lock_index().verified.get(id) == Some(&now) {
            return true;
        }
        let good = fsutil::read_bounded(path, MAX_CHUNK_FILE)
            .is_ok_and(|bytes| ChunkId::of(&bytes) == *id);
        let mut index = self.lock_index();
        if good {
            index.verified.insert(*id, now);
        } else {
            tracing::warn!(chunk = %id, "chunk file does not match its id; set aside");
            self.set_aside(path);
            index.held.remove(id);
            index.verified.remove(id);
        }
        good
    }

    /// Every chunk held here.
    pub fn chunk_ids(&self) -> Vec<ChunkId> {
        self.lock_index().held.iter().copied().collect()
    }

    /// Whether a manifest held here, or a write in flight through this node, names `id`.
    pub fn is_referenced(&self, id: &ChunkId) -> bool {
        self.lock_index().refs.get(id).is_some_and(|n| *n > 0)
    }

    /// How long since chunk `id` was last written (or rewritten by a deduplicated write).
    pub fn chunk_age(&self, id: &ChunkId) -> Option<std::time::Duration> {
        let modified = fs::metadata(self.chunk_path(id).ok()?)
            .ok()?
            .modified()
            .ok()?;
        Some(modified.elapsed().unwrap_or_default())
    }

    /// Removes chunk `id` if nothing here names it (garbage collection, after the cluster
    /// agreed that nothing else does). Under the index lock, so a write that pins it first
    /// keeps it. Returns whether it was removed.
    pub fn collect_chunk(&self, id: &ChunkId) -> bool {
        let mut index = self.lock_index();
        if index.refs.get(id).is_some_and(|n| *n > 0) {
            return false;
        }
        index.refs.remove(id);
        self.remove_chunk_file(&mut index, id)
    }

    /// Removes this node's copy of chunk `id`, which it no longer owns and whose owners have
    /// it (hand-off after a membership change). Local references do not keep it: in a cluster
    /// reads fetch chunks from their owners.
    pub fn drop_chunk(&self, id: &ChunkId) -> bool {
        let mut index = self.lock_index();
        self.remove_chunk_file(&mut index, id)
    }

    fn remove_chunk_file(&self, index: &mut Index, id: &ChunkId) -> bool {
        index.held.remove(id);
        index.verified.remove(id);
        match self.chunk_path(id).map(fs::remove_file) {
            Ok(Ok(())) => true,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => false,
            Ok(Err(e)) => {
                tracing::warn!(chunk = %id, error = %e, "could not remove a chunk");
                false
            }
            Err(_) => false,
        }
    }

    /// Removes this node's manifest of `key` if it is still at `version`: hand-off of a
    /// manifest this node no longer owns, or collection of an old tombstone. The chunks it
    /// named lose a reference.
    pub fn forget_manifest(&self, key: &str, version: Version) -> Result<bool> {
        let path = self.manifest_path(key)?;
        let released = {
            let mut index = self.lock_index();
            if index.keys.get(key).map(|e| e.version) != Some(version) {
                return Ok(false);
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(|| format!("removing manifest of {key:?}")),
            }
            index.keys.remove(key).map(|e| e.chunks).unwrap_or_default()
        };
        self.unpin(&released);
        Ok(true)
    }

    /// Sets the manifest of `key` aside in `quarantine/` if it is still at `version` (one
    /// stamped from the far future: see `Node::open`). Its chunks stay until the next open,
    /// which decides on them as for any unnamed chunk.
    pub fn quarantine_manifest(&self, key: &str, version: Version) -> Result<bool> {
        let path = self.manifest_path(key)?;
        let mut index = self.lock_index();
        if index.keys.get(key).map(|e| e.version) != Some(version) {
            return Ok(false);
        }
        self.set_aside_manifest(&path);
        index.keys.remove(key);
        Ok(true)
    }

    /// Whether a good copy of chunk `id` is here (verified, see `hold_chunk`): what this
    /// node tells peers that ask, so a rotten copy never counts toward replication. Reads
    /// the file when it changed since it was last found good.
    pub fn has_chunk(&self, id: &ChunkId) -> bool {
        self.chunk_path(id)
            .is_ok_and(|p| p.is_file() && self.verified(id, &p))
    }

    /// Whether a file for chunk `id` is here, good or not: a cheap first look before a read
    /// that checks it anyway.
    pub fn may_hold_chunk(&self, id: &ChunkId) -> bool {
        self.chunk_path(id).is_ok_and(|p| p.is_file())
    }

    /// Commits a manifest that came from elsewhere (a peer, or this node's own cluster
    /// write): its chunks need not be here. Returns whether it was newer than what was held.
    pub fn adopt(&self, manifest: &Manifest) -> Result<bool> {
        {
            let mut index = self.lock_index();
            for c in &manifest.body.chunks {
                *index.refs.entry(*c).or_insert(0) += 1;
            }
        }
        let committed = self.commit(manifest);
        if !matches!(committed, Ok(true)) {
            self.unpin(&manifest.body.chunks);
        }
        committed
    }

    /// Releases pins (or manifest references), deleting chunks nobody names any more.
    pub fn unpin(&self, ids: &[ChunkId]) {
        let mut index = self.lock_index();
        let mut doomed = Vec::new();
        for id in ids {
            if let Some(n) = index.refs.get_mut(id) {
                debug_assert!(*n > 0, "unpinning a chunk nobody pinned");
                *n = n.saturating_sub(1);
                if *n == 0 {
                    doomed.push(*id);
                }
            }
        }
        self.delete_unreferenced(&mut index, &doomed);
    }

    /// Deletes those of `ids` whose count is still zero; the caller holds the index lock, so
    /// no writer can pin one between the check and the unlink.
    fn delete_unreferenced(&self, index: &mut Index, ids: &[ChunkId]) {
        for id in ids {
            if index.refs.get(id) == Some(&0) {
                index.refs.remove(id);
                if self.collect {
                    self.remove_chunk_file(index, id);
                }
            }
        }
    }

    /// Makes `manifest` the key's current version if it is newer than what is held, durably.
    /// On `Ok(true)` the manifest has taken over the caller's pins on its chunks; on
    /// `Ok(false)` (an equal or newer version was already here) the caller keeps them. A
    /// newer version that may not replace a sealed one (`Manifest::may_replace`) is an
    /// `Integrity` error.
    pub fn commit(&self, manifest: &Manifest) -> Result<bool> {
        let key = &manifest.body.key;
        // The seal is checked (a signature, tens of microseconds) outside the index lock, for
        // the sealing key of the version held now; under the lock it is checked again only if
        // another version came in between.
        let held = self
            .lock_index()
            .keys
            .get(key)
            .map(|e| (e.version, e.sealed_by));
        let mut verified_for = None;
        if let Some((version, Some(p))) = held {
            if version < manifest.body.version {
                manifest.may_replace(&p)?;
                verified_for = Some(p);
            }
        }
        let dest = self.manifest_path(key)?;
        let bytes = manifest.to_bytes();
        let parent = dest
            .parent()
            .expect("manifest paths have a parent")
            .to_path_buf();
        let journal = self
            .journal
            .as_ref()
            .filter(|_| bytes.len() <= journal::MAX_JOURNALED);
        // A new directory is fsynced into its parent unless the journal covers it (replay
        // recreates it, and the next checkpoint's syncfs makes it durable).
        match journal {
            Some(_) => fs::create_dir_all(&parent),
            None => fsutil::create_dir_durable(&parent),
        }
        .context(|| format!("creating {}", parent.display()))?;
        // Stage outside the lock; only the rename and map updates are inside it. Returns the
        // chunks the replaced version named, or `None` if an equal or newer one is held.
        let install = || -> std::io::Result<Option<Vec<ChunkId>>> {
            let staged = Staged::write(&self.tmp_dir, &bytes, journal.is_none())?;
            let mut index = self.lock_index();
            if let Some(e) = index.keys.get(key) {
                if e.version >= manifest.body.version {
                    return Ok(None); // dropping `staged` deletes it
                }
                if let Some(p) = e.sealed_by.filter(|p| verified_for != Some(*p)) {
                    // Another version came in since the check above (writers of one key
                    // racing): check against it here, rarely, under the lock.
                    if manifest.may_replace(&p).is_err() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            SEALED,
                        ));
                    }
                }
            }
            staged.install(&dest)?;
            index.set_aside_keys.remove(key);
            Ok(Some(
                index
                    .keys
                    .insert(key.clone(), Entry::of(manifest))
                    .map(|old| old.chunks)
                    .unwrap_or_default(),
            ))
        };
        let sealed = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::PermissionDenied && e.to_string() == SEALED {
                Error::Integrity(format!("{key:?}: {SEALED}"))
            } else {
                Error::Io {
                    context: format!("writing manifest of {key:?}"),
                    source: e,
                }
            }
        };
        let released = match journal {
            Some(j) => {
                let mut installed = None;
                let written = j.write(Kind::Manifest, &KeyId::of(key).0, &bytes, || {
                    installed = install()?;
                    Ok(())
                });
                written.map_err(sealed)?;
                installed
            }
            None => {
                let installed = install().map_err(sealed)?;
                // The rename must be durable before the old version's chunks go: a crash in
                // between would otherwise bring back a manifest whose chunks were deleted.
                if installed.is_some() {
                    fsutil::sync_dir(&parent)
                        .context(|| format!("syncing {}", parent.display()))?;
                }
                installed
            }
        };
        let Some(released) = released else {
            return Ok(false);
        };
        self.unpin(&released);
        Ok(true)
    }

    /// Loads the current manifest of `key` from disk and checks its cluster MAC.
    pub fn manifest(&self, key: &str) -> Result<Manifest> {
        let path = self.manifest_path(key)?;
        let bytes = match fsutil::read_bounded(&path, MAX_MANIFEST_FILE) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(key.to_owned()))
            }
            // Too large to be a manifest: corrupt, set aside below like one that fails.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Vec::new(),
            Err(e) => return Err(e).context(|| format!("reading manifest of {key:?}")),
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
            // copy back from another owner. Its chunks keep their references (for a
            // standalone node they may be all that is left of the value).
            tracing::warn!(key, error = %why, "manifest is corrupt; set aside");
            let mut index = self.lock_index();
            if path.is_file() {
                self.set_aside_manifest(&path);
            }
            index.keys.remove(key);
            index.set_aside_keys.insert(key.to_owned());
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
        let path = self.chunk_path(id)?;
        let why = match fsutil::read_bounded(&path, MAX_CHUNK_FILE) {
            Ok(b) if ChunkId::of(&b) == *id => return Ok(b),
            Ok(_) => format!("chunk {id} does not match its hash"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Integrity(format!("chunk {id} is missing")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => format!("chunk {id}: {e}"),
            Err(e) => return Err(e).context(|| format!("reading chunk {id}")),
        };
        let mut index = self.lock_index();
        self.set_aside(&path);
        index.held.remove(id);
        index.verified.remove(id);
        Err(Error::Integrity(why))
    }

    /// Sets a manifest file aside. While any is in `quarantine/`, opening the root removes no
    /// unnamed chunk: they may be all that is left of its value.
    fn set_aside_manifest(&self, file: &Path) {
        self.set_aside_as(file, MANIFEST_ASIDE);
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
    pub fn key_states(&self) -> Vec<crate::net::message::KeyState> {
        let index = self.lock_index();
        index
            .keys
            .iter()
            .map(|(k, e)| crate::net::message::KeyState {
                key: k.clone(),
                version: e.version,
                deleted: e.deleted,
            })
            .collect()
    }

    /// The newest version held of `key`, tombstones included.
    pub fn version_of(&self, key: &str) -> Option<Version> {
        self.lock_index().keys.get(key).map(|e| e.version)
    }

    /// Live keys in byte order.
    /// One page of `key_states`: keys starting with `prefix` and after `start_after`, in byte
    /// order, at most `limit`.
    pub fn key_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Vec<crate::net::message::KeyState> {
        use std::ops::Bound;
        let index = self.lock_index();
        let from = if start_after >= prefix {
            Bound::Excluded(start_after)
        } else {
            Bound::Included(prefix)
        };
        index
            .keys
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, e)| crate::net::message::KeyState {
                key: k.clone(),
                version: e.version,
                deleted: e.deleted,
            })
            .collect()
    }

    pub fn stats(&self) -> StoreStats {
        let index = self.lock_index();
        StoreStats {
            keys: index.keys.values().filter(|e| !e.deleted).count() as u64,
            chunks: index.held.len() as u64,
        }
    }
}

impl Entry {
    fn of(m: &Manifest) -> Self {
        Self {
            version: m.body.version,
            deleted: m.body.deleted,
            chunks: m.body.chunks.clone(),
            sealed_by: m.sealed_by(),
        }
    }
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
