//! The RTMP play client: [`rtmp_play_load`] opens many RTMP play sessions against one stream
//! and reports how many started playing and how many bytes each received. It exists to measure
//! a *server's* cost of RTMP fan-out, so the client side is kept as cheap as possible:
//!
//! - Connects are spread over a short ramp (at most [`RAMP_STEP`](super::RAMP_STEP) apart and
//!   at most [`RAMP_MAX`](super::RAMP_MAX) in total), so the server's accept queue is not
//!   flooded.
//! - Each session does the handshake and `connect` / `createStream` / `play` with `rml_rtmp`'s
//!   [`Handshake`] and [`ClientSession`].
//! - As soon as the server answers `NetStream.Play.Start`, the session is dropped and the
//!   connection becomes a *light reader*: it reads into one reused buffer and counts bytes,
//!   without parsing chunks. The only thing it still sends is an RTMP Acknowledgement (message
//!   type 3 on chunk stream 2, with a full type-0 chunk header) each time the bytes received
//!   since the last one reach the window size that the server announced with a Window
//!   Acknowledgement Size message (nginx-rtmp announces 5 000 000 bytes). The acknowledgement
//!   carries the total number of bytes received since the handshake, as the RTMP specification
//!   asks (`rml_rtmp`'s own session sends the count since the previous acknowledgement instead).
//!   Since nothing else is parsed, server pings (User Control ping requests) are not answered
//!   after play starts; the acknowledgements are the only traffic from client to server.
//! - Byte counting starts at play start: bytes that arrived in the same read as the
//!   `NetStream.Play.Start` status are not counted.
//!
//! All sessions share one deadline, `duration` after the call; then every connection is closed
//! and a [`RtmpLoadReport`] is returned. A session that fails (refused connection, handshake or
//! command error, server closing the connection, play not started before the deadline) is
//! counted in [`RtmpLoadReport::failed`]; it never aborts the others. One tokio task runs per
//! session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::report::{RtmpLoadReport, Tally};
use super::session::{ramp_step, read_some, Never, READ_BUFFER};

/// RTMP message type of an Acknowledgement.
const MSG_ACKNOWLEDGEMENT: u8 = 3;
/// RTMP message type of a Set Chunk Size.
const MSG_SET_CHUNK_SIZE: u8 = 1;
/// RTMP message type of a Window Acknowledgement Size.
const MSG_WINDOW_ACK_SIZE: u8 = 5;

/// Opens `sessions` RTMP play sessions on `url` (`rtmp://HOST[:PORT]/app/key`, port 1935 by
/// default), keeps them reading for `duration`, then closes them and reports.
///
/// # Errors
///
/// Only if `url` cannot be parsed; per-session errors are counted in the report.
pub async fn rtmp_play_load(
    url: &str,
    sessions: usize,
    duration: Duration,
) -> Result<RtmpLoadReport> {
    let target = Arc::new(RtmpTarget::parse(url)?);
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let deadline = start + duration;
    let step = ramp_step(sessions);

    let mut tasks = Vec::with_capacity(sessions);
    let mut at = start;
    for _ in 0..sessions {
        tasks.push(tokio::spawn(run_session(target.clone(), at, deadline)));
        at += step;
    }

    let mut tally = Tally::new();
    for task in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => SessionOutcome {
                bytes: 0,
                error: Some((Instant::now(), format!("session task: {e}"))),
            },
        };
        tally.add(outcome.bytes, outcome.error);
    }
    Ok(tally.into_report(sessions, started))
}

/// Where to play from, parsed from an `rtmp://` URL.
#[derive(Debug, PartialEq, Eq)]
struct RtmpTarget {
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
    fn parse(url: &str) -> Result<Self> {
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

/// What one session brings back.
struct SessionOutcome {
    /// Bytes received after play start.
    bytes: u64,
    /// `None` if the session was playing at the deadline.
    error: Option<(Instant, String)>,
}

/// Runs one session from `start_at` to `deadline`.
async fn run_session(
    target: Arc<RtmpTarget>,
    start_at: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> SessionOutcome {
    tokio::time::sleep_until(start_at).await;
    let mut progress = Progress::default();
    let result = tokio::time::timeout_at(deadline, play(&target, &mut progress)).await;
    let error = match result {
        // The deadline is the normal end of a session that plays.
        Err(_elapsed) if progress.playing => None,
        Err(_elapsed) => Some("play did not start before the end of the run".to_string()),
        Ok(Err(e)) => Some(format!("{e:#}")),
        Ok(Ok(never)) => match never {},
    };
    SessionOutcome {
        bytes: progress.bytes,
        error: error.map(|message| (Instant::now(), message)),
    }
}

/// State of a session that survives its cancellation at the deadline.
#[derive(Default)]
struct Progress {
    playing: bool,
    bytes: u64,
}

/// Connects, starts playback, then reads and counts until an error.
async fn play(target: &RtmpTarget, progress: &mut Progress) -> Result<Never> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .context("connect")?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let mut buf = vec![0u8; READ_BUFFER];

    let leftover = handshake(&mut stream, &mut buf).await?;

    let mut setup = Setup::new(target)?;
    let mut received = leftover.len() as u64;
    let mut started = setup.feed(&leftover)?;
    setup.flush(&mut stream).await?;
    while !started {
        let n = read_some(&mut stream, &mut buf)
            .await
            .context("before play started")?;
        received += n as u64;
        started = setup.feed(&buf[..n])?;
        setup.flush(&mut stream).await?;
    }
    let window = setup.window.filter(|&w| w > 0).map(u64::from);
    drop(setup);
    progress.playing = true;

    // Light reader: count bytes, acknowledge windows, parse nothing.
    let mut acked = 0u64;
    loop {
        let n = read_some(&mut stream, &mut buf)
            .await
            .context("during playback")?;
        progress.bytes += n as u64;
        received += n as u64;
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
    /// A second parser over the same bytes, only to learn the server's acknowledgement window:
    /// `ClientSession` keeps it private. Used until play starts, so its cost does not matter.
    shadow: ChunkDeserializer,
    /// Window Acknowledgement Size announced by the server.
    window: Option<u32>,
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
            shadow: ChunkDeserializer::new(),
            window: None,
            key: target.key.clone(),
            out,
        })
    }

    /// Processes received bytes; returns true once the server accepted `play`.
    fn feed(&mut self, data: &[u8]) -> Result<bool> {
        if data.is_empty() {
            return Ok(false);
        }
        self.watch_control_messages(data)?;
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

    /// Tracks Set Chunk Size and Window Acknowledgement Size in the shadow parser.
    fn watch_control_messages(&mut self, data: &[u8]) -> Result<()> {
        let mut input = data;
        while let Some(message) = self
            .shadow
            .get_next_message(input)
            .context("RTMP chunk stream")?
        {
            input = &[];
            let Some(value) = message.data.get(..4) else {
                continue;
            };
            let value = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            match message.type_id {
                MSG_SET_CHUNK_SIZE => self
                    .shadow
                    .set_max_chunk_size((value & 0x7fff_ffff) as usize)
                    .context("set chunk size")?,
                MSG_WINDOW_ACK_SIZE => self.window = Some(value),
                _ => {}
            }
        }
        Ok(())
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

    #[tokio::test]
    async fn bad_url_is_an_error_and_refused_connects_are_counted() {
        assert!(
            rtmp_play_load("rtmp://127.0.0.1/live", 1, Duration::from_millis(10))
                .await
                .is_err()
        );
        // Port 1 on loopback: nothing listens there, so every connect is refused.
        let report = rtmp_play_load("rtmp://127.0.0.1:1/live/x", 3, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!((report.sessions, report.playing, report.failed), (3, 0, 3));
        assert!(report.first_error.unwrap().contains("connect"));
    }
}
