//! How a node is set up: `Config`, its defaults and checks, and the options of one store.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::maintain::Maintenance;
use crate::cluster::membership::Timeouts;
use crate::crypto::KEY_LEN;
use crate::engine::path::{PathTransform, Sharded};
use crate::error::{Error, Result};

pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

/// How long after members change reads ask beyond the current owners: the time repair
/// usually needs to bring the new owners up to date (two passes), at least a minute.
pub(super) fn change_window(config: &Config) -> Duration {
    (config.maintenance.repair_interval * 2).max(Duration::from_secs(60))
}
pub const MIN_CHUNK_SIZE: usize = 64;
/// Large enough for throughput, small enough that a chunk (plus IV) always fits in one
/// network frame later.
pub const MAX_CHUNK_SIZE: usize = 8 << 20;
/// Chunks of at most this many stored bytes are packed into segment files by default.
pub const DEFAULT_SEGMENT_MAX: usize = 256 << 10;
/// The largest `segment_max`: 1 MiB of plaintext plus an IV.
pub const MAX_SEGMENT_MAX: usize = crate::engine::segments::MAX_RECORD;

/// How a node is set up. Build with `Config::new(root)` and change fields; new options get
/// defaults, so code written against this struct keeps compiling.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The storage root; created if missing. One node per root at a time.
    pub root: PathBuf,
    /// The 32-byte data key. `None`: a member (or standalone node) uses the one kept in the
    /// root, made on first open, so only this node can read what it encrypts; a client holds
    /// none (it keeps nothing), and then writes only plain values, unsealed.
    pub data_key: Option<[u8; KEY_LEN]>,
    /// Accept plain values and tombstones whose manifest is not sealed with this node's data
    /// key (written by a holder of only the cluster secret, or of another data key). Off by
    /// default: such a manifest could replace or delete a value of this key's holders.
    pub accept_unsealed: bool,
    /// The cluster secret. `None`: use the one kept in the root (a cluster of one).
    pub secret: Option<Vec<u8>>,
    /// Plaintext bytes per chunk.
    pub chunk_size: usize,
    /// Chunks of at most this many stored bytes are packed into segment files (see
    /// DESIGN.md §2); larger ones are a file each, where their own bytes dominate the cost of
    /// a file. 0 keeps every chunk in a file of its own. At most `MAX_SEGMENT_MAX`.
    pub segment_max: usize,
    /// Where chunk files go under the root.
    pub transform: Arc<dyn PathTransform>,
    /// Address to listen on for peers (`host:port`, port 0 for any). With `None`, no `peers`
    /// and `client` false, the node is standalone: no network at all.
    pub listen: Option<String>,
    /// The address peers should dial, if not the one `listen` binds (see `ClusterConfig`).
    pub advertise: Option<String>,
    /// Bootstrap peers (`host:port`); the rest of the cluster is learnt from them.
    pub peers: Vec<String>,
    /// Copies kept of every chunk and manifest, capped by the number of live members.
    pub replicas: usize,
    /// Erasure coding for values stored without a policy of their own (`StoreOptions`):
    /// each chunk kept as k data + m parity shards on k + m members, instead of `replicas`
    /// copies. `None`: replicas. Needs a cluster of at least k + m live members.
    pub erasure: Option<Erasure>,
    /// Shards of a chunk that must be durable before an erasure-coded write is
    /// acknowledged: k to k + m (`None`: k + m - 1, see DESIGN.md §"Erasure coding").
    pub erasure_write_quorum: Option<usize>,
    /// A failure-domain label (a rack, a region); owners are spread over zones.
    pub zone: Option<String>,
    /// Join as a client: read and write through the members, never listen, never own data.
    pub client: bool,
    /// Heartbeat-based failure detection.
    pub timeouts: Timeouts,
    /// Owners that must have a write durably before it is acknowledged (`None`: a majority
    /// of the owners). With `write_quorum + read_quorum > replicas` every read sees every
    /// acknowledged write.
    pub write_quorum: Option<usize>,
    /// Owners a manifest read waits for (`None`: a majority).
    pub read_quorum: Option<usize>,
    /// Repair, scrubbing and garbage collection (cluster members only).
    pub maintenance: Maintenance,
    /// How long `close` may take to hand what this node holds to the owners the cluster
    /// has without it (and `leave` may go without progress doing so). Past it, `close`
    /// closes anyway and says what was not handed off.
    pub drain_timeout: Duration,
    /// Whether a peer (`dstore leave --peer`, over a session that proved the cluster secret)
    /// may ask this member to leave the cluster for good. Off by default: an application
    /// that embeds a member decides itself when it leaves (`Node::leave`); `dstore node`
    /// turns it on.
    pub leave_on_request: bool,
    /// How far ahead of this node's wall clock a peer's clock, or a version it sends, may be
    /// before it is refused (and logged): a clock far in the future would otherwise spread to
    /// every node and stamp versions nothing later could replace. Default 60 s.
    pub max_clock_drift: Duration,
    /// Milliseconds added to this node's wall clock. For tests of clock skew only.
    #[doc(hidden)]
    pub clock_offset_ms: i64,
}

impl Config {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            data_key: None,
            accept_unsealed: false,
            secret: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            segment_max: DEFAULT_SEGMENT_MAX,
            transform: Arc::new(Sharded),
            listen: None,
            advertise: None,
            peers: Vec::new(),
            replicas: 3,
            erasure: None,
            erasure_write_quorum: None,
            zone: None,
            client: false,
            timeouts: Timeouts::default(),
            write_quorum: None,
            read_quorum: None,
            maintenance: Maintenance::default(),
            drain_timeout: Duration::from_secs(30),
            leave_on_request: false,
            max_clock_drift: Duration::from_millis(crate::version::MAX_CLOCK_DRIFT_MS),
            clock_offset_ms: 0,
        }
    }
}

impl Config {
    /// Checks every rule a configuration must follow, with a message naming the setting;
    /// `Node::open` calls it, so every surface (C, Python, the command) gets the same rules.
    pub fn validate(&self) -> Result<()> {
        let config = self;
        let bad = |why: String| Err(Error::InvalidArgument(why));
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&config.chunk_size) {
            return Err(Error::InvalidArgument(format!(
                "chunk size must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes, not {}",
                config.chunk_size
            )));
        }
        if config.segment_max > MAX_SEGMENT_MAX {
            return bad(format!(
                "segment_max must be at most {MAX_SEGMENT_MAX} bytes, not {}",
                config.segment_max
            ));
        }
        if config.secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(Error::InvalidArgument("the cluster secret is empty".into()));
        }
        if config.client && config.listen.is_some() {
            return Err(Error::InvalidArgument("a client does not listen".into()));
        }
        if !config.client && config.listen.is_none() && !config.peers.is_empty() {
            return Err(Error::InvalidArgument(
                "a member needs a listen address (or join as a client)".into(),
            ));
        }
        if !(1..=255).contains(&config.replicas) {
            return Err(Error::InvalidArgument("replicas must be 1 to 255".into()));
        }
        for (name, q) in [
            ("write quorum", config.write_quorum),
            ("read quorum", config.read_quorum),
        ] {
            if q.is_some_and(|q| q == 0 || q > config.replicas) {
                return Err(Error::InvalidArgument(format!(
                    "the {name} must be 1 to replicas ({})",
                    config.replicas
                )));
            }
        }
        if let Some(e) = config.erasure {
            e.validate()?;
            if config.listen.is_none() && !config.client {
                return bad(format!(
                    "erasure coding ({e}) needs a cluster; a standalone node keeps one copy"
                ));
            }
        }
        if let Some(q) = config.erasure_write_quorum {
            let e = config.erasure.ok_or_else(|| {
                Error::InvalidArgument("an erasure write quorum needs an erasure policy".into())
            })?;
            if !(e.k()..=e.n()).contains(&q) {
                return bad(format!(
                    "the erasure write quorum must be k to k + m ({} to {}) for {e}, not {q}",
                    e.k(),
                    e.n()
                ));
            }
        }
        config.timeouts.validate()?;
        if config.drain_timeout.is_zero() {
            return bad("drain_timeout must be longer than 0 seconds".into());
        }
        let addrs = config
            .listen
            .iter()
            .chain(&config.advertise)
            .chain(&config.peers);
        for addr in addrs {
            let shaped = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !shaped {
                return bad(format!("{addr:?} is not an address (host:port)"));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Config")
            .field("root", &self.root)
            .field("data_key", &self.data_key.map(|_| "<set>"))
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("chunk_size", &self.chunk_size)
            .field("transform", &self.transform)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("peers", &self.peers)
            .field("replicas", &self.replicas)
            .field("erasure", &self.erasure)
            .field("erasure_write_quorum", &self.erasure_write_quorum)
            .field("zone", &self.zone)
            .field("client", &self.client)
            .field("timeouts", &self.timeouts)
            .field("write_quorum", &self.write_quorum)
            .field("read_quorum", &self.read_quorum)
            .field("maintenance", &self.maintenance)
            .field("drain_timeout", &self.drain_timeout)
            .field("leave_on_request", &self.leave_on_request)
            .field("max_clock_drift", &self.max_clock_drift)
            .finish()
    }
}

/// An erasure-coding policy: every chunk cut into `data` shards plus `parity` shards, any
/// `data` of which give it back (`erasure.rs`). Written `4+2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub data: u8,
    pub parity: u8,
}

impl Erasure {
    /// A checked policy.
    pub fn new(data: usize, parity: usize) -> Result<Self> {
        crate::erasure::validate(data, parity)?;
        Ok(Self {
            data: data as u8,
            parity: parity as u8,
        })
    }

    pub fn validate(&self) -> Result<()> {
        crate::erasure::validate(self.k(), usize::from(self.parity))
    }

    pub fn k(&self) -> usize {
        usize::from(self.data)
    }

    /// Parity shards.
    pub fn m(&self) -> usize {
        usize::from(self.parity)
    }

    pub fn n(&self) -> usize {
        usize::from(self.data) + usize::from(self.parity)
    }
}

impl fmt::Display for Erasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.data, self.parity)
    }
}

impl std::str::FromStr for Erasure {
    type Err = Error;

    /// `k+m`, as `4+2`.
    fn from_str(s: &str) -> Result<Self> {
        let parsed = s
            .split_once('+')
            .and_then(|(k, m)| Some((k.trim().parse().ok()?, m.trim().parse().ok()?)));
        match parsed {
            Some((k, m)) => Self::new(k, m),
            None => Err(Error::InvalidArgument(format!(
                "an erasure policy is written k+m (as 4+2), not {s:?}"
            ))),
        }
    }
}

/// How one value is kept across the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Redundancy {
    /// The node's default (`Config::erasure`, else replicas).
    #[default]
    Default,
    /// `Config::replicas` full copies of every chunk.
    Replicas,
    /// Erasure-coded (a value too small to be worth it is still replicated, see
    /// `ERASURE_MIN_SHARD`).
    Erasure(Erasure),
}

/// An erasure-coded value's shards are at least this long: a value smaller than k of them
/// is replicated instead (its manifest says so), since each shard costs a request and a
/// place on disk as a whole copy would.
pub const ERASURE_MIN_SHARD: usize = 4 << 10;

/// Options of one `store` call.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// Encrypt the value under the data key (default). Plaintext values are still
    /// authenticated and checked by hash.
    pub encrypt: bool,
    /// Replicas or erasure coding; default: the node's.
    pub redundancy: Redundancy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            encrypt: true,
            redundancy: Redundancy::Default,
        }
    }
}
