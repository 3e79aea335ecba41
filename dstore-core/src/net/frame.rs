//! Frames: a 4-byte big-endian length, then that many bytes. The length is checked against a
//! bound before anything is allocated, and a frame's body must arrive within a deadline once
//! its length has (so a peer that trickles bytes cannot hold a connection forever).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::NetError;

/// The largest frame body: a chunk of at most 8 MiB plus IV, message header and AEAD tag fits
/// with room to spare; anything longer is a protocol error.
pub const MAX_FRAME: usize = 16 << 20;

/// How long the body of a frame may take to arrive once its length has.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes one frame and flushes. Give it a buffered writer, so that a small frame's header and
/// body leave in one segment.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), NetError> {
    queue_frame(w, body).await?;
    w.flush().await?;
    Ok(())
}

/// Writes one frame without flushing: frames queued together leave in as few segments (and
/// system calls) as the buffer allows, once the caller flushes.
pub async fn queue_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), NetError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n as usize <= MAX_FRAME)
        .ok_or_else(|| {
            NetError::Protocol(format!("refusing to send a {} byte frame", body.len()))
        })?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(body).await?;
    Ok(())
}

/// Reads one frame of at most `max` bytes. `idle` bounds the wait for its first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: Option<Duration>,
) -> Result<Vec<u8>, NetError> {
    let mut header = [0u8; 4];
    match idle {
        Some(d) => tokio::time::timeout(d, r.read_exact(&mut header))
            .await
            .map_err(|_| NetError::Timeout("waiting for a frame"))??,
        None => r.read_exact(&mut header).await?,
    };
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(NetError::Protocol(format!(
            "frame of {len} bytes exceeds the limit of {max}"
        )));
    }
    // Read into spare capacity, never zeroed first (a chunk's frame is megabytes).
    let mut body = Vec::with_capacity(len);
    let filled = tokio::time::timeout(BODY_TIMEOUT, async {
        while body.len() < len {
            let rest = (len - body.len()) as u64;
            if (&mut *r).take(rest).read_buf(&mut body).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    });
    filled
        .await
        .map_err(|_| NetError::Timeout("reading a frame body"))??;
    Ok(body)
}
