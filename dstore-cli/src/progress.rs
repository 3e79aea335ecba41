//! A progress line on stderr for long transfers, shown only when stderr is a terminal:
//! `put big.iso  412.0 / 1024.0 MiB  380 MB/s`. Counting wrappers for readers and writers
//! feed it.

use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Progress {
    done: Arc<AtomicU64>,
    painter: Option<tokio::task::JoinHandle<()>>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

const MIB: f64 = (1u64 << 20) as f64;

impl Progress {
    pub fn start(label: String, total: Option<u64>) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let painter = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let n = done.load(Ordering::Relaxed) as f64;
                    let rate = n / 1e6 / start.elapsed().as_secs_f64().max(1e-3);
                    let of = total
                        .map(|t| format!(" / {:.1}", t as f64 / MIB))
                        .unwrap_or_default();
                    eprint!("\r{label}  {:.1}{of} MiB  {rate:.0} MB/s   ", n / MIB);
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Self {
            done,
            painter,
            follower: None,
        }
    }

    pub fn reader<R>(&self, inner: R) -> Counted<R> {
        Counted {
            inner,
            done: self.done.clone(),
        }
    }

    pub fn writer<W>(&self, inner: W) -> Counted<W> {
        Counted {
            inner,
            done: self.done.clone(),
        }
    }

    /// Counts what `count` says, asked every 100 ms, instead of wrapped reads or writes: for
    /// work done inside the core (a file it writes). Stops with `finish`.
    pub fn follow(&mut self, count: impl Fn() -> u64 + Send + 'static) {
        if self.painter.is_none() {
            return;
        }
        let done = self.done.clone();
        self.follower = Some(tokio::spawn(async move {
            loop {
                done.store(count(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    pub fn finish(self) {
        if let Some(f) = self.follower {
            f.abort();
        }
        if let Some(p) = self.painter {
            p.abort();
            eprintln!();
        }
    }
}

/// Counts the bytes that pass through a reader or writer.
pub struct Counted<T> {
    inner: T,
    done: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.done
            .fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.done.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
