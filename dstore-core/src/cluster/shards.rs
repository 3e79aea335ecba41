//! Erasure-coded chunks across the cluster (the codec is `erasure.rs`): where a chunk's
//! shards go, when a write of them is acknowledged, and how a read gathers any k of them.
//!
//! - Shard i of a chunk goes to the holder of place i (`placement::shard_owners`); when it
//!   does not answer, to the next member in that place's order (a stand-in, whose repair
//!   hands the shard on once the holder is back). A write is acknowledged once `need` shards
//!   are durable (default k + m - 1, see DESIGN.md §"Erasure coding"); the rest carry on in
//!   the background, tracked so that `close` waits for them.
//! - A read asks the holders of the k data shards (a chunk whose data shards all come needs
//!   no decoding); each that fails is replaced by a parity holder, and while fewer than k
//!   have answered, one more is asked each time the hedge delay (drawn from observed
//!   latencies) passes, at most `MAX_HEDGES` times: a stalled holder costs a read the delay.
//!   Every shard is checked against its id, and the chunk put back together against its own.
//!   If the holders cannot give k (members came and went faster than repair moved shards),
//!   the missing shards are looked for on every member.

use std::sync::Arc;

use super::placement;
use super::remote::{refused, Remote};
use crate::engine::store::Store;
use crate::erasure::{self, ShardOf};
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::net::message::{Request, Response};
use crate::stats::add;

/// Extra holders a read asks beyond k because the first are slow.
const MAX_HEDGES: usize = 2;

impl Remote {
    /// Shards of a `k` + (`n` - `k`) chunk that must be durable before a write is
    /// acknowledged.
    pub(crate) fn shard_write_need(&self, k: usize, n: usize) -> usize {
        self.erasure_write_quorum.map_or(n - 1, |q| q.clamp(k, n))
    }

    /// Stores the shards of one chunk (`shards`: each with what it belongs to, all of one
    /// chunk) on their holders; returns once `shard_write_need` of them are durable.
    pub async fn put_shards(
        &self,
        store: &Arc<Store>,
        shards: Vec<(ShardOf, Vec<u8>)>,
    ) -> Result<()> {
        let Some((first, _)) = shards.first() else {
            return Ok(());
        };
        let (chunk, k, n) = (first.chunk, first.k(), first.n());
        let candidates = self.cluster.candidates();
        if candidates.len() < n {
            return Err(Error::Unavailable(format!(
                "erasure {k}+{} keeps each chunk's shards on {n} members, and {} are live",
                n - k,
                candidates.len()
            )));
        }
        let owners = placement::shard_owners(&chunk.0, &candidates, n);
        let need = self.shard_write_need(k, n);
        let me = self.cluster.id();
        let mut sends = tokio::task::JoinSet::new();
        for (of, data) in shards {
            let index = usize::from(of.index);
            let mut targets = vec![owners[index].clone()];
            targets.extend(placement::shard_stand_ins(
                &chunk.0,
                index,
                &candidates,
                &owners,
            ));
            let (cluster, store) = (self.cluster.clone(), store.clone());
            sends.spawn(async move {
                let (id, data, of) = (of.shards[index], Arc::new(data), Arc::new(of));
                let mut tried = Vec::new();
                for target in targets {
                    let outcome = if target.id == me {
                        let (store, data, of) = (store.clone(), data.clone(), of.clone());
                        match tokio::task::spawn_blocking(move || store.hold_shard(id, &data, &of))
                            .await
                        {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    } else {
                        let request = Request::PutShard {
                            id,
                            of: (*of).clone(),
                            data: data.to_vec(),
                        };
                        match cluster.call(target.id, request).await {
                            Ok(Response::Stored) => Ok(()),
                            Ok(other) => Err(refused(other)),
                            Err(e) => Err(e.to_string()),
                        }
                    };
                    match outcome {
                        Ok(()) => return Ok(()),
                        Err(e) => tried.push(format!("{}: {e}", target.id)),
                    }
                }
                Err(format!("shard {index}: {}", tried.join("; ")))
            });
        }
        let (mut ok, mut failures) = (0, Vec::new());
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
            if ok >= need {
                self.background
                    .spawn(async move { while sends.join_next().await.is_some() {} });
                return Ok(());
            }
        }
        Err(Error::Unavailable(format!(
            "chunk {chunk}: {ok} of the {need} shards needed were stored ({})",
            failures.join("; ")
        )))
    }

    /// The stored bytes of an erasure-coded chunk of `len` stored bytes, whose `data` +
    /// `parity` shards are `ids`, put back together from any `data` of them and checked
    /// against `chunk`.
    pub async fn get_sharded(
        &self,
        store: &Arc<Store>,
        chunk: ChunkId,
        len: usize,
        data: usize,
        parity: usize,
        ids: &[ChunkId],
    ) -> Result<Vec<u8>> {
        erasure::validate(data, parity)?;
        let n = data + parity;
        if ids.len() != n {
            return Err(Error::Integrity(format!(
                "chunk {chunk}: {} shard ids for {data}+{parity}",
                ids.len()
            )));
        }
        let want = erasure::shard_len(len, data);
        let owners = placement::shard_owners(&chunk.0, &self.cluster.candidates(), n);
        let holder = |i: usize| owners.get(i).map(|o| o.id);
        // Shards held here first, then data shards (no decoding), holders slow lately last.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| {
            let here = store.may_hold_chunk(&ids[i]);
            let slow = holder(i).is_none_or(|h| self.cluster.is_slow(&h));
            (!here, slow, i >= data)
        });
        let ask = |i: usize| {
            let (cluster, store, id) = (self.cluster.clone(), store.clone(), ids[i]);
            let holder = holder(i).filter(|h| *h != self.cluster.id());
            async move {
                let bytes: std::result::Result<Vec<u8>, String> = if store.may_hold_chunk(&id) {
                    match tokio::task::spawn_blocking(move || store.chunk(&id)).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                } else if let Some(holder) = holder {
                    let started = std::time::Instant::now();
                    let answer = cluster.call(holder, Request::GetChunk { id }).await;
                    cluster.record_read(holder, answer.is_ok().then(|| started.elapsed()));
                    match answer {
                        Ok(Response::Chunk(bytes)) => Ok(bytes),
                        Ok(other) => Err(format!("{holder}: {}", refused(other))),
                        Err(e) => Err(format!("{holder}: {e}")),
                    }
                } else {
                    Err("no member holds its place".into())
                };
                let checked = bytes.and_then(|b| {
                    if b.len() == want && ChunkId::of(&b) == id {
                        Ok(b)
                    } else {
                        Err(format!("shard {i} does not match its id"))
                    }
                });
                (i, checked)
            }
        };
        let mut got: Vec<Option<Vec<u8>>> = vec![None; n];
        let (mut count, mut hedges, mut failures) = (0, 0, Vec::new());
        let mut waiting = order.into_iter();
        let mut asks = tokio::task::JoinSet::new();
        for i in waiting.by_ref().take(data) {
            asks.spawn(ask(i));
        }
        while count < data {
            let hedge = self.cluster.hedge_delay();
            let joined = tokio::select! {
                j = asks.join_next() => j,
                () = tokio::time::sleep(hedge), if hedges < MAX_HEDGES && waiting.len() > 0 => {
                    hedges += 1;
                    if let Some(i) = waiting.next() {
                        asks.spawn(ask(i));
                    }
                    continue;
                }
            };
            match joined {
                None => break, // every place asked
                Some(Ok((i, Ok(bytes)))) => {
                    got[i] = Some(bytes);
                    count += 1;
                }
                Some(Ok((i, Err(e)))) => {
                    failures.push(format!("shard {i}: {e}"));
                    if let Some(next) = waiting.next() {
                        asks.spawn(ask(next));
                    }
                }
                Some(Err(e)) => failures.push(e.to_string()),
            }
        }
        asks.abort_all();
        // Not enough from the holders of their places: look for the rest everywhere.
        for i in 0..n {
            if count >= data {
                break;
            }
            if got[i].is_some() {
                continue;
            }
            match self.fetch_chunk(store, ids[i]).await {
                Ok(bytes) if bytes.len() == want => {
                    got[i] = Some(bytes);
                    count += 1;
                }
                Ok(_) => failures.push(format!("shard {i}: the wrong length")),
                Err(e) => failures.push(format!("shard {i}, searched for: {e}")),
            }
        }
        if count < data {
            return Err(Error::NotFound(format!(
                "chunk {chunk}: {count} of the {data} shards needed could be read ({})",
                failures.join("; ")
            )));
        }
        tokio::task::spawn_blocking(move || {
            let whole = erasure::decode(len, data, parity, &got)?;
            if ChunkId::of(&whole) != chunk {
                return Err(Error::Integrity(format!(
                    "the shards of chunk {chunk} put back together do not match it"
                )));
            }
            Ok(whole)
        })
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
    }

    /// Makes the shards at `missing` of the chunk `of` belongs to again, from any k of the
    /// others; each checked against its id.
    pub async fn rebuild_shards(
        &self,
        store: &Arc<Store>,
        of: &ShardOf,
        missing: &[usize],
    ) -> Result<Vec<(ShardOf, Vec<u8>)>> {
        let (k, m) = (of.k(), usize::from(of.parity));
        let len = of.len as usize;
        let chunk = self
            .get_sharded(store, of.chunk, len, k, m, &of.shards)
            .await?;
        add(
            &self.counters.rebuild_bytes_read,
            (k * erasure::shard_len(len, k)) as u64,
        );
        let (of, missing) = (of.clone(), missing.to_vec());
        tokio::task::spawn_blocking(move || {
            let all = erasure::encode(&chunk, k, m)?;
            let mut out = Vec::with_capacity(missing.len());
            for i in missing {
                let Some(shard) = all.get(i) else { continue };
                if ChunkId::of(shard) != of.shards[i] {
                    return Err(Error::Integrity(format!(
                        "shard {i} of chunk {} made again does not match its id",
                        of.chunk
                    )));
                }
                let place = ShardOf {
                    index: i as u8,
                    ..of.clone()
                };
                out.push((place, shard.clone()));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
    }
}
