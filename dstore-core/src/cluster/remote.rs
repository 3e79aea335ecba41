//! The cluster side of store, get, delete and list: who to send to, how many answers make a
//! quorum, and what to do with peers that fail or lie. The node calls these only when it is
//! part of a cluster; a standalone node uses its store directly.
//!
//! - Chunks go to the owners of their id, manifests to the owners of their key id; a write is
//!   done when a majority of the owners have it durably (the rest continue in the
//!   background).
//! - A manifest read asks a majority of the key's owners and takes the newest version.
//! - A chunk read uses the local copy if there is a good one, else asks the owners one by one
//!   in rendezvous order, checking every answer against the chunk id.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use super::placement::{self, Candidate};
use super::Cluster;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId, NodeId};
use crate::manifest::Manifest;
use crate::net::message::{KeyState, Request, Response};
use crate::store::Store;

pub(crate) struct Remote {
    pub cluster: Arc<Cluster>,
    /// Copies of every chunk and manifest (capped by the number of live members).
    pub replicas: usize,
}

/// A majority of `n`.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Runs every future in the background and returns once `need` of them succeeded, or as soon
/// as that can no longer happen.
async fn quorum_of<F>(what: String, futures: Vec<F>, need: usize) -> Result<()>
where
    F: Future<Output = std::result::Result<(), String>> + Send + 'static,
{
    let total = futures.len();
    let (tx, mut rx) = tokio::sync::mpsc::channel(total.max(1));
    for f in futures {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(f.await).await;
        });
    }
    drop(tx);
    let (mut ok, mut failures) = (0, Vec::new());
    while let Some(r) = rx.recv().await {
        match r {
            Ok(()) => ok += 1,
            Err(e) => failures.push(e),
        }
        if ok >= need {
            return Ok(());
        }
        if total - failures.len() < need {
            break;
        }
    }
    Err(Error::Unavailable(format!(
        "{what}: {ok} of the {need} owners needed stored it ({})",
        failures.join("; ")
    )))
}

fn refused(r: Response) -> String {
    match r {
        Response::Failed { message, .. } => message,
        other => format!("unexpected answer {other:?}"),
    }
}

impl Remote {
    fn owners(&self, object: &[u8; 32]) -> Vec<Candidate> {
        placement::owners(object, &self.cluster.candidates(), self.replicas)
    }

    fn is_me(&self, id: &NodeId) -> bool {
        *id == self.cluster.id()
    }

    /// Stores a chunk on a majority of its owners.
    pub async fn put_chunk(
        &self,
        store: &Arc<Store>,
        id: ChunkId,
        data: Arc<Vec<u8>>,
    ) -> Result<()> {
        let local = {
            let (store, data) = (store.clone(), data.clone());
            move || store.hold_chunk(id, &data)
        };
        let request = move || Request::PutChunk {
            id,
            data: data.to_vec(),
        };
        self.store_on_owners(format!("chunk {id}"), &id.0, local, request)
            .await
    }

    /// Stores a manifest (or tombstone) on a majority of its key's owners.
    pub async fn put_manifest(&self, store: &Arc<Store>, manifest: Manifest) -> Result<()> {
        let what = format!("manifest of {:?}", manifest.body.key);
        let key_id = KeyId::of(&manifest.body.key);
        let bytes = manifest.to_bytes();
        let local = {
            let store = store.clone();
            move || store.adopt(&manifest).map(|_| ())
        };
        let request = move || Request::PutManifest {
            manifest: bytes.clone(),
        };
        self.store_on_owners(what, &key_id.0, local, request).await
    }

    /// Stores an object on a majority of the owners of `object`: with `local` on this node
    /// (on the blocking pool), with the request `request` makes on the others. Returns once a
    /// majority succeeded; the other copies carry on in the background.
    async fn store_on_owners(
        &self,
        what: String,
        object: &[u8; 32],
        local: impl FnOnce() -> Result<()> + Send + 'static,
        request: impl Fn() -> Request + Send + Sync + 'static,
    ) -> Result<()> {
        let owners = self.owners(object);
        if owners.is_empty() {
            return Err(Error::Unavailable("no storage node is reachable".into()));
        }
        let need = quorum(owners.len());
        let request = Arc::new(request);
        let mut local = Some(local);
        let sends = owners
            .into_iter()
            .map(|owner| {
                let (cluster, request) = (self.cluster.clone(), request.clone());
                let here = if self.is_me(&owner.id) {
                    local.take()
                } else {
                    None
                };
                Box::pin(async move {
                    if let Some(op) = here {
                        return match tokio::task::spawn_blocking(op).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                    }
                    match cluster.call(owner.id, request()).await {
                        Ok(Response::Stored) => Ok(()),
                        Ok(other) => Err(format!("{}: {}", owner.id, refused(other))),
                        Err(e) => Err(format!("{}: {e}", owner.id)),
                    }
                })
                    as std::pin::Pin<
                        Box<dyn Future<Output = std::result::Result<(), String>> + Send>,
                    >
            })
            .collect();
        quorum_of(what, sends, need).await
    }

    /// The newest manifest (or tombstone) of `key` among a majority of its owners; `None` if
    /// none of them has one.
    pub async fn get_manifest(&self, store: &Arc<Store>, key: &str) -> Result<Option<Manifest>> {
        let mut owners = self.owners(&KeyId::of(key).0);
        if owners.is_empty() {
            return Err(Error::Unavailable("no storage node is reachable".into()));
        }
        let need = quorum(owners.len());
        // Ask a majority (this node first, when it is an owner: the cheapest answer), and
        // another owner for each one that fails.
        owners.sort_by_key(|o| !self.is_me(&o.id));
        let mut waiting = owners.into_iter();
        let mut asks = tokio::task::JoinSet::new();
        let ask = |owner: Candidate| {
            let (cluster, store, key) = (self.cluster.clone(), store.clone(), key.to_owned());
            let local = self.is_me(&owner.id);
            async move {
                if local {
                    let k = key.clone();
                    return match tokio::task::spawn_blocking(move || store.manifest(&k)).await {
                        Ok(Ok(m)) => Ok(Some(m)),
                        Ok(Err(Error::NotFound(_))) => Ok(None),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                }
                match cluster
                    .call(owner.id, Request::GetManifest { key: key.clone() })
                    .await
                {
                    Ok(Response::Manifest(None)) => Ok(None),
                    Ok(Response::Manifest(Some(bytes))) => {
                        let m = Manifest::from_bytes(&bytes, store.cluster())
                            .map_err(|e| format!("{}: {e}", owner.id))?;
                        if m.body.key != key {
                            return Err(format!(
                                "{} answered with the manifest of another key",
                                owner.id
                            ));
                        }
                        Ok(Some(m))
                    }
                    Ok(other) => Err(format!("{}: {}", owner.id, refused(other))),
                    Err(e) => Err(format!("{}: {e}", owner.id)),
                }
            }
        };
        for owner in waiting.by_ref().take(need) {
            asks.spawn(ask(owner));
        }
        let (mut answers, mut failures, mut newest): (usize, Vec<String>, Option<Manifest>) =
            (0, Vec::new(), None);
        while let Some(joined) = asks.join_next().await {
            match joined.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(found) => {
                    answers += 1;
                    if let Some(m) = found {
                        if newest
                            .as_ref()
                            .is_none_or(|n| m.body.version > n.body.version)
                        {
                            newest = Some(m);
                        }
                    }
                    if answers >= need {
                        return Ok(newest);
                    }
                }
                Err(e) => {
                    tracing::debug!(key, error = %e, "an owner failed a manifest read");
                    failures.push(e);
                    if let Some(next) = waiting.next() {
                        asks.spawn(ask(next));
                    }
                }
            }
        }
        Err(Error::Unavailable(format!(
            "manifest of {key:?}: {answers} of the {need} owners needed answered ({})",
            failures.join("; ")
        )))
    }

    /// A chunk's stored bytes, checked against its id: the local copy if good, else from the
    /// owners in rendezvous order. A chunk no reachable node has is `NotFound`.
    pub async fn get_chunk(&self, store: &Arc<Store>, id: ChunkId) -> Result<Vec<u8>> {
        if store.has_chunk(&id) {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.chunk(&id)).await {
                Ok(Ok(bytes)) => return Ok(bytes),
                Ok(Err(e)) => {
                    tracing::warn!(chunk = %id, error = %e, "local copy unusable; asking owners")
                }
                Err(e) => {
                    tracing::warn!(chunk = %id, error = %e, "local read failed; asking owners")
                }
            }
        }
        let ranked = placement::rank(&id.0, &self.cluster.candidates());
        let mut tried = Vec::new();
        for owner in ranked.into_iter().filter(|c| !self.is_me(&c.id)) {
            match self.cluster.call(owner.id, Request::GetChunk { id }).await {
                Ok(Response::Chunk(bytes)) if ChunkId::of(&bytes) == id => return Ok(bytes),
                Ok(Response::Chunk(_)) => {
                    tracing::warn!(peer = %owner.id, chunk = %id, "peer sent bytes that do not match the chunk id");
                    tried.push(format!("{}: wrong bytes", owner.id));
                }
                Ok(other) => tried.push(format!("{}: {}", owner.id, refused(other))),
                Err(e) => tried.push(format!("{}: {e}", owner.id)),
            }
        }
        Err(Error::NotFound(format!(
            "chunk {id}: no reachable node has a good copy ({})",
            tried.join("; ")
        )))
    }

    /// Every live key of the cluster: each member's keys, newest version per key.
    pub async fn keys(&self, store: &Arc<Store>) -> Result<Vec<String>> {
        let mut newest: HashMap<String, KeyState> = HashMap::new();
        let mut merge = |states: Vec<KeyState>| {
            for s in states {
                match newest.get(&s.key) {
                    Some(held) if held.version >= s.version => {}
                    _ => {
                        newest.insert(s.key.clone(), s);
                    }
                }
            }
        };
        merge(store.key_states());
        let mut asks = tokio::task::JoinSet::new();
        for peer in self.cluster.peers() {
            let cluster = self.cluster.clone();
            asks.spawn(async move { cluster.call(peer.id, Request::Keys).await });
        }
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok(Ok(Response::Keys(states))) => merge(states),
                Ok(Ok(other)) => {
                    tracing::warn!(answer = ?other, "unexpected answer to a key listing")
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "a member could not list its keys"),
                Err(e) => tracing::warn!(error = %e, "key listing task failed"),
            }
        }
        let mut keys: Vec<String> = newest
            .into_values()
            .filter(|s| !s.deleted)
            .map(|s| s.key)
            .collect();
        keys.sort();
        Ok(keys)
    }
}
