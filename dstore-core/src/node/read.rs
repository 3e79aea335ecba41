//! The read path: the newest trusted manifest of a key (here, or among a read quorum of its
//! owners), then its chunks fetched, verified and decrypted several at once, written out in
//! order.

use std::collections::VecDeque;
use std::future::Future;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;

use super::{blocking, join, Erasure, Node, Op};
use crate::crypto::{self, DataKey};
use crate::engine::store::Store;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{validate_key, Manifest, Policy};

/// The plaintext of a chunk's (or an inline value's) stored bytes, checked to be
/// `expected_len` long: decrypted (and so authenticated) if `encrypted`.
fn open_stored(
    data_key: Option<&DataKey>,
    encrypted: bool,
    stored: Vec<u8>,
    expected_len: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let plain = if encrypted {
        let key = data_key.ok_or_else(|| Error::WrongKey("this node holds no data key".into()))?;
        key.open(&stored)?
    } else {
        stored
    };
    if plain.len() as u64 != expected_len {
        return Err(Error::Integrity(format!(
            "{what} holds {} bytes, the manifest says {expected_len}",
            plain.len()
        )));
    }
    Ok(plain)
}

impl Node {
    /// The current manifest (or tombstone) of `key`, if any: the local one for a standalone
    /// node, the newest among a majority of its owners in a cluster.
    pub(super) async fn find_manifest(
        &self,
        store: &Arc<Store>,
        key: &str,
    ) -> Result<Option<Manifest>> {
        let (data_key, accept_unsealed) = (self.inner.data_key.clone(), self.inner.accept_unsealed);
        let trusted = move |m: &Manifest| m.check_seal(data_key.as_ref(), accept_unsealed);
        match &self.inner.remote {
            None => {
                let (s, k) = (store.clone(), key.to_owned());
                match blocking(move || s.manifest(&k)).await {
                    Ok(m) => trusted(&m).map(|()| Some(m)),
                    // A value whose manifest was set aside is lost here, not absent.
                    Err(Error::NotFound(_)) if store.set_aside_since_open(key) => {
                        Err(Error::Integrity(format!(
                            "the manifest of {key:?} was corrupt and is set aside in \
                             quarantine/; no good copy is held"
                        )))
                    }
                    Err(Error::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Some(remote) => {
                let found = remote.get_manifest(store, key, &trusted).await?;
                // A node that has just started may not know every member yet, and so miss the
                // owners of a key: before its first "not found", it lets its view settle.
                let fresh = remote.cluster.started_within(Duration::from_secs(10));
                if found.is_none() && fresh && !self.inner.settled.swap(true, Ordering::AcqRel) {
                    let _ = self.settle(Duration::from_secs(2)).await;
                    return remote.get_manifest(store, key, &trusted).await;
                }
                Ok(found)
            }
        }
    }

    /// Starts a read: loads and checks the manifest of a live key.
    async fn live_manifest(&self, key: &str) -> Result<(Op, Manifest)> {
        validate_key(key)?;
        let op = self.begin().await?;
        let manifest = self
            .find_manifest(&op.store, key)
            .await?
            .filter(|m| !m.body.deleted)
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        Ok((op, manifest))
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        let (op, manifest) = self.live_manifest(key).await?;
        let size = usize::try_from(manifest.body.size).map_err(|_| {
            Error::InvalidArgument(format!("{key:?} is too large for memory; use get_file"))
        })?;
        let mut out = Vec::new();
        out.try_reserve_exact(size).map_err(|_| {
            Error::InvalidArgument(format!(
                "{key:?} ({size} bytes) does not fit in memory; use get_file"
            ))
        })?;
        self.read_chunks(&op.store, &manifest, 0..manifest.body.size, &mut out)
            .await?;
        Ok(out)
    }

    /// Writes the value of `key` to `path`, via a temp file renamed into place, so the path
    /// never holds a partial or unverified value.
    pub async fn get_file(&self, key: &str, path: impl AsRef<Path>) -> Result<u64> {
        self.get_range_file(key, 0, u64::MAX, path).await
    }

    /// `get_range` into the file at `path`, as `get_file` writes a whole value.
    pub async fn get_range_file(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        path: impl AsRef<Path>,
    ) -> Result<u64> {
        let path = path.as_ref();
        let (op, manifest) = self.live_manifest(key).await?;
        let span = clamp(&manifest, offset, len);
        let name = path.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} is not a file path", path.display()))
        })?;
        let partial = path.with_file_name(format!(
            ".{}.dstore-{}",
            name.to_string_lossy(),
            hex::encode(crypto::random_bytes::<6>())
        ));
        let result = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .context(|| format!("creating {}", partial.display()))?;
            let n = self
                .read_chunks(&op.store, &manifest, span, &mut file)
                .await?;
            file.sync_all()
                .await
                .context(|| format!("syncing {}", partial.display()))?;
            tokio::fs::rename(&partial, path)
                .await
                .context(|| format!("renaming into {}", path.display()))?;
            Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    /// Writes the value of `key` into `writer`. A failure part way leaves a prefix of the
    /// value in `writer` (each chunk is verified before it is written).
    pub async fn get_writer<W: AsyncWrite + Unpin>(&self, key: &str, mut writer: W) -> Result<u64> {
        let (op, manifest) = self.live_manifest(key).await?;
        self.read_chunks(&op.store, &manifest, 0..manifest.body.size, &mut writer)
            .await
    }

    /// The bytes `offset .. offset + len` of the value of `key`: fewer if the value ends
    /// first, none if it ends before `offset`. Only the chunks (or their shards) that cover
    /// the range are fetched.
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (op, manifest) = self.live_manifest(key).await?;
        let span = clamp(&manifest, offset, len);
        let want = usize::try_from(span.end - span.start).map_err(|_| {
            Error::InvalidArgument(format!("a range of {len} bytes does not fit in memory"))
        })?;
        let mut out = Vec::new();
        out.try_reserve_exact(want).map_err(|_| {
            Error::InvalidArgument(format!("a range of {want} bytes does not fit in memory"))
        })?;
        self.read_chunks(&op.store, &manifest, span, &mut out)
            .await?;
        Ok(out)
    }

    /// `get_range` into `writer`, streaming: memory stays a few chunks whatever the range.
    pub async fn get_range_writer<W: AsyncWrite + Unpin>(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        mut writer: W,
    ) -> Result<u64> {
        let (op, manifest) = self.live_manifest(key).await?;
        let span = clamp(&manifest, offset, len);
        self.read_chunks(&op.store, &manifest, span, &mut writer)
            .await
    }

    /// A reader of the value of `key` as it is now (`AsyncRead + AsyncSeek`): it fetches
    /// the chunk under its position when read, so a seek costs nothing and a read touches
    /// only the chunks it covers. It holds the manifest, not the node open: `close` does not
    /// wait for it, and a read after `close` fails with `Closed`. If the value is replaced
    /// or deleted meanwhile, the reader goes on reading the version it opened until that
    /// version's chunks are collected (at once on a standalone node), then fails.
    pub async fn reader(&self, key: &str) -> Result<ValueReader> {
        let (_op, manifest) = self.live_manifest(key).await?;
        Ok(ValueReader {
            node: self.clone(),
            manifest: Arc::new(manifest),
            pos: 0,
            chunk: None,
            pending: None,
        })
    }

    /// Starts fetching piece `index` of `manifest` (its inline value, or chunk `index`): its
    /// plaintext, verified and decrypted.
    fn fetch_piece(
        &self,
        store: &Arc<Store>,
        manifest: &Manifest,
        index: usize,
    ) -> JoinHandle<Result<Vec<u8>>> {
        let encrypted = manifest.body.encrypted;
        if let Some(stored) = &manifest.inline {
            let what = format!("the inline value of {:?}", manifest.body.key);
            let data_key = self.inner.data_key.as_ref();
            let plain = open_stored(
                data_key,
                encrypted,
                stored.clone(),
                manifest.body.size,
                &what,
            );
            return tokio::spawn(async move { plain });
        }
        let (store, data_key, id) = (
            store.clone(),
            self.inner.data_key.clone(),
            manifest.body.chunks[index],
        );
        let expected_len = manifest.chunk_len(index);
        let open = move |stored: Vec<u8>| {
            let what = format!("chunk {id}");
            open_stored(data_key.as_ref(), encrypted, stored, expected_len, &what)
        };
        // Under erasure coding: the chunk's shards, and its stored length.
        let sharded = manifest.shards_of(index).map(|ids| {
            let sealed = if encrypted { crypto::IV_LEN as u64 } else { 0 };
            (ids.to_vec(), (expected_len + sealed) as usize)
        });
        let (data, parity) = match &manifest.body.policy {
            Policy::Erasure { data, parity, .. } => (usize::from(*data), usize::from(*parity)),
            Policy::Replicas(_) => (0, 0),
        };
        match &self.inner.remote {
            None => tokio::task::spawn_blocking(move || open(store.chunk(&id)?)),
            Some(_) => {
                let node = self.clone();
                tokio::spawn(async move {
                    let remote = node.inner.remote.as_ref().expect("cluster node");
                    let stored = match sharded {
                        Some((ids, len)) => {
                            remote
                                .get_sharded(&store, id, len, data, parity, &ids)
                                .await?
                        }
                        None => remote.get_chunk(&store, id).await?,
                    };
                    blocking(move || open(stored)).await
                })
            }
        }
    }

    /// Reads, verifies and decrypts the chunks of `manifest` that cover `span` (within the
    /// value), several at once, writing the bytes of `span` to `out` in order.
    async fn read_chunks<W: AsyncWrite + Unpin>(
        &self,
        store: &Arc<Store>,
        manifest: &Manifest,
        span: Range<u64>,
        out: &mut W,
    ) -> Result<u64> {
        let cs = u64::from(manifest.body.chunk_size);
        let mut inflight: VecDeque<(u64, JoinHandle<Result<Vec<u8>>>)> = VecDeque::new();
        let mut written = 0u64;
        // Pieces `next ..= last` cover the span (an inline value is one piece).
        let (mut next, last) = (span.start / cs, span.end.saturating_sub(1) / cs);
        if span.is_empty() {
            next = last + 1;
        }
        loop {
            while inflight.len() < self.parallelism() && next <= last {
                inflight.push_back((next, self.fetch_piece(store, manifest, next as usize)));
                next += 1;
            }
            let Some((index, handle)) = inflight.pop_front() else {
                break;
            };
            let plain = match join(handle).await {
                Ok(plain) => plain,
                Err(e) => {
                    // Let the reads already started finish: each holds the store, and a
                    // caller that closes the node after this error expects the root free.
                    for (_, handle) in inflight {
                        let _ = handle.await;
                    }
                    return Err(e);
                }
            };
            // The piece's part of the span (its length was checked against the manifest).
            let at = index * cs;
            let from = span.start.saturating_sub(at) as usize;
            let to = ((span.end - at) as usize).min(plain.len());
            out.write_all(&plain[from..to])
                .await
                .context(|| "writing the value out".to_owned())?;
            written += (to - from) as u64;
            // Counted as it goes: `stats()` shows a long read's progress.
            let read = &self.inner.counters.bytes_read;
            read.fetch_add((to - from) as u64, Ordering::Relaxed);
        }
        out.flush()
            .await
            .context(|| "writing the value out".to_owned())?;
        Ok(written)
    }

    pub async fn has(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let op = self.begin().await?;
        let found = self.find_manifest(&op.store, key).await?;
        Ok(found.is_some_and(|m| !m.body.deleted))
    }

    /// What the manifest of the live value of `key` says of it, without reading the value.
    pub async fn info(&self, key: &str) -> Result<ValueInfo> {
        validate_key(key)?;
        let op = self.begin().await?;
        let found = self.find_manifest(&op.store, key).await?;
        let m = found
            .filter(|m| !m.body.deleted)
            .ok_or_else(|| Error::NotFound(key.to_owned()))?;
        let b = &m.body;
        Ok(ValueInfo {
            size: b.size,
            version: b.version.time,
            writer: b.version.node,
            modified_ms: b.version.time >> 16,
            encrypted: b.encrypted,
            erasure: match b.policy {
                Policy::Erasure { data, parity, .. } => {
                    Some(Erasure::new(data.into(), parity.into())?)
                }
                Policy::Replicas(_) => None,
            },
        })
    }

    /// Size in bytes of the live value of `key`.
    /// Metadata: needs no data key (the manifest is still checked by its cluster MAC).
    pub async fn size(&self, key: &str) -> Result<u64> {
        validate_key(key)?;
        let op = self.begin().await?;
        let found = self.find_manifest(&op.store, key).await?;
        found
            .filter(|m| !m.body.deleted)
            .map(|m| m.body.size)
            .ok_or_else(|| Error::NotFound(key.to_owned()))
    }
}

/// What `Node::info` tells of a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    /// In bytes.
    pub size: u64,
    /// The version's hybrid logical clock reading: a later write of the key has a greater
    /// one (ties broken by `writer`).
    pub version: u64,
    /// The node that wrote it.
    pub writer: crate::ids::NodeId,
    /// When it was written, in milliseconds since the Unix epoch (the writer's clock).
    pub modified_ms: u64,
    pub encrypted: bool,
    /// `None` for replicas.
    pub erasure: Option<Erasure>,
}

/// `offset .. offset + len` of `manifest`'s value, cut at its end.
fn clamp(manifest: &Manifest, offset: u64, len: u64) -> Range<u64> {
    let size = manifest.body.size;
    offset.min(size)..offset.saturating_add(len).min(size)
}

type Fetch = Pin<Box<dyn Future<Output = Result<Vec<u8>>> + Send>>;

/// A value read piece by piece, from `Node::reader`: `AsyncRead + AsyncSeek`, and the same
/// as `read_some` and `seek_to` with dstore's errors.
pub struct ValueReader {
    node: Node,
    manifest: Arc<Manifest>,
    pos: u64,
    /// The last chunk read (its index and plaintext): reads within it fetch nothing.
    chunk: Option<(u64, Vec<u8>)>,
    /// The chunk being fetched.
    pending: Option<(u64, Fetch)>,
}

impl ValueReader {
    /// The value's size in bytes.
    pub fn size(&self) -> u64 {
        self.manifest.body.size
    }

    /// The position the next read starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Moves the position. Any position from 0 on is allowed; reads past the end give no
    /// bytes. Returns the new position.
    pub fn seek_to(&mut self, to: SeekFrom) -> Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a seek to {to:?} from {} lands before the start of the value",
                self.pos
            ))
        })?;
        Ok(self.pos)
    }

    /// Up to `max` bytes from the position on (at most to the end of the chunk under it):
    /// none at the end of the value.
    pub async fn read_some(&mut self, max: usize) -> Result<Vec<u8>> {
        let left = self.size().saturating_sub(self.pos);
        let cs = u64::from(self.manifest.body.chunk_size);
        let mut out = vec![0; (max as u64).min(left).min(cs) as usize];
        let mut buf = ReadBuf::new(&mut out);
        std::future::poll_fn(|cx| self.poll_fill(cx, &mut buf)).await?;
        let n = buf.filled().len();
        out.truncate(n);
        Ok(out)
    }

    /// Fills `buf` from the chunk under the position, fetching it first if needed.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<Result<()>> {
        let cs = u64::from(self.manifest.body.chunk_size);
        loop {
            if self.pos >= self.size() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let index = self.pos / cs;
            if let Some((i, plain)) = &self.chunk {
                if *i == index {
                    // Its length was checked against the manifest, so `from` is within it.
                    let from = (self.pos - index * cs) as usize;
                    let n = buf.remaining().min(plain.len() - from);
                    buf.put_slice(&plain[from..from + n]);
                    self.pos += n as u64;
                    let read = &self.node.inner.counters.bytes_read;
                    read.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
            }
            if self.pending.as_ref().map(|(i, _)| *i) != Some(index) {
                let (node, manifest) = (self.node.clone(), self.manifest.clone());
                let fetch: Fetch = Box::pin(async move {
                    let op = node.begin().await?;
                    join(node.fetch_piece(&op.store, &manifest, index as usize)).await
                });
                self.pending = Some((index, fetch));
            }
            let (_, fetch) = self.pending.as_mut().expect("set above");
            let plain = std::task::ready!(fetch.as_mut().poll(cx));
            self.pending = None;
            self.chunk = Some((index, plain?));
        }
    }
}

impl AsyncRead for ValueReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.get_mut()
            .poll_fill(cx, buf)
            .map_err(std::io::Error::other)
    }
}

impl AsyncSeek for ValueReader {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> std::io::Result<()> {
        self.get_mut()
            .seek_to(to)
            .map(drop)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}
