//! `dstore node --metrics-listen ADDR`: a small HTTP/1.1 server for Prometheus and health
//! checks. `GET /metrics` answers the node's metrics (OpenMetrics text), `GET /health` 200
//! while the node serves and 503 once it closes; anything else 404, and a request that is not
//! HTTP 400. Each connection gets one answer and is closed. Whoever reaches the port is
//! untrusted: a request head is read up to 8 KiB within 5 s, and at most 64 connections are
//! answered at once (more wait in the kernel's backlog).

use std::sync::Arc;
use std::time::Duration;

use dstore_core::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

const MAX_HEAD: usize = 8 << 10;
const READ_HEAD: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 64;

/// Serves `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, node: Node) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (conn, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), answer(conn, &node)).await;
            drop(slot);
        });
    }
}

async fn answer(mut conn: TcpStream, node: &Node) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_HEAD, read_head(&mut conn)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return respond(&mut conn, 400, "text/plain", "bad request\n").await,
        _ => return Ok(()), // too slow or gone: nothing to say
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return respond(&mut conn, 400, "text/plain", "bad request\n").await;
    }
    if method != "GET" {
        return respond(&mut conn, 405, "text/plain", "only GET\n").await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => match node.metrics_text().await {
            Ok(text) => {
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                respond(&mut conn, 200, kind, &text).await
            }
            Err(e) => respond(&mut conn, 503, "text/plain", &format!("{e}\n")).await,
        },
        "/health" if node.is_serving() => respond(&mut conn, 200, "text/plain", "ok\n").await,
        "/health" => respond(&mut conn, 503, "text/plain", "closing\n").await,
        _ => respond(&mut conn, 404, "text/plain", "not found\n").await,
    }
}

/// The request head (up to the blank line), or `None` if it is not text or too long.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

async fn respond(conn: &mut TcpStream, status: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}
