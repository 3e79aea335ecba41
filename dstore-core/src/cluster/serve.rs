//! The answers a node gives its peers, from its local store. Everything received is checked
//! before it is kept: chunks against their ids, manifests against the cluster MAC.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, RwLock};

use crate::engine::store::Store;
use crate::error::Error;
use crate::ids::ChunkId;
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::net::conn::{BoxFuture, Handler};
use crate::net::handshake::Hello;
use crate::net::message::{FailureKind, Request, Response, MAX_BATCH, MAX_PAGE};
use crate::stats::Counters;
use crate::version::Clock;

/// Where a `Leave` request goes: the node, once open, sets the sender of a channel it
/// answers on (see `Node::open`). Each request carries the channel for its answer.
pub(crate) type LeaveHook = OnceLock<mpsc::UnboundedSender<oneshot::Sender<Result<(), String>>>>;

/// Serves peers from the node's store; refuses once the node is closed.
pub(crate) struct Serve {
    pub store: Arc<RwLock<Option<Arc<Store>>>>,
    pub counters: Arc<Counters>,
    pub metrics: Arc<Metrics>,
    pub leave: Arc<LeaveHook>,
    /// Set while the node closes or leaves: it takes no more copies and answers no repair
    /// questions, so that a member handing off does not count it as a holder that stays.
    pub closing: Arc<AtomicBool>,
    /// For the drift allowed: a manifest stamped further ahead is refused.
    pub clock: Arc<Clock>,
}

impl Handler for Serve {
    fn handle(&self, from: &Hello, request: Request) -> BoxFuture<Response> {
        let (kind, data_in) = (request.kind(), request.data_len());
        let (metrics, started) = (self.metrics.clone(), std::time::Instant::now());
        let answer = self.respond(from, request);
        Box::pin(async move {
            let response = answer.await;
            metrics.answered(kind, data_in, &response, started.elapsed());
            response
        })
    }
}

impl Serve {
    fn respond(&self, from: &Hello, request: Request) -> BoxFuture<Response> {
        // What a client may not ask (see README, "Security model"): questions that drive
        // repair and garbage collection come from members, and only a holder of the cluster
        // secret may ask a member to leave.
        let allowed = match request {
            Request::Versions { .. } | Request::HasChunks { .. } | Request::Referenced { .. } => {
                from.is_member()
            }
            Request::Leave => from.holds_secret,
            _ => true,
        };
        if !allowed {
            return Box::pin(async {
                failed(
                    FailureKind::Refused,
                    "not allowed with a client credential (a member's request)".into(),
                )
            });
        }
        if let Request::Leave = request {
            // Not under the store's guard: leaving ends with closing, which waits for it.
            let hook = self.leave.clone();
            return Box::pin(async move {
                let Some(node) = hook.get() else {
                    return failed(
                        FailureKind::Refused,
                        "this node does not leave on request (an embedded member or a client)"
                            .into(),
                    );
                };
                let (answer, answered) = oneshot::channel();
                let _ = node.send(answer); // on failure the answer is dropped: "closing"
                match answered.await {
                    Ok(Ok(())) => Response::Stored,
                    Ok(Err(why)) => failed(FailureKind::Refused, why),
                    Err(_) => failed(FailureKind::Refused, "node is closing".into()),
                }
            });
        }
        let departing = matches!(
            request,
            Request::PutChunk { .. }
                | Request::PutShard { .. }
                | Request::PutManifest { .. }
                | Request::HasChunks { .. }
                | Request::Versions { .. }
        );
        if departing && self.closing.load(Ordering::Acquire) {
            return Box::pin(async { failed(FailureKind::Refused, "node is closing".into()) });
        }
        let (store, counters, clock) = (
            self.store.clone(),
            self.counters.clone(),
            self.clock.clone(),
        );
        Box::pin(async move {
            // Held until the answer is ready, so that `Node::close` waits for it.
            let guard = store.read_owned().await;
            let Some(store) = guard.clone() else {
                return failed(FailureKind::Refused, "node is closing".into());
            };
            if let Request::Stats = request {
                return Response::Stats(counters.stats(store.stats()));
            }
            let horizon = clock.horizon();
            tokio::task::spawn_blocking(move || answer(&store, request, horizon))
                .await
                .unwrap_or_else(|e| failed(FailureKind::Refused, format!("internal error: {e}")))
        })
    }
}

fn failed(kind: FailureKind, message: String) -> Response {
    Response::Failed { kind, message }
}

fn from_error(e: Error) -> Response {
    let kind = match e {
        Error::NotFound(_) => FailureKind::NotFound,
        Error::Integrity(_) => FailureKind::Integrity,
        _ => FailureKind::Refused,
    };
    failed(kind, e.to_string())
}

/// The answer to `request`; manifests stamped after `horizon` (beyond the drift allowed
/// ahead of this node's clock) are refused.
fn answer(store: &Store, request: Request, horizon: u64) -> Response {
    match request {
        Request::Ping => Response::Pong {
            members: Vec::new(),
            departed: Vec::new(),
        }, // answered by the cluster
        Request::PutChunk { id, data } if ChunkId::of(&data) != id => failed(
            FailureKind::Integrity,
            format!("received bytes do not match chunk {id}"),
        ),
        Request::PutChunk { id, data } => match store.hold_chunk(id, &data) {
            Ok(()) => Response::Stored,
            Err(e) => from_error(e),
        },
        Request::PutShard { id, data, .. } if ChunkId::of(&data) != id => failed(
            FailureKind::Integrity,
            format!("received bytes do not match shard {id}"),
        ),
        Request::PutShard { id, of, data } => match of
            .check(&id, data.len())
            .and_then(|()| store.hold_shard(id, &data, &of))
        {
            Ok(()) => Response::Stored,
            Err(e) => from_error(e),
        },
        Request::GetChunk { id } => match store.chunk(&id) {
            Ok(bytes) => Response::Chunk(bytes),
            Err(Error::Integrity(m)) if m.ends_with("is missing") => {
                failed(FailureKind::NotFound, m)
            }
            Err(e) => from_error(e),
        },
        Request::PutManifest { manifest } => match Manifest::from_bytes(&manifest, store.cluster())
        {
            Ok(m) if m.body.version.time > horizon => failed(
                FailureKind::Refused,
                format!(
                    "the manifest of {:?} is stamped further ahead of this node's clock than \
                     the drift allowed",
                    m.body.key
                ),
            ),
            Ok(m) => match store.adopt_reporting(&m) {
                Ok((_, held)) => Response::Held(held),
                Err(e) => from_error(e),
            },
            Err(e) => from_error(e),
        },
        Request::GetManifest { key } => match store.manifest(&key) {
            Ok(m) => Response::Manifest(Some(m.to_bytes())),
            Err(Error::NotFound(_)) => Response::Manifest(None),
            Err(e) => from_error(e),
        },
        Request::List {
            prefix,
            start_after,
            limit,
        } => match store.key_page(&prefix, &start_after, (limit as usize).min(MAX_PAGE)) {
            Ok(page) => Response::Keys(page),
            Err(e) => from_error(e),
        },
        Request::Versions { keys } if keys.len() <= MAX_BATCH => {
            Response::Versions(keys.iter().map(|k| store.version_of(k)).collect())
        }
        Request::HasChunks { ids } if ids.len() <= MAX_BATCH => {
            Response::Flags(ids.iter().map(|id| store.has_chunk(id)).collect())
        }
        Request::Referenced { ids } if ids.len() <= MAX_BATCH => {
            Response::Flags(ids.iter().map(|id| store.is_referenced(id)).collect())
        }
        Request::Versions { .. } | Request::HasChunks { .. } | Request::Referenced { .. } => {
            failed(
                FailureKind::Refused,
                format!("more than {MAX_BATCH} items in one request"),
            )
        }
        Request::Stats | Request::Leave => failed(FailureKind::Refused, "answered above".into()),
        Request::Depart { .. } => failed(FailureKind::Refused, "answered by the cluster".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::path::Sharded;

    /// Chunk bytes from a peer are checked against their id before anything is written.
    #[test]
    fn a_chunk_that_does_not_match_its_id_is_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Arc::new(Sharded), Some(b"s"), false, 0).unwrap();
        let (good, bad) = (b"the real bytes".to_vec(), b"other bytes".to_vec());
        let id = ChunkId::of(&good);
        let refused = answer(&store, Request::PutChunk { id, data: bad }, u64::MAX);
        assert!(matches!(
            refused,
            Response::Failed {
                kind: FailureKind::Integrity,
                ..
            }
        ));
        assert!(!store.has_chunk(&id));
        assert!(matches!(
            answer(
                &store,
                Request::PutChunk {
                    id,
                    data: good.clone()
                },
                u64::MAX
            ),
            Response::Stored
        ));
        assert_eq!(store.chunk(&id).unwrap(), good);
    }
}
