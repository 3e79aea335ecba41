//! Group commit for small objects: a write-ahead journal that many writes share one fsync of.
//!
//! A small chunk or manifest is first appended to `root/journal` as a checksummed record.
//! Writers that arrive while an fsync is under way queue their records; when it ends, one of
//! them writes the whole queue and fsyncs once for all (leader and followers), so a burst of
//! small writes costs a few fsyncs instead of two each (file and directory). Once its record
//! is durable the object is written in place without fsync: the journal, not the object file,
//! is what survives a crash. When the journal grows past `CHECKPOINT_BYTES` the file system is
//! synced (`syncfs`, making every object written since durable) and the journal emptied.
//!
//! At open the store replays the journal (`replay`): every complete record is checked
//! (checksum, then the chunk's hash or the manifest's MAC, by the caller) and written again
//! durably; a torn tail (a crash during an append, never acknowledged) ends the replay.
//!
//! Record: `len: u32 LE` (of what follows, checksum excluded) | `kind: u8` | `id: [u8; 32]` |
//! payload | `BLAKE3(kind | id | payload)`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

/// Objects up to this size go through the journal; larger ones are fsynced in place, where
/// their own bytes dominate the cost and a second copy would only add to it.
pub const MAX_JOURNALED: usize = 64 << 10;
/// The journal is emptied (after a `syncfs`) once it holds this much.
const CHECKPOINT_BYTES: u64 = 32 << 20;
const HEADER: usize = 4 + 1 + 32;
const CHECKSUM: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chunk = 1,
    Manifest = 2,
}

pub struct Record {
    pub kind: Kind,
    pub id: [u8; 32],
    pub payload: Vec<u8>,
}

pub struct Journal {
    file: File,
    /// The root directory, for `syncfs`.
    root: File,
    state: Mutex<State>,
    done: Condvar,
    /// Held (shared) by each writer from its append until its object is in place, and
    /// (exclusively) by a checkpoint: the journal is never emptied while an object it holds
    /// is not yet written where the checkpoint's `syncfs` will make it durable.
    installs: RwLock<()>,
}

#[derive(Default)]
struct State {
    /// Records waiting for the next fsync.
    queue: Vec<u8>,
    /// The batch `queue` belongs to; batches below `durable` are on disk.
    filling: u64,
    durable: u64,
    /// Whether a leader is writing a batch now.
    busy: bool,
    /// What became of each batch that writers still wait to hear about.
    outcomes: Outcomes,
    /// Bytes in the journal file.
    size: u64,
    /// Set when a failed append could not be cut back off the journal: later records would
    /// follow a torn one, which replay never reaches, so every write is refused from then on.
    poisoned: Option<String>,
}

/// The failures of batches whose writers have not all heard of them yet. Every writer of a
/// failed batch gets its error, however many batches fail or succeed before it wakes; an
/// entry goes once the last of its writers has heard, so this holds at most one per writer
/// waiting.
#[derive(Default)]
struct Outcomes {
    /// Writers waiting on each batch.
    waiting: std::collections::HashMap<u64, usize>,
    failed: std::collections::HashMap<u64, (std::io::ErrorKind, String)>,
}

impl Outcomes {
    fn wait_for(&mut self, batch: u64) {
        *self.waiting.entry(batch).or_insert(0) += 1;
    }

    fn failed(&mut self, batch: u64, e: &std::io::Error) {
        if self.waiting.contains_key(&batch) {
            self.failed.insert(batch, (e.kind(), e.to_string()));
        }
    }

    /// What became of `batch`, for one of its writers (once it is no longer in flight).
    fn heard(&mut self, batch: u64) -> std::io::Result<()> {
        let outcome = match self.failed.get(&batch) {
            Some((kind, message)) => Err(std::io::Error::new(*kind, message.clone())),
            None => Ok(()),
        };
        if let Some(n) = self.waiting.get_mut(&batch) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&batch);
                self.failed.remove(&batch);
            }
        }
        outcome
    }
}

fn checksum(kind: u8, id: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("dstore v1 journal record");
    h.update(&[kind]);
    h.update(id);
    h.update(payload);
    *h.finalize().as_bytes()
}

fn encode(kind: Kind, id: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + CHECKSUM);
    out.extend_from_slice(&((1 + 32 + payload.len()) as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(kind as u8, id, payload));
    out
}

/// The complete, intact records of the journal at `path`, in order; reading stops at the
/// first torn or damaged one.
pub fn replay(path: &Path) -> std::io::Result<Vec<Record>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    Ok(parse(&bytes))
}

/// The intact records at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER + CHECKSUM {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if !(33..=MAX_JOURNALED + 33).contains(&len) || rest.len() < 4 + len + CHECKSUM {
            break;
        }
        let kind = match rest[4] {
            1 => Kind::Chunk,
            2 => Kind::Manifest,
            _ => break,
        };
        let id: [u8; 32] = rest[5..37].try_into().expect("32 bytes");
        let payload = &rest[37..4 + len];
        if rest[4 + len..4 + len + CHECKSUM] != checksum(kind as u8, &id, payload) {
            break;
        }
        records.push(Record {
            kind,
            id,
            payload: payload.to_vec(),
        });
        rest = &rest[4 + len + CHECKSUM..];
    }
    if !rest.is_empty() {
        tracing::warn!(
            bytes = rest.len(),
            "journal ends in a torn record (a write cut short, never acknowledged)"
        );
    }
    records
}

/// Makes every write to the file system holding `dir` durable.
pub fn sync_file_system(dir: &File) -> std::io::Result<()> {
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Journal {
    /// Opens the journal at `path`, empty (the caller replayed it already).
    pub fn open(path: &Path, root: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        file.sync_all()?;
        Ok(Self {
            file,
            root: File::open(root)?,
            state: Mutex::default(),
            done: Condvar::new(),
            installs: RwLock::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes an object durably: its record goes to the journal (one fsync shared with every
    /// writer queued meanwhile), then `install` puts it in place without an fsync of its own.
    pub fn write(
        &self,
        kind: Kind,
        id: &[u8; 32],
        payload: &[u8],
        install: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let record = encode(kind, id, payload);
        let mut install = Some(install);
        for attempt in 0..2 {
            let appended = {
                let _installing = self.installs.read().unwrap_or_else(|e| e.into_inner());
                let appended = self.append(&record);
                if appended.is_ok() {
                    (install.take().expect("installed once"))()?;
                }
                appended
            };
            match appended {
                // A full disk: the journal itself may be what fills it. Empty it (its objects
                // are in place; one syncfs makes them durable) and try once more.
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull && attempt == 0 => {
                    self.checkpoint(0)?; // whatever its size
                }
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        self.checkpoint(CHECKPOINT_BYTES)
    }

    /// Queues `record` and returns once it is durable. The first writer to find no fsync
    /// under way leads: it writes the whole queue and syncs once for everyone in it.
    fn append(&self, record: &[u8]) -> std::io::Result<()> {
        let mut state = self.lock();
        if let Some(why) = &state.poisoned {
            return Err(std::io::Error::other(why.clone()));
        }
        state.queue.extend_from_slice(record);
        let mine = state.filling;
        state.outcomes.wait_for(mine);
        while state.durable <= mine {
            if state.busy {
                state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.busy = true;
            let batch = std::mem::take(&mut state.queue);
            let (number, at) = (state.filling, state.size);
            state.filling += 1;
            if let Some(why) = state.poisoned.clone() {
                // A write failed and could not be cut back: a batch written after it would
                // follow a torn record, which replay never passes. Fail it instead.
                state.outcomes.failed(number, &std::io::Error::other(why));
                state.busy = false;
                state.durable = number + 1;
                self.done.notify_all();
                continue;
            }
            drop(state);
            let written = self.write_batch(&batch, at);
            state = self.lock();
            state.busy = false;
            state.durable = number + 1;
            match written {
                Ok(()) => state.size = at + batch.len() as u64,
                Err((e, cut)) => {
                    if let Err(cut) = cut {
                        state.poisoned = Some(format!(
                            "the journal is damaged (a write failed: {e}; cutting it back \
                             failed: {cut}); reopen the node to replay it"
                        ));
                    }
                    state.outcomes.failed(number, &e);
                }
            }
            self.done.notify_all();
        }
        state.outcomes.heard(mine)
    }

    /// Writes `batch` at offset `at` and fsyncs. A failed write (a full disk) is cut off
    /// again, so a later batch never follows a torn one: replay would stop there and lose it.
    /// On failure, also whether cutting back worked.
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &self,
        batch: &[u8],
        at: u64,
    ) -> Result<(), (std::io::Error, std::io::Result<()>)> {
        self.file
            .write_all_at(batch, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| (e, self.file.set_len(at)))
    }

    /// Once the journal holds at least `min_size` bytes: waits for the objects it holds to
    /// be in place, makes them durable, and empties it.
    fn checkpoint(&self, min_size: u64) -> std::io::Result<()> {
        if self.lock().size < min_size {
            return Ok(());
        }
        let _all = self.installs.write().unwrap_or_else(|e| e.into_inner());
        let mut state = self.lock();
        if state.size < min_size {
            return Ok(()); // another writer checkpointed first
        }
        self.empty()?;
        state.size = 0;
        Ok(())
    }

    /// One `syncfs` makes every object written in place durable; then the journal is empty.
    fn empty(&self) -> std::io::Result<()> {
        sync_file_system(&self.root)?;
        self.file.set_len(0)?;
        self.file.sync_all()
    }
}

impl Drop for Journal {
    /// A clean close leaves an empty journal: everything it held is made durable in place.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.size == 0 || state.poisoned.is_some() {
            return;
        }
        if let Err(e) = self.empty() {
            tracing::warn!(error = %e, "could not empty the journal at close; it is replayed at the next open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9, item 11: the journal remembered only the last failed batch, so a writer of
    /// an earlier failed batch that woke after a later one had failed too was told Ok. Now
    /// each writer hears its own batch's outcome, and nothing is kept once all have heard.
    #[test]
    fn every_writer_of_a_failed_batch_hears_of_it() {
        let mut o = Outcomes::default();
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        o.wait_for(1);
        o.wait_for(1);
        o.wait_for(2);
        o.wait_for(3);
        o.failed(1, &full);
        o.failed(2, &std::io::Error::other("another failure"));
        // Batch 3 succeeds; the writers of 1 wake only now.
        assert!(o.heard(3).is_ok());
        assert_eq!(
            o.heard(1).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
        assert_eq!(
            o.heard(1).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
        assert!(o.heard(2).is_err());
        assert!(o.waiting.is_empty() && o.failed.is_empty());
    }

    /// Records written by many threads at once all come back, in fewer fsyncs than records;
    /// a torn or damaged tail is where replay stops.
    #[test]
    fn group_commit_shares_fsyncs_and_replay_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path, dir.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let j = &j;
                s.spawn(move || {
                    for i in 0..50u8 {
                        j.write(Kind::Chunk, &[t; 32], &[i; 100], || Ok(()))
                            .unwrap();
                    }
                });
            }
        });
        let batches = j.lock().durable;
        assert!(batches < 400, "{batches} fsyncs for 400 records");
        let records = replay(&path).unwrap();
        assert_eq!(records.len(), 400);
        for t in 0..8u8 {
            let mine: Vec<u8> = records
                .iter()
                .filter(|r| r.id == [t; 32])
                .map(|r| r.payload[0])
                .collect();
            assert_eq!(
                mine,
                (0..50).collect::<Vec<u8>>(),
                "one writer's records in order"
            );
        }
        // Cut into the last record: it is dropped, the others stay.
        let len = std::fs::metadata(&path).unwrap().len();
        std::mem::forget(j); // a crash: no checkpoint at drop
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        assert_eq!(replay(&path).unwrap().len(), 399);
        // A flipped byte in a record ends the replay there.
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + 100 + CHECKSUM + 40;
        bytes[second] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(replay(&path).unwrap().len(), 1);
        assert!(replay(&dir.path().join("absent")).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Whatever the disk holds, parsing gives records or stops; it never panics, and
        /// every record it gives is one that was written whole.
        #[test]
        fn parsing_garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for r in parse(&bytes) {
                let again = encode(r.kind, &r.id, &r.payload);
                proptest::prop_assert!(bytes.windows(again.len()).any(|w| w == again.as_slice()));
            }
        }
    }

    /// A clean close empties the journal.
    #[test]
    fn dropping_the_journal_checkpoints_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path, dir.path()).unwrap();
        j.write(Kind::Manifest, &[1; 32], b"m", || Ok(())).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        drop(j);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
