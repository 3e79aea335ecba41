//! A connection: an open session driven by two tasks. The writer task sends queued frames;
//! the reader task answers requests (through the node's `Handler`, several at once, each in a
//! task of its own) and hands responses to the callers waiting for them. Either task ending
//! closes the connection and fails every call still waiting on it, at once, with the reason.
//!
//! What one peer can make a node hold is bounded, and the reader never blocks on it (a
//! reader that stopped reading would also stop reading the answers to this node's own calls:
//! two members asking each other for chunks would deadlock):
//! - a request is taken only if one of `CONCURRENT_REQUESTS` places is free and its frame
//!   fits the request budget (`BUDGET` for the connection, `NODE_BUDGET` for all of them);
//!   else it is answered "busy" at once and its bytes dropped;
//! - its handler reserves the most its answer can take from the answer budgets before it
//!   runs (cut to, or topped up to, the answer's real size once built) and holds that until
//!   the answer is on the wire;
//! - a peer that reads nothing for `WRITE_TIMEOUT` is dropped with everything it held.
//!
//! A caller keeps to the same bounds from its side: a call takes one of its connection's
//! `CONCURRENT_REQUESTS` slots and its frame's bytes of `BUDGET`, waiting for them within
//! its timeout, and gives them back only when the answer arrives (a call cancelled after
//! its request went out keeps them until then, as the peer still holds its place). So an
//! honest peer never hears "busy" from one connection however many callers share it; the
//! process-wide budget is the only one a busy node can still refuse on.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::handshake::{Hello, Session};
use super::message::{Body, Envelope, FailureKind, Request, Response};
use super::NetError;
use crate::codec;
use crate::crypto::FRAME_TAG_LEN;
use crate::version::Clock;

/// A connection with no frame for this long is dead (heartbeats run every second or so).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests answered at once per connection; more are answered "busy".
const CONCURRENT_REQUESTS: usize = 64;
/// Frames queued for the writer before callers wait.
const SEND_QUEUE: usize = 64;
/// Bytes of requests, and of answers, one connection may hold (see the module comment).
pub const BUDGET: usize = 64 << 20;
/// Bytes of requests, and of answers, all connections of this process may hold.
pub const NODE_BUDGET: usize = 512 << 20;
/// How long writing one frame (with those queued behind it) may take: a peer that reads
/// nothing for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Frames queued behind one being sent join it, up to this many bytes, before a flush.
const COALESCE_BYTES: usize = 256 << 10;

static NODE_REQUESTS: Semaphore = Semaphore::const_new(NODE_BUDGET);
static NODE_ANSWERS: Semaphore = Semaphore::const_new(NODE_BUDGET);

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers the requests that arrive on connections.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, from: &Hello, request: Request) -> BoxFuture<Response>;
}

/// A call waiting for its answer, with the slot it holds on the connection.
struct Waiter {
    /// `None` once the caller stopped waiting (cancelled, or timed out).
    done: Option<oneshot::Sender<Response>>,
    _slot: Slot,
}

/// One of a connection's call slots and the request's bytes of its budget.
struct Slot {
    _place: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

type Pending = Arc<Mutex<HashMap<u64, Waiter>>>;
/// What lives exactly as long as the connection (see `Conn::tie`).
type Tied = Arc<Mutex<Vec<Box<dyn std::any::Any + Send>>>>;

/// Bytes held from a connection's budget and the node's, given back when dropped.
struct Held {
    conn: OwnedSemaphorePermit,
    node: tokio::sync::SemaphorePermit<'static>,
}

impl Held {
    /// `bytes` from both budgets, now, or `None`.
    fn try_take(conn: &Arc<Semaphore>, node: &'static Semaphore, bytes: usize) -> Option<Held> {
        let n = bytes.clamp(1, BUDGET) as u32;
        let conn = conn.clone().try_acquire_many_owned(n).ok()?;
        let node = node.try_acquire_many(n).ok()?;
        Some(Held { conn, node })
    }

    /// `bytes` from both budgets, waiting for them; `None` once the budget is closed.
    async fn take(conn: &Arc<Semaphore>, node: &'static Semaphore, bytes: usize) -> Option<Held> {
        let n = bytes.clamp(1, BUDGET) as u32;
        let conn = conn.clone().acquire_many_owned(n).await.ok()?;
        let node = node.acquire_many(n).await.ok()?;
        Some(Held { conn, node })
    }

    fn bytes(&self) -> usize {
        self.conn.num_permits()
    }

    /// Gives back all but `keep` bytes.
    fn shrink(&mut self, keep: usize) {
        let spare = self.bytes().saturating_sub(keep.max(1));
        drop(self.conn.split(spare));
        drop(self.node.split(spare));
    }

    fn merge(&mut self, more: Held) {
        self.conn.merge(more.conn);
        self.node.merge(more.node);
    }
}

/// A frame for the writer, with the budget it holds until it is sent.
type Outgoing = (Vec<u8>, Option<Held>);

/// The most the answer to `request` can take in memory, reserved before it is handled.
fn answer_bound(request: &Request) -> usize {
    match request {
        Request::GetChunk { .. } => crate::node::MAX_CHUNK_SIZE + 4096,
        Request::List { .. } => 2 << 20,
        Request::Stats => 1 << 20,
        _ => 64 << 10,
    }
}

pub struct Conn {
    pub peer: Hello,
    tx: mpsc::Sender<Outgoing>,
    pending: Pending,
    /// This side's call slots and request bytes (see the module comment).
    slots: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    next_id: AtomicU64,
    /// Set to stop both tasks: the way `close` ends a connection, and how either task
    /// ending ends the other.
    stop: watch::Sender<bool>,
    /// Stamped on every frame sent, moved forward by every frame received.
    clock: Arc<Clock>,
    tied: Tied,
}

impl Conn {
    /// Starts the connection's tasks.
    pub fn spawn<R, W>(
        session: Session<R, W>,
        handler: Arc<dyn Handler>,
        clock: Arc<Clock>,
    ) -> Arc<Conn>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Session {
            peer,
            mut reader,
            mut writer,
        } = session;
        let (tx, mut rx) = mpsc::channel::<Outgoing>(SEND_QUEUE);
        let pending: Pending = Arc::default();
        let (stop, _) = watch::channel(false);
        let tied: Tied = Arc::default();
        let conn = Arc::new(Conn {
            peer: peer.clone(),
            tx: tx.clone(),
            pending: pending.clone(),
            slots: Arc::new(Semaphore::new(CONCURRENT_REQUESTS)),
            bytes: Arc::new(Semaphore::new(BUDGET)),
            next_id: AtomicU64::new(1),
            stop: stop.clone(),
            clock: clock.clone(),
            tied: tied.clone(),
        });

        let who = peer.node;
        let (writer_stop, mut stopped) = (stop.clone(), stop.subscribe());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let first = tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => f,
                        None => break,
                    },
                    _ = stopped.wait_for(|s| *s) => break,
                };
                // Every frame already queued goes out with this one, in one flush: under
                // load, many small answers share a system call and a segment.
                let sent = async {
                    let mut next = Some(first);
                    let mut bytes = 0;
                    while let Some((frame, budget)) = next.take() {
                        bytes += frame.len();
                        writer.queue(frame).await?;
                        held.push(budget);
                        if bytes < COALESCE_BYTES {
                            next = rx.try_recv().ok();
                        }
                    }
                    writer.flush().await
                };
                let outcome = tokio::time::timeout(WRITE_TIMEOUT, sent).await;
                held.clear(); // the budgets of the frames sent (or dropped with the connection)
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %who, error = %e, "connection closed while sending");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(peer = %who, "the peer reads nothing; dropping it");
                        break;
                    }
                }
            }
            // Whatever the reason, the reader stops too; the socket closes with both halves.
            writer_stop.send_replace(true);
        });

        let mut stopped = stop.subscribe();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
            let (requests, answers) = (
                Arc::new(Semaphore::new(BUDGET)),
                Arc::new(Semaphore::new(BUDGET)),
            );
            let mut warned_clock = false;
            let reason = loop {
                let frame = tokio::select! {
                    f = reader.recv(Some(IDLE_TIMEOUT)) => match f {
                        Ok(f) => f,
                        Err(e) => break e,
                    },
                    _ = stopped.wait_for(|s| *s) => break NetError::Closed,
                };
                // The frame's size is what a request holds (its decoded form is no larger).
                let frame_len = frame.len();
                let envelope: Envelope = match codec::decode(&frame, "message") {
                    Ok(e) => e,
                    Err(e) => break NetError::Protocol(e.to_string()),
                };
                drop(frame);
                if !clock.observe(envelope.clock) && !warned_clock {
                    // Once per connection: a peer far ahead would otherwise log every frame.
                    warned_clock = true;
                    tracing::warn!(
                        peer = %peer.node,
                        clock = envelope.clock,
                        "the peer's clock is further ahead than the drift allowed; not followed"
                    );
                }
                let request = match envelope.body {
                    Body::Response(r) => {
                        let waiter = pending.lock().expect("pending lock").remove(&envelope.id);
                        if let Some(done) = waiter.and_then(|w| w.done) {
                            let _ = done.send(r);
                        }
                        continue;
                    }
                    Body::Request(r) => r,
                };
                let place = permits.clone().try_acquire_owned().ok();
                let held = place
                    .as_ref()
                    .and_then(|_| Held::try_take(&requests, &NODE_REQUESTS, frame_len));
                let (Some(place), Some(held)) = (place, held) else {
                    // Busy: answered at once, and nothing of the request is kept. If even
                    // the answer cannot be queued, the peer is not reading: it times out.
                    let busy = Response::Failed {
                        kind: FailureKind::Refused,
                        message: "busy: too many requests in flight on this connection".into(),
                    };
                    let reply = answer_frame(envelope.id, &clock, busy);
                    let _ = tx.try_send((reply, None));
                    continue;
                };
                let (handler, tx, peer, clock, answers) = (
                    handler.clone(),
                    tx.clone(),
                    peer.clone(),
                    clock.clone(),
                    answers.clone(),
                );
                tokio::spawn(async move {
                    let bound = answer_bound(&request);
                    let Some(mut reserved) = Held::take(&answers, &NODE_ANSWERS, bound).await
                    else {
                        return;
                    };
                    let response = handler.handle(&peer, request).await;
                    drop(held); // the request is consumed
                    let reply = answer_frame(envelope.id, &clock, response);
                    if reply.len() > reserved.bytes() {
                        // Larger than reserved (a large manifest): wait for the rest.
                        let more = reply.len() - reserved.bytes();
                        match Held::take(&answers, &NODE_ANSWERS, more).await {
                            Some(m) => reserved.merge(m),
                            None => return,
                        }
                    } else {
                        reserved.shrink(reply.len());
                    }
                    let _ = tx.send((reply, Some(reserved))).await;
                    drop(place);
                });
            };
            match &reason {
                NetError::Closed => tracing::debug!(peer = %peer.node, "connection closed"),
                NetError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(peer = %peer.node, "connection closed by peer")
                }
                _ => tracing::warn!(peer = %peer.node, reason = %reason, "closing connection"),
            }
            stop.send_replace(true);
            // Dropping the waiters fails their calls now rather than at their timeouts.
            pending.lock().expect("pending lock").clear();
            tied.lock().expect("tied lock").clear();
        });
        conn
    }

    /// Keeps `value` until the connection closes (an admission's place, say).
    pub fn tie(&self, value: Box<dyn std::any::Any + Send>) {
        let mut tied = self.tied.lock().expect("tied lock");
        if !self.is_closed() {
            tied.push(value);
        }
    }

    /// Closes the connection: calls waiting on it fail now, and the peer sees it end.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    pub fn is_closed(&self) -> bool {
        *self.stop.borrow() || self.tx.is_closed()
    }

    /// Sends `request` and waits up to `timeout` for the answer.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, NetError> {
        if self.is_closed() {
            return Err(NetError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = codec::encode_with_spare(
            &Envelope {
                id,
                clock: self.clock.now(),
                body: Body::Request(request),
            },
            FRAME_TAG_LEN,
        );
        // However this call ends, cancelled (a hedged read that another owner answered
        // first) included: before its request went out, the waiter goes with its slot; after,
        // the slot stays until the answer comes (or the connection closes).
        struct Forget<'a> {
            pending: &'a Pending,
            id: u64,
            sent: bool,
        }
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                let mut pending = self.pending.lock().expect("pending lock");
                if self.sent {
                    if let Some(w) = pending.get_mut(&self.id) {
                        w.done = None;
                    }
                } else {
                    pending.remove(&self.id);
                }
            }
        }
        let mut forget = Forget {
            pending: &self.pending,
            id,
            sent: false,
        };
        let outcome = tokio::time::timeout(timeout, async {
            let sealed = (frame.len() + FRAME_TAG_LEN).clamp(1, BUDGET) as u32;
            let closed = |_| NetError::Closed;
            let slot = Slot {
                _place: self.slots.clone().acquire_owned().await.map_err(closed)?,
                _bytes: self
                    .bytes
                    .clone()
                    .acquire_many_owned(sealed)
                    .await
                    .map_err(closed)?,
            };
            let (done, answer) = oneshot::channel();
            let waiter = Waiter {
                done: Some(done),
                _slot: slot,
            };
            self.pending
                .lock()
                .expect("pending lock")
                .insert(id, waiter);
            self.tx
                .send((frame, None))
                .await
                .map_err(|_| NetError::Closed)?;
            forget.sent = true;
            answer.await.map_err(|_| NetError::Closed)
        })
        .await;
        drop(forget);
        outcome.map_err(|_| NetError::Timeout("waiting for an answer"))?
    }
}

/// The frame of the answer `response` to request `id`.
fn answer_frame(id: u64, clock: &Clock, response: Response) -> Vec<u8> {
    codec::encode_with_spare(
        &Envelope {
            id,
            clock: clock.now(),
            body: Body::Response(response),
        },
        FRAME_TAG_LEN,
    )
}
