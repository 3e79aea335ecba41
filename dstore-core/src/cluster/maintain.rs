//! The background work of a cluster member, which keeps data where it belongs without an
//! operator. See DESIGN.md §4.
//!
//! - **Repair** (anti-entropy), every `repair_interval` and whenever the live members change:
//!   for every manifest and chunk held here, ask its current owners whether they have it (one
//!   batched request per owner), send it to those that lack it or hold an older version, and
//!   drop the local copy once this node is not an owner and every owner has it (hand-off: how
//!   a stand-in returns what it took in for a failed owner, and how data moves when members
//!   join). Sends are one at a time and capped at `repair_rate`, so repair never starves
//!   foreground requests.
//! - **Tombstones** older than `tombstone_grace` are dropped once no owner holds an older
//!   version of their key that they would have to delete.
//! - **Garbage collection**: a chunk that nothing here names, untouched for `gc_grace`, is
//!   offered to every live member; if none names it (in a manifest or a write in flight), it
//!   is marked, and removed when it is still unnamed a full `gc_grace` later. Collection waits
//!   while a member that was alive within `gc_grace` does not answer.
//! - **Scrubbing**, every `scrub_interval` at `scrub_rate` bytes per second: every chunk and
//!   manifest is read back and checked; a bad one is set aside and fetched again from another
//!   owner.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, RwLock};

use super::placement;
use super::remote::Remote;
use crate::engine::store::Store;
use crate::erasure::ShardOf;
use crate::error::Error;
use crate::ids::{ChunkId, KeyId, NodeId};
use crate::net::message::{FailureKind, Request, Response, MAX_BATCH};
use crate::stats::{add, Counters};
use crate::version::{hlc_of_ms, Clock, Version};

/// When and how fast a member repairs, scrubs and collects.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Maintenance {
    /// Period of the repair pass (one also starts when the live members change). Zero turns
    /// repair, and with it garbage collection, off: only for tests of the other mechanisms.
    pub repair_interval: Duration,
    /// Bytes per second repair may send (0: no cap).
    pub repair_rate: u64,
    /// A full scrub starts this long after the previous one started.
    pub scrub_interval: Duration,
    /// Bytes per second the scrubber reads (0: no scrubbing).
    pub scrub_rate: u64,
    /// How long a chunk must be unnamed before it is removed.
    pub gc_grace: Duration,
    /// How long a tombstone is kept: longer than any owner may be away.
    pub tombstone_grace: Duration,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            repair_interval: Duration::from_secs(30),
            repair_rate: 128 << 20,
            scrub_interval: Duration::from_secs(3600),
            scrub_rate: 16 << 20,
            gc_grace: Duration::from_secs(3600),
            tombstone_grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the background tasks share with the node.
pub(crate) struct Context {
    pub remote: Arc<Remote>,
    pub store: Arc<RwLock<Option<Arc<Store>>>>,
    pub counters: Arc<Counters>,
    pub clock: Arc<Clock>,
    pub settings: Maintenance,
    /// Shards found missing from their holders by the last repair pass, and by this one
    /// so far (see `repair_shards`).
    pub missing_shards: std::sync::Mutex<MissingShards>,
}

/// Shards that holders said they lack, by pass. A shard is rebuilt only once a second pass
/// in a row finds it missing: a shard whose place moved to another member (members joined,
/// or an earlier place of its chunk now takes its member) is still on its old holder, whose
/// hand-off brings it over within a pass; rebuilding it would read k shards for nothing.
#[derive(Default)]
pub(crate) struct MissingShards {
    last: HashSet<ChunkId>,
    now: HashSet<ChunkId>,
}

/// Bound on the shards remembered as missing per pass; past it a shard waits a pass more.
const MAX_MISSING_SHARDS: usize = 1 << 16;

/// Starts repair and scrubbing; both end when `stop` turns true.
pub(crate) fn start(
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(repair_loop(ctx.clone(), stop.clone())),
        tokio::spawn(scrub_loop(ctx, stop)),
    ]
}

/// Sleeps `d`, or returns true at once when asked to stop.
async fn stopped_during(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl Context {
    /// The store, unless the node is closing. Held only for one step at a time, so that
    /// `close` never waits for a whole pass.
    async fn store(&self) -> Option<Arc<Store>> {
        self.store.read().await.clone()
    }

    /// Runs `f` on the store, on the blocking pool. `None` if the node is closing (or `f`
    /// panicked): the caller ends its pass.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Option<T> {
        let store = self.store().await?;
        tokio::task::spawn_blocking(move || f(&store)).await.ok()
    }

    /// Sends a copy to an owner that lacks it. Repair is paced; a hand-off before closing or
    /// leaving is not (the node is going away).
    async fn push(&self, owner: NodeId, request: Request, len: usize, pass: Pass) -> Pushed {
        let pushed = match self.remote.cluster.call(owner, request).await {
            // A manifest's owner answers with the version it held: it now has this one, or a
            // newer one, which is as good.
            Ok(Response::Stored | Response::Held(_)) => Pushed::Stored,
            Ok(Response::Failed {
                kind: FailureKind::Integrity,
                message,
            }) => {
                tracing::debug!(peer = %owner, message, "an owner refuses a copy for good");
                Pushed::Refused
            }
            other => {
                tracing::debug!(peer = %owner, answer = ?other.map(|_| ()), "a copy was not taken");
                Pushed::Failed
            }
        };
        if pushed == Pushed::Stored {
            match pass {
                Pass::Repair => {
                    add(&self.counters.bytes_pushed, len as u64);
                    self.pace(len, self.settings.repair_rate).await;
                }
                Pass::HandOff { .. } => {
                    add(&self.counters.drain_pushed, 1);
                    add(&self.counters.drain_bytes, len as u64);
                }
            }
        }
        pushed
    }

    fn me(&self) -> NodeId {
        self.remote.cluster.id()
    }

    /// The owners of `object` other than this node, and whether this node is one. For a
    /// hand-off, the owners it will have once this node has departed.
    fn owners(&self, object: &[u8; 32], pass: Pass) -> (Vec<NodeId>, bool) {
        let owners = match pass {
            Pass::Repair => self.remote.owners(object),
            Pass::HandOff { .. } => self.remote.owners_without_me(object),
        };
        let mine = owners.iter().any(|o| o.id == self.me());
        let others = owners
            .into_iter()
            .map(|o| o.id)
            .filter(|id| *id != self.me())
            .collect();
        (others, mine)
    }

    /// Waits as long as sending `bytes` takes at `repair_rate`.
    async fn pace(&self, bytes: usize, rate: u64) {
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(bytes as f64 / rate as f64)).await;
        }
    }

    /// Whether an object is where it must be after a pass: with every owner, for repair;
    /// for a hand-off, with a write quorum of the `owners` it has without this node. Only
    /// answers count: a member that is closing too refuses to answer (and to take copies),
    /// and one that is down says nothing, so both count as lacking it; the pass is repeated
    /// (with the owners seen afresh, departed and dead members no longer among them) until
    /// the quorum holds it. An owner that refuses the copy (a full disk) is left to repair
    /// once a quorum of the others holds it.
    fn settled(&self, pass: Pass, everyone_has: bool, holders: usize, owners: usize) -> bool {
        match pass {
            Pass::Repair => everyone_has,
            Pass::HandOff { .. } => owners > 0 && holders >= self.remote.write_need(owners),
        }
    }

    /// Whether a pass sends a copy to an owner that lacks it, when `holders` of the `owners`
    /// have it already: repair and leaving send to every owner; closing sends only until a
    /// write quorum holds it. A member that closes comes back, and the copies it would send
    /// beyond the quorum would be handed back when it does; if it stays away, the others'
    /// repair brings the object to every owner (paced).
    fn sends(&self, pass: Pass, holders: usize, owners: usize) -> bool {
        match pass {
            Pass::Repair | Pass::HandOff { all: true } => true,
            Pass::HandOff { all: false } => holders < self.remote.write_need(owners.max(1)),
        }
    }

    fn checked(&self, pass: Pass) {
        match pass {
            Pass::Repair => add(&self.counters.checked, 1),
            Pass::HandOff { .. } => add(&self.counters.drain_checked, 1),
        }
    }

    async fn call(&self, peer: NodeId, request: Request) -> Option<Response> {
        match self.remote.cluster.call(peer, request).await {
            Ok(Response::Failed { message, .. }) => {
                tracing::debug!(%peer, message, "a maintenance request was refused");
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "a maintenance request failed");
                None
            }
        }
    }
}

/// What an owner did with a copy sent to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pushed {
    Stored,
    /// Refused for good (an integrity refusal): for a manifest, the owner holds a version
    /// sealed by a data key that did not seal this one (`Manifest::may_replace`), which by
    /// the rules outranks it. Sending it again would change nothing.
    Refused,
    /// No answer, or a refusal that may pass (closing, a full disk): tried again later.
    Failed,
}

/// Every key held, with its version, read on the blocking pool. `None` if the node is
/// closing, or the catalog cannot be read (logged): the pass ends there.
async fn held_keys(ctx: &Context) -> Option<Vec<crate::net::message::KeyState>> {
    match ctx.with_store(|s| s.key_states()).await? {
        Ok(keys) => Some(keys),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the keys held");
            None
        }
    }
}

/// What a pass over held objects is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Anti-entropy: bring the current owners up to date, drop what this node need not keep.
    Repair,
    /// This node departs: bring the owners it leaves behind up to date, drop nothing. `all`
    /// (leaving for good): every owner; else (closing) a write quorum of them.
    HandOff { all: bool },
}

/// Hands everything held here to the owners it will have without this node, before it
/// closes or when it leaves for good. Chunks go before the manifests that name them. Returns
/// how many objects are not yet settled (see `Context::settled`); `None` if the node closed
/// meanwhile.
pub(crate) async fn hand_off(ctx: &Context, leave: bool) -> Option<u64> {
    let pass = Pass::HandOff { all: leave };
    let store = ctx.store().await?;
    let chunks = store.chunk_ids();
    drop(store);
    let keys = held_keys(ctx).await?;
    let c = &ctx.counters;
    c.drain_objects
        .store((chunks.len() + keys.len()) as u64, Ordering::Relaxed);
    let mut unconfirmed = 0;
    for batch in chunks.chunks(MAX_BATCH) {
        unconfirmed += repair_chunks(ctx, batch, &HashMap::new(), pass).await?;
    }
    for batch in keys.chunks(MAX_BATCH) {
        unconfirmed += repair_manifests(ctx, batch, pass).await?;
    }
    c.drain_unconfirmed.store(unconfirmed, Ordering::Relaxed);
    Some(unconfirmed)
}

async fn repair_loop(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    if ctx.settings.repair_interval.is_zero() {
        return;
    }
    let mut last_view: Vec<NodeId> = Vec::new();
    let mut next = Instant::now() + ctx.settings.repair_interval.min(Duration::from_secs(1));
    let mut gc = Collector::default();
    loop {
        if stopped_during(&mut stop, Duration::from_millis(200)).await {
            return;
        }
        let mut view: Vec<NodeId> = ctx
            .remote
            .cluster
            .candidates()
            .into_iter()
            .map(|c| c.id)
            .collect();
        view.sort();
        let changed = view != last_view;
        if !changed && Instant::now() < next {
            continue;
        }
        last_view = view;
        let started = Instant::now();
        ctx.counters.running.store(true, Ordering::Relaxed);
        ctx.counters.checked.store(0, Ordering::Relaxed);
        let finished = repair_pass(&ctx, &mut gc, &mut stop).await;
        ctx.counters.running.store(false, Ordering::Relaxed);
        if !finished {
            return;
        }
        add(&ctx.counters.passes, 1);
        ctx.counters
            .last_pass_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        next = Instant::now() + ctx.settings.repair_interval;
    }
}

/// One repair pass; false if the node is closing.
async fn repair_pass(ctx: &Context, gc: &mut Collector, stop: &mut watch::Receiver<bool>) -> bool {
    {
        let mut missing = ctx.missing_shards.lock().unwrap_or_else(|e| e.into_inner());
        missing.last = std::mem::take(&mut missing.now);
    }
    let Some(keys) = held_keys(ctx).await else {
        return false;
    };
    for batch in keys.chunks(MAX_BATCH) {
        if *stop.borrow() || repair_manifests(ctx, batch, Pass::Repair).await.is_none() {
            return false;
        }
    }
    let Some(store) = ctx.store().await else {
        return false;
    };
    let chunks = store.chunk_ids();
    drop(store);
    for batch in chunks.chunks(MAX_BATCH) {
        if *stop.borrow()
            || repair_chunks(ctx, batch, &gc.marked, Pass::Repair)
                .await
                .is_none()
        {
            return false;
        }
    }
    gc.collect(ctx).await
}

/// Repairs (or hands off) a batch of manifests. Returns how many are not confirmed on every
/// owner; `None` if the node is closing.
async fn repair_manifests(
    ctx: &Context,
    batch: &[crate::net::message::KeyState],
    pass: Pass,
) -> Option<u64> {
    let tombstone_horizon = hlc_of_ms(ctx.clock.wall_ms())
        .saturating_sub(hlc_of_ms(ctx.settings.tombstone_grace.as_millis() as u64));
    // Which owners to ask about which keys.
    let mut asks: HashMap<NodeId, Vec<usize>> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    for (i, state) in batch.iter().enumerate() {
        let (others, mine) = ctx.owners(&KeyId::of(&state.key).0, pass);
        for o in &others {
            asks.entry(*o).or_default().push(i);
        }
        plans.push((others, mine));
    }
    // answers[i][owner] = the version that owner holds, for the owners that answered.
    let mut answers: Vec<HashMap<NodeId, Option<Version>>> = vec![HashMap::new(); batch.len()];
    for (peer, idx) in &asks {
        let keys = idx.iter().map(|&i| batch[i].key.clone()).collect();
        if let Some(Response::Versions(vs)) = ctx.call(*peer, Request::Versions { keys }).await {
            for (&i, v) in idx.iter().zip(vs) {
                answers[i].insert(*peer, v);
            }
        }
    }
    let mut unconfirmed = 0;
    for (i, state) in batch.iter().enumerate() {
        ctx.checked(pass);
        let (others, mine) = &plans[i];
        let expired = state.deleted && state.version.time < tombstone_horizon;
        // An owner is up to date when it holds this version or a newer one; and for an
        // expired tombstone also when it holds nothing (it has nothing to delete): such a
        // tombstone is only sent to an owner that still holds an older live version.
        let up_to_date = |held: &Option<Version>| {
            held.is_some_and(|v| v >= state.version) || (expired && held.is_none())
        };
        let (mut everyone_has, mut holders) =
            (true, answers[i].values().filter(|h| up_to_date(h)).count());
        let mut refused = false;
        for owner in others {
            let Some(held) = answers[i].get(owner) else {
                everyone_has = false; // no answer: nothing is dropped on its account
                continue;
            };
            if up_to_date(held) {
                continue;
            }
            if !ctx.sends(pass, holders, others.len()) {
                everyone_has = false;
                continue;
            }
            let key = state.key.clone();
            let manifest = match ctx.with_store(move |s| s.manifest(&key)).await {
                None => return None,
                Some(Ok(m)) if m.body.version == state.version => m,
                Some(_) => {
                    everyone_has = false; // changed or unreadable since listed: next pass
                    continue;
                }
            };
            let bytes = manifest.to_bytes();
            let len = bytes.len();
            let request = Request::PutManifest { manifest: bytes };
            // An owner that refuses a version for good keeps one that outranks it (a
            // version sealed by a data key, which this unsealed or foreign-sealed one may
            // not replace: a failed write of a holder of only the client credential, say).
            // It counts as having the key; so a non-owner drops the refused copy, and a
            // hand-off is not held up by it.
            let pushed = ctx.push(*owner, request, len, pass).await;
            if pushed == Pushed::Stored && pass == Pass::Repair {
                add(&ctx.counters.manifests_pushed, 1);
            }
            if pushed == Pushed::Refused {
                refused = true;
            }
            everyone_has &= pushed != Pushed::Failed;
            holders += usize::from(pushed != Pushed::Failed);
        }
        unconfirmed += u64::from(!ctx.settled(pass, everyone_has, holders, others.len()));
        if refused && everyone_has && !*mine && pass == Pass::Repair {
            tracing::info!(
                key = state.key,
                "dropping a version of a key its owners refuse (not sealed by the data key \
                 that sealed theirs)"
            );
        }
        if !everyone_has || (*mine && !expired) || pass != Pass::Repair {
            continue;
        }
        let (key, version) = (state.key.clone(), state.version);
        let forgotten = ctx
            .with_store(move |s| s.forget_manifest(&key, version))
            .await?;
        let dropped = forgotten.unwrap_or(false);
        if dropped && expired {
            add(&ctx.counters.tombstones_collected, 1);
        } else if dropped {
            add(&ctx.counters.handed_off, 1);
            tracing::debug!(key = state.key, "manifest handed off to its owners");
        }
    }
    Some(unconfirmed)
}

/// Repairs (or hands off) a batch of chunks and shards. Returns how many are not confirmed
/// on every owner; `None` if the node is closing. Chunks that garbage collection has marked
/// (no member names them) are left alone: sending one to an owner that has just collected
/// it would bring it back, and the owners would pass it back and forth forever.
async fn repair_chunks(
    ctx: &Context,
    batch: &[ChunkId],
    condemned: &HashMap<ChunkId, Instant>,
    pass: Pass,
) -> Option<u64> {
    let ids = batch.to_vec();
    let kinds = match ctx.with_store(move |s| s.shards_of(&ids)).await? {
        Ok(kinds) => kinds,
        Err(e) => {
            // Not knowing which are shards, none is moved (a shard taken for a chunk would
            // be copied to the owners of its id).
            tracing::warn!(error = %e, "cannot read which chunks are shards; repair waits");
            return Some(batch.len() as u64);
        }
    };
    let (mut copies, mut shards) = (Vec::new(), Vec::new());
    for (id, kind) in batch.iter().zip(kinds) {
        if condemned.contains_key(id) {
            ctx.checked(pass);
            continue;
        }
        match kind {
            Some(of) => shards.push((*id, of)),
            None => copies.push(*id),
        }
    }
    let unconfirmed = repair_copies(ctx, &copies, pass).await?;
    Some(unconfirmed + repair_shards(ctx, &shards, pass).await?)
}

/// `repair_chunks` for replicated chunks: every owner of the id gets a copy.
async fn repair_copies(ctx: &Context, batch: &[ChunkId], pass: Pass) -> Option<u64> {
    let mut asks: HashMap<NodeId, Vec<usize>> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    for (i, id) in batch.iter().enumerate() {
        let (others, mine) = ctx.owners(&id.0, pass);
        for o in &others {
            asks.entry(*o).or_default().push(i);
        }
        plans.push((others, mine));
    }
    let mut has: Vec<HashMap<NodeId, bool>> = vec![HashMap::new(); batch.len()];
    for (peer, idx) in &asks {
        let ids = idx.iter().map(|&i| batch[i]).collect();
        if let Some(Response::Flags(flags)) = ctx.call(*peer, Request::HasChunks { ids }).await {
            for (&i, f) in idx.iter().zip(flags) {
                has[i].insert(*peer, f);
            }
        }
    }
    let mut unconfirmed = 0;
    for (i, id) in batch.iter().enumerate() {
        ctx.checked(pass);
        let (others, mine) = &plans[i];
        let (mut everyone_has, mut holders) = (true, has[i].values().filter(|h| **h).count());
        for owner in others {
            match has[i].get(owner) {
                Some(true) => continue,
                None => {
                    everyone_has = false;
                    continue;
                }
                Some(false) if !ctx.sends(pass, holders, others.len()) => {
                    everyone_has = false;
                    continue;
                }
                Some(false) => {}
            }
            let id = *id;
            let bytes = match ctx.with_store(move |s| s.chunk(&id)).await {
                None => return None,
                Some(Ok(b)) => b,
                Some(Err(_)) => {
                    everyone_has = false; // gone or corrupt here: the scrubber's business
                    continue;
                }
            };
            let len = bytes.len();
            let request = Request::PutChunk { id, data: bytes };
            // A chunk refused as not matching its id is corrupt here: the scrubber's business.
            let pushed = ctx.push(*owner, request, len, pass).await == Pushed::Stored;
            if pushed && pass == Pass::Repair {
                add(&ctx.counters.chunks_pushed, 1);
            }
            everyone_has &= pushed;
            holders += usize::from(pushed);
        }
        unconfirmed += u64::from(!ctx.settled(pass, everyone_has, holders, others.len()));
        if *mine || !everyone_has || others.is_empty() || pass != Pass::Repair {
            continue;
        }
        let id = *id;
        if ctx.with_store(move |s| s.drop_chunk(&id)).await? {
            add(&ctx.counters.handed_off, 1);
        }
    }
    Some(unconfirmed)
}

/// `repair_chunks` for erasure-coded shards. Each shard has one holder, the member of its
/// place (`placement::shard_owners`); the holders of a chunk's shards are asked whether they
/// have theirs (one batched request per member).
///
/// - A shard held here by a member that is not its holder (a stand-in, or the holder before
///   members changed) is sent to its holder, and dropped here once the holder has it.
/// - Repair only: the holder of a chunk's lowest place whose holder answered that it has its
///   shard rebuilds the shards holders said they lack in this pass and the one before (see
///   `MissingShards`), from any k (`Remote::rebuild_shards`), and sends each to its holder;
///   holders that did not answer are left alone (they may be slow, not empty). So exactly
///   the missing shards are made, by one member.
/// - A member that closes keeps its shards (they are back when it opens again, and until
///   then each chunk misses one of its m spare shards); one that leaves hands them on.
async fn repair_shards(ctx: &Context, batch: &[(ChunkId, ShardOf)], pass: Pass) -> Option<u64> {
    let me = ctx.me();
    if pass == (Pass::HandOff { all: false }) {
        batch.iter().for_each(|_| ctx.checked(pass));
        return Some(0);
    }
    let mut candidates = ctx.remote.cluster.candidates();
    if pass != Pass::Repair {
        candidates.retain(|c| c.id != me);
    }
    let plans: Vec<Vec<NodeId>> = batch
        .iter()
        .map(|(_, of)| {
            placement::shard_owners(&of.chunk.0, &candidates, of.n())
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .collect();
    // Each member is asked about the shard of each chunk it holds a place of (at most one
    // per chunk, so at most `batch.len()` ids per member).
    let mut asks: HashMap<NodeId, Vec<(usize, usize)>> = HashMap::new();
    for (i, ((_, of), holders)) in batch.iter().zip(&plans).enumerate() {
        if holders.len() < of.n() {
            continue;
        }
        for (place, holder) in holders.iter().enumerate() {
            if *holder != me && (pass == Pass::Repair || place == usize::from(of.index)) {
                asks.entry(*holder).or_default().push((i, place));
            }
        }
    }
    let mut has: Vec<HashMap<usize, bool>> = vec![HashMap::new(); batch.len()];
    for (peer, idx) in &asks {
        let ids = idx.iter().map(|&(i, p)| batch[i].1.shards[p]).collect();
        if let Some(Response::Flags(flags)) = ctx.call(*peer, Request::HasChunks { ids }).await {
            for (&(i, p), f) in idx.iter().zip(flags) {
                has[i].insert(p, f);
            }
        }
    }
    let mut unconfirmed = 0;
    for (i, (id, of)) in batch.iter().enumerate() {
        ctx.checked(pass);
        let holders = &plans[i];
        let index = usize::from(of.index);
        if holders.len() < of.n() {
            // Fewer members than shards: kept where it is until there are enough.
            unconfirmed += 1;
            continue;
        }
        if holders[index] != me {
            let confirmed = match has[i].get(&index) {
                Some(true) => true,
                None => false,
                Some(false) => {
                    let id = *id;
                    let bytes = match ctx.with_store(move |s| s.chunk(&id)).await? {
                        Ok(b) => b,
                        Err(_) => {
                            unconfirmed += 1; // the scrubber's business
                            continue;
                        }
                    };
                    let len = bytes.len();
                    let request = Request::PutShard {
                        id,
                        of: of.clone(),
                        data: bytes,
                    };
                    let pushed = ctx.push(holders[index], request, len, pass).await;
                    if pushed == Pushed::Stored && pass == Pass::Repair {
                        add(&ctx.counters.chunks_pushed, 1);
                    }
                    pushed == Pushed::Stored
                }
            };
            unconfirmed += u64::from(!confirmed);
            if confirmed && pass == Pass::Repair {
                let id = *id;
                if ctx.with_store(move |s| s.drop_chunk(&id)).await? {
                    add(&ctx.counters.handed_off, 1);
                }
            }
            continue;
        }
        if pass != Pass::Repair {
            continue;
        }
        let lower_has = (0..index).any(|p| has[i].get(&p) == Some(&true));
        let lacking = (0..of.n()).filter(|p| *p != index && has[i].get(p) == Some(&false));
        let missing: Vec<usize> = {
            let mut seen = ctx.missing_shards.lock().unwrap_or_else(|e| e.into_inner());
            lacking
                .filter(|p| {
                    let id = of.shards[*p];
                    let again = seen.last.contains(&id);
                    if !again && seen.now.len() < MAX_MISSING_SHARDS {
                        seen.now.insert(id);
                    }
                    again
                })
                .collect()
        };
        if missing.is_empty() || lower_has {
            continue;
        }
        let store = ctx.store().await?;
        let rebuilt = match ctx.remote.rebuild_shards(&store, of, &missing).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(chunk = %of.chunk, error = %e, "cannot rebuild shards");
                unconfirmed += 1;
                continue;
            }
        };
        drop(store);
        for (place, bytes) in rebuilt {
            let (to, id, len) = (
                holders[usize::from(place.index)],
                place.shards[usize::from(place.index)],
                bytes.len(),
            );
            let request = Request::PutShard {
                id,
                of: place,
                data: bytes,
            };
            if ctx.push(to, request, len, pass).await == Pushed::Stored {
                add(&ctx.counters.shards_rebuilt, 1);
            } else {
                unconfirmed += 1;
            }
        }
    }
    Some(unconfirmed)
}

/// Garbage collection of chunks, in two phases a grace period apart (see the module doc).
#[derive(Default)]
struct Collector {
    /// Chunks every member said nobody names, and when that was first seen.
    marked: HashMap<ChunkId, Instant>,
}

impl Collector {
    /// One round; false if the node is closing.
    async fn collect(&mut self, ctx: &Context) -> bool {
        let grace = ctx.settings.gc_grace;
        let Some(store) = ctx.store().await else {
            return false;
        };
        let candidates: Vec<ChunkId> = {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || {
                store
                    .chunk_ids()
                    .into_iter()
                    .filter(|id| {
                        !store.is_referenced(id)
                            && store.chunk_age(id).is_some_and(|age| age >= grace)
                    })
                    .collect()
            })
            .await
            {
                Ok(c) => c,
                Err(_) => return true,
            }
        };
        drop(store);
        let keep: HashSet<ChunkId> = candidates.iter().copied().collect();
        self.marked.retain(|id, _| keep.contains(id));
        if candidates.is_empty() {
            return true;
        }
        if ctx.remote.cluster.missing_within(grace) {
            tracing::debug!("a recent member does not answer: garbage collection waits");
            return true;
        }
        let peers = ctx.remote.cluster.peers();
        for batch in candidates.chunks(MAX_BATCH) {
            let mut named = vec![false; batch.len()];
            for peer in &peers {
                let ids = batch.to_vec();
                match ctx.call(peer.id, Request::Referenced { ids }).await {
                    Some(Response::Flags(flags)) if flags.len() == batch.len() => {
                        for (n, f) in named.iter_mut().zip(flags) {
                            *n |= f;
                        }
                    }
                    _ => return true, // every member must answer
                }
            }
            for (id, named) in batch.iter().zip(named) {
                if named {
                    self.marked.remove(id);
                    continue;
                }
                let since = *self.marked.entry(*id).or_insert_with(Instant::now);
                if since.elapsed() < grace {
                    continue;
                }
                let id = *id;
                let Some(collected) = ctx.with_store(move |s| s.collect_chunk(&id)).await else {
                    return false;
                };
                if collected {
                    add(&ctx.counters.chunks_collected, 1);
                    self.marked.remove(&id);
                    tracing::debug!(chunk = %id, "collected an unnamed chunk");
                }
            }
        }
        true
    }
}

async fn scrub_loop(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let rate = ctx.settings.scrub_rate;
    if rate == 0 {
        return;
    }
    let mut unrestored = Unrestored::default();
    loop {
        let started = Instant::now();
        if !scrub_pass(&ctx, &mut stop, &mut unrestored).await {
            return;
        }
        add(&ctx.counters.scrub_passes, 1);
        // Space freed by deletes and collection goes back to the file system between passes.
        match ctx.with_store(|s| s.compact_catalog()).await {
            Some(Err(e)) => tracing::warn!(error = %e, "could not compact the catalog"),
            Some(Ok(freed)) if freed > 0 => {
                add(&ctx.counters.catalog_compactions, 1);
                add(&ctx.counters.compaction_bytes_freed, freed);
            }
            _ => {}
        }
        match ctx.with_store(|s| s.compact_segments()).await {
            Some(Err(e)) => tracing::warn!(error = %e, "could not compact the segments"),
            Some(Ok(freed)) if freed > 0 => {
                add(&ctx.counters.segment_compactions, 1);
                add(&ctx.counters.compaction_bytes_freed, freed);
            }
            _ => {}
        }
        let wait = ctx
            .settings
            .scrub_interval
            .saturating_sub(started.elapsed());
        if stopped_during(&mut stop, wait.max(Duration::from_millis(100))).await {
            return;
        }
    }
}

/// Objects the scrubber set aside but could not yet restore (no other holder answered, say
/// because the node has only just started and knows no members yet). Once set aside they are
/// no longer held, so no later pass would list them: they are retried from here until a good
/// copy comes or the retry list is full (repair, when on, finds them as well).
#[derive(Default)]
struct Unrestored {
    chunks: HashSet<ChunkId>,
    keys: HashSet<String>,
}

/// Bound on each retry list: past it, an object is left to repair.
const MAX_UNRESTORED: usize = 4096;

/// One scrub of everything held; false if the node is closing.
async fn scrub_pass(
    ctx: &Context,
    stop: &mut watch::Receiver<bool>,
    unrestored: &mut Unrestored,
) -> bool {
    let Some(store) = ctx.store().await else {
        return false;
    };
    let mut chunks = store.chunk_ids();
    drop(store);
    let retry_chunks: Vec<ChunkId> = unrestored.chunks.drain().collect();
    chunks.extend(retry_chunks.iter().copied());
    let Some(mut keys) = held_keys(ctx).await else {
        return false;
    };
    let retry_keys: HashSet<String> = std::mem::take(&mut unrestored.keys);
    keys.retain(|k| !retry_keys.contains(&k.key));
    for id in chunks {
        if *stop.borrow() {
            return false;
        }
        let Some(store) = ctx.store().await else {
            return false;
        };
        let read = if retry_chunks.contains(&id) && !store.may_hold_chunk(&id) {
            Err(Error::Integrity("set aside by an earlier pass".into()))
        } else {
            add(&ctx.counters.scrub_objects, 1);
            let Some(read) = ctx.with_store(move |s| s.chunk(&id)).await else {
                continue;
            };
            read
        };
        match read {
            Ok(bytes) => {
                add(&ctx.counters.scrub_bytes, bytes.len() as u64);
                ctx.pace(bytes.len(), ctx.settings.scrub_rate).await;
            }
            Err(Error::Integrity(why)) => {
                if !retry_chunks.contains(&id) {
                    add(&ctx.counters.scrub_bad, 1);
                    tracing::warn!(chunk = %id, why, "scrub found a bad chunk; fetching a good copy");
                }
                let mut held = false;
                let shard = match ctx.with_store(move |s| s.shards_of(&[id])).await {
                    Some(Ok(mut kinds)) => kinds.pop().flatten(),
                    _ => None,
                };
                let is_shard = shard.is_some();
                if let Some(of) = shard {
                    // A shard has no copy elsewhere: it is made again from its siblings.
                    let index = usize::from(of.index);
                    if let Ok(mut made) = ctx.remote.rebuild_shards(&store, &of, &[index]).await {
                        if let Some((of, good)) = made.pop() {
                            let hold = ctx.with_store(move |s| s.hold_shard(id, &good, &of)).await;
                            held = matches!(hold, Some(Ok(())));
                            if held {
                                add(&ctx.counters.shards_rebuilt, 1);
                            }
                        }
                    }
                } else if let Ok(good) = ctx.remote.get_chunk(&store, id).await {
                    let hold = ctx.with_store(move |s| s.hold_chunk(id, &good)).await;
                    held = matches!(hold, Some(Ok(())));
                }
                if held {
                    add(&ctx.counters.scrub_restored, 1);
                } else if unrestored.chunks.len() < MAX_UNRESTORED
                    // A shard is kept for a manifest this node may not hold itself (its
                    // owners differ): it is tried again while its row says it is wanted.
                    && (is_shard
                        || ctx.with_store(move |s| s.is_referenced(&id)).await == Some(true))
                {
                    unrestored.chunks.insert(id);
                }
            }
            _ => {} // removed since listed, or an I/O error already logged
        }
    }
    let keys = keys
        .into_iter()
        .map(|k| (k.key, false))
        .chain(retry_keys.into_iter().map(|k| (k, true)));
    for (key, retried) in keys {
        if *stop.borrow() {
            return false;
        }
        let Some(store) = ctx.store().await else {
            return false;
        };
        let held = |key: &String| {
            let key = key.clone();
            ctx.with_store(move |s| s.version_of(&key).is_some())
        };
        let read = if retried && held(&key).await == Some(false) {
            Err(Error::Integrity("set aside by an earlier pass".into()))
        } else {
            add(&ctx.counters.scrub_objects, 1);
            let k = key.clone();
            let Some(read) = ctx.with_store(move |s| s.manifest(&k)).await else {
                continue;
            };
            read
        };
        match read {
            Ok(m) => {
                // An inline value's bytes are read and checked with its manifest.
                let inline = m.inline.as_ref().map_or(0, Vec::len);
                add(&ctx.counters.scrub_bytes, inline as u64);
                ctx.pace(inline, ctx.settings.scrub_rate).await;
            }
            Err(Error::Integrity(why)) => {
                if !retried {
                    add(&ctx.counters.scrub_bad, 1);
                    tracing::warn!(key, why, "scrub found a bad manifest; fetching a good copy");
                }
                // The bad copy is set aside: the read asks other owners, and read repair sends
                // the newest back here; adopting it as well covers a non-owner.
                let found = ctx.remote.get_manifest(&store, &key, &Remote::any).await;
                if let Ok(Some(good)) = &found {
                    let good = good.clone();
                    let _ = ctx.with_store(move |s| s.adopt(&good)).await;
                }
                if held(&key).await == Some(true) {
                    add(&ctx.counters.scrub_restored, 1);
                } else if found.is_err() && unrestored.keys.len() < MAX_UNRESTORED {
                    // No answer yet; an answer that no one holds the key ends the retries.
                    unrestored.keys.insert(key);
                }
            }
            _ => {}
        }
    }
    true
}
