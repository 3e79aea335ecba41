//! The write path: a value cut into chunks, sealed and hashed on the blocking pool (several
//! chunks at once, so large values use every core while memory stays bounded by a few
//! chunks), each chunk made durable (here, or on a quorum of its owners), then the manifest
//! committed; a small value goes inside its manifest. Deletes write a tombstone.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::{blocking, join, Erasure, Node, Pins, Redundancy, StoreOptions, ERASURE_MIN_SHARD};
use crate::cluster::remote::{Remote, Stamped};
use crate::engine::store::Store;
use crate::erasure::{self, ShardOf};
use crate::error::{Error, IoContext, Result};
use crate::ids::ChunkId;
use crate::manifest::{validate_key, Manifest, ManifestBody, Policy, INLINE_MAX};
use crate::version::Version;

/// Reads up to `n` bytes, fewer only at end of input, into memory taken as it fills and never
/// zeroed: a small value costs a small buffer, not a whole chunk (zeroing 1 MiB for each 4 KiB
/// store was 8% of a small-value cluster profile). `first` is the start of a value, which may
/// be small; later chunks of a value are taken whole at once.
async fn read_up_to<R: AsyncRead + Unpin>(
    reader: &mut R,
    n: usize,
    first: bool,
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(if first { n.min(64 << 10) } else { n });
    while buf.len() < n {
        if buf.len() == buf.capacity() {
            buf.reserve_exact(n - buf.len());
        }
        let rest = (n - buf.len()) as u64;
        if (&mut *reader).take(rest).read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

/// One chunk of a value, durable: its id, and under erasure coding the ids of its shards.
struct Written {
    chunk: ChunkId,
    shards: Vec<ChunkId>,
}

impl Written {
    /// Adds this chunk to a value's `chunks`, and to `pinned` what was pinned for it.
    fn add_to(self, chunks: &mut Vec<ChunkId>, pinned: &mut Vec<ChunkId>) {
        if self.shards.is_empty() {
            pinned.push(self.chunk);
        } else {
            pinned.extend(self.shards);
        }
        chunks.push(self.chunk);
    }
}

impl Node {
    pub async fn store(&self, key: &str, data: &[u8], opts: StoreOptions) -> Result<()> {
        self.store_reader(key, data, opts).await.map(|_| ())
    }

    pub async fn store_file(
        &self,
        key: &str,
        path: impl AsRef<Path>,
        opts: StoreOptions,
    ) -> Result<u64> {
        validate_key(key)?;
        let path = path.as_ref();
        let file = tokio::fs::File::open(path)
            .await
            .context(|| format!("opening {}", path.display()))?;
        self.store_reader(key, file, opts).await
    }

    /// Stores everything `reader` yields under `key`, replacing any older version. Returns
    /// once the value is durable. Memory use is a few chunks, whatever the size.
    pub async fn store_reader<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        mut reader: R,
        opts: StoreOptions,
    ) -> Result<u64> {
        validate_key(key)?;
        if opts.encrypt && self.inner.data_key.is_none() {
            return Err(Error::InvalidArgument(
                "encrypting needs a data key, and this client was given none (store it plain, \
                 or give the client the data key)"
                    .into(),
            ));
        }
        let mut erasure = match opts.redundancy {
            Redundancy::Default => self.inner.erasure,
            Redundancy::Replicas => None,
            Redundancy::Erasure(e) => Some(e),
        };
        if let Some(e) = erasure {
            e.validate()?;
            if self.inner.remote.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "erasure coding ({e}) needs a cluster; a standalone node keeps one copy"
                )));
            }
        }
        let op = self.begin().await?;
        let store = &op.store;
        // What this write pinned: its chunks, or under erasure coding their shards.
        let mut pins = Pins {
            store: store.clone(),
            ids: Vec::new(),
        };
        let mut chunks: Vec<ChunkId> = Vec::new();
        let mut inflight: VecDeque<JoinHandle<Result<Written>>> = VecDeque::new();
        let mut size = 0u64;
        let chunk_size = self.inner.chunk_size;
        // A value that fits in one chunk and `INLINE_MAX` goes in its manifest.
        let mut inline = None;
        let streamed: Result<()> = async {
            loop {
                let chunk = read_up_to(&mut reader, chunk_size, size == 0)
                    .await
                    .context(|| format!("reading the value of {key:?}"))?;
                if chunk.is_empty() {
                    break;
                }
                let at_end = chunk.len() < chunk_size;
                if at_end && size == 0 && chunk.len() <= INLINE_MAX {
                    size = chunk.len() as u64;
                    inline = Some(chunk);
                    break;
                }
                // A value whose shards would be tiny is replicated: each costs a request.
                if at_end
                    && size == 0
                    && erasure.is_some_and(|e| chunk.len() < e.k() * ERASURE_MIN_SHARD)
                {
                    erasure = None;
                }
                size += chunk.len() as u64;
                inflight.push_back(self.write_chunk(store, chunk, opts.encrypt, erasure));
                if inflight.len() >= self.parallelism() {
                    let front = inflight.pop_front().expect("not empty");
                    join(front).await?.add_to(&mut chunks, &mut pins.ids);
                }
                if at_end {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // Collect every chunk write, even after a failure, so that each pin is released.
        let mut first_error = streamed.err();
        for handle in inflight {
            match join(handle).await {
                Ok(written) => written.add_to(&mut chunks, &mut pins.ids),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        let body = ManifestBody {
            key: key.to_owned(),
            // Stamped by `make`, as late as possible.
            version: Version {
                time: 0,
                node: self.inner.id,
            },
            size,
            chunk_size: chunk_size as u32,
            encrypted: opts.encrypt,
            policy: match erasure {
                Some(e) if inline.is_none() && !chunks.is_empty() => Policy::Erasure {
                    data: e.data,
                    parity: e.parity,
                    shards: pins.ids.clone(),
                },
                _ => Policy::Replicas(self.inner.remote.as_ref().map_or(1, |r| r.replicas as u8)),
            },
            chunks,
            deleted: false,
        };
        let data_key = self.inner.data_key.as_ref();
        let inline = inline.map(|plain| match data_key {
            Some(k) if opts.encrypt => k.seal(&plain),
            _ => plain,
        });
        let make = |version| {
            let body = ManifestBody {
                version,
                ..body.clone()
            };
            match &inline {
                Some(stored) => {
                    Manifest::with_inline(body, stored.clone(), data_key, &self.inner.cluster)
                }
                None => Manifest::new(body, data_key, &self.inner.cluster),
            }
        };
        match &self.inner.remote {
            None => {
                let (s, k) = (store.clone(), key.to_owned());
                if let Some(held) = blocking(move || Ok(s.version_of(&k))).await? {
                    // Never let a clock that went backwards lose this write to an older one.
                    self.inner.clock.observe(held.time);
                }
                let (s, manifest) = (store.clone(), make(self.stamp()));
                if blocking(move || s.commit(&manifest)).await? {
                    pins.ids.clear(); // the manifest holds them now
                }
            }
            Some(remote) => self.put_manifest(remote, store, make).await?,
        }
        self.inner
            .counters
            .bytes_stored
            .fetch_add(size, Ordering::Relaxed);
        Ok(size)
    }

    /// Seals (if asked) and hashes one chunk on the blocking pool, then stores it: on the local
    /// store (pinned, see `Pins`), or on a majority of its owners in a cluster; under erasure
    /// coding, cut into shards (also on the blocking pool) stored on their holders.
    fn write_chunk(
        &self,
        store: &Arc<Store>,
        chunk: Vec<u8>,
        encrypt: bool,
        erasure: Option<Erasure>,
    ) -> JoinHandle<Result<Written>> {
        let (store, data_key) = (store.clone(), self.inner.data_key.clone());
        let seal = move || {
            let stored = if encrypt {
                data_key
                    .expect("checked before the first chunk")
                    .seal(&chunk)
            } else {
                chunk
            };
            (ChunkId::of(&stored), stored)
        };
        if self.inner.remote.is_none() {
            return tokio::task::spawn_blocking(move || {
                let (id, stored) = seal();
                store.put_chunk(id, &stored)?;
                Ok(Written {
                    chunk: id,
                    shards: Vec::new(),
                })
            });
        }
        let node = self.clone();
        tokio::spawn(async move {
            let remote = node.inner.remote.as_ref().expect("cluster node");
            let Some(e) = erasure else {
                let (id, stored) = blocking(move || Ok(seal())).await?;
                // Pinned here while in flight, so garbage collection anywhere sees it named.
                store.pin(&[id]);
                if let Err(e) = remote.put_chunk(&store, id, Arc::new(stored)).await {
                    store.unpin(&[id]);
                    return Err(e);
                }
                return Ok(Written {
                    chunk: id,
                    shards: Vec::new(),
                });
            };
            let (chunk, shards) = blocking(move || {
                let (id, stored) = seal();
                let len = u32::try_from(stored.len()).expect("a chunk is under 4 GiB");
                let shards = erasure::encode(&stored, e.k(), usize::from(e.parity))?;
                let ids = erasure::ids(&shards);
                let placed = shards
                    .into_iter()
                    .enumerate()
                    .map(|(i, bytes)| {
                        let of = ShardOf {
                            chunk: id,
                            len,
                            data: e.data,
                            parity: e.parity,
                            index: i as u8,
                            shards: ids.clone(),
                        };
                        (of, bytes)
                    })
                    .collect::<Vec<_>>();
                Ok((id, placed))
            })
            .await?;
            let ids = shards
                .first()
                .map(|(of, _)| of.shards.clone())
                .unwrap_or_default();
            store.pin(&ids);
            if let Err(e) = remote.put_shards(&store, shards).await {
                store.unpin(&ids);
                return Err(e);
            }
            Ok(Written { chunk, shards: ids })
        })
    }

    /// Deletes `key` (writes a tombstone); its chunks go once nothing else names them.
    pub async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let op = self.begin().await?;
        match self.find_manifest(&op.store, key).await {
            Ok(found) => {
                let held = found
                    .filter(|m| !m.body.deleted)
                    .ok_or_else(|| Error::NotFound(key.to_owned()))?;
                // The tombstone must be newer than what it deletes, whatever this node's
                // clock says.
                self.inner.clock.observe(held.body.version.time);
            }
            // A standalone node's value whose manifest was set aside can still be deleted.
            Err(Error::Integrity(_)) if op.store.set_aside_since_open(key) => {}
            Err(e) => return Err(e),
        }
        let tombstone = |version| {
            Manifest::tombstone(
                key,
                version,
                self.inner.data_key.as_ref(),
                &self.inner.cluster,
            )
        };
        match &self.inner.remote {
            None => {
                let (store, tombstone) = (op.store.clone(), tombstone(self.stamp()));
                blocking(move || store.commit(&tombstone)).await?;
            }
            Some(remote) => self.put_manifest(remote, &op.store, tombstone).await?,
        }
        Ok(())
    }

    /// A version for a write made now.
    fn stamp(&self) -> Version {
        Version {
            time: self.inner.clock.now(),
            node: self.inner.id,
        }
    }

    /// Puts the manifest `make` builds for a version stamped now on the key's owners. If a
    /// newer version is held (this node's clock was behind, or a write raced this one), the
    /// write is stamped after it and sent once more: so a write that follows an acknowledged
    /// one always wins, without a read before every write (see `Remote::put_manifest`). What
    /// is newer than the second stamp was written concurrently; last-writer-wins may order
    /// it either way, so a write (or a delete) may then be acknowledged and already replaced.
    async fn put_manifest(
        &self,
        remote: &Remote,
        store: &Arc<Store>,
        make: impl Fn(Version) -> Manifest,
    ) -> Result<()> {
        let first = make(self.stamp());
        let key = first.body.key.clone();
        if let Stamped::Newer(held) = remote.put_manifest(store, first).await? {
            tracing::debug!(
                key,
                ?held,
                "a newer version is held; stamping again after it"
            );
            self.inner.clock.observe(held.time);
            remote.put_manifest(store, make(self.stamp())).await?;
        }
        Ok(())
    }
}

impl Node {
    /// A writer of a new value of `key`, for a caller that has its bytes a piece at a time
    /// (a C caller, a Python file object): `write` the pieces in order, then `finish`, which
    /// stores them as one value, as `store_reader` does, and returns its size. The value is
    /// written while the pieces come (memory stays a few chunks), and nothing is stored unless
    /// `finish` succeeds: a writer dropped before it, or one whose node starts closing while
    /// it waits for a piece, fails and stores nothing (its chunks are collected like those of
    /// any write that failed).
    pub async fn writer(&self, key: &str, opts: StoreOptions) -> Result<ValueWriter> {
        validate_key(key)?;
        let (pieces, rx) = tokio::sync::mpsc::channel(2);
        let source = Pieces {
            rx,
            closing: self.inner.closing.clone(),
            piece: Vec::new(),
            at: 0,
            ended: false,
            tick: Box::pin(tokio::time::sleep(CLOSING_CHECK)),
        };
        let (node, key) = (self.clone(), key.to_owned());
        let store = tokio::spawn(async move { node.store_reader(&key, source, opts).await });
        Ok(ValueWriter {
            pieces: Some(pieces),
            store: Some(store),
        })
    }
}

/// How often a writer waiting for its caller's next piece checks whether its node is closing
/// (`close` waits for calls under way, and a caller may never send the piece).
const CLOSING_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

enum Piece {
    Bytes(Vec<u8>),
    End,
}

/// A value written piece by piece, from `Node::writer`.
pub struct ValueWriter {
    pieces: Option<tokio::sync::mpsc::Sender<Piece>>,
    store: Option<JoinHandle<Result<u64>>>,
}

impl ValueWriter {
    /// Sends the next piece. An error means the write failed (and says why); nothing will
    /// be stored, and every later call fails.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        let Some(pieces) = &self.pieces else {
            return Err(self.ended().await);
        };
        if data.is_empty() {
            return Ok(());
        }
        if pieces.send(Piece::Bytes(data.to_vec())).await.is_err() {
            return Err(self.ended().await);
        }
        Ok(())
    }

    /// Ends the value and stores it; returns its size once it is durable.
    pub async fn finish(mut self) -> Result<u64> {
        let Some(pieces) = self.pieces.take() else {
            return Err(self.ended().await);
        };
        // If the store has ended already, awaiting it below says why.
        let _ = pieces.send(Piece::End).await;
        match self.store.take() {
            Some(store) => join(store).await,
            None => Err(self.ended().await),
        }
    }

    /// Why the write ended before its end (the store task's error).
    async fn ended(&mut self) -> Error {
        self.pieces = None;
        match self.store.take() {
            Some(store) => match join(store).await {
                Err(e) => e,
                Ok(_) => Error::InvalidArgument("the writer ended before its end".into()),
            },
            None => Error::InvalidArgument("this writer has failed or finished already".into()),
        }
    }
}

/// The pieces a `ValueWriter` sends, read by `store_reader`: end of input only at
/// `Piece::End`. A writer dropped without it, or a node closing, is an error instead, so a
/// value cut short is never stored.
struct Pieces {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    closing: Arc<std::sync::atomic::AtomicBool>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
    tick: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.at < this.piece.len() {
                let n = buf.remaining().min(this.piece.len() - this.at);
                buf.put_slice(&this.piece[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Piece::Bytes(bytes))) => (this.piece, this.at) = (bytes, 0),
                Poll::Ready(Some(Piece::End)) => this.ended = true,
                Poll::Ready(None) => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the writer was dropped before it finished; nothing is stored",
                    )))
                }
                Poll::Pending => {
                    if this.closing.load(Ordering::Acquire) {
                        return Poll::Ready(Err(std::io::Error::other(
                            "the node is closing; the unfinished value is not stored",
                        )));
                    }
                    if std::future::Future::poll(this.tick.as_mut(), cx).is_pending() {
                        return Poll::Pending;
                    }
                    let next = tokio::time::Instant::now() + CLOSING_CHECK;
                    this.tick.as_mut().reset(next);
                }
            }
        }
    }
}
