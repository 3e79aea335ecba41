//! Where a command's settings come from, in one place: flags, then the TOML file named by
//! `--config`, then defaults. Secrets never come from flags (they would show in `ps`): the
//! cluster secret from `DSTORE_SECRET` or `--secret-file`, the data key (64 hex digits) from
//! `DSTORE_KEY` or `--key-file`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AnyResult;

/// The settings a TOML file may hold; every field is optional and a flag overrides it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub root: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    #[serde(default)]
    pub peers: Vec<String>,
    pub replicas: Option<usize>,
    /// The erasure-coding policy of values stored without one of their own, `"4+2"`.
    pub erasure: Option<String>,
    pub zone: Option<String>,
    /// Where `/metrics` and `/health` are served over HTTP, HOST:PORT.
    pub metrics_listen: Option<String>,
    pub key_file: Option<PathBuf>,
    pub secret_file: Option<PathBuf>,
    /// The `[tuning]` table: the same settings as the tuning flags.
    #[serde(default)]
    pub tuning: Tuning,
}

/// Quorums, failure detection and background work of a node: flags, or a `[tuning]` table
/// in the config file with the same names (`write_quorum = 2`). Unset: the library defaults.
#[derive(clap::Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Owners that must store a write before it is acknowledged [default: a majority].
    #[arg(long)]
    pub write_quorum: Option<usize>,
    /// Owners a read waits for [default: a majority].
    #[arg(long)]
    pub read_quorum: Option<usize>,
    /// Shards of an erasure-coded chunk that must be durable before a write is acknowledged,
    /// k to k+m [default: k+m-1].
    #[arg(long)]
    pub erasure_write_quorum: Option<usize>,
    /// A member silent this long is suspect [default: 3000].
    #[arg(long, value_name = "MS")]
    pub suspect_after_ms: Option<u64>,
    /// A member silent this long is dead, and its data is served by others [default: 10000].
    #[arg(long, value_name = "MS")]
    pub dead_after_ms: Option<u64>,
    /// How long one request to a peer may take [default: 10000].
    #[arg(long, value_name = "MS")]
    pub call_timeout_ms: Option<u64>,
    /// Period of the repair pass [default: 30000].
    #[arg(long, value_name = "MS")]
    pub repair_interval_ms: Option<u64>,
    /// Bytes per second repair may send, 0 for no cap [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    pub repair_rate: Option<u64>,
    /// A full scrub starts this often [default: 3600000].
    #[arg(long, value_name = "MS")]
    pub scrub_interval_ms: Option<u64>,
    /// Bytes per second the scrubber reads, 0 for none [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub scrub_rate: Option<u64>,
    /// How long a chunk nothing names is kept [default: 3600000].
    #[arg(long, value_name = "MS")]
    pub gc_grace_ms: Option<u64>,
    /// How long a delete's tombstone is kept [default: 86400000].
    #[arg(long, value_name = "MS")]
    pub tombstone_grace_ms: Option<u64>,
    /// How long stopping may take to hand what this node holds to the other
    /// owners (and leaving may go without progress) [default: 30000].
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// How far ahead of this node's clock a peer's clock (or a version it sends) may be
    /// before it is refused [default: 3600000].
    #[arg(long, value_name = "MS")]
    pub max_clock_drift_ms: Option<u64>,
}

impl Tuning {
    /// Applies what is set here, else in `file`, to `c`.
    pub fn apply(&self, file: &Tuning, c: &mut dstore_core::Config) {
        use std::time::Duration;
        let ms = Duration::from_millis;
        if let Some(q) = self.write_quorum.or(file.write_quorum) {
            c.write_quorum = Some(q);
        }
        if let Some(q) = self.read_quorum.or(file.read_quorum) {
            c.read_quorum = Some(q);
        }
        if let Some(q) = self.erasure_write_quorum.or(file.erasure_write_quorum) {
            c.erasure_write_quorum = Some(q);
        }
        let t = &mut c.timeouts;
        let m = &mut c.maintenance;
        for (flag, from_file, field) in [
            (
                self.suspect_after_ms,
                file.suspect_after_ms,
                &mut t.suspect_after,
            ),
            (self.dead_after_ms, file.dead_after_ms, &mut t.dead_after),
            (self.call_timeout_ms, file.call_timeout_ms, &mut t.call),
            (
                self.repair_interval_ms,
                file.repair_interval_ms,
                &mut m.repair_interval,
            ),
            (
                self.scrub_interval_ms,
                file.scrub_interval_ms,
                &mut m.scrub_interval,
            ),
            (self.gc_grace_ms, file.gc_grace_ms, &mut m.gc_grace),
            (
                self.drain_timeout_ms,
                file.drain_timeout_ms,
                &mut c.drain_timeout,
            ),
            (
                self.max_clock_drift_ms,
                file.max_clock_drift_ms,
                &mut c.max_clock_drift,
            ),
            (
                self.tombstone_grace_ms,
                file.tombstone_grace_ms,
                &mut m.tombstone_grace,
            ),
        ] {
            if let Some(v) = flag.or(from_file) {
                *field = ms(v);
            }
        }
        for (flag, from_file, field) in [
            (self.repair_rate, file.repair_rate, &mut m.repair_rate),
            (self.scrub_rate, file.scrub_rate, &mut m.scrub_rate),
        ] {
            if let Some(v) = flag.or(from_file) {
                *field = v;
            }
        }
    }
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> AnyResult<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config {}: {e}", path.display()))?;
        Ok(toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?)
    }
}

/// Where the secrets are, as flags.
#[derive(clap::Args, Debug, Default)]
pub struct SecretArgs {
    /// File holding the data key as 64 hex digits (else DSTORE_KEY).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// File holding the cluster secret (else DSTORE_SECRET).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Read plain values and deletes whose manifest is not sealed with the data key (written
    /// by a holder of only the cluster secret, or of another data key). Off: they are refused.
    #[arg(long)]
    pub accept_unsealed: bool,
}

fn from_file_or_env(file: Option<&Path>, var: &str) -> AnyResult<Option<String>> {
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        )),
        None => Ok(std::env::var(var).ok().filter(|v| !v.is_empty())),
    }
}

/// The data key, if one was given.
pub fn data_key(args: &SecretArgs, file: &FileConfig) -> AnyResult<Option<[u8; 32]>> {
    let path = args.key_file.as_deref().or(file.key_file.as_deref());
    let Some(hex_key) = from_file_or_env(path, "DSTORE_KEY")? else {
        return Ok(None);
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut key)
        .map_err(|_| "the data key must be 64 hex digits")?;
    Ok(Some(key))
}

/// The cluster secret, if one was given.
pub fn secret(args: &SecretArgs, file: &FileConfig) -> AnyResult<Option<Vec<u8>>> {
    let path = args.secret_file.as_deref().or(file.secret_file.as_deref());
    Ok(from_file_or_env(path, "DSTORE_SECRET")?.map(String::into_bytes))
}

/// A redundancy policy as written on the command line or in a config file: `K+M` (erasure
/// coding, as `4+2`) or `replicas`.
pub fn redundancy(s: &str) -> AnyResult<dstore_core::Redundancy> {
    if s.trim() == "replicas" {
        return Ok(dstore_core::Redundancy::Replicas);
    }
    Ok(dstore_core::Redundancy::Erasure(s.parse()?))
}

/// The node-wide erasure policy of a flag, else a config file's: `None` for replicas.
pub fn erasure(flag: Option<&str>, file: &FileConfig) -> AnyResult<Option<dstore_core::Erasure>> {
    match flag
        .or(file.erasure.as_deref())
        .map(redundancy)
        .transpose()?
    {
        Some(dstore_core::Redundancy::Erasure(e)) => Ok(Some(e)),
        _ => Ok(None),
    }
}
