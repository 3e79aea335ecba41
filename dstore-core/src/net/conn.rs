//! A connection: an open session driven by two tasks. The writer task sends queued frames;
//! the reader task answers requests (through the node's `Handler`, several at once) and hands
//! responses to the callers waiting for them. Either task ending closes the connection and
//! fails every call still waiting on it, at once, with the reason.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::handshake::{Hello, Session};
use super::message::{Body, Envelope, Request, Response};
use super::NetError;
use crate::codec;
use crate::crypto::FRAME_TAG_LEN;
use crate::version::Clock;

/// A connection with no frame for this long is dead (heartbeats run every second or so).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests answered at once per connection; more wait, so one peer cannot exhaust memory.
const CONCURRENT_REQUESTS: usize = 64;
/// Frames queued for the writer before callers wait.
const SEND_QUEUE: usize = 64;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Answers the requests that arrive on connections.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, from: &Hello, request: Request) -> BoxFuture<Response>;
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

pub struct Conn {
    pub peer: Hello,
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
    /// Tells the reader task to stop: the way `close` ends a healthy connection.
    stop: Arc<tokio::sync::Notify>,
    /// Stamped on every frame sent, moved forward by every frame received.
    clock: Arc<Clock>,
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
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(SEND_QUEUE);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(tokio::sync::Notify::new());
        let conn = Arc::new(Conn {
            peer: peer.clone(),
            tx: tx.clone(),
            pending: pending.clone(),
            next_id: AtomicU64::new(1),
            closed: closed.clone(),
            stop: stop.clone(),
            clock: clock.clone(),
        });

        let who = peer.node;
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = writer.send(frame).await {
                    tracing::debug!(peer = %who, error = %e, "connection closed while sending");
                    break;
                }
            }
        });

        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
            let mut warned_clock = false;
            let reason = loop {
                let frame = tokio::select! {
                    f = reader.recv(Some(IDLE_TIMEOUT)) => match f {
                        Ok(f) => f,
                        Err(e) => break e,
                    },
                    () = stop.notified() => break NetError::Closed,
                };
                let envelope: Envelope = match codec::decode(&frame, "message") {
                    Ok(e) => e,
                    Err(e) => break NetError::Protocol(e.to_string()),
                };
                if !clock.observe(envelope.clock) && !warned_clock {
                    // Once per connection: a peer far ahead would otherwise log every frame.
                    warned_clock = true;
                    tracing::warn!(
                        peer = %peer.node,
                        clock = envelope.clock,
                        "the peer's clock is further ahead than the drift allowed; not followed"
                    );
                }
                match envelope.body {
                    Body::Response(r) => {
                        let waiter = pending.lock().expect("pending lock").remove(&envelope.id);
                        if let Some(w) = waiter {
                            let _ = w.send(r);
                        }
                    }
                    Body::Request(r) => {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break NetError::Protocol("closing".into());
                        };
                        let (handler, tx, peer, clock) =
                            (handler.clone(), tx.clone(), peer.clone(), clock.clone());
                        tokio::spawn(async move {
                            let response = handler.handle(&peer, r).await;
                            let reply = codec::encode_with_spare(
                                &Envelope {
                                    id: envelope.id,
                                    clock: clock.now(),
                                    body: Body::Response(response),
                                },
                                FRAME_TAG_LEN,
                            );
                            let _ = tx.send(reply).await;
                            drop(permit);
                        });
                    }
                }
            };
            match &reason {
                NetError::Closed => tracing::debug!(peer = %peer.node, "connection closed"),
                NetError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(peer = %peer.node, "connection closed by peer")
                }
                _ => tracing::warn!(peer = %peer.node, reason = %reason, "closing connection"),
            }
            closed.store(true, Ordering::Release);
            // Dropping the waiters fails their calls now rather than at their timeouts.
            pending.lock().expect("pending lock").clear();
        });
        conn
    }

    /// Closes the connection: calls waiting on it fail now, and the peer sees it end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.tx.is_closed()
    }

    /// Sends `request` and waits up to `timeout` for the answer.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, NetError> {
        if self.is_closed() {
            return Err(NetError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, done);
        let frame = codec::encode_with_spare(
            &Envelope {
                id,
                clock: self.clock.now(),
                body: Body::Request(request),
            },
            FRAME_TAG_LEN,
        );
        let outcome = tokio::time::timeout(timeout, async {
            self.tx.send(frame).await.map_err(|_| NetError::Closed)?;
            answer.await.map_err(|_| NetError::Closed)
        })
        .await;
        self.pending.lock().expect("pending lock").remove(&id);
        outcome.map_err(|_| NetError::Timeout("waiting for an answer"))?
    }
}
