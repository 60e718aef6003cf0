//! A light RTMP play load generator, used by `switchyard loadtest` and `scripts/bench`.
//!
//! [`rtmp_play_load`] opens many RTMP play sessions against one stream and reports how many
//! started playing and how many bytes each received. It exists to measure a *server's* cost of
//! RTMP fan-out, so the client side is kept as cheap as possible:
//!
//! - Connects are spread over a short ramp (at most [`RAMP_STEP`] apart and at most
//!   [`RAMP_MAX`] in total), so the server's accept queue is not flooded.
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
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let report =
//!     switchyard::loadtest::rtmp_play_load("rtmp://127.0.0.1:1935/live/cam1", 100, Duration::from_secs(15))
//!         .await?;
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod webrtc;
pub use webrtc::{whep_load, WebRtcLoadReport};

/// Longest gap between two session starts.
pub const RAMP_STEP: Duration = Duration::from_millis(2);
/// Longest ramp: with many sessions the gap shrinks so that all connects start within this time.
pub const RAMP_MAX: Duration = Duration::from_secs(1);
/// Size of the buffer each session reads into (reused for the whole session).
const READ_BUFFER: usize = 64 * 1024;
/// RTMP message type of an Acknowledgement.
const MSG_ACKNOWLEDGEMENT: u8 = 3;
/// RTMP message type of a Set Chunk Size.
const MSG_SET_CHUNK_SIZE: u8 = 1;
/// RTMP message type of a Window Acknowledgement Size.
const MSG_WINDOW_ACK_SIZE: u8 = 5;

/// What every load run reports about its sessions; an RTMP run reports just this (one JSON
/// object), HLS and MSE runs add request counts ([`HttpLoadReport`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RtmpLoadReport {
    /// Sessions requested.
    pub sessions: usize,
    /// Sessions whose `play` was accepted and that were still receiving at the deadline.
    pub playing: usize,
    /// Sessions that failed at any stage (`playing + failed == sessions`).
    pub failed: usize,
    /// Bytes received after play start, summed over all sessions (failed ones included).
    pub bytes_total: u64,
    /// Fewest bytes received by one playing session (0 if none played).
    pub bytes_min: u64,
    /// Most bytes received by one playing session (0 if none played).
    pub bytes_max: u64,
    /// Wall-clock length of the run, from the first connect to the last close.
    pub seconds: f64,
    /// The earliest error seen across sessions, if any.
    pub first_error: Option<String>,
}

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

/// Gap between two session starts for a run of `sessions`.
fn ramp_step(sessions: usize) -> Duration {
    let per_session = u32::try_from(sessions.max(1)).unwrap_or(u32::MAX);
    RAMP_STEP.min(RAMP_MAX / per_session)
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

/// Uninhabited: [`play`] only returns on error (or is cancelled at the deadline).
enum Never {}

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

/// Reads at least one byte; end of stream is an error.
async fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize> {
    let n = stream.read(buf).await.context("read")?;
    if n == 0 {
        bail!("connection closed by the server");
    }
    Ok(n)
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

// ---------------------------------------------------------------------------------------------
// Dispatcher
// ---------------------------------------------------------------------------------------------

/// Outcome of a [`run`]: the report of the protocol the URL named. Serialises to the report's
/// own JSON object (no wrapper), so an RTMP run prints exactly an [`RtmpLoadReport`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum LoadReport {
    Rtmp(RtmpLoadReport),
    /// HLS (`http://`) or MSE (`ws://`).
    Http(HttpLoadReport),
    /// WHEP (`http://.../whep/{name}`).
    WebRtc(WebRtcLoadReport),
}

/// Runs the load generator that the URL's scheme selects:
///
/// - `rtmp://HOST[:PORT]/app/key`: RTMP players ([`rtmp_play_load`]);
/// - `http://HOST[:PORT]/.../index.m3u8`: HLS players ([`hls_load`]); LL-HLS when the playlist
///   has `EXT-X-PART-INF`, plain HLS otherwise, or plain HLS always with a `#plain` fragment
///   (fragments are never sent to the server);
/// - `ws://HOST[:PORT]/mse/{name}`: WebSocket MSE players ([`mse_load`]);
/// - `http(s)://HOST[:PORT]/whep/{name}`: WebRTC players ([`whep_load`]).
///
/// # Errors
///
/// An unsupported scheme (`https://` and `wss://` included: plain TCP only) or a URL that
/// cannot be parsed; per-session errors are counted in the report.
pub async fn run(url: &str, sessions: usize, duration: Duration) -> Result<LoadReport> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("rtmp") => Ok(LoadReport::Rtmp(
            rtmp_play_load(url, sessions, duration).await?,
        )),
        Some("http" | "https") if url.contains("/whep/") => Ok(LoadReport::WebRtc(
            whep_load(url, sessions, duration).await?,
        )),
        Some("http") => Ok(LoadReport::Http(hls_load(url, sessions, duration).await?)),
        Some("ws") => Ok(LoadReport::Http(mse_load(url, sessions, duration).await?)),
        Some(scheme @ ("https" | "wss" | "rtmps")) => {
            bail!("{scheme}:// is not supported: the load generator speaks plain TCP only")
        }
        _ => bail!("unsupported URL {url}: expected rtmp://, http://...m3u8 or ws://"),
    }
}

// ---------------------------------------------------------------------------------------------
// HLS and MSE load
// ---------------------------------------------------------------------------------------------

/// Size of the buffer each HTTP connection reads into.
const HTTP_READ_BUFFER: usize = 32 * 1024;
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest playlist accepted.
const MAX_PLAYLIST: usize = 1024 * 1024;
/// Bytes of an error response's body kept for the error message.
const ERROR_BODY_KEPT: usize = 200;
/// A session gives up after this many failed requests in a row (non-2xx answers, bad playlists).
const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Pause before retrying after a failed request.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Shortest pause between two playlist polls of a plain HLS client.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Outcome of a [`hls_load`] or [`mse_load`] run: the fields of [`RtmpLoadReport`] plus request
/// counts. Serialises to one JSON object.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HttpLoadReport {
    /// `"hls"` or `"mse"`.
    pub protocol: &'static str,
    /// What the clients did: `"ll-hls"` (blocking playlist reloads and parts), `"hls"` (playlist
    /// polling and segments), `"mse"`; `"mixed"` if HLS sessions saw different playlists,
    /// `"unknown"` if no session got a playlist.
    pub mode: &'static str,
    /// Sessions, media bytes and the first failure, as for RTMP; its fields are written inline.
    #[serde(flatten)]
    pub totals: RtmpLoadReport,
    /// Playlist requests sent (HLS; blocking and plain).
    pub playlist_requests: u64,
    /// Media requests sent (HLS: init section, segments, parts; hinted parts included).
    pub media_requests: u64,
    /// Requests that failed without ending their session: non-2xx answers, unparsable
    /// playlists. The session retried.
    pub request_errors: u64,
    /// The earliest request error, if any.
    pub first_request_error: Option<String>,
    /// TCP connections opened (HLS: keep-alive connections are reused, so this counts the
    /// initial two per session plus reconnects; MSE: one per session).
    pub connects: u64,
    /// LL-HLS: requests for a preload-hinted part that the next playlist did not list (the
    /// server cut a segment there, so the part comes under another name); the client closes
    /// that connection and fetches the part that did come.
    pub abandoned_hints: u64,
    /// Sessions that used LL-HLS / plain HLS.
    pub ll_hls_sessions: usize,
    pub plain_hls_sessions: usize,
}

/// Counters of one session, shared by its connections; they survive the session's
/// cancellation at the deadline.
#[derive(Default)]
struct SessionStats {
    media_bytes: AtomicU64,
    playlist_requests: AtomicU64,
    media_requests: AtomicU64,
    request_errors: AtomicU64,
    connects: AtomicU64,
    abandoned_hints: AtomicU64,
    /// 0: no playlist yet, 1: LL-HLS, 2: plain HLS.
    mode: AtomicU8,
    playing: AtomicBool,
    first_request_error: Mutex<Option<(Instant, String)>>,
}

impl SessionStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn note_request_error(&self, message: String) {
        Self::add(&self.request_errors, 1);
        let mut first = self.first_request_error.lock().unwrap();
        if first.is_none() {
            *first = Some((Instant::now(), message));
        }
    }
}

const MODE_LL_HLS: u8 = 1;
const MODE_PLAIN_HLS: u8 = 2;

/// Opens `sessions` HLS players on `url` (`http://HOST[:PORT]/path/index.m3u8`, port 80 by
/// default), keeps them playing for `duration`, then closes them and reports.
///
/// Each session first GETs the playlist. With `EXT-X-PART-INF` (LL-HLS), like hls.js in
/// low-latency mode, it GETs the init section and the last listed part, then loops: a blocking
/// playlist reload (`_HLS_msn` / `_HLS_part` of the part after the last listed one) on one
/// keep-alive connection, and at the same time a GET of the `EXT-X-PRELOAD-HINT` part on a
/// second one (the server holds both until that part exists); then GETs every listed part it
/// has not fetched yet. Without `EXT-X-PART-INF` (or with a `#plain` fragment on the URL), it
/// GETs the init section if any and the last listed segment, then polls the playlist every
/// half target duration and GETs each new segment once. Request failures (non-2xx answers,
/// bad playlists) are counted and retried; a session fails on a TCP or HTTP framing error, on
/// [`MAX_CONSECUTIVE_ERRORS`] failed requests in a row, or if no media came before the deadline.
///
/// # Errors
///
/// Only if `url` cannot be parsed.
pub async fn hls_load(url: &str, sessions: usize, duration: Duration) -> Result<HttpLoadReport> {
    let target = Arc::new(HttpTarget::parse(url, "http")?);
    let mut report = run_http_sessions(sessions, duration, |_, stats| {
        let target = target.clone();
        async move { hls_session(&target, &stats).await }
    })
    .await;
    report.protocol = "hls";
    Ok(report)
}

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

/// Runs `sessions` sessions of `play` over a ramp, all until `duration` after the call.
async fn run_http_sessions<F, Fut>(
    sessions: usize,
    duration: Duration,
    mut play: F,
) -> HttpLoadReport
where
    F: FnMut(usize, Arc<SessionStats>) -> Fut,
    Fut: Future<Output = Result<Never>> + Send + 'static,
{
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let deadline = start + duration;
    let step = ramp_step(sessions);

    let mut tasks = Vec::with_capacity(sessions);
    let mut at = start;
    for index in 0..sessions {
        let stats = Arc::new(SessionStats::default());
        let session = play(index, stats.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let result = tokio::time::timeout_at(deadline, session).await;
            let playing = stats.playing.load(Ordering::Relaxed);
            let error = match result {
                Err(_elapsed) if playing => None,
                Err(_elapsed) => Some(match &*stats.first_request_error.lock().unwrap() {
                    Some((_, e)) => format!("no media before the end of the run; first error: {e}"),
                    None => "no media before the end of the run".to_string(),
                }),
                Ok(Err(e)) => Some(format!("{e:#}")),
                Ok(Ok(never)) => match never {},
            };
            (stats, error.map(|message| (Instant::now(), message)))
        });
        tasks.push(task);
        at += step;
    }

    let mut tally = Tally::new();
    let mut report = HttpLoadReport::default();
    let mut first_request_error: Option<(Instant, String)> = None;
    for task in tasks {
        let (bytes, error) = match task.await {
            Ok((stats, error)) => {
                report.playlist_requests += SessionStats::get(&stats.playlist_requests);
                report.media_requests += SessionStats::get(&stats.media_requests);
                report.request_errors += SessionStats::get(&stats.request_errors);
                report.connects += SessionStats::get(&stats.connects);
                report.abandoned_hints += SessionStats::get(&stats.abandoned_hints);
                match stats.mode.load(Ordering::Relaxed) {
                    MODE_LL_HLS => report.ll_hls_sessions += 1,
                    MODE_PLAIN_HLS => report.plain_hls_sessions += 1,
                    _ => {}
                }
                if let Some(error) = stats.first_request_error.lock().unwrap().take() {
                    keep_earliest(&mut first_request_error, error);
                }
                (SessionStats::get(&stats.media_bytes), error)
            }
            Err(e) => (0, Some((Instant::now(), format!("session task: {e}")))),
        };
        tally.add(bytes, error);
    }
    report.totals = tally.into_report(sessions, started);
    report.first_request_error = first_request_error.map(|(_, message)| message);
    report.mode = match (report.ll_hls_sessions, report.plain_hls_sessions) {
        (0, 0) => "unknown",
        (_, 0) => "ll-hls",
        (0, _) => "hls",
        _ => "mixed",
    };
    report
}

/// Where to connect and what to request, parsed from an `http://` or `ws://` URL.
#[derive(Debug, PartialEq, Eq)]
struct HttpTarget {
    /// Host name or address, without IPv6 brackets.
    host: String,
    port: u16,
    /// The URL's authority, sent as `Host`.
    authority: String,
    /// Path and query (at least `/`), without the fragment.
    path: String,
    /// The URL's fragment was `plain`: HLS clients poll even an LL-HLS playlist.
    force_plain: bool,
}

impl HttpTarget {
    fn parse(url: &str, scheme: &str) -> Result<Self> {
        let rest = url
            .get(..scheme.len() + 3)
            .filter(|prefix| prefix.eq_ignore_ascii_case(&format!("{scheme}://")))
            .map(|_| &url[scheme.len() + 3..])
            .with_context(|| format!("not a {scheme}:// URL: {url}"))?;
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (rest, None),
        };
        let force_plain = match fragment {
            None | Some("") => false,
            Some("plain") => true,
            Some(other) => bail!("unknown fragment #{other} in {url} (only #plain is known)"),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path.strip_prefix('?') {
            Some(_) => format!("/{path}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        let (host, port) = split_authority(authority, 80).with_context(|| format!("in {url}"))?;
        Ok(Self {
            host,
            port,
            authority: authority.to_string(),
            path,
            force_plain,
        })
    }

    /// The request path of `uri` from a playlist at `base` (a path): relative URIs resolve
    /// against the playlist's directory; absolute ones must be on this server.
    fn resolve(&self, base: &str, uri: &str) -> Result<String> {
        if let Some(rest) = uri.strip_prefix("http://") {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(split);
            let (host, port) = split_authority(authority, 80)?;
            if !host.eq_ignore_ascii_case(&self.host) || port != self.port {
                bail!("{uri} is on another server than the playlist");
            }
            return Ok(if path.is_empty() { "/" } else { path }.to_string());
        }
        if uri.contains("://") {
            bail!("unsupported URI {uri}");
        }
        if uri.starts_with('/') {
            return Ok(uri.to_string());
        }
        let base = base.split('?').next().unwrap_or(base);
        let dir = &base[..=base.rfind('/').unwrap_or(0)];
        Ok(format!("{dir}{uri}"))
    }
}

/// `host[:port]` or `[v6][:port]` -> (host without brackets, port).
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').context("unclosed [")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => bail!("bad authority {authority}"),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains('@') {
        bail!("no host (or user info) in authority '{authority}'");
    }
    let port = match port {
        Some(port) => port.parse().with_context(|| format!("bad port '{port}'"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

// --- HTTP/1.1 client ---------------------------------------------------------------------------

/// How the body of a response is delimited (RFC 9112, 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    /// No body (1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    body: BodyLength,
    /// The connection can carry another request after this response.
    keep_alive: bool,
    /// `Upgrade: websocket` was present.
    upgrade_websocket: bool,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete; `Ok(Some((head,
/// n)))`: the head took `n` bytes.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => bail!("not an HTTP/1.x response: {status_line:?}"),
    };
    let status: u16 = words
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    let mut upgrade_websocket = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"))?;
            if content_length.is_some_and(|l| l != length) {
                bail!("conflicting Content-Length headers");
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding (RFC 9112, 6.1); we ask for no other.
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                bail!("unsupported Transfer-Encoding {value:?}");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket = value.eq_ignore_ascii_case("websocket");
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLength::Empty
    } else if chunked {
        BodyLength::Chunked
    } else if let Some(length) = content_length {
        BodyLength::Length(length)
    } else {
        keep_alive = false;
        BodyLength::UntilClose
    };
    Ok(Some((
        Head {
            status,
            body,
            keep_alive,
            upgrade_websocket,
        },
        end + 4,
    )))
}

/// Decodes a chunked body (RFC 9112, 7.1) as it arrives, in pieces of any size.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
    /// The incomplete size, CRLF or trailer line.
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

impl ChunkedDecoder {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feeds `input`; passes body bytes to `body`; returns how many bytes of `input` belonged
    /// to the chunked body (all of them unless it ended inside `input`).
    fn feed(&mut self, input: &[u8], body: &mut impl FnMut(&[u8])) -> Result<usize> {
        let mut rest = input;
        while !rest.is_empty() && !self.is_done() {
            if let ChunkState::Data(remaining) = self.state {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                body(&rest[..n]);
                rest = &rest[n..];
                self.state = match remaining - n as u64 {
                    0 => ChunkState::DataEnd,
                    left => ChunkState::Data(left),
                };
                continue;
            }
            let (taken, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (rest.len(), false),
            };
            self.line.extend_from_slice(&rest[..taken]);
            rest = &rest[taken..];
            if self.line.len() > 4096 {
                bail!("chunk size or trailer line too long");
            }
            if !complete {
                break;
            }
            let line = std::mem::take(&mut self.line);
            let text = std::str::from_utf8(&line).context("chunked framing is not UTF-8")?;
            let text = text.trim_end_matches(['\r', '\n']);
            self.state = match self.state {
                ChunkState::Size => {
                    let size = text.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16)
                        .with_context(|| format!("bad chunk size {size:?}"))?;
                    if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    }
                }
                ChunkState::DataEnd if text.is_empty() => ChunkState::Size,
                ChunkState::DataEnd => bail!("no CRLF after chunk data"),
                ChunkState::Trailer if text.is_empty() => ChunkState::Done,
                ChunkState::Trailer => ChunkState::Trailer,
                ChunkState::Data(_) | ChunkState::Done => unreachable!("handled above"),
            };
        }
        Ok(input.len() - rest.len())
    }
}

/// Where a response body goes.
enum Sink<'a> {
    /// Kept, up to a limit (playlists).
    Keep(&'a mut Vec<u8>, usize),
    /// Counted as media bytes of the session, then dropped.
    Media(&'a AtomicU64),
}

impl Sink<'_> {
    fn take(&mut self, data: &[u8]) -> bool {
        match self {
            Sink::Keep(body, limit) => {
                if body.len() + data.len() > *limit {
                    return false;
                }
                body.extend_from_slice(data);
            }
            Sink::Media(counter) => {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        true
    }
}

/// An HTTP/1.1 keep-alive connection that (re)connects when needed. One request at a time.
struct HttpConn {
    target: Arc<HttpTarget>,
    stats: Arc<SessionStats>,
    stream: Option<TcpStream>,
    /// Has answered a request: a close before the next response is a keep-alive timeout.
    reused: bool,
    buf: Vec<u8>,
    /// Received bytes not yet consumed: `buf[start..end]`.
    start: usize,
    end: usize,
}

/// Status of a response and, if not 2xx, the start of its body.
struct Answer {
    status: u16,
    error_body: String,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn describe(&self, path: &str) -> String {
        format!("GET {path}: {} {}", self.status, self.error_body.trim())
    }
}

impl HttpConn {
    fn new(target: Arc<HttpTarget>, stats: Arc<SessionStats>) -> Self {
        Self {
            target,
            stats,
            stream: None,
            reused: false,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Closes the connection (e.g. to abandon a request in flight).
    fn close(&mut self) {
        self.stream = None;
    }

    /// GETs `path`; a 2xx body goes to `sink`. Retries once on a fresh connection when a
    /// reused one turns out closed before any byte of the response.
    async fn get(&mut self, path: &str, mut sink: Sink<'_>) -> Result<Answer> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchyard-loadtest\r\nAccept: */*\r\n\r\n",
            self.target.authority
        );
        let head = loop {
            let retry_allowed = self.stream.is_some() && self.reused;
            match self.send_and_read_head(request.as_bytes()).await {
                Ok(Some(head)) => break head,
                Ok(None) if retry_allowed => self.stream = None,
                Ok(None) => bail!("GET {path}: connection closed before the response"),
                Err(e) => {
                    self.stream = None;
                    return Err(e.context(format!("GET {path}")));
                }
            }
        };
        let result = self.read_body(&head, &mut sink).await;
        if result.is_err() || !head.keep_alive {
            self.stream = None;
        } else {
            self.reused = true;
        }
        let error_body = result.with_context(|| format!("GET {path}: body"))?;
        Ok(Answer {
            status: head.status,
            error_body,
        })
    }

    /// Sends the request and reads the head; `Ok(None)` if the server closed the connection
    /// before sending anything.
    async fn send_and_read_head(&mut self, request: &[u8]) -> Result<Option<Head>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect((self.target.host.as_str(), self.target.port))
                .await
                .context("connect")?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            SessionStats::add(&self.stats.connects, 1);
            self.stream = Some(stream);
            self.reused = false;
            self.start = 0;
            self.end = 0;
            if self.buf.is_empty() {
                self.buf = vec![0; HTTP_READ_BUFFER];
            }
        }
        let stream = self.stream.as_mut().expect("connected above");
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if let Err(e) = stream.write_all(request).await {
            if self.reused {
                return Ok(None);
            }
            return Err(anyhow::Error::from(e).context("send request"));
        }
        let mut received_any = self.end > self.start;
        loop {
            if let Some((head, n)) = parse_head(&self.buf[self.start..self.end])? {
                self.start += n;
                return Ok(Some(head));
            }
            if self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = match stream.read(&mut self.buf[self.end..]).await {
                Ok(n) => n,
                Err(e) if !received_any && self.reused => {
                    tracing::debug!(error = %e, "keep-alive connection failed; reconnecting");
                    return Ok(None);
                }
                Err(e) => return Err(anyhow::Error::from(e).context("read response head")),
            };
            if n == 0 {
                if received_any {
                    bail!("connection closed inside the response head");
                }
                return Ok(None);
            }
            received_any = true;
            self.end += n;
        }
    }

    /// Reads the body that `head` announces; returns the start of it for a non-2xx answer.
    async fn read_body(&mut self, head: &Head, sink: &mut Sink<'_>) -> Result<String> {
        let success = (200..300).contains(&head.status);
        let mut error_body = Vec::new();
        let mut overflow = false;
        let mut take = |data: &[u8]| {
            if success {
                overflow |= !sink.take(data);
            } else if error_body.len() < ERROR_BODY_KEPT {
                let n = data.len().min(ERROR_BODY_KEPT - error_body.len());
                error_body.extend_from_slice(&data[..n]);
            }
        };
        let stream = self.stream.as_mut().context("not connected")?;
        match head.body {
            BodyLength::Empty => {}
            BodyLength::Length(mut remaining) => loop {
                let available = (self.end - self.start) as u64;
                let n = usize::try_from(remaining.min(available)).unwrap_or(usize::MAX);
                take(&self.buf[self.start..self.start + n]);
                self.start += n;
                remaining -= n as u64;
                if remaining == 0 {
                    break;
                }
                self.start = 0;
                self.end = read_some(stream, &mut self.buf).await?;
            },
            BodyLength::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                loop {
                    let n = decoder.feed(&self.buf[self.start..self.end], &mut take)?;
                    self.start += n;
                    if decoder.is_done() {
                        break;
                    }
                    self.start = 0;
                    self.end = read_some(stream, &mut self.buf).await?;
                }
            }
            BodyLength::UntilClose => loop {
                take(&self.buf[self.start..self.end]);
                self.start = 0;
                self.end = 0;
                let n = stream.read(&mut self.buf).await.context("read")?;
                if n == 0 {
                    break;
                }
                self.end = n;
            },
        }
        if overflow {
            bail!("body larger than the limit");
        }
        Ok(String::from_utf8_lossy(&error_body).into_owned())
    }
}

// --- HLS ---------------------------------------------------------------------------------------

/// What a client needs from a media playlist.
#[derive(Debug, Default, Clone, PartialEq)]
struct Playlist {
    /// `EXT-X-TARGETDURATION`, seconds.
    target_duration: f64,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds: the playlist is LL-HLS.
    part_target: Option<f64>,
    /// `EXT-X-MAP` URI.
    map: Option<String>,
    /// Complete segments: (media sequence number, URI).
    segments: Vec<(u64, String)>,
    /// Listed parts, in order.
    parts: Vec<PartRef>,
    /// The part after the last listed one: (msn, index), what a blocking reload asks for.
    next_part: (u64, u32),
    /// `EXT-X-PRELOAD-HINT:TYPE=PART` URI: the part at `next_part`.
    preload_hint: Option<String>,
    end_list: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartRef {
    msn: u64,
    index: u32,
    uri: String,
}

impl Playlist {
    fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            bail!("not a playlist: no #EXTM3U");
        }
        let mut playlist = Playlist::default();
        let mut msn = 0u64;
        let mut index = 0u32;
        let mut target_duration = None;
        for line in lines {
            let Some(tag) = line.strip_prefix('#') else {
                // A URI line ends a segment (EXTINF is required before it).
                playlist.segments.push((msn, line.to_string()));
                msn += 1;
                index = 0;
                continue;
            };
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            match name {
                "EXT-X-TARGETDURATION" => {
                    target_duration = Some(
                        value
                            .parse::<f64>()
                            .with_context(|| format!("bad EXT-X-TARGETDURATION {value:?}"))?,
                    );
                }
                "EXT-X-MEDIA-SEQUENCE" => {
                    msn = value
                        .parse()
                        .with_context(|| format!("bad EXT-X-MEDIA-SEQUENCE {value:?}"))?;
                }
                "EXT-X-SKIP" => {
                    let skipped: u64 = attribute(value, "SKIPPED-SEGMENTS")
                        .and_then(|v| v.parse().ok())
                        .context("bad EXT-X-SKIP")?;
                    msn += skipped;
                }
                "EXT-X-PART-INF" => {
                    playlist.part_target = Some(
                        attribute(value, "PART-TARGET")
                            .and_then(|v| v.parse().ok())
                            .context("bad EXT-X-PART-INF")?,
                    );
                }
                "EXT-X-MAP" if playlist.map.is_none() => {
                    playlist.map = Some(attribute(value, "URI").context("EXT-X-MAP without URI")?);
                }
                "EXT-X-PART" => {
                    let uri = attribute(value, "URI").context("EXT-X-PART without URI")?;
                    playlist.parts.push(PartRef { msn, index, uri });
                    index += 1;
                }
                "EXT-X-PRELOAD-HINT" if attribute(value, "TYPE").as_deref() == Some("PART") => {
                    playlist.preload_hint = attribute(value, "URI");
                }
                "EXT-X-ENDLIST" => playlist.end_list = true,
                _ => {}
            }
        }
        playlist.target_duration = target_duration.context("no EXT-X-TARGETDURATION")?;
        playlist.next_part = (msn, index);
        Ok(playlist)
    }

    fn lists_part(&self, part: (u64, u32)) -> bool {
        self.parts.iter().any(|p| (p.msn, p.index) == part)
    }
}

/// The value of attribute `name` in an attribute list (`A=1,B="x,y"`), unquoted.
fn attribute(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let next = quoted[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&quoted[end + 1..]);
            (&quoted[..end], next)
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// `path` with a blocking-reload query for `(msn, part)` appended.
fn blocking_reload_path(path: &str, (msn, part): (u64, u32)) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}_HLS_msn={msn}&_HLS_part={part}")
}

/// One HLS player until an unrecoverable error (or cancellation at the deadline).
async fn hls_session(target: &Arc<HttpTarget>, stats: &Arc<SessionStats>) -> Result<Never> {
    let mut client = HlsClient {
        target: target.clone(),
        stats: stats.clone(),
        playlist_conn: HttpConn::new(target.clone(), stats.clone()),
        media_conn: HttpConn::new(target.clone(), stats.clone()),
        consecutive_errors: 0,
        init_fetched: false,
    };
    loop {
        let Some(playlist) = client.playlist(&target.path).await? else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if playlist.part_target.is_some() && !target.force_plain {
            stats.mode.store(MODE_LL_HLS, Ordering::Relaxed);
            client.low_latency(playlist).await?;
        } else {
            stats.mode.store(MODE_PLAIN_HLS, Ordering::Relaxed);
            client.poll(playlist).await?;
        }
        // Back here after a failed request: start again from a plain playlist.
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

struct HlsClient {
    target: Arc<HttpTarget>,
    stats: Arc<SessionStats>,
    playlist_conn: HttpConn,
    media_conn: HttpConn,
    consecutive_errors: u32,
    init_fetched: bool,
}

impl HlsClient {
    /// Counts a failed request; an error once there were too many in a row.
    fn failed(&mut self, message: String) -> Result<()> {
        self.consecutive_errors += 1;
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            bail!("{MAX_CONSECUTIVE_ERRORS} failed requests in a row, the last: {message}");
        }
        self.stats.note_request_error(message);
        Ok(())
    }

    /// Counts the answer to a media request; false if it failed.
    fn media_answer(&mut self, path: &str, answer: &Answer) -> Result<bool> {
        if answer.ok() {
            self.consecutive_errors = 0;
            self.stats.playing.store(true, Ordering::Relaxed);
            Ok(true)
        } else {
            self.failed(answer.describe(path))?;
            Ok(false)
        }
    }

    /// GETs the playlist at `path`; `None` after a counted failure.
    async fn playlist(&mut self, path: &str) -> Result<Option<Playlist>> {
        let mut body = Vec::new();
        SessionStats::add(&self.stats.playlist_requests, 1);
        let answer = self
            .playlist_conn
            .get(path, Sink::Keep(&mut body, MAX_PLAYLIST))
            .await?;
        self.parse_playlist(path, &answer, &body)
    }

    fn parse_playlist(
        &mut self,
        path: &str,
        answer: &Answer,
        body: &[u8],
    ) -> Result<Option<Playlist>> {
        if !answer.ok() {
            self.failed(answer.describe(path))?;
            return Ok(None);
        }
        let parsed = std::str::from_utf8(body)
            .context("not UTF-8")
            .and_then(Playlist::parse);
        match parsed {
            Ok(playlist) => Ok(Some(playlist)),
            Err(e) => {
                self.failed(format!("GET {path}: {e:#}"))?;
                Ok(None)
            }
        }
    }

    /// GETs a media URI of the playlist on the media connection; false after a counted failure.
    async fn media(&mut self, uri: &str) -> Result<bool> {
        let path = self.target.resolve(&self.target.path, uri)?;
        SessionStats::add(&self.stats.media_requests, 1);
        let answer = self
            .media_conn
            .get(&path, Sink::Media(&self.stats.media_bytes))
            .await?;
        self.media_answer(&path, &answer)
    }

    /// GETs the init section once per session.
    async fn init(&mut self, playlist: &Playlist) -> Result<bool> {
        match &playlist.map {
            Some(map) if !self.init_fetched => {
                self.init_fetched = self.media(map).await?;
                Ok(self.init_fetched)
            }
            _ => Ok(true),
        }
    }

    /// Plain HLS: poll every half target duration, GET each new segment once. Returns after a
    /// failed playlist request.
    async fn poll(&mut self, mut playlist: Playlist) -> Result<()> {
        if !self.init(&playlist).await? {
            return Ok(());
        }
        // Start at the live edge: the last complete segment.
        let mut next = playlist.segments.last().map_or(0, |(msn, _)| *msn);
        loop {
            let polled = tokio::time::Instant::now();
            for (msn, uri) in &playlist.segments {
                if *msn >= next {
                    self.media(uri).await?;
                    next = msn + 1;
                }
            }
            let interval = Duration::from_secs_f64(playlist.target_duration / 2.0).max(MIN_POLL);
            tokio::time::sleep_until(polled + interval).await;
            let path = self.target.path.clone();
            match self.playlist(&path).await? {
                Some(p) => playlist = p,
                None => return Ok(()),
            }
        }
    }

    /// LL-HLS: blocking playlist reloads, the preload-hinted part fetched alongside, and any
    /// listed part not fetched yet. Returns after a failed playlist request.
    async fn low_latency(&mut self, mut playlist: Playlist) -> Result<()> {
        if !self.init(&playlist).await? {
            return Ok(());
        }
        // Start at the live edge: the last listed part.
        let mut last: Option<(u64, u32)> = None;
        if let Some(part) = playlist.parts.last().cloned() {
            if self.media(&part.uri).await? {
                last = Some((part.msn, part.index));
            }
        }
        loop {
            let hinted = playlist.next_part;
            let reload = blocking_reload_path(&self.target.path, hinted);
            let hint_path = match &playlist.preload_hint {
                Some(uri) => Some(self.target.resolve(&self.target.path, uri)?),
                None => None,
            };
            SessionStats::add(&self.stats.playlist_requests, 1);
            let (reloaded, hint_answer, new_playlist) = {
                let playlist_conn = &mut self.playlist_conn;
                let reload_fut = async {
                    let mut body = Vec::new();
                    let answer = playlist_conn
                        .get(&reload, Sink::Keep(&mut body, MAX_PLAYLIST))
                        .await?;
                    anyhow::Ok((answer, body))
                };
                let media_conn = &mut self.media_conn;
                let stats = &self.stats;
                let hint_fut = async {
                    match &hint_path {
                        Some(path) => {
                            SessionStats::add(&stats.media_requests, 1);
                            Some(media_conn.get(path, Sink::Media(&stats.media_bytes)).await)
                        }
                        None => None,
                    }
                };
                tokio::pin!(reload_fut, hint_fut);
                let mut hint_answer = None;
                let reloaded = loop {
                    tokio::select! {
                        reloaded = &mut reload_fut => break reloaded?,
                        answer = &mut hint_fut, if hint_answer.is_none() => {
                            hint_answer = Some(answer);
                        }
                    }
                };
                let new_playlist = if reloaded.0.ok() {
                    std::str::from_utf8(&reloaded.1)
                        .context("not UTF-8")
                        .and_then(Playlist::parse)
                        .ok()
                } else {
                    None
                };
                if hint_answer.is_none() {
                    // The hinted part is listed: its answer is under way. Not listed: the
                    // server cut a segment there and the part comes under another name.
                    if new_playlist.as_ref().is_some_and(|p| p.lists_part(hinted)) {
                        hint_answer = Some(hint_fut.await);
                    }
                }
                (reloaded, hint_answer, new_playlist)
            };
            match (&hint_path, hint_answer) {
                (Some(path), Some(Some(answer))) => {
                    if self.media_answer(path, &answer?)? {
                        last = Some(hinted);
                    }
                }
                (Some(_), _) => {
                    self.media_conn.close();
                    SessionStats::add(&self.stats.abandoned_hints, 1);
                }
                (None, _) => {}
            }
            let Some(new_playlist) = new_playlist else {
                // Counts the failure (a non-2xx answer or an unparsable playlist).
                self.parse_playlist(&reload, &reloaded.0, &reloaded.1)?;
                return Ok(());
            };
            playlist = new_playlist;
            self.consecutive_errors = 0;
            // Catch up on listed parts not fetched yet (none, usually).
            let first_listed = playlist.parts.first().map(|p| (p.msn, p.index));
            if last.is_none() || last < first_listed {
                // Fell out of the window: jump to the live edge.
                last = playlist
                    .parts
                    .len()
                    .checked_sub(2)
                    .map(|i| (playlist.parts[i].msn, playlist.parts[i].index));
            }
            let missing: Vec<PartRef> = playlist
                .parts
                .iter()
                .filter(|p| Some((p.msn, p.index)) > last)
                .cloned()
                .collect();
            for part in missing {
                if self.media(&part.uri).await? {
                    last = Some((part.msn, part.index));
                }
            }
        }
    }
}

// --- WebSocket MSE -----------------------------------------------------------------------------

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

// --- shared ------------------------------------------------------------------------------------

/// Sums session outcomes into the fields that every report has.
/// Keeps in `slot` whichever error happened first.
fn keep_earliest(slot: &mut Option<(Instant, String)>, error: (Instant, String)) {
    if slot.as_ref().is_none_or(|(first, _)| error.0 < *first) {
        *slot = Some(error);
    }
}

struct Tally {
    playing: usize,
    failed: usize,
    bytes_total: u64,
    bytes_max: u64,
    /// Fewest bytes of a playing session (`u64::MAX` while none).
    min: u64,
    first_error: Option<(Instant, String)>,
}

impl Tally {
    fn new() -> Self {
        Self {
            playing: 0,
            failed: 0,
            bytes_total: 0,
            bytes_max: 0,
            min: u64::MAX,
            first_error: None,
        }
    }

    fn add(&mut self, bytes: u64, error: Option<(Instant, String)>) {
        self.bytes_total += bytes;
        match error {
            None => {
                self.playing += 1;
                self.min = self.min.min(bytes);
                self.bytes_max = self.bytes_max.max(bytes);
            }
            Some(error) => {
                self.failed += 1;
                keep_earliest(&mut self.first_error, error);
            }
        }
    }

    /// The report of a run of `sessions` that began at `started` and ends now.
    fn into_report(self, sessions: usize, started: Instant) -> RtmpLoadReport {
        RtmpLoadReport {
            sessions,
            playing: self.playing,
            failed: self.failed,
            bytes_total: self.bytes_total,
            bytes_min: if self.playing > 0 { self.min } else { 0 },
            bytes_max: self.bytes_max,
            seconds: started.elapsed().as_secs_f64(),
            first_error: self.first_error.map(|(_, message)| message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::messages::RtmpMessage;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    #[test]
    fn ramp_stays_short() {
        assert_eq!(ramp_step(10), RAMP_STEP);
        assert!(ramp_step(10_000) * 10_000 <= RAMP_MAX);
        assert_eq!(ramp_step(0), RAMP_STEP);
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

    const LL_PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=6.000
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:40
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXTINF:2.00000,
seg40.m4s
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part41.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part41.1.m4s\"
#EXTINF:0.40000,
seg41.m4s
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.400Z
#EXT-X-PART:DURATION=0.20000,URI=\"part42.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.1.m4s\"
";

    #[test]
    fn parses_ll_hls_playlist() {
        let p = Playlist::parse(LL_PLAYLIST).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(p.map.as_deref(), Some("init.mp4"));
        assert_eq!(
            p.segments,
            vec![(40, "seg40.m4s".to_string()), (41, "seg41.m4s".to_string())]
        );
        let parts: Vec<(u64, u32, &str)> = p
            .parts
            .iter()
            .map(|x| (x.msn, x.index, x.uri.as_str()))
            .collect();
        assert_eq!(
            parts,
            vec![
                (41, 0, "part41.0.m4s"),
                (41, 1, "part41.1.m4s"),
                (42, 0, "part42.0.m4s")
            ]
        );
        // The part after the last listed one, which the preload hint names.
        assert_eq!(p.next_part, (42, 1));
        assert_eq!(p.preload_hint.as_deref(), Some("part42.1.m4s"));
        assert!(p.lists_part((41, 1)) && !p.lists_part((42, 1)));
        assert!(!p.end_list);
        assert_eq!(
            blocking_reload_path("/hls/live/x/index.m3u8", p.next_part),
            "/hls/live/x/index.m3u8?_HLS_msn=42&_HLS_part=1"
        );
        assert_eq!(
            blocking_reload_path("/i.m3u8?token=a", (7, 0)),
            "/i.m3u8?token=a&_HLS_msn=7&_HLS_part=0"
        );
    }

    #[test]
    fn next_part_after_a_segment_boundary_and_a_skip() {
        // The segment just completed: no part of the next one yet.
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
                    #EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
                    #EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXTINF:0.2,\ns8\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.segments, vec![(8, "s8".to_string())]);
        assert_eq!(p.parts[0].msn, 8);
        assert_eq!(p.next_part, (9, 0));
        assert_eq!(p.preload_hint, None);
    }

    #[test]
    fn parses_plain_hls_playlist() {
        // As nginx-rtmp writes it.
        let text = "#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-MEDIA-SEQUENCE:12\r\n\
                    #EXT-X-TARGETDURATION:2\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:2.000,\r\n\
                    bench-12.ts\r\n#EXTINF:2.000,\r\nbench-13.ts\r\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.part_target, None);
        assert_eq!(p.map, None);
        assert_eq!(
            p.segments,
            vec![(12, "bench-12.ts".into()), (13, "bench-13.ts".into())]
        );
        assert_eq!(p.next_part, (14, 0));
        assert!(Playlist::parse("#EXT-X-TARGETDURATION:2\n").is_err());
        assert!(Playlist::parse("#EXTM3U\nseg.ts\n").is_err()); // no target duration
        assert!(
            Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:x\n").is_err()
        );
        let ended = Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-ENDLIST\n").unwrap();
        assert!(ended.end_list && ended.segments.is_empty());
    }

    #[test]
    fn reads_attributes() {
        let list = "TYPE=PART,URI=\"a,b=c.m4s\",BYTERANGE-START=3";
        assert_eq!(attribute(list, "TYPE").as_deref(), Some("PART"));
        assert_eq!(attribute(list, "URI").as_deref(), Some("a,b=c.m4s"));
        assert_eq!(attribute(list, "BYTERANGE-START").as_deref(), Some("3"));
        assert_eq!(attribute(list, "START"), None);
        assert_eq!(attribute("URI=\"unclosed", "URI"), None);
    }

    #[test]
    fn parses_http_urls_and_resolves_uris() {
        let t = HttpTarget::parse("http://127.0.0.1:18081/hls/live/b/index.m3u8", "http").unwrap();
        assert_eq!(
            t,
            HttpTarget {
                host: "127.0.0.1".into(),
                port: 18081,
                authority: "127.0.0.1:18081".into(),
                path: "/hls/live/b/index.m3u8".into(),
                force_plain: false,
            }
        );
        let base = t.path.as_str();
        assert_eq!(
            t.resolve(base, "part3.1.m4s").unwrap(),
            "/hls/live/b/part3.1.m4s"
        );
        assert_eq!(t.resolve(base, "/x/seg.ts").unwrap(), "/x/seg.ts");
        assert_eq!(
            t.resolve(base, "http://127.0.0.1:18081/y/seg.ts?a=1")
                .unwrap(),
            "/y/seg.ts?a=1"
        );
        assert!(t.resolve(base, "http://other:18081/y.ts").is_err());
        assert!(t.resolve(base, "https://127.0.0.1:18081/y.ts").is_err());
        assert_eq!(t.resolve("/a/i.m3u8?x=/b/", "s.ts").unwrap(), "/a/s.ts");

        let t = HttpTarget::parse("HTTP://[::1]/live.m3u8?k=v#plain", "http").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(t.path, "/live.m3u8?k=v");
        assert!(t.force_plain);
        let t = HttpTarget::parse("ws://h:8080?x", "ws").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("h:8080", "/?x"));
        for bad in [
            "rtmp://h/a/b",
            "http://",
            "http://:80/x",
            "http://h:port/x",
            "http://u@h/x",
            "http://h/x#other",
        ] {
            assert!(HttpTarget::parse(bad, "http").is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_response_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        let text =
            b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\nContent-Length: 1234\r\n\r\nBODY";
        let (head, n) = parse_head(text).unwrap().unwrap();
        assert_eq!(n, text.len() - 4);
        assert_eq!(
            head,
            Head {
                status: 200,
                body: BodyLength::Length(1234),
                keep_alive: true,
                upgrade_websocket: false
            }
        );
        let (head, _) = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: gzip, chunked\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.body, head.keep_alive),
            (503, BodyLength::Chunked, false)
        );
        let (head, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (head.body, head.keep_alive),
            (BodyLength::UntilClose, false)
        );
        let (head, _) = parse_head(b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.body, head.keep_alive), (BodyLength::Empty, true));
        let (head, _) = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.body, head.upgrade_websocket),
            (101, BodyLength::Empty, true)
        );
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn decodes_chunked_bodies_split_anywhere() {
        let wire =
            b"4;ext=1\r\nWiki\r\n13\r\npedia in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let body_end = wire.len() - 4;
        for split in 0..=wire.len() {
            for step in [1, 3, wire.len()] {
                let mut decoder = ChunkedDecoder::default();
                let mut body = Vec::new();
                let mut consumed = 0;
                // First the bytes before `split`, then the rest in pieces of `step`.
                let mut pieces = vec![&wire[..split]];
                pieces.extend(wire[split..].chunks(step));
                for piece in pieces {
                    if decoder.is_done() {
                        break;
                    }
                    consumed += decoder
                        .feed(piece, &mut |d: &[u8]| body.extend_from_slice(d))
                        .unwrap();
                }
                assert!(decoder.is_done(), "split {split} step {step}");
                assert_eq!(consumed, body_end, "split {split} step {step}");
                assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
            }
        }
        for bad in [&b"zz\r\n"[..], b"2\r\nabX\r\n", b"-1\r\n"] {
            let mut decoder = ChunkedDecoder::default();
            assert!(decoder.feed(bad, &mut |_: &[u8]| {}).is_err());
        }
    }

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

    #[tokio::test]
    async fn dispatches_by_scheme() {
        for bad in ["https://h/x.m3u8", "wss://h/mse/x", "ftp://h/x", "nothing"] {
            assert!(
                run(bad, 1, Duration::from_millis(10)).await.is_err(),
                "{bad}"
            );
        }
        // Nothing listens on port 1: every session fails at connect.
        for url in [
            "http://127.0.0.1:1/hls/x/index.m3u8",
            "ws://127.0.0.1:1/mse/x",
        ] {
            let LoadReport::Http(report) = run(url, 2, Duration::from_millis(200)).await.unwrap()
            else {
                panic!("not an HTTP report");
            };
            assert_eq!(
                (
                    report.totals.sessions,
                    report.totals.playing,
                    report.totals.failed
                ),
                (2, 0, 2)
            );
            assert!(
                report.totals.first_error.unwrap().contains("connect"),
                "{url}"
            );
        }
        let LoadReport::Rtmp(report) =
            run("rtmp://127.0.0.1:1/live/x", 1, Duration::from_millis(200))
                .await
                .unwrap()
        else {
            panic!("not an RTMP report");
        };
        assert_eq!(report.failed, 1);
    }

    /// A tiny HTTP server on loopback: answers each request on a connection with the next of
    /// `answers` (closing the connection where an answer is `None`).
    async fn serve(
        answers: Vec<Option<&'static [u8]>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            let mut answers = answers.into_iter().peekable();
            'connections: loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = socket.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            continue 'connections;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let request = String::from_utf8(buf.drain(..end).collect()).unwrap();
                    requests.push(request.lines().next().unwrap().to_string());
                    let answer = answers.next().expect("a request too many");
                    if let Some(answer) = answer {
                        socket.write_all(answer).await.unwrap();
                    }
                    if answers.peek().is_none() {
                        return requests;
                    }
                    if answer.is_none() {
                        continue 'connections;
                    }
                }
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_client_keeps_alive_reads_bodies_and_reconnects() {
        let (port, server) = serve(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            // Closed before answering: a keep-alive timeout; the client retries on a new one.
            None,
            Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ])
        .await;
        let target =
            Arc::new(HttpTarget::parse(&format!("http://127.0.0.1:{port}/"), "http").unwrap());
        let stats = Arc::new(SessionStats::default());
        let mut conn = HttpConn::new(target, stats.clone());
        let mut body = Vec::new();
        let answer = conn.get("/a", Sink::Keep(&mut body, 100)).await.unwrap();
        assert!(answer.ok());
        assert_eq!(body, b"hello");
        let answer = conn
            .get("/b", Sink::Media(&stats.media_bytes))
            .await
            .unwrap();
        assert!(answer.ok());
        assert_eq!(SessionStats::get(&stats.media_bytes), 3);
        let answer = conn
            .get("/c", Sink::Media(&stats.media_bytes))
            .await
            .unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.describe("/c"), "GET /c: 404 not found");
        assert_eq!(SessionStats::get(&stats.media_bytes), 3);
        let mut body = Vec::new();
        assert!(conn.get("/d", Sink::Keep(&mut body, 1)).await.is_err()); // over the limit
        drop(conn);
        assert_eq!(SessionStats::get(&stats.connects), 2);
        assert_eq!(
            server.await.unwrap(),
            [
                "GET /a HTTP/1.1",
                "GET /b HTTP/1.1",
                "GET /c HTTP/1.1",
                "GET /c HTTP/1.1",
                "GET /d HTTP/1.1"
            ]
        );
    }
}
