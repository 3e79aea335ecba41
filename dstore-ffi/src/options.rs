//! `dstore_options`: how a node is set up, built through setter functions on an opaque object
//! so that adding an option later adds a function and never changes a struct layout that
//! compiled programs depend on (librdkafka's `rd_kafka_conf_set` style).

use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use dstore_core::cluster::membership::Timeouts;
use dstore_core::{Config, Maintenance, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

use crate::args::{self, free_handle, handle_mut, into_handle};
use crate::boundary::boundary;
use crate::status::{dstore_status, Failure, Result};

/// Length of a data key in bytes.
const DATA_KEY_LEN: usize = 32;

/// Settings for dstore_new(). Create with dstore_options_new(), change with the
/// dstore_options_set_* functions, free with dstore_options_free(). dstore_new() copies what it
/// needs, so one options object can open several nodes and be freed at any time after.
/// Not thread-safe: use an options object from one thread at a time.
pub struct dstore_options {
    /// The storage root. Required, with no default: a library should not pick a directory
    /// for its caller.
    root: Option<PathBuf>,
    /// `None`: the key kept in the root (made on first open), so only this root reads what it
    /// encrypts.
    data_key: Option<[u8; DATA_KEY_LEN]>,
    /// `None`: the secret kept in the root (a cluster of one).
    secret: Option<Vec<u8>>,
    /// Plaintext bytes per chunk.
    chunk_size: usize,
    /// Where a cluster member listens for peers. With `None`, no peers and `client` false, the
    /// node is standalone (no network).
    listen: Option<String>,
    /// The address peers dial, when it is not the one `listen` binds.
    advertise: Option<String>,
    /// Bootstrap peers, in the order added.
    peers: Vec<String>,
    /// `None`: the core's default (3).
    replicas: Option<usize>,
    /// `None`: replicas (the core's default).
    erasure: Option<dstore_core::Erasure>,
    /// A failure-domain label.
    zone: Option<String>,
    /// Join as a client (no listening, no data owned).
    client: bool,
    /// `None`: a majority of the owners (the core's default).
    write_quorum: Option<usize>,
    read_quorum: Option<usize>,
    /// Failure detection; the core's defaults until set.
    timeouts: Timeouts,
    /// Repair, scrubbing and garbage collection; the core's defaults until set.
    maintenance: Maintenance,
    /// `None`: the core's default (30 s).
    drain_timeout: Option<Duration>,
    accept_unsealed: bool,
}

impl dstore_options {
    /// The core configuration these options describe.
    pub(crate) fn config(&self) -> Result<Config> {
        let root = self.root.clone().ok_or_else(|| {
            Failure::invalid("no storage root set; call dstore_options_set_root first")
        })?;
        let mut config = Config::new(root);
        config.data_key = self.data_key;
        config.secret = self.secret.clone();
        config.chunk_size = self.chunk_size;
        config.listen = self.listen.clone();
        config.advertise = self.advertise.clone();
        config.peers = self.peers.clone();
        config.erasure = self.erasure;
        if let Some(replicas) = self.replicas {
            config.replicas = replicas;
        }
        config.zone = self.zone.clone();
        // The core refuses a client that listens, and a member without a listen address, at
        // open: those depend on two options, so dstore_new reports them, not a setter.
        config.client = self.client;
        // A quorum larger than `replicas` also depends on two options: dstore_new reports it.
        config.write_quorum = self.write_quorum;
        config.read_quorum = self.read_quorum;
        config.timeouts = self.timeouts;
        config.maintenance = self.maintenance;
        if let Some(d) = self.drain_timeout {
            config.drain_timeout = d;
        }
        config.accept_unsealed = self.accept_unsealed;
        Ok(config)
    }
}

/// A new options object with the defaults: no root (one must be set), the data key and
/// cluster secret kept in the root, 1 MiB chunks, standalone (no network). The caller owns it
/// and frees it with dstore_options_free(). Returns NULL only if dstore has a bug (see
/// DSTORE_PANIC).
#[no_mangle]
pub extern "C" fn dstore_options_new() -> *mut dstore_options {
    boundary("dstore_options_new", || {
        into_handle(dstore_options {
            root: None,
            data_key: None,
            secret: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            listen: None,
            advertise: None,
            peers: Vec::new(),
            replicas: None,
            erasure: None,
            zone: None,
            client: false,
            write_quorum: None,
            read_quorum: None,
            timeouts: Timeouts::default(),
            maintenance: Maintenance::default(),
            drain_timeout: None,
            accept_unsealed: false,
        })
    })
}

/// Sets the storage root: a directory, created if missing, that one node at a time may open.
/// `path` is a NUL-terminated UTF-8 string, copied (the caller keeps it). Required.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_root(
    opts: *mut dstore_options,
    path: *const c_char,
) -> dstore_status {
    boundary("dstore_options_set_root", || -> Result {
        // SAFETY (for every `args` call in this file): the header states these pointer
        // contracts; `args` checks everything else.
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let path = unsafe { args::string(path, "path") }?;
        if path.is_empty() {
            return Err(Failure::invalid("`path` is empty"));
        }
        opts.root = Some(PathBuf::from(path));
        Ok(())
    })
}

/// Sets the 32-byte data key that encrypts values. Nodes given the same data key read each
/// other's encrypted values. Without one, the key kept in the root is used (made on first
/// open). `key` points to `key_len` bytes, copied; `key_len` must be 32.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_data_key(
    opts: *mut dstore_options,
    key: *const u8,
    key_len: usize,
) -> dstore_status {
    boundary("dstore_options_set_data_key", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let key = unsafe { args::bytes(key, key_len, "key") }?;
        let key: [u8; DATA_KEY_LEN] = key.try_into().map_err(|_| {
            Failure::invalid(format!(
                "`key_len` must be {DATA_KEY_LEN} (a data key is {DATA_KEY_LEN} bytes), not {key_len}"
            ))
        })?;
        opts.data_key = Some(key);
        Ok(())
    })
}

/// Sets the cluster secret, shared by every node of a cluster: `secret_len` bytes at `secret`,
/// copied, at least one byte. A root remembers its cluster: opening it with another secret
/// fails with DSTORE_WRONG_KEY. Without one, the secret kept in the root is used.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_secret(
    opts: *mut dstore_options,
    secret: *const u8,
    secret_len: usize,
) -> dstore_status {
    boundary("dstore_options_set_secret", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let secret = unsafe { args::bytes(secret, secret_len, "secret") }?;
        if secret.is_empty() {
            return Err(Failure::invalid(
                "`secret` is empty; a cluster secret needs bytes",
            ));
        }
        opts.secret = Some(secret.to_vec());
        Ok(())
    })
}

/// Sets how many plaintext bytes go into each chunk: 64 to 8388608 (8 MiB); 1048576 by
/// default. Memory use per call is a few chunks, whatever the size of the value.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_chunk_size(
    opts: *mut dstore_options,
    chunk_size: usize,
) -> dstore_status {
    boundary("dstore_options_set_chunk_size", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        // Checked here too (the core checks at open) so that the error points at this call.
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Failure::invalid(format!(
                "`chunk_size` must be {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE}, not {chunk_size}"
            )));
        }
        opts.chunk_size = chunk_size;
        Ok(())
    })
}

/// Makes the node a cluster member that listens for peers on `addr`, "host:port"
/// (NUL-terminated UTF-8, copied), e.g. "0.0.0.0:7000", or "127.0.0.1:0" for any free port
/// (dstore_node_addr() then says which). Not with dstore_options_set_client().
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_listen(
    opts: *mut dstore_options,
    addr: *const c_char,
) -> dstore_status {
    boundary("dstore_options_set_listen", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let addr = unsafe { address(addr, "addr", Port::MayBeZero) }?;
        opts.listen = Some(addr.to_owned());
        Ok(())
    })
}

/// Sets the address peers dial to reach this member, "host:port" (NUL-terminated UTF-8,
/// copied), when it is not the one it listens on (behind NAT, or listening on 0.0.0.0). By
/// default: the listen address, with 0.0.0.0 replaced by the local address that routes to the
/// first peer.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_advertise(
    opts: *mut dstore_options,
    addr: *const c_char,
) -> dstore_status {
    boundary("dstore_options_set_advertise", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let addr = unsafe { address(addr, "addr", Port::NonZero) }?;
        opts.advertise = Some(addr.to_owned());
        Ok(())
    })
}

/// Adds a bootstrap peer, "host:port" of a cluster member (NUL-terminated UTF-8, copied). Call
/// once per peer; one live member is enough, as the rest are learnt from it. Peers cannot be
/// removed from an options object (make a new one).
#[no_mangle]
pub unsafe extern "C" fn dstore_options_add_peer(
    opts: *mut dstore_options,
    addr: *const c_char,
) -> dstore_status {
    boundary("dstore_options_add_peer", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let addr = unsafe { address(addr, "addr", Port::NonZero) }?;
        opts.peers.push(addr.to_owned());
        Ok(())
    })
}

/// Sets how many copies of every value a cluster keeps: 1 to 255, 3 by default, capped by the
/// number of live members. A standalone node keeps one.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_replicas(
    opts: *mut dstore_options,
    n: usize,
) -> dstore_status {
    boundary("dstore_options_set_replicas", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        // Checked here too (the core checks at open) so that the error points at this call.
        if !(1..=255).contains(&n) {
            return Err(Failure::invalid(format!("`n` must be 1 to 255, not {n}")));
        }
        opts.replicas = Some(n);
        Ok(())
    })
}

/// Keeps every value erasure-coded by default, instead of as replicas: each chunk cut into
/// `k` data shards and `m` parity shards on k + m members, any k of which give it back
/// (k >= 2, m >= 1, k + m <= 64). Needs a cluster of at least k + m live members; values too
/// small for shards of a few KiB stay replicated. Not set by default.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_erasure(
    opts: *mut dstore_options,
    k: usize,
    m: usize,
) -> dstore_status {
    boundary("dstore_options_set_erasure", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let policy =
            dstore_core::Erasure::new(k, m).map_err(|e| Failure::invalid(e.to_string()))?;
        opts.erasure = Some(policy);
        Ok(())
    })
}

/// Sets this member's zone, a failure-domain label such as a rack or a region
/// (NUL-terminated UTF-8, copied, not empty): copies of a value go to as many zones as
/// possible. None by default.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_zone(
    opts: *mut dstore_options,
    zone: *const c_char,
) -> dstore_status {
    boundary("dstore_options_set_zone", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let zone = unsafe { args::string(zone, "zone") }?;
        if zone.is_empty() {
            return Err(Failure::invalid("`zone` is empty"));
        }
        opts.zone = Some(zone.to_owned());
        Ok(())
    })
}

/// With `client` true, the node joins the cluster of its peers (dstore_options_add_peer) as a
/// client: it reads and writes through the members, but never listens and never holds the
/// cluster's data. dstore_new() refuses a client with a listen address. Call dstore_settle()
/// before the first request. False by default.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_client(
    opts: *mut dstore_options,
    client: bool,
) -> dstore_status {
    boundary("dstore_options_set_client", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.client = client;
        Ok(())
    })
}

/// Sets how many of a value's owners must have a write on disk before dstore_store() (and the
/// other writes) return: 1 to the replica count (dstore_options_set_replicas), or 0 for a
/// majority of the owners, the default. With a write quorum plus a read quorum larger than
/// the replica count, every read sees every acknowledged write. dstore_new() refuses a quorum
/// larger than the replica count with DSTORE_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_write_quorum(
    opts: *mut dstore_options,
    n: usize,
) -> dstore_status {
    boundary("dstore_options_set_write_quorum", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.write_quorum = quorum(n)?;
        Ok(())
    })
}

/// Sets how many of a value's owners a read waits for, to return the newest version: 1
/// to the replica count, or 0 for a majority of the owners, the default. dstore_new() refuses
/// a quorum larger than the replica count with DSTORE_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_read_quorum(
    opts: *mut dstore_options,
    n: usize,
) -> dstore_status {
    boundary("dstore_options_set_read_quorum", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.read_quorum = quorum(n)?;
        Ok(())
    })
}

/// Sets failure detection, in milliseconds: a member not heard from for `suspect_after_ms`
/// is suspect (it still owns data), one not heard from for `dead_after_ms` is dead (others
/// serve its data), and one request to a peer may take `call_ms` before that peer is skipped.
/// 0 keeps a value as it is (the defaults: 3000, 10000 and 10000). DSTORE_INVALID_ARGUMENT,
/// and nothing changed, if `dead_after_ms` would be shorter than `suspect_after_ms`.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_timeouts_ms(
    opts: *mut dstore_options,
    suspect_after_ms: u64,
    dead_after_ms: u64,
    call_ms: u64,
) -> dstore_status {
    boundary("dstore_options_set_timeouts_ms", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        let mut t = opts.timeouts;
        for (field, ms) in [
            (&mut t.suspect_after, suspect_after_ms),
            (&mut t.dead_after, dead_after_ms),
            (&mut t.call, call_ms),
        ] {
            if ms != 0 {
                *field = Duration::from_millis(ms);
            }
        }
        t.validate()?; // the core's rules, checked here too so the setter says which call erred
        opts.timeouts = t;
        Ok(())
    })
}

/// Sets how long, in milliseconds, dstore_close() of a cluster member may take to hand the
/// data it holds to the owners the cluster has without it (and dstore_leave() may go
/// without progress handing off everything it holds): 30000 by default. Past it the node
/// closes anyway and dstore_close() says so with DSTORE_UNAVAILABLE. 0 is
/// DSTORE_INVALID_ARGUMENT.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_drain_timeout_ms(
    opts: *mut dstore_options,
    timeout_ms: u64,
) -> dstore_status {
    boundary("dstore_options_set_drain_timeout_ms", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        if timeout_ms == 0 {
            return Err(Failure::invalid("the drain timeout must be at least 1 ms"));
        }
        opts.drain_timeout = Some(Duration::from_millis(timeout_ms));
        Ok(())
    })
}

/// With `accept` true, reads take plain values and deletes whose manifest is not sealed with
/// this node's data key (written by a holder of only the cluster secret, or of another data
/// key). False by default: such a read fails with DSTORE_INTEGRITY (no seal) or
/// DSTORE_WRONG_KEY (another key's), because anyone holding only the cluster secret could
/// otherwise replace or delete a value.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_accept_unsealed(
    opts: *mut dstore_options,
    accept: bool,
) -> dstore_status {
    boundary("dstore_options_set_accept_unsealed", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.accept_unsealed = accept;
        Ok(())
    })
}

/// Sets how often, in milliseconds, a cluster member checks that what it holds is on every
/// current owner, sending copies to owners that lack them and handing off what it no longer
/// owns (a pass also starts when the live members change). 30000 by default. 0 turns repair,
/// and with it garbage collection, off: meant only for tests. Only members repair.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_repair_interval_ms(
    opts: *mut dstore_options,
    interval_ms: u64,
) -> dstore_status {
    boundary("dstore_options_set_repair_interval_ms", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.maintenance.repair_interval = Duration::from_millis(interval_ms);
        Ok(())
    })
}

/// Sets the scrubber of a cluster member, which reads back every stored chunk and manifest
/// and replaces a corrupt one with a copy from another owner: a full scrub starts
/// `interval_ms` milliseconds after the previous one started (3600000 by default), reading at
/// most `rate_bytes_per_sec` bytes per second (16 MiB by default; 0 turns scrubbing off).
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_scrub(
    opts: *mut dstore_options,
    interval_ms: u64,
    rate_bytes_per_sec: u64,
) -> dstore_status {
    boundary("dstore_options_set_scrub", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.maintenance.scrub_interval = Duration::from_millis(interval_ms);
        opts.maintenance.scrub_rate = rate_bytes_per_sec;
        Ok(())
    })
}

/// Sets how long a cluster member keeps what is no longer needed, in milliseconds: a chunk
/// that no value names is removed once it has been unnamed for `gc_grace_ms` (3600000 by
/// default), and the record of a delete (a tombstone) is dropped after `tombstone_grace_ms`
/// (86400000 by default), which must be longer than any member may be away, or a value it
/// still holds could come back. 0 means at once.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_set_gc_grace_ms(
    opts: *mut dstore_options,
    gc_grace_ms: u64,
    tombstone_grace_ms: u64,
) -> dstore_status {
    boundary("dstore_options_set_gc_grace_ms", || -> Result {
        let opts = unsafe { handle_mut(opts, "opts") }?;
        opts.maintenance.gc_grace = Duration::from_millis(gc_grace_ms);
        opts.maintenance.tombstone_grace = Duration::from_millis(tombstone_grace_ms);
        Ok(())
    })
}

/// Frees an options object. NULL is ignored. Nodes opened with it are not affected.
#[no_mangle]
pub unsafe extern "C" fn dstore_options_free(opts: *mut dstore_options) {
    // SAFETY: the header requires `opts` to be NULL or from dstore_options_new, not yet freed.
    boundary("dstore_options_free", || unsafe { free_handle(opts) })
}

/// A quorum as C gives it: 0 for the default (a majority), else the count. Whether it fits the
/// replica count is checked by the core at open, when both are known.
fn quorum(n: usize) -> Result<Option<usize>> {
    if n > 255 {
        return Err(Failure::invalid(format!(
            "`n` must be 0 (a majority) or 1 to the replica count (at most 255), not {n}"
        )));
    }
    Ok((n != 0).then_some(n))
}

/// Whether a port of 0 ("any free port") makes sense for an address.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    MayBeZero,
    NonZero,
}

/// A "host:port" address, checked for its shape only (whether the host resolves is known when
/// the node binds or dials it), so that a typo fails at the setter rather than as a peer that
/// never answers.
///
/// # Safety
/// As for [`args::string`].
unsafe fn address<'a>(ptr: *const c_char, name: &str, port: Port) -> Result<&'a str> {
    let addr = unsafe { args::string(ptr, name) }?;
    let bad = |why: &str| {
        Failure::invalid(format!(
            "`{name}` must be host:port (e.g. 10.0.0.5:7000 or [::1]:7000), not {addr:?}: {why}"
        ))
    };
    let (host, number) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("an IPv6 host goes in brackets"));
    }
    match number.parse::<u16>() {
        Ok(0) if port == Port::NonZero => Err(bad("port 0 cannot be dialled")),
        Ok(_) => Ok(addr),
        Err(_) => Err(bad("the port is not a number from 0 to 65535")),
    }
}
