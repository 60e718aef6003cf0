//! The WebSocket MSE client: one load session ([`mse_session`]) plays a `ws://.../mse/{name}`
//! stream like a Media Source Extensions player.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{parse_head, HttpTarget, ERROR_BODY_KEPT};
use super::media_meter::Fmp4Video;
use super::probe::{FrameMeter, FreezeRule, SessionProbe};
use super::report::SessionStats;
use super::session::{read_some, Never, READ_BUFFER};
use super::ws_frames::{close_frame, pong_frame, FrameReader, Opcode};

/// One MSE player until the server closes or fails the connection (or the run drops it).
///
/// It sends the RFC 6455 opening handshake (with its own `Sec-WebSocket-Key`), requires `101
/// Switching Protocols` with `Upgrade: websocket` (then it is connected), and reads the
/// messages: the `{"mime"}` text, init segments and one fMP4 fragment per frame, metered
/// frame by frame. It sends nothing but pongs and a close; the server closing the connection
/// fails the session.
pub(super) async fn mse_session(
    target: Arc<HttpTarget>,
    probe: Arc<SessionProbe>,
    stats: Arc<SessionStats>,
) -> Result<Never> {
    let index = probe.index;
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
    probe.connected();
    let mut player = MsePlayer {
        frames: FrameReader::default(),
        meter: FrameMeter::new(probe.clone(), "mse", FreezeRule::Arrival, true),
        video: Fmp4Video::default(),
        replies: Vec::new(),
        closed: None,
    };
    let (mut start, mut n) = (used, end - used);
    loop {
        probe.add_bytes(n as u64);
        player.received(&buf[start..start + n], &stats)?;
        if !player.replies.is_empty() {
            let sent = stream.write_all(&player.replies).await;
            player.replies.clear();
            // After the server's close, our answering close may find the socket gone.
            if player.closed.is_none() {
                sent.context("send pong")?;
            }
        }
        if let Some(why) = player.closed.take() {
            bail!("the server closed the WebSocket: {why}");
        }
        start = 0;
        n = read_some(&mut stream, &mut buf)
            .await
            .context("during playback")?;
    }
}

/// What an MSE player keeps between reads.
struct MsePlayer {
    frames: FrameReader,
    meter: FrameMeter,
    video: Fmp4Video,
    /// Frames to send (pongs).
    replies: Vec<u8>,
    /// The server's close frame, in words.
    closed: Option<String>,
}

impl MsePlayer {
    /// Reads the messages in `data`: init segments and fragments are metered, pings answered,
    /// the server's `{"error"}` text or close frame end the session.
    fn received(&mut self, data: &[u8], stats: &SessionStats) -> Result<()> {
        let now = Instant::now();
        let mut error = None;
        let (meter, video, replies, closed) = (
            &mut self.meter,
            &mut self.video,
            &mut self.replies,
            &mut self.closed,
        );
        self.frames
            .feed(data, |message| match message.opcode {
                Opcode::Binary => {
                    if let Err(e) = video.received(message.payload, meter, now) {
                        stats.note_request_error(e);
                    }
                }
                Opcode::Text => {
                    let text = message.text().unwrap_or_default();
                    if text.contains("\"error\"") {
                        error = Some(text.chars().take(ERROR_BODY_KEPT).collect::<String>());
                    }
                }
                Opcode::Ping => pong_frame(message.payload, mask(), replies),
                Opcode::Close => {
                    // RFC 6455 5.5.1: answer with a close frame, then the session ends.
                    close_frame(message.close_code(), "", mask(), replies);
                    *closed = Some(format!(
                        "{} {}",
                        message
                            .close_code()
                            .map_or("no code".to_string(), |c| c.to_string()),
                        String::from_utf8_lossy(message.close_reason())
                    ));
                }
                Opcode::Pong => {}
            })
            .map_err(|e| anyhow::anyhow!("WebSocket: {e}"))?;
        if let Some(error) = error {
            bail!("the server said: {error}");
        }
        Ok(())
    }
}

/// A masking key for a client frame (RFC 6455 5.3: unpredictable; nothing here is secret).
fn mask() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.wrapping_mul(0x9e37_79b9).to_be_bytes()
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
