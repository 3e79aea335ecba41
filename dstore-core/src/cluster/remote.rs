//! The cluster side of store, get, delete and list: who to send to, how many answers make a
//! quorum, and what to do with peers that fail or lie. The node calls these only when it is
//! part of a cluster; a standalone node uses its store directly.
//!
//! - Chunks go to the owners of their id, manifests to the owners of their key id; a write is
//!   done when W of the owners have it durably (default a majority; the rest continue in the
//!   background). An owner that fails is replaced by the next member in rendezvous order (a
//!   stand-in, as in hinted handoff): the stand-in's repair pass hands the copy to the owner
//!   when it is back. Owners answer a manifest with the version they held, so a writer whose
//!   clock is behind learns it from its write, not from a read before it (`put_manifest`).
//! - A manifest read asks R of the key's owners (default a majority), then others in
//!   rendezvous order for each that fails, takes the newest version, and sends it to the
//!   owners that answered with an older one (read repair).
//! - A chunk read uses the local copy if there is a good one, else asks the owners one by one
//!   in rendezvous order, checking every answer against the chunk id.

use std::future::Future;
use std::sync::Arc;

use super::placement::{self, Candidate};
use super::Cluster;
use crate::error::{Error, Result};
use crate::ids::{ChunkId, KeyId, NodeId};
use crate::manifest::Manifest;
use crate::net::message::{KeyState, Request, Response, MAX_PAGE};

/// Pages a listing may take before it gives up (see `Remote::list`).
const MAX_LIST_ROUNDS: usize = 10_000;
use crate::engine::store::Store;
use crate::stats::{add, Counters};
use crate::tasks::Tracker;
use crate::version::Version;

pub(crate) struct Remote {
    pub cluster: Arc<Cluster>,
    /// Copies of every chunk and manifest (capped by the number of live members).
    pub replicas: usize,
    /// Shards of an erasure-coded chunk a write waits for; `None`: all but one.
    pub erasure_write_quorum: Option<usize>,
    /// Owners that must have a write before it is acknowledged; `None`: a majority.
    pub write_quorum: Option<usize>,
    /// Owners whose answers a manifest read waits for; `None`: a majority.
    pub read_quorum: Option<usize>,
    pub counters: Arc<Counters>,
    /// The copies of acknowledged writes still going out beyond their quorum, and read
    /// repairs: `Node::close` waits for them (they used to be detached, and dropped by
    /// `close`, which stranded writes whose only other copies were on closing members).
    pub background: Tracker,
}

/// A majority of `n`.
fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// How a manifest write went (`Remote::put_manifest`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stamped {
    Stored,
    /// A place the write went to, or one an acknowledged write may rest on, holds this
    /// version, newer than the one sent.
    Newer(Version),
}

/// What the places that took a write held before it (`Remote::store_on_owners`).
struct Heard {
    /// The newest version any of them held.
    newest: Option<Version>,
    /// Whether enough of the places an acknowledged write may rest on answered to meet
    /// every such write.
    met: bool,
}

pub(super) fn refused(r: Response) -> String {
    match r {
        Response::Failed { message, .. } => message,
        other => format!("unexpected answer {other:?}"),
    }
}

type Outcome<T> = std::result::Result<T, String>;
type Task<T> = std::pin::Pin<Box<dyn Future<Output = (NodeId, Outcome<T>)> + Send>>;

impl Remote {
    /// The owners of `object` among the live members.
    pub fn owners(&self, object: &[u8; 32]) -> Vec<Candidate> {
        placement::owners(object, &self.cluster.candidates(), self.replicas)
    }

    /// The owners `object` will have once this node has departed.
    pub fn owners_without_me(&self, object: &[u8; 32]) -> Vec<Candidate> {
        let mut candidates = self.cluster.candidates();
        candidates.retain(|c| !self.is_me(&c.id));
        placement::owners(object, &candidates, self.replicas)
    }

    /// The owners of `object`, then every other member in rendezvous order (the stand-ins),
    /// and the number of owners.
    fn preference(&self, object: &[u8; 32]) -> (Vec<Candidate>, usize) {
        let candidates = self.cluster.candidates();
        let mut order = placement::owners(object, &candidates, self.replicas);
        let n = order.len();
        for c in placement::rank(object, &candidates) {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        (order, n)
    }

    pub(crate) fn write_need(&self, n: usize) -> usize {
        self.write_quorum.map_or(majority(n), |w| w.clamp(1, n))
    }

    fn read_need(&self, n: usize) -> usize {
        self.read_quorum.map_or(majority(n), |r| r.clamp(1, n))
    }

    fn is_me(&self, id: &NodeId) -> bool {
        *id == self.cluster.id()
    }

    /// Stores a chunk on W of its owners.
    pub async fn put_chunk(
        &self,
        store: &Arc<Store>,
        id: ChunkId,
        data: Arc<Vec<u8>>,
    ) -> Result<()> {
        let local = {
            let (store, data) = (store.clone(), data.clone());
            move || store.hold_chunk(id, &data).map(|()| None)
        };
        let request = move || Request::PutChunk {
            id,
            data: data.to_vec(),
        };
        self.store_on_owners(format!("chunk {id}"), &id.0, false, local, request)
            .await
            .map(|_| ())
    }

    /// Stores a manifest (or tombstone) on W of its key's owners, and says whether a version
    /// newer than it was held where it went.
    ///
    /// This is how a writer whose clock is behind learns that it is, without reading the
    /// key's version before every write. Every owner answers with the version it held
    /// before. An acknowledged write rests on W of the first `wide` places of the key's
    /// rendezvous order (see `get_manifest`), so answers from `wide` - W + 1 of those places
    /// meet every such write. The write waits for that many answers when the owners can give
    /// them: in a 3-member cluster, W of them. When they cannot (owners failed, or members
    /// joined lately in a larger cluster), it reads the key from all `wide` places, as a read
    /// does while members change. If a newer version turns up either way, the caller stamps
    /// the write again after it and sends it once more. Whatever an owner holds newer than
    /// that second stamp was written concurrently, and last-writer-wins may order it after
    /// this write.
    pub async fn put_manifest(&self, store: &Arc<Store>, manifest: Manifest) -> Result<Stamped> {
        let what = format!("manifest of {:?}", manifest.body.key);
        let key = manifest.body.key.clone();
        let ours = manifest.body.version;
        let bytes = manifest.to_bytes();
        let local = {
            let store = store.clone();
            move || store.adopt_reporting(&manifest).map(|(_, held)| held)
        };
        let request = move || Request::PutManifest {
            manifest: bytes.clone(),
        };
        let heard = self
            .store_on_owners(what.clone(), &KeyId::of(&key).0, true, local, request)
            .await?;
        let mut newest = heard.newest;
        if !heard.met {
            let found = self.read_manifest(store, &key, &Self::any, true).await?;
            newest = newest.max(found.map(|m| m.body.version));
        }
        match newest {
            Some(v) if !self.cluster.clock().plausible(v.time) => Err(Error::Unavailable(format!(
                "{what}: an owner holds a version stamped further ahead than the clock drift \
                 allowed; the write is not acknowledged"
            ))),
            Some(v) if v > ours => Ok(Stamped::Newer(v)),
            _ => Ok(Stamped::Stored),
        }
    }

    /// How many of the first places of a key's rendezvous order an acknowledged write may
    /// rest on, among `places` members (see `get_manifest`).
    fn wide(&self, n: usize, joins: usize, places: usize) -> usize {
        (n + (n - self.write_need(n)) + joins).min(places)
    }

    /// Stores an object on W of the owners of `id`: with `local` on this node (on the
    /// blocking pool), with the request `request` makes on the others. Each owner that fails
    /// is replaced by the next stand-in. Returns once W succeeded, and for a manifest
    /// (`versions`) once `wide` - W + 1 of the `wide` places answered too if the owners can
    /// give that many, with what they held before (see `put_manifest`); the other copies
    /// carry on in the background, tracked so that `close` waits for them.
    async fn store_on_owners(
        &self,
        what: String,
        id: &[u8; 32],
        versions: bool,
        local: impl Fn() -> Result<Option<Version>> + Send + Sync + 'static,
        request: impl Fn() -> Request + Send + Sync + 'static,
    ) -> Result<Heard> {
        let (order, n) = self.preference(id);
        if n == 0 {
            return Err(Error::Unavailable("no storage node is reachable".into()));
        }
        let need = self.write_need(n);
        // The places an acknowledged write may rest on, and how many must answer to meet it.
        let (places, meet): (Vec<NodeId>, usize) = if versions {
            let wide = self.wide(n, self.cluster.recent_change().1, order.len());
            (
                order[..wide].iter().map(|c| c.id).collect(),
                wide + 1 - need,
            )
        } else {
            (Vec::new(), 0)
        };
        let me = self.cluster.id();
        let (cluster, local, request) = (self.cluster.clone(), Arc::new(local), Arc::new(request));
        let send = move |target: Candidate| -> Task<Option<Version>> {
            let (cluster, local, request) = (cluster.clone(), local.clone(), request.clone());
            Box::pin(async move {
                let outcome = if target.id == me {
                    match tokio::task::spawn_blocking(move || local()).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    match cluster.call(target.id, request()).await {
                        Ok(Response::Stored) => Ok(None),
                        // A version beyond the drift allowed is skipped by readers too: that
                        // owner failed this write (one member with a clock a day ahead must
                        // not block every later write of the keys it planted versions of).
                        Ok(Response::Held(held))
                            if versions
                                && held.is_none_or(|v| cluster.clock().plausible(v.time)) =>
                        {
                            Ok(held)
                        }
                        Ok(other) => Err(refused(other)),
                        Err(e) => Err(e.to_string()),
                    }
                };
                (target.id, outcome)
            })
        };
        let mut waiting = order.into_iter();
        let mut sends = tokio::task::JoinSet::new();
        for owner in waiting.by_ref().take(n) {
            sends.spawn(send(owner));
        }
        let (mut ok, mut met, mut failures, mut newest) = (0, 0, Vec::new(), None);
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok((who, Ok(held))) => {
                    ok += 1;
                    met += usize::from(places.contains(&who));
                    newest = newest.max(held);
                }
                Ok((who, Err(e))) => {
                    failures.push(format!("{who}: {e}"));
                    if let Some(stand_in) = waiting.next() {
                        sends.spawn(send(stand_in));
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
            if ok < need || (met < meet && !sends.is_empty()) {
                continue;
            }
            // The remaining copies, with stand-ins for owners that fail, in the background.
            self.background.spawn(async move {
                while let Some(joined) = sends.join_next().await {
                    if let Ok((_, Err(_))) = joined {
                        if let Some(stand_in) = waiting.next() {
                            sends.spawn(send(stand_in));
                        }
                    }
                }
            });
            return Ok(Heard {
                newest,
                met: met >= meet,
            });
        }
        Err(Error::Unavailable(format!(
            "{what}: {} of the {need} copies needed were stored ({})",
            ok,
            failures.join("; ")
        )))
    }

    /// The newest manifest (or tombstone) of `key` among R of its owners; `None` if none of
    /// them has one. Owners that answered with an older version (or none) are sent the newest
    /// in the background.
    ///
    /// Reads across a change of members: an acknowledged write rests on the owners the
    /// writer saw, which may not be the owners this node sees now. They are within the first
    /// `wide` places of this node's rendezvous order: the n owners, plus one place for each
    /// member that joined since (each can push an earlier owner down one place), plus the
    /// stand-ins a write may have used (n - W). So when R owners know nothing of the key,
    /// the read asks the rest of those places before it says `None`; and within the change
    /// window after members changed, it asks all of them at once and takes the newest, so
    /// that an overwrite still on the earlier owners is not missed either.
    ///
    /// Only manifests that pass `trusted` (the reader's seal check) are taken: a newer one
    /// that fails it is logged and passed over for the newest that passes, and if none does,
    /// its error is the answer. Writers, which only need the newest version whatever it is,
    /// pass `any`.
    pub async fn get_manifest(
        &self,
        store: &Arc<Store>,
        key: &str,
        trusted: &(dyn Fn(&Manifest) -> Result<()> + Sync),
    ) -> Result<Option<Manifest>> {
        self.read_manifest(store, key, trusted, false).await
    }

    /// `get_manifest`; `everywhere` asks all the `wide` places at once, as within the change
    /// window (a write that could not meet them otherwise: see `put_manifest`).
    async fn read_manifest(
        &self,
        store: &Arc<Store>,
        key: &str,
        trusted: &(dyn Fn(&Manifest) -> Result<()> + Sync),
        everywhere: bool,
    ) -> Result<Option<Manifest>> {
        let (mut order, n) = self.preference(&KeyId::of(key).0);
        if n == 0 {
            return Err(Error::Unavailable("no storage node is reachable".into()));
        }
        let need = self.read_need(n);
        let (changing, joins) = self.cluster.recent_change();
        let changing = changing || everywhere;
        let wide = self.wide(n, joins, order.len());
        // This node first, when it is an owner: the cheapest answer; owners slow lately last.
        order[..n].sort_by_key(|o| (!self.is_me(&o.id), self.cluster.is_slow(&o.id)));
        let owners: Vec<NodeId> = order[..n].iter().map(|o| o.id).collect();
        let ask = |owner: Candidate| -> Task<Option<Manifest>> {
            let (cluster, store, key) = (self.cluster.clone(), store.clone(), key.to_owned());
            let local = self.is_me(&owner.id);
            Box::pin(async move {
                let outcome = if local {
                    let k = key.clone();
                    match tokio::task::spawn_blocking(move || store.manifest(&k)).await {
                        Ok(Ok(m)) => Ok(Some(m)),
                        Ok(Err(Error::NotFound(_))) => Ok(None),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    let started = std::time::Instant::now();
                    let answer = cluster
                        .call(owner.id, Request::GetManifest { key: key.clone() })
                        .await;
                    cluster.record_read(owner.id, answer.is_ok().then(|| started.elapsed()));
                    match answer {
                        Ok(Response::Manifest(None)) => Ok(None),
                        Ok(Response::Manifest(Some(bytes))) => {
                            match Manifest::from_bytes(&bytes, store.cluster()) {
                                Ok(m) if !cluster.clock().plausible(m.body.version.time) => {
                                    Err("answered with a version from beyond the clock drift \
                                         allowed"
                                        .into())
                                }
                                Ok(m) if m.body.key == key => Ok(Some(m)),
                                Ok(_) => Err("answered with the manifest of another key".into()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        Ok(other) => Err(refused(other)),
                        Err(e) => Err(e.to_string()),
                    }
                };
                (owner.id, outcome)
            })
        };
        let mut waiting = order.into_iter();
        let mut asks = tokio::task::JoinSet::new();
        let mut asked = if changing { wide } else { need };
        for owner in waiting.by_ref().take(asked) {
            asks.spawn(ask(owner));
        }
        let mut answers: Vec<(NodeId, Option<Version>)> = Vec::new();
        let (mut failures, mut newest): (Vec<String>, Option<Manifest>) = (Vec::new(), None);
        // The newest manifest refused by `trusted`, and why.
        let mut refused_newest: Option<(Version, Error)> = None;
        loop {
            // R answers that found the key settle the read (outside a change of members, when
            // every place of the wide set is awaited): owners still silent are not waited for.
            if answers.len() >= need && !changing && newest.is_some() {
                break;
            }
            // Hedging: while fewer than R have answered, one more owner (never a stand-in: an
            // answer counts towards R, and R + W > n holds among owners) is asked each time
            // the hedge delay passes without an answer, so a live owner that stalls costs the
            // delay, not the call timeout.
            let hedge = self.cluster.hedge_delay();
            let joined = tokio::select! {
                j = asks.join_next() => j,
                () = tokio::time::sleep(hedge), if answers.len() < need && asked < n => {
                    if let Some(next) = waiting.next() {
                        asked += 1;
                        asks.spawn(ask(next));
                    }
                    continue;
                }
            };
            if let Some(joined) = joined {
                match joined {
                    Ok((who, Ok(found))) => {
                        answers.push((who, found.as_ref().map(|m| m.body.version)));
                        // Only a version newer than the newest trusted one can be the
                        // answer, so only its seal is checked (a signature check costs more
                        // than the rest of a small read; owners in step agree on one version).
                        let newer = |m: &Manifest| {
                            newest
                                .as_ref()
                                .is_none_or(|n| m.body.version > n.body.version)
                        };
                        if let Some(m) = found.filter(newer) {
                            if let Err(e) = trusted(&m) {
                                let v = m.body.version;
                                if refused_newest.as_ref().is_none_or(|(held, _)| v > *held) {
                                    refused_newest = Some((v, e));
                                }
                            } else {
                                newest = Some(m);
                            }
                        }
                    }
                    Ok((who, Err(e))) => {
                        tracing::debug!(key, peer = %who, error = %e, "a manifest read failed");
                        failures.push(format!("{who}: {e}"));
                        if let Some(next) = waiting.next() {
                            asked += 1;
                            asks.spawn(ask(next));
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                continue;
            }
            // Everything asked has answered or failed.
            if answers.len() < need {
                return Err(Error::Unavailable(format!(
                    "manifest of {key:?}: {} of the {need} answers needed ({})",
                    answers.len(),
                    failures.join("; ")
                )));
            }
            if newest.is_some() || asked >= wide {
                break;
            }
            for next in waiting.by_ref().take(wide - asked) {
                asks.spawn(ask(next));
            }
            asked = wide;
        }
        if let Some((version, why)) = refused_newest {
            match &newest {
                Some(m) if m.body.version > version => {}
                Some(_) => tracing::warn!(key, error = %why, "a newer version is refused; \
                                          reading the newest that passes"),
                None => return Err(why),
            }
        }
        if let Some(m) = &newest {
            answers.retain(|(who, _)| owners.contains(who));
            self.read_repair(store, m, &answers);
        }
        Ok(newest)
    }

    /// Sends `newest` to every node in `answers` that holds an older version or none.
    fn read_repair(
        &self,
        store: &Arc<Store>,
        newest: &Manifest,
        answers: &[(NodeId, Option<Version>)],
    ) {
        let stale: Vec<NodeId> = answers
            .iter()
            .filter(|(_, v)| v.is_none_or(|v| v < newest.body.version))
            .map(|(who, _)| *who)
            .collect();
        for who in stale {
            let (cluster, counters) = (self.cluster.clone(), self.counters.clone());
            let (store, manifest) = (store.clone(), newest.clone());
            let here = self.is_me(&who);
            self.background.spawn(async move {
                let key = manifest.body.key.clone();
                let done = if here {
                    tokio::task::spawn_blocking(move || store.adopt(&manifest))
                        .await
                        .is_ok_and(|r| r.is_ok())
                } else {
                    let (sent, request) = (
                        manifest.body.version,
                        Request::PutManifest {
                            manifest: manifest.to_bytes(),
                        },
                    );
                    matches!(cluster.call(who, request).await,
                             Ok(Response::Held(held)) if held.is_none_or(|h| h < sent))
                };
                if done {
                    add(&counters.read_repairs, 1);
                    tracing::debug!(key, peer = %who, "read repair");
                }
            });
        }
    }

    /// The check of `get_manifest` that takes any manifest.
    pub fn any(_: &Manifest) -> Result<()> {
        Ok(())
    }

    /// A chunk's stored bytes, checked against its id: the local copy if good, else from the
    /// owners in rendezvous order. A chunk no reachable node has is `NotFound`.
    pub async fn get_chunk(&self, store: &Arc<Store>, id: ChunkId) -> Result<Vec<u8>> {
        let bytes = self.fetch_chunk(store, id).await?;
        if !store.may_hold_chunk(&id) && self.owners(&id.0).iter().any(|o| self.is_me(&o.id)) {
            // This node owns the chunk but lost its copy (corrupt, set aside): keep the good
            // one now rather than waiting for repair.
            let (store, copy) = (store.clone(), bytes.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.hold_chunk(id, &copy) {
                    tracing::warn!(chunk = %id, error = %e, "could not restore a chunk");
                }
            });
        }
        Ok(bytes)
    }

    pub(super) async fn fetch_chunk(&self, store: &Arc<Store>, id: ChunkId) -> Result<Vec<u8>> {
        if store.may_hold_chunk(&id) {
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
        // Owners in rendezvous order, those slow lately last. One is asked; if it has not
        // answered within the hedge delay the next is asked too, and so on: a live owner that
        // stalls costs a read the hedge delay, not the call timeout.
        let mut ranked = placement::rank(&id.0, &self.cluster.candidates());
        ranked.retain(|c| !self.is_me(&c.id));
        ranked.sort_by_key(|c| self.cluster.is_slow(&c.id));
        let mut waiting = ranked.into_iter();
        let mut asks = tokio::task::JoinSet::new();
        let ask = |owner: Candidate| {
            let cluster = self.cluster.clone();
            async move {
                let started = std::time::Instant::now();
                let answer = cluster.call(owner.id, Request::GetChunk { id }).await;
                let took = answer.is_ok().then(|| started.elapsed());
                cluster.record_read(owner.id, took);
                (owner.id, answer)
            }
        };
        let mut tried = Vec::new();
        loop {
            if asks.is_empty() {
                match waiting.next() {
                    Some(owner) => {
                        asks.spawn(ask(owner));
                    }
                    None => break,
                }
            }
            let hedge = self.cluster.hedge_delay();
            let joined = tokio::select! {
                j = asks.join_next() => j,
                () = tokio::time::sleep(hedge), if waiting.len() > 0 => {
                    if let Some(owner) = waiting.next() {
                        asks.spawn(ask(owner));
                    }
                    continue;
                }
            };
            let Some(joined) = joined else { continue };
            let (who, answer) = joined.map_err(|e| Error::Unavailable(e.to_string()))?;
            match answer {
                Ok(Response::Chunk(bytes)) if ChunkId::of(&bytes) == id => return Ok(bytes),
                Ok(Response::Chunk(_)) => {
                    tracing::warn!(peer = %who, chunk = %id, "peer sent bytes that do not match the chunk id");
                    tried.push(format!("{who}: wrong bytes"));
                }
                Ok(other) => tried.push(format!("{who}: {}", refused(other))),
                Err(e) => tried.push(format!("{who}: {e}")),
            }
        }
        Err(Error::NotFound(format!(
            "chunk {id}: no reachable node has a good copy ({})",
            tried.join("; ")
        )))
    }

    /// One page of the cluster's live keys: those starting with `prefix` and after
    /// `start_after`, in byte order, at most `limit`.
    ///
    /// Every live member (this node too) is asked for a page of the keys it holds, deleted
    /// ones included, and the newest version of each key wins. A member's page that came back
    /// full ends where it ends: keys beyond its last one may be on it and not listed yet, so
    /// only keys up to the smallest such end are certain, and the next round starts there.
    ///
    /// Members that do not answer: every acknowledged write is on W of its owners, so as long
    /// as fewer than W members fail (those dead now that did not depart count as failed),
    /// each such key is still on one that answered, and the listing is complete. At W
    /// failures or more it fails, naming them: an answer without their keys would be
    /// silently partial. A page's keys are checked (valid, in the page's range), and a listing
    /// that has not finished after `MAX_LIST_ROUNDS` pages per member fails rather than run on
    /// (members that invent keys without end).
    pub async fn list(
        &self,
        store: &Arc<Store>,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor = start_after.to_owned();
        let page = limit.clamp(1, MAX_PAGE);
        let members = self.cluster.peers().len() + usize::from(self.cluster.is_member());
        let spared = self.write_need(self.replicas.min(members).max(1)) - 1;
        let mut rounds = 0;
        while out.len() < limit {
            rounds += 1;
            if rounds > MAX_LIST_ROUNDS {
                return Err(Error::Unavailable(format!(
                    "listing keys: no end after {MAX_LIST_ROUNDS} pages"
                )));
            }
            let mine = {
                let (store, p, c) = (store.clone(), prefix.to_owned(), cursor.clone());
                tokio::task::spawn_blocking(move || store.key_page(&p, &c, page))
                    .await
                    .map_err(|_| Error::Closed)??
            };
            let mut pages = vec![mine];
            let mut failed: Vec<String> = Vec::new();
            let unreachable = self.cluster.unreachable();
            if unreachable > 0 {
                failed.push(format!("{unreachable} member(s) dead that did not depart"));
            }
            let mut asks = tokio::task::JoinSet::new();
            for peer in self.cluster.peers() {
                let cluster = self.cluster.clone();
                let request = Request::List {
                    prefix: prefix.to_owned(),
                    start_after: cursor.clone(),
                    limit: page as u32,
                };
                asks.spawn(async move { (peer.id, cluster.call(peer.id, request).await) });
            }
            while let Some(joined) = asks.join_next().await {
                let (who, answer) = joined.map_err(|e| Error::Unavailable(e.to_string()))?;
                match answer {
                    Ok(Response::Keys(states))
                        if states.len() <= page
                            && states.iter().all(|s| {
                                s.key.starts_with(prefix)
                                    && s.key.as_str() > cursor.as_str()
                                    && crate::manifest::validate_key(&s.key).is_ok()
                            }) =>
                    {
                        pages.push(states)
                    }
                    Ok(Response::Keys(_)) => {
                        failed.push(format!("{who} answered with keys outside the page"))
                    }
                    Ok(other) => failed.push(format!("{who} {}", refused(other))),
                    Err(e) => failed.push(format!("{who} did not answer ({e})")),
                }
            }
            let failures = failed.len() - usize::from(unreachable > 0) + unreachable;
            if failures > spared {
                return Err(Error::Unavailable(format!(
                    "listing keys: {} member(s) failed, and with {} of them failing a key written \
                     on a write quorum may be on none that answered: {}",
                    failures,
                    spared + 1,
                    failed.join("; ")
                )));
            }
            if !failed.is_empty() {
                tracing::info!(failed = ?failed, "listing without members that failed (fewer than a write quorum)");
            }
            // Keys up to here are complete on every member: the end of the shortest full page.
            let certain: Option<String> = pages
                .iter()
                .filter(|p| p.len() == page)
                .filter_map(|p| p.iter().map(|s| s.key.clone()).max())
                .min();
            let mut newest: std::collections::BTreeMap<String, KeyState> = Default::default();
            for s in pages.into_iter().flatten() {
                if certain.as_ref().is_some_and(|end| s.key > *end) {
                    continue;
                }
                match newest.get(&s.key) {
                    Some(held) if held.version >= s.version => {}
                    _ => {
                        newest.insert(s.key.clone(), s);
                    }
                }
            }
            for s in newest.into_values() {
                if out.len() == limit {
                    return Ok(out);
                }
                if !s.deleted {
                    out.push(s.key);
                }
            }
            match certain {
                Some(end) => cursor = end,
                None => break, // every member has said all it holds
            }
        }
        Ok(out)
    }
}
