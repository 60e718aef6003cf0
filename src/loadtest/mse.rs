//! The WebSocket MSE client: [`mse_load`] runs many players of a `ws://.../mse/{name}` stream;
//! each does the RFC 6455 opening handshake, then counts bytes without parsing frames.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{parse_head, HttpTarget, ERROR_BODY_KEPT};
use super::report::{HttpLoadReport, SessionStats};
use super::session::{read_some, run_http_sessions, Never, READ_BUFFER};

/// Opens `sessions` WebSocket MSE players on `url` (`ws://HOST[:PORT]/mse/{name}`, port 80 by
/// default), keeps them reading for `duration`, then closes them and reports.
///
/// Each session sends the RFC 6455 opening handshake (with its own `Sec-WebSocket-Key`),
/// requires `101 Switching Protocols` with `Upgrade: websocket`, then reads into one reused
/// buffer and counts bytes without parsing frames. It sends nothing after the handshake (a
/// client that never sends needs no masking) and answers no ping. The server closing the
/// connection fails the session.
///
/// # Errors
///
/// Only if `url` cannot be parsed.
pub async fn mse_load(url: &str, sessions: usize, duration: Duration) -> Result<HttpLoadReport> {
    let target = Arc::new(HttpTarget::parse(url, "ws")?);
    let mut report = run_http_sessions(sessions, duration, |index, stats| {
        let target = target.clone();
        async move { mse_session(&target, index, &stats).await }
    })
    .await;
    report.protocol = "mse";
    report.mode = "mse";
    Ok(report)
}

/// One MSE player: opening handshake, then count bytes until the server closes.
async fn mse_session(target: &HttpTarget, index: usize, stats: &SessionStats) -> Result<Never> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .context("connect")?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    SessionStats::add(&stats.connects, 1);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchyard-loadtest\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path,
        target.authority,
        websocket_key(index)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .context("send opening handshake")?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut end = 0;
    let (head, used) = loop {
        if end == buf.len() {
            bail!("response head longer than {} bytes", buf.len());
        }
        let n = read_some(&mut stream, &mut buf[end..])
            .await
            .context("opening handshake")?;
        end += n;
        if let Some(parsed) = parse_head(&buf[..end])? {
            break parsed;
        }
    };
    if head.status != 101 || !head.upgrade_websocket {
        let body = String::from_utf8_lossy(&buf[used..end]);
        bail!(
            "opening handshake refused: {} {}",
            head.status,
            body.chars().take(ERROR_BODY_KEPT).collect::<String>()
        );
    }
    stats.playing.store(true, Ordering::Relaxed);
    SessionStats::add(&stats.media_bytes, (end - used) as u64);
    loop {
        let n = read_some(&mut stream, &mut buf)
            .await
            .context("during playback")?;
        SessionStats::add(&stats.media_bytes, n as u64);
    }
}

/// A `Sec-WebSocket-Key`: 16 bytes, base64 (RFC 6455, 4.1), different per session and run.
fn websocket_key(index: usize) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut nonce = [0u8; 16];
    let mut state = seed;
    for chunk in nonce.chunks_mut(8) {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    base64(&nonce)
}

/// Standard base64 with padding (RFC 4648, 4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_keys_are_base64_of_16_bytes() {
        // RFC 6455, 4.1 / 1.3: the nonce "the sample nonce".
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        let (a, b) = (websocket_key(0), websocket_key(1));
        assert_eq!(a.len(), 24);
        assert!(a.ends_with("=="));
        assert_ne!(a, b);
    }
}
