//! What a node tells a Prometheus scraper: the requests it answers for peers and clients (by
//! kind and outcome, with latency histograms and the object bytes in and out), and, read when
//! scraped, its members by health, the bytes of its root, compactions, and the counters of
//! `stats()` (repair, scrubbing, garbage collection). Encoded as the
//! OpenMetrics text format, which Prometheus reads; `dstore node --metrics-listen` serves it.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::net::message::{FailureKind, Response};
use crate::stats::{Counters, Stats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// The request metrics of one node, updated as it answers (`Serve`).
pub struct Metrics {
    requests: Family<Call, Counter>,
    seconds: Family<Kind, Histogram>,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            // 100 µs to about 26 s, in factors of 4.
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
        }
    }

    /// Counts one answered request of `kind` that brought `data_in` object bytes.
    pub fn answered(&self, kind: &'static str, data_in: usize, answer: &Response, took: Duration) {
        let outcome = match answer {
            Response::Failed {
                kind: FailureKind::NotFound,
                ..
            } => "not_found",
            Response::Failed {
                kind: FailureKind::Integrity,
                ..
            } => "integrity",
            Response::Failed {
                kind: FailureKind::Refused,
                ..
            } => "refused",
            _ => "ok",
        };
        self.requests.get_or_create(&Call { kind, outcome }).inc();
        self.seconds
            .get_or_create(&Kind { kind })
            .observe(took.as_secs_f64());
        self.bytes_in.inc_by(data_in as u64);
        let out = match answer {
            Response::Chunk(data) => data.len(),
            Response::Manifest(Some(data)) => data.len(),
            _ => 0,
        };
        self.bytes_out.inc_by(out as u64);
    }

    /// The OpenMetrics text of these metrics, `stats`, `members` (known, live), and the
    /// `disk` bytes of the root.
    pub fn encode(
        &self,
        stats: &Stats,
        counters: &Counters,
        members: Option<(usize, usize)>,
        disk: u64,
    ) -> String {
        let mut registry = Registry::with_prefix("dstore");
        registry.register(
            "requests",
            "Requests answered for peers and clients, by kind and outcome",
            self.requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to answer a request, by kind",
            self.seconds.clone(),
        );
        registry.register(
            "object_bytes_received",
            "Bytes of chunks, shards and manifests received to keep",
            self.bytes_in.clone(),
        );
        registry.register(
            "object_bytes_sent",
            "Bytes of chunks, shards and manifests sent in answers",
            self.bytes_out.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str, v: u64| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            registry.register(name, help, g);
        };
        let counter = |registry: &mut Registry, name: &str, help: &str, v: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            registry.register(name, help, c);
        };
        gauge(
            &mut registry,
            "disk_bytes",
            "Bytes of the files in the storage root",
            disk,
        );
        gauge(&mut registry, "keys", "Live keys held", stats.keys);
        gauge(
            &mut registry,
            "objects",
            "Chunks and shards held",
            stats.chunks,
        );
        let r = &stats.repair;
        counter(
            &mut registry,
            "repair_passes",
            "Repair passes done",
            r.passes,
        );
        counter(
            &mut registry,
            "repair_checked",
            "Objects checked by repair, this pass",
            r.checked,
        );
        counter(
            &mut registry,
            "repair_chunks_pushed",
            "Chunks sent by repair",
            r.chunks_pushed,
        );
        counter(
            &mut registry,
            "repair_manifests_pushed",
            "Manifests sent by repair",
            r.manifests_pushed,
        );
        counter(
            &mut registry,
            "repair_bytes_pushed",
            "Bytes sent by repair",
            r.bytes_pushed,
        );
        counter(
            &mut registry,
            "repair_handed_off",
            "Objects handed to their owners and dropped",
            r.handed_off,
        );
        counter(
            &mut registry,
            "read_repairs",
            "Stale owners brought up to date by reads",
            r.read_repairs,
        );
        counter(
            &mut registry,
            "shards_rebuilt",
            "Erasure-coded shards rebuilt",
            r.shards_rebuilt,
        );
        counter(
            &mut registry,
            "rebuild_bytes_read",
            "Bytes read to rebuild shards",
            r.rebuild_bytes_read,
        );
        let s = &stats.scrub;
        counter(&mut registry, "scrub_passes", "Scrub passes done", s.passes);
        counter(&mut registry, "scrub_bytes", "Bytes scrubbed", s.bytes);
        counter(
            &mut registry,
            "scrub_objects",
            "Objects scrubbed",
            s.objects,
        );
        counter(&mut registry, "scrub_bad", "Objects found corrupt", s.bad);
        counter(
            &mut registry,
            "scrub_restored",
            "Corrupt objects restored",
            s.restored,
        );
        let g = &stats.gc;
        counter(
            &mut registry,
            "gc_chunks_collected",
            "Chunks collected",
            g.chunks_collected,
        );
        counter(
            &mut registry,
            "gc_tombstones_collected",
            "Tombstones collected",
            g.tombstones_collected,
        );
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let compactions = Family::<CompactionLabel, Counter>::default();
        compactions
            .get_or_create(&CompactionLabel { what: "catalog" })
            .inc_by(get(&counters.catalog_compactions));
        compactions
            .get_or_create(&CompactionLabel { what: "segments" })
            .inc_by(get(&counters.segment_compactions));
        registry.register(
            "compactions",
            "Compactions that gave space back, of the catalog or of segments",
            compactions,
        );
        counter(
            &mut registry,
            "compaction_bytes_freed",
            "Bytes given back to the file system by compactions",
            get(&counters.compaction_bytes_freed),
        );
        counter(
            &mut registry,
            "bytes_stored",
            "Value bytes stored through this node",
            stats.bytes_stored,
        );
        counter(
            &mut registry,
            "bytes_read",
            "Value bytes read through this node",
            stats.bytes_read,
        );
        if let Some((known, live)) = members {
            let family = Family::<HealthLabel, Gauge>::default();
            family
                .get_or_create(&HealthLabel { state: "live" })
                .set(live as i64);
            family
                .get_or_create(&HealthLabel { state: "down" })
                .set(known.saturating_sub(live) as i64);
            registry.register("members", "Other members by health", family);
        }
        let mut out = String::new();
        if encode(&mut out, &registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CompactionLabel {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabel {
    state: &'static str,
}
