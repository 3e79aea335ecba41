//! The cluster: who the members are, connections to them, and heartbeats. A member listens
//! for peers, starts from its bootstrap addresses, learns the rest from its peers' member
//! lists (peer exchange), and pings every member each `HEARTBEAT` to keep their health fresh.
//! A client (the `dstore` command's put/get, or an application in client mode) dials members
//! the same way but never listens and never owns data. See DESIGN.md §3.

mod admission;
pub(crate) mod maintain;
pub mod membership;
pub mod placement;
pub(crate) mod remote;
pub(crate) mod serve;
pub(crate) mod shards;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::BufWriter;
use tokio::net::{TcpListener, TcpStream};

use crate::crypto::{ClusterKey, Identity};
use crate::ids::NodeId;
use crate::net::conn::{BoxFuture, Conn, Handler};
use crate::net::handshake::{handshake, Hello, Role, HANDSHAKE_TIMEOUT};
use crate::net::message::{
    FailureKind, MemberInfo, Request, Response, MAX_DEPARTURES, MAX_MEMBERS,
};
use crate::net::NetError;
use crate::version::Clock;
use admission::{Admission, Quiet};
use membership::{Members, Timeouts, MAX_LEARNT_PER_ANSWER};
use placement::Candidate;

/// How often members are pinged (and missing connections redialled).
pub const HEARTBEAT: Duration = Duration::from_millis(500);
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// The write buffer of a connection's socket: small frames sent in a batch (see `Conn`) cost
/// one system call, not two each; larger frames pass straight through. (A read buffer was
/// tried too: it halved plain 256 MiB gets at 3 replicas, 975 to 589 MB/s, for no clear
/// gain on small ones.)
const SOCKET_BUFFER: usize = 64 << 10;

/// How this process takes part in the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterConfig {
    /// Address to listen on (`host:port`, port 0 for any); `None` for a client.
    pub listen: Option<String>,
    /// The address peers should dial, when it differs from what `listen` binds (NAT, or a
    /// wildcard listen address). Default: the bound address, with a wildcard IP replaced by
    /// the local address that routes to the first bootstrap peer.
    pub advertise: Option<String>,
    pub peers: Vec<String>,
    pub zone: Option<String>,
    pub timeouts: Timeouts,
    /// How long after a change of members reads ask beyond the current owners (see
    /// `Remote::get_manifest`): long enough for repair to move data to its new owners.
    pub change_window: Duration,
}

pub struct Cluster {
    me: NodeId,
    /// This node's key pair: `me` is its hash, proved in every handshake.
    identity: Arc<Identity>,
    role: Role,
    key: ClusterKey,
    timeouts: Timeouts,
    bootstrap: Vec<String>,
    /// Answers requests that are not about membership (the node's store).
    inner: Arc<dyn Handler>,
    state: Mutex<State>,
    /// Sent to stop the listener and heartbeat tasks.
    stop: tokio::sync::watch::Sender<bool>,
    /// Those two tasks, awaited by `shutdown` (the listener's socket closes when it ends).
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The node's hybrid logical clock, carried by every message.
    clock: Arc<Clock>,
    /// See `ClusterConfig::change_window`.
    change_window: Duration,
    /// When this node started: a member that joined recently changes ownership too.
    started: Instant,
    /// How long reads take, for hedging (see `hedge_delay`).
    latency: Mutex<Latency>,
}

/// Recent read latency, and the peers that were slow lately.
#[derive(Default)]
struct Latency {
    /// Exponentially weighted mean of successful reads, in microseconds (0: none yet).
    mean_us: f64,
    /// Peers that timed out or answered after the hedge delay, and until when they are
    /// asked last.
    slow: HashMap<NodeId, Instant>,
}

/// How long a peer that was slow is asked last.
const SLOW_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    members: Members,
    conns: HashMap<NodeId, Arc<Conn>>,
    /// Bootstrap addresses whose node is not known yet, and when to dial them next.
    bootstrap_next: HashMap<String, Instant>,
    /// Connections opened by clients (not members): kept here only so `shutdown` closes them.
    clients: Vec<Weak<Conn>>,
    /// Set by `shutdown`; no connection is adopted after it.
    stopped: bool,
    /// Why each bootstrap address last refused us, if it proved another cluster secret: a
    /// client can give up at once instead of waiting for a member that will never answer.
    refused_by: HashMap<String, String>,
}

impl Cluster {
    /// Joins the cluster: binds the listener (for a member), then starts accepting and
    /// heartbeating in the background. Returns once listening; peers are found after.
    pub async fn start(
        identity: Arc<Identity>,
        key: ClusterKey,
        config: ClusterConfig,
        inner: Arc<dyn Handler>,
        clock: Arc<Clock>,
    ) -> std::io::Result<Arc<Cluster>> {
        let listener = match &config.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let role = match &listener {
            Some(l) => Role::Member {
                addr: advertised(l.local_addr()?, &config).await,
                zone: config.zone.clone(),
                incarnation: u64::from_le_bytes(crate::crypto::random_bytes()),
            },
            None => Role::Client,
        };
        let (stop, _) = tokio::sync::watch::channel(false);
        let cluster = Arc::new(Cluster {
            me: NodeId(identity.id()),
            identity,
            role,
            key,
            timeouts: config.timeouts,
            bootstrap: config.peers.clone(),
            inner,
            state: Mutex::default(),
            stop,
            tasks: Mutex::default(),
            clock,
            change_window: config.change_window,
            started: Instant::now(),
            latency: Mutex::default(),
        });
        let mut tasks = vec![tokio::spawn(heartbeat_loop(
            Arc::downgrade(&cluster),
            cluster.stop.subscribe(),
        ))];
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(accept_loop(
                Arc::downgrade(&cluster),
                listener,
                cluster.stop.subscribe(),
            )));
        }
        *cluster.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(cluster)
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The address peers dial to reach this node, if it is a member.
    pub fn addr(&self) -> Option<&str> {
        match &self.role {
            Role::Member { addr, .. } => Some(addr),
            Role::Client => None,
        }
    }

    fn my_info(&self) -> Option<MemberInfo> {
        match &self.role {
            Role::Member { addr, zone, .. } => Some(MemberInfo {
                id: self.me,
                addr: addr.clone(),
                zone: zone.clone(),
            }),
            Role::Client => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a member learnt from a peer's list may stay unanswered before it is
    /// forgotten (see `Members::forget_silent`).
    fn forget_after(&self) -> Duration {
        (self.timeouts.dead_after * 3).max(Duration::from_secs(10))
    }

    /// Live members other than this node.
    pub fn peers(&self) -> Vec<MemberInfo> {
        self.lock().members.live(&self.timeouts)
    }

    /// Whether this node is a member (owns data), not a client.
    pub fn is_member(&self) -> bool {
        self.my_info().is_some()
    }

    /// This node's hybrid logical clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The failure-detection settings.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Who may own data now: the live members, and this node if it is a member.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut all: Vec<Candidate> = self.peers().iter().map(Candidate::from).collect();
        if let Some(me) = self.my_info() {
            all.push(Candidate::from(&me));
        }
        all
    }

    /// Stops listening, heartbeating and every connection, and returns once the listening
    /// socket is closed. Nothing dialled or accepted after this is kept.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let conns: Vec<Arc<Conn>> = {
            let mut state = self.lock();
            state.stopped = true;
            let clients: Vec<_> = state
                .clients
                .drain(..)
                .filter_map(|w| w.upgrade())
                .collect();
            state.conns.drain().map(|(_, c)| c).chain(clients).collect()
        };
        for c in conns {
            c.close();
        }
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Calls `request` on member `id`, dialling it if there is no open connection.
    pub async fn call(
        self: &Arc<Self>,
        id: NodeId,
        request: Request,
    ) -> Result<Response, NetError> {
        self.call_within(id, request, self.timeouts.call).await
    }

    /// `call` with its own deadline, for requests that take long by design (`Leave`).
    pub async fn call_within(
        self: &Arc<Self>,
        id: NodeId,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        let conn = self.conn_to(id).await?;
        let result = conn.call(request, timeout).await;
        if result.is_err() {
            self.lock().members.failed(&id);
        }
        result
    }

    /// How long a read waits for one peer before asking the next as well: three times the
    /// recent mean read latency, at least 20 ms and at most a second (and the call timeout).
    pub fn hedge_delay(&self) -> Duration {
        let mean = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mean_us;
        let delay = if mean == 0.0 {
            Duration::from_millis(200)
        } else {
            Duration::from_micros((3.0 * mean) as u64)
        };
        delay
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
            .min(self.timeouts.call)
    }

    /// Records how long a read from `id` took (`None`: it failed or timed out).
    pub fn record_read(&self, id: NodeId, took: Option<Duration>) {
        let hedge = self.hedge_delay();
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        match took {
            Some(t) => {
                let us = t.as_micros() as f64;
                l.mean_us = if l.mean_us == 0.0 {
                    us
                } else {
                    0.9 * l.mean_us + 0.1 * us
                };
                if t > hedge {
                    l.slow.insert(id, Instant::now() + SLOW_FOR);
                } else {
                    l.slow.remove(&id);
                }
            }
            None => {
                l.slow.insert(id, Instant::now() + SLOW_FOR);
            }
        }
        let now = Instant::now();
        l.slow.retain(|_, until| *until > now);
    }

    /// Whether `id` was slow lately (reads ask it last).
    pub fn is_slow(&self, id: &NodeId) -> bool {
        let l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.slow.get(id).is_some_and(|until| *until > Instant::now())
    }

    async fn conn_to(self: &Arc<Self>, id: NodeId) -> Result<Arc<Conn>, NetError> {
        let addr = {
            let state = self.lock();
            if let Some(c) = state.conns.get(&id).filter(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
            state.members.get(&id).map(|m| m.addr.clone())
        };
        let addr = addr.ok_or(NetError::Closed)?;
        let conn = self.dial(&addr).await;
        match conn {
            Ok(c) if c.peer.node == id => Ok(c),
            Ok(_) => {
                self.lock().members.failed(&id);
                Err(NetError::Protocol(format!("{addr} is now another node")))
            }
            Err(e) => {
                self.lock().members.failed(&id);
                Err(e)
            }
        }
    }

    async fn dial(self: &Arc<Self>, addr: &str) -> Result<Arc<Conn>, NetError> {
        if self.lock().stopped {
            return Err(NetError::Closed);
        }
        let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| NetError::Timeout("connecting"))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let session = handshake(
            r,
            BufWriter::with_capacity(SOCKET_BUFFER, w),
            &self.key,
            &self.identity,
            self.role.clone(),
            true,
        )
        .await?;
        let conn = self.adopt(
            session.peer.clone(),
            Conn::spawn(session, self.dispatcher(), self.clock.clone()),
        );
        if matches!(conn.peer.role, Role::Member { .. }) {
            self.ping(conn.peer.node); // learn its members now, not at the next heartbeat
        }
        Ok(conn)
    }

    /// Records a new connection: a member's becomes the one used to reach it. After
    /// `shutdown`, the connection is closed instead.
    fn adopt(&self, peer: Hello, conn: Arc<Conn>) -> Arc<Conn> {
        let mut state = self.lock();
        if state.stopped {
            drop(state);
            conn.close();
            return conn;
        }
        if let Role::Member {
            addr,
            zone,
            incarnation,
        } = peer.role
        {
            let info = MemberInfo {
                id: peer.node,
                addr,
                zone,
            };
            state.members.hello(info, incarnation, &self.timeouts);
            if let Some(old) = state.conns.insert(peer.node, conn.clone()) {
                if !Arc::ptr_eq(&old, &conn) {
                    old.close();
                }
            }
        } else {
            state
                .clients
                .retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
            state.clients.push(Arc::downgrade(&conn));
        }
        conn
    }

    fn dispatcher(self: &Arc<Self>) -> Arc<dyn Handler> {
        Arc::new(Dispatch {
            cluster: Arc::downgrade(self),
            inner: self.inner.clone(),
        })
    }

    /// One round of heartbeats: dial what is missing, ping what is connected.
    fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let (known_addrs, members): (Vec<String>, Vec<MemberInfo>) = {
            let mut state = self.lock();
            state.members.forget_silent(self.forget_after());
            state.conns.retain(|_, c| !c.is_closed());
            state
                .clients
                .retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
            let known = state.members.all().into_iter().map(|m| m.addr).collect();
            (known, state.members.present())
        };
        for addr in &self.bootstrap {
            let due = {
                let mut state = self.lock();
                let next = state.bootstrap_next.entry(addr.clone()).or_insert(now);
                let due = !known_addrs.contains(addr) && now >= *next;
                if due {
                    *next = now + Duration::from_secs(1);
                }
                due
            };
            if due {
                let (cluster, addr) = (self.clone(), addr.clone());
                tokio::spawn(async move {
                    match cluster.dial(&addr).await {
                        Ok(_) => {
                            cluster.lock().refused_by.remove(&addr);
                        }
                        Err(e @ NetError::Auth(_)) => {
                            tracing::warn!(%addr, error = %e, "bootstrap peer refused us");
                            cluster.lock().refused_by.insert(addr, e.to_string());
                        }
                        Err(e) => {
                            tracing::debug!(%addr, error = %e, "bootstrap peer not reachable")
                        }
                    }
                });
            }
        }
        for m in members {
            self.ping(m.id);
        }
    }

    /// Pings member `id` in the background (dialling it if needed and allowed); the answer
    /// refreshes its health and teaches this node the members it knows. Members learnt that
    /// way are pinged at once, so a new node knows the whole cluster within a few round
    /// trips rather than heartbeats.
    fn ping(self: &Arc<Self>, id: NodeId) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let connected = cluster
                .lock()
                .conns
                .get(&id)
                .is_some_and(|c| !c.is_closed());
            if !connected && !cluster.lock().members.may_dial(&id) {
                return;
            }
            match cluster.call(id, Request::Ping).await {
                Ok(Response::Pong { members, departed }) => {
                    let new: Vec<NodeId> = {
                        let mut state = cluster.lock();
                        state.members.answered(&id, &cluster.timeouts);
                        for d in departed.into_iter().take(MAX_DEPARTURES) {
                            state.members.departed_elsewhere(d);
                        }
                        // Only so many new names from one answer: a member's list full of
                        // fakes cannot flood the table (and the dialling).
                        let mut new = Vec::new();
                        for info in members.into_iter().filter(|i| i.id != cluster.me) {
                            let id = info.id;
                            if new.len() < MAX_LEARNT_PER_ANSWER
                                && state.members.learn_from_peer(info, cluster.forget_after())
                            {
                                new.push(id);
                            }
                        }
                        new
                    };
                    for n in new {
                        cluster.ping(n);
                    }
                }
                Ok(Response::Failed { message, .. }) => {
                    // A member that is closing, or a bug: either way not an answer.
                    cluster.lock().members.failed(&id);
                    tracing::debug!(peer = %id, message, "a ping was refused");
                }
                Ok(other) => tracing::warn!(peer = %id, ?other, "unexpected answer to a ping"),
                Err(e) => tracing::debug!(peer = %id, error = %e, "heartbeat failed"),
            }
        });
    }

    /// Tells every present member that this node departs (for good, or until it opens
    /// again), so that they stop counting it as an owner now rather than after `dead_after`.
    /// Returns how many members acknowledged; those that did not will find out by heartbeat.
    pub async fn announce_departure(self: &Arc<Self>, permanent: bool) -> usize {
        // Every member that may come back, those departing now too: one that closes at the
        // same moment must hear of this departure, or it takes this node for lost.
        let members = self.lock().members.present();
        let mut asks = tokio::task::JoinSet::new();
        for m in members {
            let cluster = self.clone();
            asks.spawn(async move {
                matches!(
                    cluster.call(m.id, Request::Depart { permanent }).await,
                    Ok(Response::Stored)
                )
            });
        }
        let mut acked = 0;
        while let Some(joined) = asks.join_next().await {
            acked += usize::from(joined.unwrap_or(false));
        }
        acked
    }

    /// Whether the members changed within the change window, and how many joined (see
    /// `Members::recent_change`). This node's own start counts as a join for a member.
    pub fn recent_change(&self) -> (bool, usize) {
        let (changed, mut joins) = self
            .lock()
            .members
            .recent_change(&self.timeouts, self.change_window);
        if self.is_member() && self.started.elapsed() < self.change_window {
            joins += 1;
        }
        (changed || joins > 0, joins)
    }

    /// Whether this node started less than `d` ago.
    pub fn started_within(&self, d: Duration) -> bool {
        self.started.elapsed() < d
    }

    /// See `Members::unreachable`.
    pub fn unreachable(&self) -> usize {
        self.lock().members.unreachable(&self.timeouts)
    }

    /// See `Members::lost_within`.
    pub fn lost_within(&self, window: Duration) -> bool {
        self.lock().members.lost_within(&self.timeouts, window)
    }

    /// See `Members::missing_within`.
    pub fn missing_within(&self, window: Duration) -> bool {
        self.lock().members.missing_within(&self.timeouts, window)
    }

    /// Members known, and how many of them are live.
    pub fn known_and_live(&self) -> (usize, usize) {
        let state = self.lock();
        (
            state.members.all().len(),
            state.members.live(&self.timeouts).len(),
        )
    }

    /// If every bootstrap address has refused this node's proof of the secret: why.
    pub fn refused_by_all(&self) -> Option<String> {
        let state = self.lock();
        let all = !self.bootstrap.is_empty()
            && self
                .bootstrap
                .iter()
                .all(|a| state.refused_by.contains_key(a));
        all.then(|| {
            self.bootstrap
                .iter()
                .map(|a| format!("{a}: {}", state.refused_by[a]))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Answers pings here (with this node's view of the members) and passes the rest on.
struct Dispatch {
    cluster: Weak<Cluster>,
    inner: Arc<dyn Handler>,
}

impl Handler for Dispatch {
    fn handle(&self, from: &Hello, request: Request) -> BoxFuture<Response> {
        match (request, self.cluster.upgrade()) {
            (Request::Ping, Some(cluster)) => {
                let mut members = cluster.peers();
                members.extend(cluster.my_info());
                members.retain(|m| m.id != from.node);
                members.truncate(MAX_MEMBERS);
                let departed = cluster.lock().members.departures(MAX_DEPARTURES);
                Box::pin(async move { Response::Pong { members, departed } })
            }
            (Request::Depart { permanent }, Some(cluster)) => {
                let response = if from.is_member() {
                    tracing::info!(peer = %from.node, permanent, "a member departs");
                    cluster.lock().members.depart(&from.node, permanent);
                    Response::Stored
                } else {
                    Response::Failed {
                        kind: FailureKind::Refused,
                        message: "only a member departs".into(),
                    }
                };
                Box::pin(async move { response })
            }
            (request, _) => self.inner.handle(from, request),
        }
    }
}

/// Refused sockets and failed accepts: logged at most every 10 s (see `Quiet`).
static REFUSED: Quiet = Quiet::new(Duration::from_secs(10));
static ACCEPT_FAILED: Quiet = Quiet::new(Duration::from_secs(10));

async fn accept_loop(
    cluster: Weak<Cluster>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let admission = Admission::shared();
    // Accept errors (out of descriptors, mostly) back off, doubling to a second.
    let mut backoff = Duration::from_millis(10);
    loop {
        // Only with room for one more socket in the handshake: the descriptors held never
        // pass the budget, and sockets left waiting stay in the kernel's queue.
        let accepted = tokio::select! {
            a = async {
                admission.room().await;
                listener.accept().await
            } => a,
            _ = stop.changed() => return,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                ACCEPT_FAILED.warn(|n| tracing::warn!(error = %e, not_logged = n, "accept failed"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let Some(c) = cluster.upgrade() else { return };
        // Its place is taken before the next accept, so `room` counts it.
        let (place, evicted) = admission.pending(from.ip());
        let admission = admission.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let shake = async {
                // A socket that has spoken is evicted after the silent ones.
                let mut first = [0u8; 1];
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => place.heard(),
                    Ok(Ok(_)) => return Err(NetError::Closed),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(NetError::Timeout("in the handshake")),
                }
                let (r, w) = stream.into_split();
                handshake(
                    r,
                    BufWriter::with_capacity(SOCKET_BUFFER, w),
                    &c.key,
                    &c.identity,
                    c.role.clone(),
                    false,
                )
                .await
            };
            let session = tokio::select! {
                s = shake => s,
                _ = evicted => Err(NetError::Protocol("evicted by newer sockets (too many \
                                                       unfinished handshakes)".into())),
            };
            drop(place);
            let session = match session {
                Ok(s) => s,
                Err(e) => {
                    REFUSED.warn(|n| {
                        tracing::warn!(%from, reason = %e, not_logged = n, "refused a connection")
                    });
                    return;
                }
            };
            let Some(place) = admission.session(from.ip(), session.peer.is_member()) else {
                REFUSED.warn(
                    |n| tracing::warn!(%from, not_logged = n, "refused a session: too many open"),
                );
                return; // dropping the session closes the socket
            };
            let conn = Conn::spawn(session, c.dispatcher(), c.clock.clone());
            conn.tie(Box::new(place));
            c.adopt(conn.peer.clone(), conn);
        });
    }
}

async fn heartbeat_loop(cluster: Weak<Cluster>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        match cluster.upgrade() {
            Some(c) => c.tick(),
            None => return,
        }
    }
}

/// The address to advertise for a listener bound to `bound`.
async fn advertised(bound: SocketAddr, config: &ClusterConfig) -> String {
    if let Some(a) = &config.advertise {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    // Which local address routes to the first peer? A connected UDP socket says, without
    // sending anything.
    let mut ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if let Some(peer) = config.peers.first() {
        if let Ok(sock) = tokio::net::UdpSocket::bind("0.0.0.0:0").await {
            if sock.connect(peer).await.is_ok() {
                if let Ok(local) = sock.local_addr() {
                    ip = local.ip();
                }
            }
        }
    }
    SocketAddr::new(ip, bound.port()).to_string()
}
