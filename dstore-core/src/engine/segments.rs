//! Segments: small chunks packed into large append-only files, under group commit.
//!
//! A chunk of at most `Config::segment_max` stored bytes is appended to the active segment,
//! `root/segments/<number>.seg`, as a checksummed record. Writers that arrive while an fsync
//! is under way queue their records; when it ends, one of them (the leader) writes the whole
//! queue and fsyncs once for all, so a burst of small writes costs a few fsyncs instead of a
//! file, an inode and two fsyncs each (ext4 inode allocation was 40% of the small-write
//! profile). A record's place (segment, offset, length) goes into the catalog's `places`
//! table once the record is durable; that commit is what makes the chunk held. A crash
//! between the two leaves bytes nothing points at: garbage, which compaction reclaims.
//! Records are never changed in place; a segment past `SEGMENT_BYTES` is closed and a new
//! one started, and compaction (`Store::compact_segments`) copies the live records of a
//! mostly dead segment to the active one before removing it.
//!
//! At open the newest segment is cut back to the end of the last record the catalog has a
//! place for (`cut`): whatever follows was never acknowledged (a crash during an append, or
//! before its places were committed), and may be torn. Only places decide: a record that fails
//! its checksum in the middle of a segment is rot, found and handled by reads and the
//! scrubber, and no reason to drop the good records after it. The same record format was the journal's
//! (`root/journal`, before segments), which an open replays once and removes.
//!
//! Record: `len: u32 LE` (of what follows, checksum excluded) | `kind: u8` | `id: [u8; 32]` |
//! payload | `BLAKE3(kind | id | payload)`.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The largest payload a record may carry: the largest `segment_max`, and what the journal
/// before segments held (64 KiB).
pub const MAX_RECORD: usize = (1 << 20) + crate::crypto::IV_LEN;
/// A segment is closed, and the next append starts a new one, past this size.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 4 + 1 + 32;
const CHECKSUM: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chunk = 1,
    /// Only in journals written before the catalog.
    Manifest = 2,
}

pub struct Record {
    pub kind: Kind,
    pub id: [u8; 32],
    pub payload: Vec<u8>,
}

/// Where a chunk's bytes are: `len` bytes at `offset` of segment `segment`, written (or last
/// found wanted by a deduplicated write) at `written`, in seconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
    pub written: u64,
}

impl Place {
    /// Whether both name the same bytes (whatever their times).
    pub fn same_bytes(&self, other: &Place) -> bool {
        (self.segment, self.offset, self.len) == (other.segment, other.offset, other.len)
    }
}

/// Where the record holding `place` ends (saturating: a place read from a rotten catalog
/// may say anything).
pub fn record_end(place: &Place) -> u64 {
    place
        .offset
        .saturating_add(u64::from(place.len) + CHECKSUM as u64)
}

/// The bytes of the record holding `place`, header and checksum included: what a segment
/// gives back when the record goes.
pub fn record_bytes(place: &Place) -> u64 {
    u64::from(place.len) + (HEADER + CHECKSUM) as u64
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct Segments {
    dir: PathBuf,
    state: Mutex<State>,
    done: Condvar,
}

struct Active {
    number: u32,
    file: File,
    size: u64,
}

#[derive(Default)]
struct State {
    /// Records waiting for the next fsync.
    queue: Vec<u8>,
    /// The batch `queue` belongs to; batches below `durable` are on disk (or failed).
    filling: u64,
    durable: u64,
    /// Whether a leader is writing a batch now.
    busy: bool,
    /// What became of each batch that writers still wait to hear about.
    outcomes: Outcomes,
    /// The segment appended to; `None` when the next batch starts a new one (at first, or
    /// after a failed append could not be cut back off: no record may follow a torn one).
    /// Taken by the leader while it writes.
    active: Option<Active>,
    /// The number of the next segment made.
    next: u32,
    /// A segment to close (see `close`) while the leader had it out to write.
    closing: Option<u32>,
    /// Records queued in `queue`.
    queued: usize,
    /// Per segment, records written whose writers have not yet committed (or given up on)
    /// their places: compaction waits for them (`settle`), or it could remove a segment a
    /// place is about to point into.
    pending: std::collections::HashMap<u32, usize>,
}

/// Records appended, with where they landed. Until it is dropped (after the caller commits
/// the places) the records count as pending in their segment.
pub struct Appended<'a> {
    pub places: Vec<Place>,
    segments: &'a Segments,
    segment: u32,
}

impl Drop for Appended<'_> {
    fn drop(&mut self) {
        let mut state = self.segments.lock();
        if let Some(n) = state.pending.get_mut(&self.segment) {
            *n = n.saturating_sub(self.places.len());
            if *n == 0 {
                state.pending.remove(&self.segment);
            }
        }
        self.segments.done.notify_all();
    }
}

/// The outcome of each batch whose writers have not all heard of it: where it was written,
/// or why it failed. Every writer of a batch gets its batch's outcome, however many batches
/// end before it wakes; an entry goes once the last of its writers has heard.
#[derive(Default)]
struct Outcomes {
    waiting: std::collections::HashMap<u64, usize>,
    ended: std::collections::HashMap<u64, Ended>,
}

/// Where a batch went (segment, offset), or why it failed.
type Ended = Result<(u32, u64), (std::io::ErrorKind, String)>;

impl Outcomes {
    fn wait_for(&mut self, batch: u64) {
        *self.waiting.entry(batch).or_insert(0) += 1;
    }

    fn ended(&mut self, batch: u64, outcome: std::io::Result<(u32, u64)>) {
        if self.waiting.contains_key(&batch) {
            self.ended
                .insert(batch, outcome.map_err(|e| (e.kind(), e.to_string())));
        }
    }

    /// What became of `batch` (segment and offset), for one of its writers.
    fn heard(&mut self, batch: u64) -> std::io::Result<(u32, u64)> {
        let outcome = match self.ended.get(&batch) {
            Some(Ok(at)) => Ok(*at),
            Some(Err((kind, message))) => Err(std::io::Error::new(*kind, message.clone())),
            None => Err(std::io::Error::other("a batch ended without an outcome")),
        };
        if let Some(n) = self.waiting.get_mut(&batch) {
            *n -= 1;
            if *n == 0 {
                self.waiting.remove(&batch);
                self.ended.remove(&batch);
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

fn encode_into(out: &mut Vec<u8>, kind: Kind, id: &[u8; 32], payload: &[u8]) {
    out.extend_from_slice(&((1 + 32 + payload.len()) as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(kind as u8, id, payload));
}

#[cfg(test)]
pub(crate) fn encode(kind: Kind, id: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, kind, id, payload);
    out
}

/// Reads the intact records at the start of `from`, calling `each` with every one and the
/// offset of its payload; stops at the first torn or damaged record. Returns where the
/// intact records end. Memory: one record at a time.
pub fn scan(
    from: impl Read,
    mut each: impl FnMut(Record, u64) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut from = std::io::BufReader::with_capacity(256 << 10, from);
    let mut end = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        if !read_full(&mut from, &mut header)? {
            return Ok(end);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        if !(33..=MAX_RECORD + 33).contains(&len) {
            return Ok(end);
        }
        let kind = match header[4] {
            1 => Kind::Chunk,
            2 => Kind::Manifest,
            _ => return Ok(end),
        };
        let id: [u8; 32] = header[5..37].try_into().expect("32 bytes");
        let mut payload = vec![0u8; len - 33];
        let mut sum = [0u8; CHECKSUM];
        if !read_full(&mut from, &mut payload)? || !read_full(&mut from, &mut sum)? {
            return Ok(end);
        }
        if sum != checksum(kind as u8, &id, &payload) {
            return Ok(end);
        }
        let at = end + HEADER as u64;
        end = at + payload.len() as u64 + CHECKSUM as u64;
        each(Record { kind, id, payload }, at)?;
    }
}

/// Fills `buf`; false if the input ended first.
fn read_full(from: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The intact records at the start of `bytes` (the journal before segments, and fuzzing).
pub fn parse(bytes: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    let end = scan(bytes, |r, _| {
        records.push(r);
        Ok(())
    })
    .expect("reading a slice cannot fail");
    if end < bytes.len() as u64 {
        tracing::warn!(
            bytes = bytes.len() as u64 - end,
            "records end in a torn one (a write cut short, never acknowledged)"
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

fn segment_name(number: u32) -> String {
    format!("{number:08}.seg")
}

impl Segments {
    /// Opens the segments under `dir` (made if absent). The caller cuts the newest one's
    /// unacknowledged tail (`cut`) before appending.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        crate::fsutil::create_dir_durable(dir)?;
        let numbers = list(dir)?;
        let mut state = State {
            next: numbers.last().map_or(1, |(n, _)| n + 1),
            ..State::default()
        };
        if let Some(&(number, size)) = numbers.last() {
            if size < SEGMENT_BYTES {
                let path = dir.join(segment_name(number));
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                state.active = Some(Active { number, file, size });
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            state: Mutex::new(state),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self, segment: u32) -> PathBuf {
        self.dir.join(segment_name(segment))
    }

    /// Every segment, with its size, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<(u32, u64)>> {
        list(&self.dir)
    }

    /// The segment appended to now.
    pub fn active(&self) -> Option<u32> {
        self.lock().active.as_ref().map(|a| a.number)
    }

    /// Cuts `segment` back to `end` bytes, durably, if it is longer: at open, to the end of
    /// the last record that has a place (see the module doc). Returns the bytes cut.
    pub fn cut(&self, segment: u32, end: u64) -> std::io::Result<u64> {
        let mut state = self.lock();
        let file = OpenOptions::new().write(true).open(self.path(segment))?;
        let size = file.metadata()?.len();
        if size <= end {
            return Ok(0);
        }
        file.set_len(end)?;
        file.sync_all()?;
        if let Some(a) = state.active.as_mut().filter(|a| a.number == segment) {
            a.size = end;
        }
        Ok(size - end)
    }

    /// Closes `segment` if it is the one appended to, so that it can be compacted: the next
    /// batch starts a new one. A batch being written into it now still lands there.
    pub fn close(&self, segment: u32) {
        let mut state = self.lock();
        if state.active.as_ref().is_some_and(|a| a.number == segment) {
            state.active = None;
        } else if state.busy {
            state.closing = Some(segment);
        }
    }

    /// Appends chunk records durably (one fsync shared with every writer queued meanwhile);
    /// where each payload landed, in order. The caller records the places in the catalog.
    pub fn append(&self, chunks: &[(&[u8; 32], &[u8])]) -> std::io::Result<Appended<'_>> {
        let mut state = self.lock();
        let mut offsets = Vec::with_capacity(chunks.len());
        for (id, payload) in chunks {
            offsets.push(state.queue.len() as u64 + HEADER as u64);
            encode_into(&mut state.queue, Kind::Chunk, id, payload);
        }
        state.queued += chunks.len();
        let mine = state.filling;
        state.outcomes.wait_for(mine);
        while state.durable <= mine {
            if state.busy {
                state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: write the whole queue, ours included, while others queue behind.
            state.busy = true;
            let batch = std::mem::take(&mut state.queue);
            let records = std::mem::take(&mut state.queued);
            let number = state.filling;
            state.filling += 1;
            let active = state.active.take();
            let next = state.next;
            drop(state);
            let (written, active, made) = self.write_batch(&batch, active, next);
            state = self.lock();
            state.active = active.filter(|a| state.closing != Some(a.number));
            state.closing = None;
            if made {
                state.next = next.saturating_add(1);
            }
            if let Ok((segment, _)) = written {
                *state.pending.entry(segment).or_insert(0) += records;
            }
            state.busy = false;
            state.durable = number + 1;
            state.outcomes.ended(number, written);
            self.done.notify_all();
        }
        let (segment, at) = state.outcomes.heard(mine)?;
        drop(state);
        let written = now_secs();
        let places = chunks
            .iter()
            .zip(offsets)
            .map(|((_, payload), offset)| Place {
                segment,
                offset: at + offset,
                len: payload.len() as u32,
                written,
            })
            .collect();
        Ok(Appended {
            places,
            segments: self,
            segment,
        })
    }

    /// Closes `segment` (see `close`) and waits until every record written into it has its
    /// place committed or given up: then the catalog's places in it are all there will be.
    pub fn settle(&self, segment: u32) {
        self.close(segment);
        let mut state = self.lock();
        // Batches before this one may still be landing in `segment`; later ones cannot.
        let until = state.filling;
        while state.durable < until || state.pending.contains_key(&segment) {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Writes `batch` at the end of the active segment (or of a new one, numbered `next`,
    /// when there is none or the batch would take it past `SEGMENT_BYTES`) and fsyncs. A
    /// failed write (a full disk) is cut off again, so no later batch follows a torn
    /// record; if that fails too, the segment is closed and the next batch starts another.
    /// Returns where the batch went, the segment to append to next, and whether `next` was
    /// used.
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &self,
        batch: &[u8],
        active: Option<Active>,
        next: u32,
    ) -> (std::io::Result<(u32, u64)>, Option<Active>, bool) {
        let (mut active, made) = match active {
            Some(a) if a.size == 0 || a.size + batch.len() as u64 <= SEGMENT_BYTES => (a, false),
            _ => match self.create(next) {
                Ok(a) => (a, true),
                // The number is used up either way: the file may exist.
                Err(e) => return (Err(e), None, true),
            },
        };
        let at = active.size;
        let written = active
            .file
            .write_all_at(batch, at)
            .and_then(|()| active.file.sync_data());
        match written {
            Ok(()) => {
                active.size += batch.len() as u64;
                (Ok((active.number, at)), Some(active), made)
            }
            Err(e) => {
                let kept = active.file.set_len(at).is_ok().then_some(active);
                (Err(e), kept, made)
            }
        }
    }

    /// Makes segment `number`, durably named in the directory.
    fn create(&self, number: u32) -> std::io::Result<Active> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(number))?;
        crate::fsutil::sync_dir(&self.dir)?;
        Ok(Active {
            number,
            file,
            size: 0,
        })
    }

    /// The payload at `place`. A segment that is gone (compacted since the place was read)
    /// is `NotFound`.
    pub fn read(&self, place: &Place) -> std::io::Result<Vec<u8>> {
        if place.len as usize > MAX_RECORD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a place of {} bytes is past any record", place.len),
            ));
        }
        use std::os::unix::fs::OpenOptionsExt;
        // Never blocks on a FIFO planted in place of a segment, nor follows a link.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(self.path(place.segment))?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("segment {} is not a regular file", place.segment),
            ));
        }
        let mut bytes = vec![0u8; place.len as usize];
        file.read_exact_at(&mut bytes, place.offset)?;
        Ok(bytes)
    }

    /// Removes a segment nothing points into any more (after compaction), durably.
    pub fn remove(&self, segment: u32) -> std::io::Result<()> {
        debug_assert_ne!(self.active(), Some(segment), "removing the active segment");
        std::fs::remove_file(self.path(segment))?;
        crate::fsutil::sync_dir(&self.dir)
    }
}

/// The segment files under `dir` (named `<number>.seg`), with their sizes, oldest first.
fn list(dir: &Path) -> std::io::Result<Vec<(u32, u64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Only names this code makes, of regular files: `1.seg`, `+1.seg` or a directory
        // would alias or break a segment.
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| name.to_str() == Some(segment_name(*n).as_str()) && *n < u32::MAX)
        else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        out.push((number, meta.len()));
    }
    out.sort_unstable();
    Ok(out)
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
        o.ended(1, Err(full));
        o.ended(2, Err(std::io::Error::other("another failure")));
        o.ended(3, Ok((1, 0)));
        // Batch 3 succeeds; the writers of 1 wake only now.
        assert_eq!(o.heard(3).unwrap(), (1, 0));
        assert_eq!(
            o.heard(1).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
        assert_eq!(
            o.heard(1).unwrap_err().kind(),
            std::io::ErrorKind::StorageFull
        );
        assert!(o.heard(2).is_err());
        assert!(o.waiting.is_empty() && o.ended.is_empty());
    }

    /// Records written by many threads at once all land where their places say, in fewer
    /// fsyncs than records; a torn tail is cut back to the last place.
    #[test]
    fn group_commit_shares_fsyncs_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let places: Vec<Vec<(u8, u8, Place)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|t| {
                    let segments = &segments;
                    s.spawn(move || {
                        (0..50u8)
                            .map(|i| {
                                let p = segments.append(&[(&[t; 32], &[i; 100])]).unwrap();
                                (t, i, p.places[0])
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let batches = segments.lock().durable;
        assert!(batches < 400, "{batches} fsyncs for 400 records");
        for (_, i, place) in places.iter().flatten() {
            assert_eq!(segments.read(place).unwrap(), vec![*i; 100]);
        }
        let [(number, size)] = segments.list().unwrap()[..] else {
            panic!("one segment")
        };
        let mut ids = Vec::new();
        scan(File::open(segments.path(number)).unwrap(), |r, _| {
            ids.push(r.id[0]);
            Ok(())
        })
        .unwrap();
        assert_eq!(ids.len(), 400);
        // A crash mid-append: half a record at the end. Cut back to the last place, and
        // appends go on after it.
        let last = places
            .iter()
            .flatten()
            .map(|(_, _, p)| record_end(p))
            .max()
            .unwrap();
        assert_eq!(last, size);
        drop(segments);
        let f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(segment_name(number)))
            .unwrap();
        std::io::Write::write_all(&mut &f, &encode(Kind::Chunk, &[9; 32], &[1; 100])[..60])
            .unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        assert_eq!(segments.cut(number, last).unwrap(), 60);
        assert_eq!(segments.list().unwrap(), vec![(number, size)]);
        let p = segments.append(&[(&[9; 32], b"after")]).unwrap().places[0];
        assert_eq!((p.segment, p.offset), (number, size + HEADER as u64));
        assert_eq!(segments.read(&p).unwrap(), b"after");
        // A flipped byte in a record ends a scan there.
        let mut bytes = std::fs::read(segments.path(number)).unwrap();
        bytes[HEADER + 100 + CHECKSUM + 40] ^= 1;
        assert_eq!(parse(&bytes).len(), 1);
    }

    /// A full segment is closed; the next batch starts a new one.
    #[test]
    fn a_full_segment_is_closed_and_another_started() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let big = vec![7u8; MAX_RECORD];
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..(SEGMENT_BYTES as usize / MAX_RECORD + 2) {
            let p = segments.append(&[(&[i as u8; 32], &big)]).unwrap().places[0];
            seen.insert(p.segment);
        }
        let list = segments.list().unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list.iter().all(|(_, size)| *size <= SEGMENT_BYTES));
        assert_eq!(seen.len(), 2);
    }

    /// Compaction settles a segment before it reads the places in it: `settle` returns only
    /// once every record written into the segment has had its place committed (its
    /// `Appended` dropped), and later appends go to another segment.
    #[test]
    fn settling_waits_for_places_still_being_committed() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let pending = segments.append(&[(&[1; 32], b"one")]).unwrap();
        let s = pending.places[0].segment;
        let settled = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let settler = scope.spawn(|| {
                segments.settle(s);
                settled.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!settled.load(std::sync::atomic::Ordering::SeqCst));
            // Appends meanwhile go to a new segment, and are not waited for.
            let later = segments.append(&[(&[2; 32], b"two")]).unwrap();
            assert_ne!(later.places[0].segment, s);
            drop(pending);
            settler.join().unwrap();
            assert!(settled.load(std::sync::atomic::Ordering::SeqCst));
            drop(later);
        });
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
}
