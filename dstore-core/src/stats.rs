//! What a node reports about itself: counts of what it holds, what it has done for callers,
//! and the progress of its background work (repair, scrubbing, garbage collection). The same
//! struct is returned by `Node::stats` and sent to peers that ask (`dstore status`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Live keys held by this node.
    pub keys: u64,
    /// Distinct chunks held by this node (after deduplication).
    pub chunks: u64,
    /// Plaintext bytes stored and read through this handle since it was opened.
    pub bytes_stored: u64,
    pub bytes_read: u64,
    pub repair: RepairStats,
    pub scrub: ScrubStats,
    pub gc: GcStats,
    pub drain: DrainStats,
}

/// Anti-entropy: making sure what this node holds reaches the current owners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairStats {
    /// Passes completed since the node opened.
    pub passes: u64,
    /// Whether a pass is under way now.
    pub running: bool,
    /// How long the last completed pass took.
    pub last_pass_ms: u64,
    /// Objects this pass (or the last one) has checked so far.
    pub checked: u64,
    /// Copies sent to owners that lacked them, and their bytes.
    pub chunks_pushed: u64,
    pub manifests_pushed: u64,
    pub bytes_pushed: u64,
    /// Objects dropped here because this node no longer owns them and their owners have them.
    pub handed_off: u64,
    /// Stale owners brought up to date during reads.
    pub read_repairs: u64,
    /// Erasure-coded shards made again from their siblings and sent to their holders (by
    /// repair and the scrubber), and the bytes of siblings read to make them.
    pub shards_rebuilt: u64,
    pub rebuild_bytes_read: u64,
}

/// The scrubber: rehashing stored objects in the background.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubStats {
    /// Full cycles over everything held.
    pub passes: u64,
    pub bytes: u64,
    pub objects: u64,
    /// Objects found corrupt (set aside in quarantine), and how many were restored from
    /// another owner.
    pub bad: u64,
    pub restored: u64,
}

/// Handing what this node holds to the owners the cluster will have without it, when it
/// closes (until a write quorum of them holds each object) or leaves for good (all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStats {
    /// Whether a hand-off is under way now.
    pub running: bool,
    /// Objects the hand-off covers, and how many it has checked so far.
    pub objects: u64,
    pub checked: u64,
    /// Copies sent to owners that lacked them, and their bytes.
    pub pushed: u64,
    pub bytes: u64,
    /// Objects not yet confirmed on every owner after the last pass (owners that did not
    /// answer, or refused).
    pub unconfirmed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcStats {
    pub chunks_collected: u64,
    pub tombstones_collected: u64,
}

/// Counters updated by the background tasks and read by `stats()`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes_stored: AtomicU64,
    pub bytes_read: AtomicU64,
    pub passes: AtomicU64,
    pub running: AtomicBool,
    pub last_pass_ms: AtomicU64,
    pub checked: AtomicU64,
    pub chunks_pushed: AtomicU64,
    pub manifests_pushed: AtomicU64,
    pub bytes_pushed: AtomicU64,
    pub handed_off: AtomicU64,
    pub read_repairs: AtomicU64,
    pub shards_rebuilt: AtomicU64,
    pub rebuild_bytes_read: AtomicU64,
    pub scrub_passes: AtomicU64,
    pub scrub_bytes: AtomicU64,
    pub scrub_objects: AtomicU64,
    pub scrub_bad: AtomicU64,
    pub scrub_restored: AtomicU64,
    pub chunks_collected: AtomicU64,
    pub tombstones_collected: AtomicU64,
    /// Compactions between scrub passes that gave space back (catalog rewrites, segment
    /// compactions) and the bytes they gave back: for metrics only, not part of `Stats`.
    pub catalog_compactions: AtomicU64,
    pub segment_compactions: AtomicU64,
    pub compaction_bytes_freed: AtomicU64,
    pub drain_running: AtomicBool,
    pub drain_objects: AtomicU64,
    pub drain_checked: AtomicU64,
    pub drain_pushed: AtomicU64,
    pub drain_bytes: AtomicU64,
    pub drain_unconfirmed: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// These counters, with what the store holds.
    pub fn stats(&self, store: crate::engine::store::StoreStats) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            keys: store.keys,
            chunks: store.chunks,
            bytes_stored: get(&self.bytes_stored),
            bytes_read: get(&self.bytes_read),
            repair: RepairStats {
                passes: get(&self.passes),
                running: self.running.load(Ordering::Relaxed),
                last_pass_ms: get(&self.last_pass_ms),
                checked: get(&self.checked),
                chunks_pushed: get(&self.chunks_pushed),
                manifests_pushed: get(&self.manifests_pushed),
                bytes_pushed: get(&self.bytes_pushed),
                handed_off: get(&self.handed_off),
                read_repairs: get(&self.read_repairs),
                shards_rebuilt: get(&self.shards_rebuilt),
                rebuild_bytes_read: get(&self.rebuild_bytes_read),
            },
            scrub: ScrubStats {
                passes: get(&self.scrub_passes),
                bytes: get(&self.scrub_bytes),
                objects: get(&self.scrub_objects),
                bad: get(&self.scrub_bad),
                restored: get(&self.scrub_restored),
            },
            gc: GcStats {
                chunks_collected: get(&self.chunks_collected),
                tombstones_collected: get(&self.tombstones_collected),
            },
            drain: DrainStats {
                running: self.drain_running.load(Ordering::Relaxed),
                objects: get(&self.drain_objects),
                checked: get(&self.drain_checked),
                pushed: get(&self.drain_pushed),
                bytes: get(&self.drain_bytes),
                unconfirmed: get(&self.drain_unconfirmed),
            },
        }
    }
}
