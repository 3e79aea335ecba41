//! `dstore_stats`: what a node reports about itself, as one flat C struct. Fields are only
//! ever added at its end, and callers pass the size they were compiled with, so a program built
//! against an older header keeps working with a newer library.

use dstore_core::Stats;

use crate::args::{handle, output};
use crate::boundary::boundary;
use crate::node::dstore_node;
use crate::status::{dstore_status, Failure, Result};

/// What a node holds, what it has done for callers, and the progress of its background work,
/// as filled in by dstore_node_stats(). Counters count from when the node was opened, except
/// `keys` and `chunks`. Only cluster members repair, scrub and collect: on a standalone node
/// the `repair_*`, `scrub_*` and `gc_*` fields stay 0, and on a client all of them but
/// `repair_read_repairs` (which counts repairs made by its own reads). New fields are only
/// ever added at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dstore_stats {
    /// Live keys held by this node.
    pub keys: u64,
    /// Distinct chunks held by this node (after deduplication).
    pub chunks: u64,
    /// Plaintext bytes stored through this handle.
    pub bytes_stored: u64,
    /// Plaintext bytes read through this handle.
    pub bytes_read: u64,
    /// Repair passes completed: checking that what this node holds is on every current owner.
    pub repair_passes: u64,
    /// Whether a repair pass is under way now.
    pub repair_running: bool,
    /// How long the last completed repair pass took, in milliseconds.
    pub repair_last_pass_ms: u64,
    /// Objects the current (or the last) repair pass has checked so far.
    pub repair_checked: u64,
    /// Chunks and manifests sent to owners that lacked them, and their bytes.
    pub repair_chunks_pushed: u64,
    pub repair_manifests_pushed: u64,
    pub repair_bytes_pushed: u64,
    /// Objects dropped here because this node no longer owns them and their owners have them.
    pub repair_handed_off: u64,
    /// Stale owners brought up to date during reads.
    pub repair_read_repairs: u64,
    /// Full scrubs completed (every stored object read back and checked).
    pub scrub_passes: u64,
    /// Bytes and objects the scrubber has checked.
    pub scrub_bytes: u64,
    pub scrub_objects: u64,
    /// Objects the scrubber found corrupt (set aside, never served), and how many of them were
    /// restored from another owner.
    pub scrub_bad: u64,
    pub scrub_restored: u64,
    /// Chunks that no value named, removed after their grace period.
    pub gc_chunks_collected: u64,
    /// Records of deletes (tombstones) dropped after their grace period.
    pub gc_tombstones_collected: u64,
    /// Whether the node is handing objects to the owners the cluster will have without it
    /// (closing, or leaving for good), how many objects that covers and has checked so far,
    /// copies sent and their bytes, and objects not confirmed on every owner after the last
    /// pass.
    pub drain_running: bool,
    pub drain_objects: u64,
    pub drain_checked: u64,
    pub drain_pushed: u64,
    pub drain_bytes: u64,
    pub drain_unconfirmed: u64,
    /// Erasure-coded shards this node made again from their siblings (repair, scrubbing),
    /// and the bytes of siblings it read to make them.
    pub repair_shards_rebuilt: u64,
    pub repair_rebuild_bytes_read: u64,
}

/// The size of the first version of `dstore_stats` (up to `gc_tombstones_collected`): the
/// smallest `stats_size` accepted. Each later version adds fields and is accepted at its own
/// size; this one never changes.
const FIRST_STATS_SIZE: usize = std::mem::offset_of!(dstore_stats, gc_tombstones_collected) + 8;
/// The size of the second version (up to `drain_unconfirmed`).
const DRAIN_STATS_SIZE: usize = std::mem::offset_of!(dstore_stats, drain_unconfirmed) + 8;

impl From<Stats> for dstore_stats {
    fn from(s: Stats) -> Self {
        Self {
            keys: s.keys,
            chunks: s.chunks,
            bytes_stored: s.bytes_stored,
            bytes_read: s.bytes_read,
            repair_passes: s.repair.passes,
            repair_running: s.repair.running,
            repair_last_pass_ms: s.repair.last_pass_ms,
            repair_checked: s.repair.checked,
            repair_chunks_pushed: s.repair.chunks_pushed,
            repair_manifests_pushed: s.repair.manifests_pushed,
            repair_bytes_pushed: s.repair.bytes_pushed,
            repair_handed_off: s.repair.handed_off,
            repair_read_repairs: s.repair.read_repairs,
            scrub_passes: s.scrub.passes,
            scrub_bytes: s.scrub.bytes,
            scrub_objects: s.scrub.objects,
            scrub_bad: s.scrub.bad,
            scrub_restored: s.scrub.restored,
            gc_chunks_collected: s.gc.chunks_collected,
            gc_tombstones_collected: s.gc.tombstones_collected,
            drain_running: s.drain.running,
            drain_objects: s.drain.objects,
            drain_checked: s.drain.checked,
            drain_pushed: s.drain.pushed,
            drain_bytes: s.drain.bytes,
            drain_unconfirmed: s.drain.unconfirmed,
            repair_shards_rebuilt: s.repair.shards_rebuilt,
            repair_rebuild_bytes_read: s.repair.rebuild_bytes_read,
        }
    }
}

/// Fills `*out` with the node's statistics. `stats_size` must be sizeof(dstore_stats) as the
/// caller was compiled: a program built against an older header, whose struct is a prefix of
/// this one, gets the fields it knows. DSTORE_INVALID_ARGUMENT for a size no version of the
/// struct has (a library older than the header refuses the newer, larger size). On failure
/// `*out` is left unchanged.
#[no_mangle]
pub unsafe extern "C" fn dstore_node_stats(
    node: *const dstore_node,
    out: *mut dstore_stats,
    stats_size: usize,
) -> dstore_status {
    boundary("dstore_node_stats", || -> Result {
        // SAFETY: the header states the contract of each pointer; `args` checks the rest.
        let node = unsafe { handle(node, "node") }?;
        let out = unsafe { output(out, "out") }?;
        if ![
            FIRST_STATS_SIZE,
            DRAIN_STATS_SIZE,
            size_of::<dstore_stats>(),
        ]
        .contains(&stats_size)
        {
            return Err(Failure::invalid(format!(
                "`stats_size` is {stats_size}; pass sizeof(dstore_stats), which is {} for this \
                 library (is the header newer than the library?)",
                size_of::<dstore_stats>()
            )));
        }
        let stats = dstore_stats::from(node.node.stats()?);
        // SAFETY: the size is at most the struct's, checked above, and the caller promises
        // `stats_size` writable bytes at `out`.
        unsafe { out.write_prefix(&stats, stats_size) };
        Ok(())
    })
}
