//! The read path: the newest trusted manifest of a key (here, or among a read quorum of its
//! owners), then its chunks fetched, verified and decrypted several at once, written out in
//! order.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{blocking, join, Node, Op};
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
        self.read_chunks(&op.store, &manifest, &mut out).await?;
        Ok(out)
    }

    /// Writes the value of `key` to `path`, via a temp file renamed into place, so the path
    /// never holds a partial or unverified value.
    pub async fn get_file(&self, key: &str, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let (op, manifest) = self.live_manifest(key).await?;
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
            let n = self.read_chunks(&op.store, &manifest, &mut file).await?;
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
        self.read_chunks(&op.store, &manifest, &mut writer).await
    }

    /// Reads, verifies and decrypts the chunks of `manifest`, several at once, writing them
    /// to `out` in order.
    async fn read_chunks<W: AsyncWrite + Unpin>(
        &self,
        store: &Arc<Store>,
        manifest: &Manifest,
        out: &mut W,
    ) -> Result<u64> {
        let mut inflight: VecDeque<JoinHandle<Result<Vec<u8>>>> = VecDeque::new();
        let mut next = 0;
        let mut written = 0u64;
        let chunks = &manifest.body.chunks;
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
            )?;
            // Goes out through the loop below, like a chunk read.
            inflight.push_back(tokio::spawn(async move { Ok(plain) }));
        }
        loop {
            while inflight.len() < self.parallelism() && next < chunks.len() {
                let (store, data_key, id) =
                    (store.clone(), self.inner.data_key.clone(), chunks[next]);
                let expected_len = manifest.chunk_len(next);
                let open = move |stored: Vec<u8>| {
                    let what = format!("chunk {id}");
                    open_stored(data_key.as_ref(), encrypted, stored, expected_len, &what)
                };
                // Under erasure coding: the chunk's shards, and its stored length.
                let sharded = manifest.shards_of(next).map(|ids| {
                    let sealed = if encrypted { crypto::IV_LEN as u64 } else { 0 };
                    (ids.to_vec(), (expected_len + sealed) as usize)
                });
                let (data, parity) = match &manifest.body.policy {
                    Policy::Erasure { data, parity, .. } => {
                        (usize::from(*data), usize::from(*parity))
                    }
                    Policy::Replicas(_) => (0, 0),
                };
                inflight.push_back(match &self.inner.remote {
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
                });
                next += 1;
            }
            let Some(handle) = inflight.pop_front() else {
                break;
            };
            let plain = match join(handle).await {
                Ok(plain) => plain,
                Err(e) => {
                    // Let the reads already started finish: each holds the store, and a
                    // caller that closes the node after this error expects the root free.
                    for handle in inflight {
                        let _ = handle.await;
                    }
                    return Err(e);
                }
            };
            out.write_all(&plain)
                .await
                .context(|| "writing the value out".to_owned())?;
            written += plain.len() as u64;
        }
        out.flush()
            .await
            .context(|| "writing the value out".to_owned())?;
        self.inner
            .counters
            .bytes_read
            .fetch_add(written, Ordering::Relaxed);
        Ok(written)
    }

    pub async fn has(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let op = self.begin().await?;
        let found = self.find_manifest(&op.store, key).await?;
        Ok(found.is_some_and(|m| !m.body.deleted))
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
