//! `Node`: the public, async face of dstore. It cuts values into chunks, encrypts and hashes
//! them on the blocking pool (several chunks at once, so large values use every core while
//! memory stays bounded by a few chunks), and commits a manifest once every chunk is durable.
//!
//! This file holds the node's life (open, settle, close, leave and the hand-off), listing and
//! statistics; `config` how a node is set up, `write` the write path (store, delete) and
//! `read` the read path (get, has, size).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore};
use tokio::task::JoinHandle;

use crate::cluster::maintain;
pub use crate::cluster::maintain::Maintenance;
use crate::cluster::remote::Remote;
use crate::cluster::serve::{LeaveHook, Serve};
use crate::cluster::{Cluster, ClusterConfig};
use crate::crypto::{self, ClusterKey, DataKey, KEY_LEN};
use crate::engine::store::Store;
use crate::error::{Error, IoContext, Result};
use crate::ids::{ChunkId, NodeId};
use crate::metrics::Metrics;
use crate::net::message::{MemberInfo as Peer, MAX_PAGE};
use crate::stats::{Counters, Stats};
use crate::version::Clock;

mod config;
mod read;
mod write;

use config::change_window;
pub use config::*;
pub use read::{ValueInfo, ValueReader};
pub use write::ValueWriter;

/// How an `Unavailable` error from a cluster that refused this node's secret (or client
/// credential) starts: `dstore` tells it apart by its exit status.
pub const REFUSED: &str = "refused by the cluster";

/// The largest page `Node::list` returns.
pub const MAX_LIST: usize = 100_000;

/// A dstore node. Cheap to clone; all clones share one store. Every method must be called
/// from within a tokio runtime.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    chunk_size: usize,
    /// `None` for a client given no data key: it can neither seal nor decrypt.
    data_key: Option<DataKey>,
    accept_unsealed: bool,
    cluster: ClusterKey,
    clock: Arc<Clock>,
    /// `None` once closed, and the root unlocked.
    store: Arc<RwLock<Option<Arc<Store>>>>,
    /// One permit per call in flight (see `Op`): `close` takes them all, so it waits for the
    /// calls under way without making peers' requests (which read `store`) wait behind it.
    ops: Arc<Semaphore>,
    counters: Arc<Counters>,
    /// What this node answered peers and clients, for `metrics_text`.
    metrics: Arc<Metrics>,
    /// The cluster, for a node that is part of one.
    remote: Option<Arc<Remote>>,
    /// Stops the background repair and scrubbing of a member; `close` awaits `background`.
    stop: tokio::sync::watch::Sender<bool>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// What repair uses, for a member: `close` and `leave` hand data off with it.
    maintain: Option<Arc<maintain::Context>>,
    /// Set when `close` or `leave` starts: no call starts after it, and peers' writes and
    /// repair questions are refused (see `Serve`).
    closing: Arc<AtomicBool>,
    /// How the node ended, once it has (see `Node::closed`).
    ended: tokio::sync::watch::Sender<Option<Ended>>,
    drain_timeout: Duration,
    /// Set once a read found nothing and let the member view settle first (see
    /// `find_manifest`).
    settled: AtomicBool,
    /// Chunks of one value in flight at once (see `Node::parallelism`).
    parallelism: usize,
    /// How values stored without a policy of their own are kept (`Config::erasure`).
    erasure: Option<Erasure>,
}

/// How `Node::shut` stops a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shut {
    Close,
    Leave,
    Halt,
}

/// How a node ended: closed (possibly to open again), or left the cluster for good. A
/// hand-off that did not complete says what was left undone; the node closed all the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Closed,
    Left,
    Incomplete(String),
}

/// One call in flight; see `Inner::store`.
struct Op {
    store: Arc<Store>,
    _permit: OwnedSemaphorePermit,
}

/// Permits of `Inner::ops`: more calls than can be in flight at once.
const OPS: u32 = 1 << 24;

/// Chunks pinned by a write in flight; released on drop unless a manifest took them over.
struct Pins {
    store: Arc<Store>,
    ids: Vec<ChunkId>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.store.unpin(&self.ids);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    join(tokio::task::spawn_blocking(f)).await
}

/// Waits for a task: its panic is re-raised here (a bug stays a bug), and a task cancelled
/// because the runtime is shutting down is reported as `Closed`.
async fn join<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    match handle.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Closed),
    }
}

impl Node {
    /// Opens (or creates) the node at `config.root`. Fails with `Error::Locked` if another
    /// node has the root open.
    pub async fn open(config: Config) -> Result<Node> {
        config.validate()?;
        let networked = config.listen.is_some() || config.client;
        let (config, store, identity, raw_key) =
            blocking(move || Self::open_store(config, !networked)).await?;
        let id = NodeId(identity.id());
        let cluster_key = store.cluster().clone();
        if config.listen.is_some() && !cluster_key.is_member() {
            return Err(Error::InvalidArgument(
                "a member needs the cluster secret; a client credential only lets a client in"
                    .into(),
            ));
        }
        let clock = Arc::new(Clock::new(
            config.clock_offset_ms,
            config.max_clock_drift.as_millis() as u64,
        ));
        // Stamp later than anything this node stored before it was restarted; but versions
        // from beyond the drift allowed (a peer's poisoned clock, before that was refused)
        // are set aside, or no later write could ever replace those keys.
        let horizon = clock.horizon();
        let (store, newest) = blocking(move || {
            let newest = store.newest_within(horizon)?;
            Ok((store, newest))
        })
        .await?;
        clock.observe(newest);
        let store = Arc::new(RwLock::new(Some(Arc::new(store))));
        let counters = Arc::new(Counters::default());
        let metrics = Arc::new(Metrics::new());
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut background = Vec::new();
        let mut maintain_ctx = None;
        let leave_hook = Arc::new(LeaveHook::new());
        let closing = Arc::new(AtomicBool::new(false));
        let remote = if networked {
            let cluster_config = ClusterConfig {
                listen: config.listen.clone(),
                advertise: config.advertise.clone(),
                peers: config.peers.clone(),
                zone: config.zone.clone(),
                timeouts: config.timeouts,
                change_window: change_window(&config),
            };
            let serve = Arc::new(Serve {
                store: store.clone(),
                counters: counters.clone(),
                metrics: metrics.clone(),
                leave: leave_hook.clone(),
                closing: closing.clone(),
                clock: clock.clone(),
            });
            let cluster = Cluster::start(
                Arc::new(identity),
                cluster_key.clone(),
                cluster_config,
                serve,
                clock.clone(),
            )
            .await
            .context(|| format!("listening on {}", config.listen.as_deref().unwrap_or("-")))?;
            let remote = Arc::new(Remote {
                cluster,
                replicas: config.replicas,
                erasure_write_quorum: config.erasure_write_quorum,
                write_quorum: config.write_quorum,
                read_quorum: config.read_quorum,
                counters: counters.clone(),
                background: Default::default(),
            });
            if remote.cluster.is_member() {
                let ctx = maintain::Context {
                    remote: remote.clone(),
                    store: store.clone(),
                    counters: counters.clone(),
                    clock: clock.clone(),
                    settings: config.maintenance,
                    missing_shards: Default::default(),
                };
                let ctx = Arc::new(ctx);
                background = maintain::start(ctx.clone(), stop.subscribe());
                maintain_ctx = Some(ctx);
            }
            Some(remote)
        } else {
            None
        };
        // Asked once: the answer reads cgroup files, and asking it for every read was 4% of a
        // small-value cluster profile.
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get())
            * if remote.is_some() { 8 } else { 4 };
        let node = Node {
            inner: Arc::new(Inner {
                id,
                chunk_size: config.chunk_size,
                data_key: raw_key.map(|k| DataKey::new(&k)),
                accept_unsealed: config.accept_unsealed,
                cluster: cluster_key,
                clock,
                store,
                ops: Arc::new(Semaphore::new(OPS as usize)),
                counters,
                metrics,
                remote,
                stop,
                background: Mutex::new(background),
                maintain: maintain_ctx,
                closing,
                ended: tokio::sync::watch::channel(None).0,
                settled: AtomicBool::new(false),
                drain_timeout: config.drain_timeout,
                parallelism,
                erasure: config.erasure,
            }),
        };
        if config.leave_on_request {
            node.answer_leave_requests(&leave_hook);
        }
        Ok(node)
    }

    /// Leaves the cluster when a peer asks (`dstore leave`, `Request::Leave`): the request
    /// is answered once this node has departed, then it closes.
    fn answer_leave_requests(&self, hook: &LeaveHook) {
        if self.inner.maintain.is_none() {
            return; // a client has nothing to hand off; requests are refused
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        if hook.set(tx).is_err() {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(answer) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                let node = Node { inner };
                tokio::spawn(async move { node.shut(Shut::Leave, Some(answer)).await });
            }
        });
    }

    /// Opens the root and reads (or makes) the node id and data key.
    #[allow(clippy::type_complexity)]
    fn open_store(
        config: Config,
        collect: bool,
    ) -> Result<(Config, Store, crypto::Identity, Option<[u8; KEY_LEN]>)> {
        let root = &config.root;
        let store = Store::open(
            root,
            config.transform.clone(),
            config.secret.as_deref(),
            collect,
            config.segment_max,
        )?;
        // The node's key pair; its id is a hash of the public key (see `crypto::Identity`).
        let seed_hex = store.persistent_file("node.key", || {
            hex::encode(crypto::Identity::generate().seed())
        })?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&seed_hex, &mut seed).map_err(|_| {
            Error::Integrity(format!("{}/node.key is not 64 hex digits", root.display()))
        })?;
        let identity = crypto::Identity::from_seed(&seed);
        let raw_key = match config.data_key {
            Some(k) => Some(k),
            None if config.client => None,
            None => {
                let hex_key = store.persistent_file("data.key", || {
                    hex::encode(crypto::random_bytes::<KEY_LEN>())
                })?;
                let mut k = [0u8; KEY_LEN];
                hex::decode_to_slice(&hex_key, &mut k).map_err(|_| {
                    Error::Integrity(format!("{}/data.key is not 64 hex digits", root.display()))
                })?;
                Some(k)
            }
        };
        Ok((config, store, identity, raw_key))
    }

    /// The address peers reach this node at, for a cluster member.
    pub fn addr(&self) -> Option<String> {
        self.inner
            .remote
            .as_ref()
            .and_then(|r| r.cluster.addr().map(str::to_owned))
    }

    /// Waits until this node sees at least one other member and its view of the members has
    /// stopped changing (members learnt from peers are pinged at once, so this takes a few
    /// round trips), for up to `timeout`. Returns the number of live peers. `Unavailable` if
    /// none answered in time, or at once if every bootstrap peer refused this node's secret.
    /// A client calls this before its first request, so that it places data as members do.
    pub async fn settle(&self, timeout: std::time::Duration) -> Result<usize> {
        let Some(remote) = &self.inner.remote else {
            return Ok(0);
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut calm, mut last) = (0, (0, 0));
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Some(why) = remote.cluster.refused_by_all() {
                return Err(Error::Unavailable(format!("{REFUSED}: {why}")));
            }
            let now = remote.cluster.known_and_live();
            calm = if now.1 > 0 && now == last {
                calm + 1
            } else {
                0
            };
            last = now;
            if calm >= 4 {
                return Ok(now.1);
            }
        }
        if last.1 > 0 {
            return Ok(last.1);
        }
        Err(Error::Unavailable(
            "no cluster member answered (unreachable, or another cluster secret: the members' \
             logs say which)"
                .into(),
        ))
    }

    /// The live members of the cluster other than this node.
    pub fn peers(&self) -> Vec<Peer> {
        self.inner
            .remote
            .as_ref()
            .map(|r| r.cluster.peers())
            .unwrap_or_default()
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// How many chunks are hashed, sealed and written (or read) at once. Locally: enough to
    /// keep both cores busy while other chunks wait on fsync (4 per core beat 2 per core by
    /// about 10% on large stores). In a cluster each chunk also waits for round trips, so 8
    /// per core (3 replicas, 512 MiB: gets 422 -> 489 MB/s, stores 188 -> 226 MB/s). Memory
    /// stays a few chunks per core.
    fn parallelism(&self) -> usize {
        self.inner.parallelism
    }

    /// Starts a call: fails with `Closed` after `close`, else keeps the store open until the
    /// returned `Op` is dropped.
    async fn begin(&self) -> Result<Op> {
        let permit = self.inner.ops.clone().acquire_owned().await;
        let permit = permit.map_err(|_| Error::Closed)?;
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let store = self.inner.store.read().await.clone().ok_or(Error::Closed)?;
        Ok(Op {
            store,
            _permit: permit,
        })
    }

    /// Stops accepting calls, waits for the calls in flight to finish, and releases the
    /// root: once this returns, another node may open it. A cluster member first tells the
    /// other members it departs (until it opens again) and drains: it waits for the copies
    /// of its acknowledged writes still going out, and hands what it holds to the owners the
    /// cluster has without it, within `Config::drain_timeout` (DESIGN.md §4, Shutdown). If that does not finish in time, the node closes all the same
    /// and says so: `Unavailable`, naming what was not handed off (it stays in the root, and
    /// reaches the owners when the node opens again). Closing twice is harmless.
    pub async fn close(&self) -> Result<()> {
        self.spawn_shut(Shut::Close).await
    }

    /// Runs `shut` as a task of its own, so that a caller that gives up waiting (a timeout
    /// around `close`) does not leave the node half closed.
    async fn spawn_shut(&self, how: Shut) -> Result<()> {
        let node = self.clone();
        join(tokio::spawn(async move { node.shut(how, None).await })).await
    }

    /// Leaves the cluster for good: hands everything this node holds to the owners the
    /// cluster has without it (progress in `stats().drain`), tells the members it has left
    /// (so that garbage collection and quorums stop waiting for it), then closes. Afterwards
    /// its root can be deleted. Fails (and closes all the same) if the hand-off makes no
    /// progress for `Config::drain_timeout`; nothing is deleted either way.
    pub async fn leave(&self) -> Result<()> {
        if self.inner.maintain.is_none() {
            return Err(Error::InvalidArgument(
                "only a cluster member can leave a cluster".into(),
            ));
        }
        self.spawn_shut(Shut::Leave).await
    }

    /// Waits until the node has closed (by `close`, `leave`, or a peer's `Leave` request),
    /// and says how it ended.
    pub async fn closed(&self) -> Ended {
        let mut ended = self.inner.ended.subscribe();
        let outcome = match ended.wait_for(|e| e.is_some()).await {
            Ok(e) => e.clone().unwrap_or(Ended::Closed),
            Err(_) => Ended::Closed,
        };
        outcome
    }

    /// Asks the member listening at `addr` to leave the cluster for good (see `leave`), and
    /// waits up to `timeout` until it has handed everything off and departed.
    pub async fn ask_to_leave(&self, addr: &str, timeout: Duration) -> Result<()> {
        let remote = self.inner.remote.as_ref().ok_or_else(|| {
            Error::InvalidArgument("not part of a cluster: no member to ask".into())
        })?;
        let member = remote
            .cluster
            .peers()
            .into_iter()
            .find(|p| p.addr == addr)
            .ok_or_else(|| Error::NotFound(format!("no live member at {addr}")))?;
        let request = crate::net::message::Request::Leave;
        match remote
            .cluster
            .call_within(member.id, request, timeout)
            .await
        {
            Ok(crate::net::message::Response::Stored) => Ok(()),
            Ok(crate::net::message::Response::Failed { message, .. }) => Err(Error::Unavailable(
                format!("{addr} did not leave: {message}"),
            )),
            Ok(other) => Err(Error::Unavailable(format!(
                "{addr} answered a leave request with {other:?}"
            ))),
            Err(e) => Err(Error::Unavailable(format!("asking {addr} to leave: {e}"))),
        }
    }

    /// Stops as a crash would, for tests of failure detection in one process: calls in
    /// flight finish and the root is released, but the members are not told and nothing is
    /// handed off, so they find out by heartbeat as they would after a kill.
    #[doc(hidden)]
    pub async fn halt(&self) {
        let _ = self.spawn_shut(Shut::Halt).await;
    }

    /// Closes (`Close`), leaves the cluster first (`Leave`), or stops without a word
    /// (`Halt`). `answer`, for a leave a peer asked for, is told the outcome once this node
    /// has departed, before it closes.
    async fn shut(
        &self,
        how: Shut,
        answer: Option<tokio::sync::oneshot::Sender<std::result::Result<(), String>>>,
    ) -> Result<()> {
        let leave = how == Shut::Leave;
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            if let Some(answer) = answer {
                let _ = answer.send(Err("the node is closing already".into()));
            }
            self.closed().await;
            return if leave { Err(Error::Closed) } else { Ok(()) };
        }
        // No call starts now (`begin` checks `closing` after taking its permit); wait for those
        // under way: their writes are what the drain hands off.
        if let Ok(all) = self.inner.ops.clone().acquire_many_owned(OPS).await {
            self.inner.ops.close();
            drop(all);
        }
        let _ = self.inner.stop.send(true);
        let background: Vec<_> = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for task in background {
            let _ = task.await;
        }
        let drained = match &self.inner.remote {
            Some(remote) if how != Shut::Halt => self.drain(remote, leave).await,
            _ => Ok(()),
        };
        if let Some(answer) = answer {
            let _ = answer.send(drained.as_ref().map_err(|e| e.to_string()).copied());
            // Let the answer reach the asker before every connection closes.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(remote) = &self.inner.remote {
            remote.cluster.shutdown().await;
        }
        self.inner.store.write().await.take();
        let ended = match (&drained, leave) {
            (Err(e), _) => Ended::Incomplete(e.to_string()),
            (Ok(()), true) => Ended::Left,
            (Ok(()), false) => Ended::Closed,
        };
        self.inner.ended.send_replace(Some(ended));
        drained
    }

    /// The cluster half of `shut`: departs, and hands off what the cluster must not lose
    /// with this node (see `close` and `leave`).
    async fn drain(&self, remote: &Remote, leave: bool) -> Result<()> {
        let started = std::time::Instant::now();
        let timeout = self.inner.drain_timeout;
        let counters = &self.inner.counters;
        counters.drain_running.store(true, Ordering::Relaxed);
        let result = async {
            // `close` has `drain_timeout` for all of it; the copies of acknowledged writes
            // still going out beyond their quorum first.
            let close_by = tokio::time::Instant::now() + timeout;
            let copies_done = remote.background.wait(close_by).await;
            let Some(ctx) = &self.inner.maintain else {
                // A client holds nothing: its copies are all it can wait for.
                return if copies_done {
                    Ok(())
                } else {
                    Err(format!(
                        "copies of acknowledged writes still going out after {timeout:?}"
                    ))
                };
            };
            // Members stop counting this node as an owner (and stop sending it writes)
            // before it hands off, so that the owners it hands to are the ones they use.
            remote.cluster.announce_departure(false).await;
            // Pass after pass until everything is on its owners. `close` has until one
            // deadline. `leave` goes on while it makes progress: within a pass (one pass over
            // a large node takes longer than `drain_timeout`), objects checked or sent; from
            // one pass to the next, fewer objects left unsettled.
            let moving = || {
                let d = counters.stats(Default::default()).drain;
                (d.checked, d.pushed)
            };
            let (mut best, mut improved_at) = (u64::MAX, tokio::time::Instant::now());
            loop {
                let pass = maintain::hand_off(ctx, leave);
                tokio::pin!(pass);
                let mut stall_at = if leave {
                    tokio::time::Instant::now() + timeout
                } else {
                    close_by
                };
                let mut seen = moving();
                let left = loop {
                    tokio::select! {
                        left = &mut pass => break left,
                        () = tokio::time::sleep_until(stall_at) => {
                            if leave && moving() != seen {
                                seen = moving();
                                stall_at = tokio::time::Instant::now() + timeout;
                                continue;
                            }
                            return Err(format!(
                                "a hand-off pass did not finish within {timeout:?} ({} \
                                 objects were left unsettled by the pass before)",
                                counters.stats(Default::default()).drain.unconfirmed
                            ));
                        }
                    }
                };
                let Some(left) = left else {
                    return Err("the node closed during the hand-off".into());
                };
                if left == 0 {
                    break;
                }
                if remote.cluster.peers().is_empty() {
                    // For `close`: when every other member departed, the whole cluster is
                    // stopping, and what this node holds waits in its root. Members that died
                    // instead may hold nothing of it when they return, and a node that leaves
                    // for good must have handed everything to someone: those fail.
                    let window = remote.cluster.timeouts().dead_after + timeout;
                    if leave || remote.cluster.lost_within(window) {
                        return Err(format!(
                            "{left} objects have no other live member to be handed to"
                        ));
                    }
                    tracing::info!(
                        left,
                        "every other member has departed; keeping what is here"
                    );
                    break;
                }
                if left < best {
                    (best, improved_at) = (left, tokio::time::Instant::now());
                }
                let give_up_at = if leave {
                    improved_at + timeout
                } else {
                    close_by
                };
                if tokio::time::Instant::now() + Duration::from_millis(500) >= give_up_at {
                    return Err(format!(
                        "{left} objects not on a write quorum of their owners without this \
                         node (owners that did not answer or refused)"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if leave {
                let told = remote.cluster.announce_departure(true).await;
                tracing::info!(members = told, "left the cluster");
            }
            Ok(())
        }
        .await;
        counters.drain_running.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => {
                tracing::info!(elapsed = ?started.elapsed(), leave, "hand-off complete");
                Ok(())
            }
            Err(why) => {
                let what = if leave { "leaving" } else { "closing" };
                tracing::warn!(why, "{what}: the hand-off did not finish; closing anyway");
                Err(Error::Unavailable(format!(
                    "{what}: the hand-off did not finish ({why}); what was not handed off is \
                     still in the root and reaches its owners when the node opens again"
                )))
            }
        }
    }

    /// One page of the live keys (of the whole cluster, for a cluster node): those starting
    /// with `prefix` and after `start_after`, in byte order, at most `limit` (1 to
    /// `MAX_LIST`). The next page starts after the last key of this one; a page shorter than
    /// `limit` is the last. A member that cannot answer fails the call (`Unavailable`), never
    /// a page that silently lacks its keys.
    pub async fn list(&self, prefix: &str, start_after: &str, limit: usize) -> Result<Vec<String>> {
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "a listing's limit is 1 to {MAX_LIST}, not {limit}"
            )));
        }
        if prefix.len() > crate::manifest::MAX_KEY_LEN
            || start_after.len() > crate::manifest::MAX_KEY_LEN
        {
            return Err(Error::InvalidArgument(format!(
                "a prefix or start_after is at most {} bytes",
                crate::manifest::MAX_KEY_LEN
            )));
        }
        let op = self.begin().await?;
        match &self.inner.remote {
            Some(remote) => remote.list(&op.store, prefix, start_after, limit).await,
            None => {
                let mut out = Vec::new();
                let mut cursor = start_after.to_owned();
                while out.len() < limit {
                    let (store, p, c) = (op.store.clone(), prefix.to_owned(), cursor.clone());
                    let page =
                        blocking(move || store.key_page(&p, &c, limit.min(MAX_PAGE))).await?;
                    let Some(last) = page.last() else { break };
                    cursor = last.key.clone();
                    let full = page.len() == limit.min(MAX_PAGE);
                    out.extend(page.into_iter().filter(|s| !s.deleted).map(|s| s.key));
                    if !full {
                        break;
                    }
                }
                out.truncate(limit);
                Ok(out)
            }
        }
    }

    /// Every live key starting with `prefix`, in byte order, read a page at a time (see
    /// `list`).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let after = all.last().map_or("", String::as_str);
            let page = self.list(prefix, after, MAX_PAGE).await?;
            let last = page.len() < MAX_PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
        }
    }

    /// This node's metrics in the OpenMetrics text format (see `crate::metrics`): what
    /// Prometheus scrapes from `dstore node --metrics-listen`.
    /// The bytes of the root are counted by walking it, on each call.
    pub async fn metrics_text(&self) -> Result<String> {
        let stats = self.stats()?;
        let members = self
            .inner
            .remote
            .as_ref()
            .map(|r| r.cluster.known_and_live());
        let store = self.inner.store.read().await.clone().ok_or(Error::Closed)?;
        let disk = blocking(move || Ok(store.disk_bytes())).await?;
        let counters = &self.inner.counters;
        Ok(self.inner.metrics.encode(&stats, counters, members, disk))
    }

    /// Whether the node serves: open, and not closing or leaving (`/health`).
    pub fn is_serving(&self) -> bool {
        !self.inner.closing.load(Ordering::Acquire)
    }

    /// The stats of every live member other than this node, asked now; `None` for a member
    /// that did not answer. For `dstore status`.
    pub async fn member_stats(&self) -> Vec<(Peer, Option<Stats>)> {
        let Some(remote) = &self.inner.remote else {
            return Vec::new();
        };
        let mut asks = tokio::task::JoinSet::new();
        for peer in remote.cluster.peers() {
            let cluster = remote.cluster.clone();
            asks.spawn(async move {
                let answer = cluster
                    .call(peer.id, crate::net::message::Request::Stats)
                    .await;
                match answer {
                    Ok(crate::net::message::Response::Stats(s)) => (peer, Some(s)),
                    _ => (peer, None),
                }
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = asks.join_next().await {
            if let Ok(answer) = joined {
                all.push(answer);
            }
        }
        all.sort_by(|a, b| a.0.addr.cmp(&b.0.addr));
        all
    }

    /// Counts of what this node holds and has done. Never waits: while `close` is under
    /// way it reports `Closed`.
    pub fn stats(&self) -> Result<Stats> {
        let guard = self.inner.store.try_read().map_err(|_| Error::Closed)?;
        let s = guard.as_ref().ok_or(Error::Closed)?.stats();
        Ok(self.inner.counters.stats(s))
    }
}
