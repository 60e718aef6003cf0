//! The RTMP play client: one load session ([`rtmp_session`]) plays a stream like a player
//! would, cheaply:
//!
//! - It does the handshake and `connect` / `createStream` / `play` with `rml_rtmp`'s
//!   [`Handshake`] and [`ClientSession`]; the session is connected when the server answers
//!   `NetStream.Play.Start`.
//! - From then on the connection is a *light reader*: one reused buffer, and a chunk-stream
//!   walker of our own (`rtmp_chunks.rs`) that copies nothing but the first bytes of each
//!   message, enough to see a video message's frame type, timestamp and probe stamp. The
//!   meter (`probe.rs`) counts frames, keyframes, freezes, jitter and latency from them.
//! - The only thing it still sends is an RTMP Acknowledgement (message type 3 on chunk stream
//!   2, with a full type-0 chunk header) each time the bytes received since the last one reach
//!   the window size that the server announced with a Window Acknowledgement Size message
//!   (nginx-rtmp announces 5 000 000 bytes). The acknowledgement carries the total number of
//!   bytes received since the handshake, as the RTMP specification asks (`rml_rtmp`'s own
//!   session sends the count since the previous acknowledgement instead). Server pings (User
//!   Control ping requests) are not answered after play starts.
//! - Bytes are counted from play start: bytes that arrived in the same read as the
//!   `NetStream.Play.Start` status are not counted (their frames are).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::probe::{FrameMeter, FreezeRule, SeenFrame, SessionProbe};
use super::rtmp_chunks::{ChunkMessage, ChunkReader};
use super::session::{read_some, Never, READ_BUFFER};

/// RTMP message type of an Acknowledgement.
const MSG_ACKNOWLEDGEMENT: u8 = 3;
/// RTMP message type of a video message.
const MSG_VIDEO: u8 = 9;
/// RTMP message type of a Window Acknowledgement Size.
const MSG_WINDOW_ACK_SIZE: u8 = 5;

/// Where to play from, parsed from an `rtmp://` URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RtmpTarget {
    /// Host name or address, without IPv6 brackets.
    host: String,
    port: u16,
    app: String,
    /// Stream key: everything after the app (may contain `/` and a query).
    key: String,
    /// `rtmp://HOST:PORT/app`, sent as `tcUrl` in `connect`.
    tc_url: String,
}

impl RtmpTarget {
    pub(super) fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("rtmp://")
            .with_context(|| format!("not an rtmp:// URL: {url}"))?;
        let (authority, path) = rest
            .split_once('/')
            .with_context(|| format!("no app/key in {url}"))?;
        let (app, key) = path
            .split_once('/')
            .with_context(|| format!("URL path must be app/key: {url}"))?;
        if app.is_empty() || key.is_empty() {
            bail!("URL path must be app/key: {url}");
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .with_context(|| format!("unclosed [ in {url}"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => bail!("bad authority in {url}"),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            bail!("no host in {url}");
        }
        let port = match port {
            Some(port) => port.parse().with_context(|| format!("bad port in {url}"))?,
            None => 1935,
        };
        Ok(Self {
            host: host.to_string(),
            port,
            app: app.to_string(),
            key: key.to_string(),
            tc_url: format!("rtmp://{authority}/{app}"),
        })
    }
}

/// One RTMP player: connects, starts playback, then reads, counts and meters the video until
/// an error (returned) or until the run drops it.
pub(super) async fn rtmp_session(
    target: Arc<RtmpTarget>,
    probe: Arc<SessionProbe>,
) -> Result<Never> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .context("connect")?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let mut buf = vec![0u8; READ_BUFFER];

    let leftover = handshake(&mut stream, &mut buf).await?;

    let mut chunks = ChunkReader::default();
    let mut meter = FrameMeter::new(probe.clone(), "rtmp", FreezeRule::Arrival, true);
    let mut setup = Setup::new(&target)?;
    let mut received = leftover.len() as u64;
    let mut window = None;
    let watch = |data: &[u8],
                 chunks: &mut ChunkReader,
                 meter: &mut FrameMeter,
                 window: &mut Option<u32>| {
        let now = Instant::now();
        chunks.feed(data, |message| match message.type_id {
            MSG_VIDEO => {
                if let Some(frame) = video_frame(message, now) {
                    meter.frame(frame);
                }
            }
            MSG_WINDOW_ACK_SIZE => *window = message.head_u32(),
            _ => {}
        })
    };
    watch(&leftover, &mut chunks, &mut meter, &mut window)?;
    let mut started = setup.feed(&leftover)?;
    setup.flush(&mut stream).await?;
    while !started {
        let n = read_some(&mut stream, &mut buf)
            .await
            .context("before play started")?;
        received += n as u64;
        watch(&buf[..n], &mut chunks, &mut meter, &mut window)?;
        started = setup.feed(&buf[..n])?;
        setup.flush(&mut stream).await?;
    }
    drop(setup);
    probe.connected();

    // Player: count bytes, meter video messages, acknowledge windows.
    let window = window.filter(|&w| w > 0).map(u64::from);
    let mut acked = 0u64;
    loop {
        let n = read_some(&mut stream, &mut buf)
            .await
            .context("during playback")?;
        probe.add_bytes(n as u64);
        received += n as u64;
        let mut ignored = None;
        watch(&buf[..n], &mut chunks, &mut meter, &mut ignored)?;
        if let Some(window) = window {
            if received - acked >= window {
                // The sequence number wraps at 2^32 (RTMP 1.0, 5.4.3).
                #[allow(clippy::cast_possible_truncation)]
                let sequence_number = received as u32;
                stream
                    .write_all(&acknowledgement_chunk(sequence_number))
                    .await
                    .context("send acknowledgement")?;
                acked = received;
            }
        }
    }
}

/// A video message as a frame the meter counts: FLV video tag header (legacy: frame type and
/// codec id, `AVCPacketType` 1 = coded frame; Enhanced RTMP: `IsExHeader`, frame type, packet
/// type `CodedFrames` or `CodedFramesX`); sequence headers and metadata are not frames.
fn video_frame(message: &ChunkMessage<'_>, now: Instant) -> Option<SeenFrame> {
    let head = message.head;
    let first = *head.first()?;
    let keyframe = (first >> 4) & 0x07 == 1;
    let nal_units = if first & 0x80 != 0 {
        // Enhanced RTMP: [type|packet type][FourCC][CTS (CodedFrames only)] data.
        match first & 0x0f {
            1 => head.get(8..),
            3 => head.get(5..),
            _ => return None,
        }
    } else {
        // Legacy AVC/HEVC: [type|codec][AVCPacketType][CTS] NAL units.
        if head.get(1) != Some(&1) {
            return None;
        }
        head.get(5..)
    };
    let stamp = nal_units.and_then(|nals| {
        // The head is cut short: read the NAL units it holds whole.
        switchyard_media::probe_stamp::read_access_unit(nals)
    });
    Some(SeenFrame {
        arrived: now,
        media_time: Some(Duration::from_millis(u64::from(message.timestamp))),
        keyframe,
        stamp,
    })
}

/// Client side of the RTMP handshake; returns the bytes received after it.
async fn handshake(stream: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>> {
    let mut handshake = Handshake::new(PeerType::Client);
    let c0c1 = handshake
        .generate_outbound_p0_and_p1()
        .context("handshake")?;
    stream.write_all(&c0c1).await.context("send handshake")?;
    loop {
        let n = read_some(stream, buf).await.context("handshake")?;
        match handshake.process_bytes(&buf[..n]).context("handshake")? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                if !response_bytes.is_empty() {
                    stream
                        .write_all(&response_bytes)
                        .await
                        .context("send handshake")?;
                }
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                if !response_bytes.is_empty() {
                    stream
                        .write_all(&response_bytes)
                        .await
                        .context("send handshake")?;
                }
                return Ok(remaining_bytes);
            }
        }
    }
}

/// The `connect` / `createStream` / `play` exchange, driven by `rml_rtmp`'s [`ClientSession`].
struct Setup {
    session: ClientSession,
    key: String,
    /// Bytes to send, in order.
    out: Vec<u8>,
}

impl Setup {
    fn new(target: &RtmpTarget) -> Result<Self> {
        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(target.tc_url.clone());
        let (mut session, initial) = ClientSession::new(config).context("client session")?;
        let mut out = Vec::new();
        for result in initial {
            if let ClientSessionResult::OutboundResponse(packet) = result {
                out.extend_from_slice(&packet.bytes);
            }
        }
        match session
            .request_connection(target.app.clone())
            .context("connect request")?
        {
            ClientSessionResult::OutboundResponse(packet) => out.extend_from_slice(&packet.bytes),
            other => bail!("unexpected connect request result: {other:?}"),
        }
        Ok(Self {
            session,
            key: target.key.clone(),
            out,
        })
    }

    /// Processes received bytes; returns true once the server accepted `play`.
    fn feed(&mut self, data: &[u8]) -> Result<bool> {
        if data.is_empty() {
            return Ok(false);
        }
        let results = self.session.handle_input(data).context("RTMP session")?;
        let mut connected = false;
        let mut playing = false;
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                }
                ClientSessionResult::RaisedEvent(ClientSessionEvent::ConnectionRequestAccepted) => {
                    connected = true;
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::ConnectionRequestRejected { description },
                ) => bail!("connect rejected: {description}"),
                ClientSessionResult::RaisedEvent(ClientSessionEvent::PlaybackRequestAccepted) => {
                    playing = true;
                }
                ClientSessionResult::RaisedEvent(
                    ClientSessionEvent::UnhandleableOnStatusCode { code },
                ) if is_failure_status(&code) => bail!("play refused: {code}"),
                _ => {}
            }
        }
        // Queued after the responses above: they may change the outbound chunk size.
        if connected {
            match self
                .session
                .request_playback(self.key.clone())
                .context("play request")?
            {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.out.extend_from_slice(&packet.bytes);
                }
                other => bail!("unexpected play request result: {other:?}"),
            }
        }
        Ok(playing)
    }

    async fn flush(&mut self, stream: &mut TcpStream) -> Result<()> {
        if !self.out.is_empty() {
            stream.write_all(&self.out).await.context("send")?;
            self.out.clear();
        }
        Ok(())
    }
}

/// `onStatus` codes that mean the play request will not be served.
fn is_failure_status(code: &str) -> bool {
    code.contains(".Failed")
        || code.contains(".StreamNotFound")
        || code.contains(".Rejected")
        || code.contains("BadName")
}

/// One RTMP Acknowledgement message as a single chunk with a full (type 0) header on chunk
/// stream 2, message stream 0, timestamp 0.
fn acknowledgement_chunk(sequence_number: u32) -> [u8; 16] {
    let mut chunk = [0u8; 16];
    // Byte 0: fmt 0, csid 2. Bytes 1..4: timestamp 0. Bytes 8..12: message stream id 0.
    chunk[0] = 0x02;
    chunk[4..7].copy_from_slice(&[0, 0, 4]); // message length
    chunk[7] = MSG_ACKNOWLEDGEMENT;
    chunk[12..16].copy_from_slice(&sequence_number.to_be_bytes());
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use rml_rtmp::messages::RtmpMessage;

    #[test]
    fn parses_urls() {
        let t = RtmpTarget::parse("rtmp://127.0.0.1:19350/live/bench").unwrap();
        assert_eq!(
            t,
            RtmpTarget {
                host: "127.0.0.1".into(),
                port: 19350,
                app: "live".into(),
                key: "bench".into(),
                tc_url: "rtmp://127.0.0.1:19350/live".into(),
            }
        );
        let t = RtmpTarget::parse("rtmp://example.com/app/a/b?token=1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.com", 1935));
        assert_eq!(t.key, "a/b?token=1");
        let t = RtmpTarget::parse("rtmp://[::1]:1936/live/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1936));
        for bad in [
            "http://h/live/x",
            "rtmp://h/live",
            "rtmp://h/live/",
            "rtmp://:1935/live/x",
            "rtmp://h:port/live/x",
            "rtmp://[::1/live/x",
        ] {
            assert!(RtmpTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acknowledgement_chunk_parses_as_acknowledgement() {
        let chunk = acknowledgement_chunk(0x0102_0304);
        let mut deserializer = ChunkDeserializer::new();
        let payload = deserializer.get_next_message(&chunk).unwrap().unwrap();
        assert_eq!(payload.type_id, MSG_ACKNOWLEDGEMENT);
        assert_eq!(payload.message_stream_id, 0);
        assert_eq!(
            payload.to_rtmp_message().unwrap(),
            RtmpMessage::Acknowledgement {
                sequence_number: 0x0102_0304
            }
        );
    }
}
