//! The RTMP server: listener, handshake, session commands, and the connection loop that
//! drives a publisher ([`RtmpIngest`]) or a player ([`RtmpPlayer`]).
//!
//! rml_rtmp does the handshake and the chunk/message/session state (RTMP spec, Adobe 2012);
//! FLV bodies are ours. A stream `rtmp://HOST/{app}/{key}` is the bus name `app/key`; a query
//! string on the key (`key?token=...`, as OBS and CDNs use) is not part of the name. Its
//! `token`, or else one on the application (`rtmp://HOST/live?token=...` as the server URL),
//! is what publish and play are authorized with ([`crate::auth`]); a denial answers `publish`
//! with `NetStream.Publish.BadName` and `play` with `NetStream.Play.Failed`, the description
//! saying why, and closes the connection.
//!
//! RTMPS is the same session inside TLS (`rtmp.rtmps_listen`, certificate from `crate::tls`);
//! one deadline, `rtmp.handshake_timeout_secs` from the accept, covers the TLS and the RTMP
//! handshakes, so a client that stalls in either is cut off.

pub mod client;

use crate::audio::AudioNeed;
use crate::auth::{rtmp_token, AccessRequest, Action, Auth};
use crate::bus::{Peer, Registry};
use crate::inputs::rtmp::RtmpIngest;
use crate::outputs::rtmp::{Pending, RtmpPlayer};
use bytes::{Buf, Bytes};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The `[rtmp]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// RTMP publish and play. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Chunk size announced to and used towards every RTMP client (128..=65536). One size for
    /// all players lets each message be chunked once and shared.
    pub chunk_size: u32,
    /// A player whose socket accepts nothing for this long is disconnected.
    pub write_timeout_secs: u64,
    /// Handshake and connect/publish/play must complete within this time.
    pub handshake_timeout_secs: u64,
    /// A publisher that sends no audio or video for this long is disconnected.
    pub media_timeout_secs: u64,
    /// A player's writes are gathered for up to this long and sent together (at most one frame
    /// of added delay at 30 fps); fewer, larger writes cost less CPU per player. 0 writes each
    /// message as it comes. Also read as `write_batch_ms`: SRS batches its players' writes
    /// for 350 ms (its `mw_latency`), which this reaches when set to 350.
    #[serde(alias = "write_batch_ms")]
    pub coalesce_ms: u64,
    /// RTMPS (RTMP over TLS) publish and play, e.g. "0.0.0.0:1936"; the certificate is
    /// `[tls]`'s, and `handshake_timeout_secs` covers the TLS handshake too. Empty: off.
    #[serde(with = "crate::config::optional_addr")]
    pub rtmps_listen: Option<SocketAddr>,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: ([0, 0, 0, 0], 1935).into(),
            chunk_size: 4096,
            write_timeout_secs: 30,
            handshake_timeout_secs: 10,
            media_timeout_secs: 60,
            coalesce_ms: 30,
            rtmps_listen: None,
        }
    }
}

/// Why a connection ended early; logged once per connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("RTMP session: {0:?}")]
    Session(rml_rtmp::sessions::ServerSessionError),
    #[error("malformed RTMP chunk stream (rml_rtmp's chunk parser gave up on it)")]
    ChunkParserPanic,
    #[error("{0}")]
    Media(#[from] crate::inputs::rtmp::IngestError),
    #[error("player stopped reading for {0:?}")]
    WriteStalled(Duration),
    #[error("publisher sent no audio or video for {0:?} (rtmp.media_timeout_secs)")]
    NoMedia(Duration),
}

impl From<rml_rtmp::sessions::ServerSessionError> for ConnError {
    fn from(e: rml_rtmp::sessions::ServerSessionError) -> Self {
        ConnError::Session(e)
    }
}

/// What every connection of an RTMP listener shares: the bus, the settings, and the gates a
/// connection passes (`limits.max_sessions_per_ip` at the accept, authorization at
/// publish/play).
#[derive(Clone)]
pub struct RtmpShared {
    pub registry: Registry,
    pub config: RtmpConfig,
    pub ip_sessions: Arc<crate::limits::IpSessions>,
    pub auth: Arc<Auth>,
}

/// Accepts RTMP connections (RTMPS ones with `tls`) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: RtmpShared,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let RtmpShared {
        registry,
        config,
        ip_sessions,
        auth,
    } = shared;
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Closed at once: before the handshake there is no way to say why.
        let Some(permit) = ip_sessions.admit(peer.ip(), "RTMP connection") else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (registry, config, shutdown) = (registry.clone(), config.clone(), shutdown.clone());
        let (tls, auth) = (tls.clone(), auth.clone());
        let tls_used = tls.is_some();
        let accepted = Instant::now();
        tracker.spawn(async move {
            let _permit = permit;
            let result = match tls {
                None => {
                    let mut conn = Connection::new(socket, peer, &config, accepted, auth);
                    conn.run(&registry, &shutdown).await
                }
                Some(acceptor) => {
                    let deadline = accepted + Duration::from_secs(config.handshake_timeout_secs);
                    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(socket));
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = handshake => r.map_err(|_| {
                            crate::limits::hit(crate::limits::Limit::RtmpHandshakeTimeout);
                            ConnError::Timeout("TLS handshake")
                        }).and_then(|r| r.map_err(ConnError::Tls)),
                    };
                    match stream {
                        Ok(stream) => {
                            let mut conn = Connection::new(stream, peer, &config, accepted, auth);
                            conn.run(&registry, &shutdown).await
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            let what = if tls_used { "RTMPS" } else { "RTMP" };
            match result {
                Ok(()) => tracing::debug!(%peer, "{what} connection closed"),
                Err(e) => tracing::info!(%peer, error = %e, "{what} connection closed"),
            }
        });
    }
}

/// What a connection is doing after `connect`.
enum Role {
    Idle,
    Publishing(RtmpIngest),
    Playing(RtmpPlayer),
}

/// What woke the connection loop.
enum Wake {
    Shutdown,
    Input(io::Result<usize>),
    Kicked,
    Media(Option<crate::bus::ReaderEvent>),
    /// The coalescing window of a player's pending writes is over.
    FlushDue,
}

/// The socket side of one RTMP (or RTMPS) connection: the handshake, reads, timeouts and the
/// writes of what its [`RtmpSession`] queues.
struct Connection<S> {
    socket: S,
    peer: SocketAddr,
    /// When the TCP connection was accepted: the handshakes must end `handshake_timeout` later.
    accepted: Instant,
    buf: Box<[u8]>,
    chunk_size: u32,
    write_timeout: Duration,
    handshake_timeout: Duration,
    media_timeout: Duration,
    coalesce: Duration,
    auth: Arc<Auth>,
}

/// One RTMP session after the handshake, socket aside: bytes received go through rml_rtmp's
/// [`ServerSession`], and its events are acted on (connect, publish and play with their
/// stream keys and tokens, metadata, audio and video messages into [`RtmpIngest`]); the bytes
/// to send are queued in order. [`Connection`] feeds it and writes what it queues; the fuzz
/// target `rtmp_session` (protocols/fuzz) drives it with bytes alone.
pub struct RtmpSession {
    session: ServerSession,
    role: Role,
    peer: SocketAddr,
    out: Vec<Bytes>,
    chunk_size: u32,
    app: String,
    auth: Arc<Auth>,
    /// The `token` of the `connect` command's application (`live?token=...`), if any.
    app_token: Option<String>,
    /// When the publisher last sent audio or video (the session's start before it has).
    last_media: tokio::time::Instant,
}

/// Players send little (acknowledgements, pings); publishers send the media.
const PLAYER_READ_BUFFER: usize = 4 * 1024;
const PUBLISHER_READ_BUFFER: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(
        socket: S,
        peer: SocketAddr,
        config: &RtmpConfig,
        accepted: Instant,
        auth: Arc<Auth>,
    ) -> Self {
        Connection {
            socket,
            peer,
            accepted,
            buf: vec![0; PLAYER_READ_BUFFER].into_boxed_slice(),
            chunk_size: config.chunk_size,
            write_timeout: Duration::from_secs(config.write_timeout_secs),
            handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
            media_timeout: Duration::from_secs(config.media_timeout_secs),
            coalesce: Duration::from_millis(config.coalesce_ms),
            auth,
        }
    }

    async fn run(
        &mut self,
        registry: &Registry,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnError> {
        let leftover = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout_at(self.accepted + self.handshake_timeout, self.handshake()) => r.map_err(|_| {
                crate::limits::hit(crate::limits::Limit::RtmpHandshakeTimeout);
                ConnError::Timeout("handshake")
            })??,
        };
        let mut rtmp = RtmpSession::start(
            self.peer,
            self.chunk_size,
            self.auth.clone(),
            &leftover,
            registry,
        )
        .await?;
        self.flush(&mut rtmp).await?;
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        // While a player's writes are being coalesced, the reader is not polled: the player
        // sleeps until the window ends instead of waking for every frame.
        let mut flush_at: Option<tokio::time::Instant> = None;
        let media_timeout = self.media_timeout;
        loop {
            let media_deadline = rtmp.last_media + media_timeout;
            let wake = tokio::select! {
                _ = shutdown.cancelled() => Wake::Shutdown,
                _ = tokio::time::sleep_until(deadline), if matches!(rtmp.role, Role::Idle) => {
                    crate::limits::hit(crate::limits::Limit::RtmpHandshakeTimeout);
                    return Err(ConnError::Timeout("connect/publish/play"));
                }
                _ = tokio::time::sleep_until(media_deadline), if matches!(rtmp.role, Role::Publishing(_)) => {
                    crate::limits::hit(crate::limits::Limit::RtmpMediaTimeout);
                    return Err(ConnError::NoMedia(media_timeout));
                }
                _ = tokio::time::sleep_until(flush_at.unwrap_or(deadline)), if flush_at.is_some() => Wake::FlushDue,
                r = self.socket.read(&mut self.buf) => Wake::Input(r),
                w = role_wake(&mut rtmp.role), if flush_at.is_none() => w,
            };
            match wake {
                Wake::Shutdown | Wake::Kicked => {
                    if let Role::Publishing(ingest) = &mut rtmp.role {
                        let why = match wake {
                            Wake::Kicked => ingest.publisher_mut().kick_reason(),
                            _ => "server shutting down".to_string(),
                        };
                        tracing::info!(peer = %self.peer, why, "RTMP publisher disconnected by the server");
                    }
                    return Ok(());
                }
                Wake::Input(Ok(0)) => return Ok(()),
                Wake::Input(Ok(n)) => {
                    if rtmp.handle_input(&self.buf[..n], registry).await? == Flow::Close {
                        self.flush(&mut rtmp).await?;
                        return Ok(());
                    }
                    if matches!(rtmp.role, Role::Publishing(_))
                        && self.buf.len() < PUBLISHER_READ_BUFFER
                    {
                        self.buf = vec![0; PUBLISHER_READ_BUFFER].into_boxed_slice();
                    }
                }
                Wake::Input(Err(e)) => return Err(e.into()),
                Wake::Media(None) => {
                    tracing::info!(peer = %self.peer, "stream ended; closing RTMP player");
                    self.flush(&mut rtmp).await?;
                    return Ok(());
                }
                Wake::Media(Some(event)) => {
                    if let Role::Playing(player) = &mut rtmp.role {
                        if player.encode_pending(event, &mut rtmp.out) == Pending::Ended {
                            self.flush(&mut rtmp).await?;
                            return Ok(());
                        }
                        if !self.coalesce.is_zero() {
                            flush_at = Some(tokio::time::Instant::now() + self.coalesce);
                            continue;
                        }
                    }
                }
                Wake::FlushDue => {
                    flush_at = None;
                    if let Role::Playing(player) = &mut rtmp.role {
                        if player.drain_pending(&mut rtmp.out) == Pending::Ended {
                            self.flush(&mut rtmp).await?;
                            return Ok(());
                        }
                    }
                }
            }
            self.flush(&mut rtmp).await?;
        }
    }

    /// Server side of the RTMP handshake; returns bytes received after it.
    async fn handshake(&mut self) -> Result<Vec<u8>, ConnError> {
        let mut handshake = Handshake::new(PeerType::Server);
        loop {
            let n = self.socket.read(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            match handshake
                .process_bytes(&self.buf[..n])
                .map_err(ConnError::Handshake)?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.socket.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    self.socket.write_all(&response_bytes).await?;
                    return Ok(remaining_bytes);
                }
            }
        }
    }

    /// Writes everything `rtmp` queued, in one vectored write where the socket takes it.
    async fn flush(&mut self, rtmp: &mut RtmpSession) -> Result<(), ConnError> {
        if rtmp.out.is_empty() {
            return Ok(());
        }
        let written = tokio::time::timeout(self.write_timeout, async {
            let written = write_all_vectored(&mut self.socket, &mut rtmp.out).await?;
            // TLS holds what it encrypted until flushed (a no-op on TCP).
            self.socket.flush().await?;
            Ok::<_, io::Error>(written)
        })
        .await
        .map_err(|_| ConnError::WriteStalled(self.write_timeout))??;
        if let Role::Playing(player) = &rtmp.role {
            player.reader().add_bytes_out(written);
        }
        Ok(())
    }
}

impl RtmpSession {
    /// A session of a client at `peer` whose handshake is done; `received` is what came after
    /// the handshake in the same reads. Publish and play are authorized by `auth`.
    pub async fn start(
        peer: SocketAddr,
        chunk_size: u32,
        auth: Arc<Auth>,
        received: &[u8],
        registry: &Registry,
    ) -> Result<Self, ConnError> {
        let session_config = ServerSessionConfig {
            chunk_size,
            ..ServerSessionConfig::new()
        };
        let (session, results) = ServerSession::new(session_config)?;
        let mut rtmp = RtmpSession {
            session,
            role: Role::Idle,
            peer,
            out: Vec::new(),
            chunk_size,
            app: String::new(),
            auth,
            app_token: None,
            last_media: tokio::time::Instant::now(),
        };
        rtmp.apply(results, registry).await?;
        rtmp.handle_input(received, registry).await?;
        Ok(rtmp)
    }

    /// Feeds bytes received from the client through the session and acts on what comes out.
    pub async fn handle_input(
        &mut self,
        received: &[u8],
        registry: &Registry,
    ) -> Result<Flow, ConnError> {
        // Quirk policy: rml_rtmp 0.8's chunk deserializer panics on some malformed chunk
        // streams: a chunk header that makes a message shorter than what was already received
        // of it underflows `length - received` (chunk_io/deserializer.rs:371; without overflow
        // checks it then reserves usize::MAX bytes). Found by the `rtmp_session` fuzz target.
        // The session is unusable after that: the panic is this connection's error, never the
        // server's.
        let session = &mut self.session;
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session.handle_input(received)
        }))
        .map_err(|_| ConnError::ChunkParserPanic)??;
        self.apply(results, registry).await
    }

    /// Takes the bytes queued for the client, in order.
    pub fn take_output(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.out)
    }

    /// Whether a publish was accepted.
    pub fn is_publishing(&self) -> bool {
        matches!(self.role, Role::Publishing(_))
    }

    /// Authorizes `action` on `name` with the stream key's token, or the application's.
    async fn authorize(
        &self,
        action: Action,
        name: &str,
        stream_key: &str,
    ) -> Result<(), crate::auth::Denied> {
        let token = rtmp_token(stream_key).or_else(|| self.app_token.clone());
        self.auth
            .authorize(&AccessRequest {
                action,
                stream: name,
                protocol: "rtmp",
                token: token.as_deref(),
                remote: Some(self.peer),
            })
            .await
    }

    /// Queues the session's responses and acts on its events.
    async fn apply(
        &mut self,
        results: Vec<ServerSessionResult>,
        registry: &Registry,
    ) -> Result<Flow, ConnError> {
        let mut pending = std::collections::VecDeque::from(results);
        while let Some(result) = pending.pop_front() {
            let event = match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.out.push(Bytes::from(packet.bytes));
                    continue;
                }
                ServerSessionResult::RaisedEvent(event) => event,
                ServerSessionResult::UnhandleableMessageReceived(_) => continue,
            };
            match event {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    self.app_token = rtmp_token(&app_name);
                    self.app = app_name;
                    pending.extend(self.session.accept_request(request_id)?);
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    app_name,
                    stream_key,
                    ..
                } => {
                    if !matches!(self.role, Role::Idle) {
                        return Ok(Flow::Close);
                    }
                    let name = stream_name(&app_name, &stream_key);
                    if let Err(denied) = self.authorize(Action::Publish, &name, &stream_key).await {
                        queue(
                            &mut self.out,
                            self.session.reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                &format!("not allowed ({}): {denied}", denied.status()),
                            )?,
                        );
                        return Ok(Flow::Close);
                    }
                    match registry
                        .publish_claimed(&name, Peer::new("rtmp", Some(self.peer)))
                        .await
                    {
                        Ok(publisher) => {
                            tracing::info!(peer = %self.peer, stream = %name, "RTMP publish");
                            self.last_media = tokio::time::Instant::now();
                            self.role = Role::Publishing(RtmpIngest::new(publisher));
                            pending.extend(self.session.accept_request(request_id)?);
                        }
                        Err(e) => {
                            tracing::warn!(peer = %self.peer, stream = %name, error = %e, "RTMP publish refused");
                            let code = match e {
                                crate::bus::BusError::TooManyStreams { .. }
                                | crate::bus::BusError::ClaimedElsewhere { .. } => {
                                    "NetStream.Publish.Rejected"
                                }
                                _ => "NetStream.Publish.BadName",
                            };
                            queue(
                                &mut self.out,
                                self.session
                                    .reject_request(request_id, code, &e.to_string())?,
                            );
                            return Ok(Flow::Close);
                        }
                    }
                }
                ServerSessionEvent::PlayStreamRequested {
                    request_id,
                    app_name,
                    stream_key,
                    stream_id,
                    ..
                } => {
                    if !matches!(self.role, Role::Idle) {
                        return Ok(Flow::Close);
                    }
                    let name = stream_name(&app_name, &stream_key);
                    if let Err(denied) = self.authorize(Action::Play, &name, &stream_key).await {
                        queue(
                            &mut self.out,
                            self.session.reject_request(
                                request_id,
                                "NetStream.Play.Failed",
                                &format!("not allowed ({}): {denied}", denied.status()),
                            )?,
                        );
                        return Ok(Flow::Close);
                    }
                    // A stream nobody publishes may be one an on-demand pull brings.
                    registry.wait_for_stream(&name).await;
                    // RTMP players and servers take AAC: other audio is converted.
                    let peer = Peer::new("rtmp", Some(self.peer));
                    let subscribed = crate::audio::subscribe(registry, &name, peer, AudioNeed::Aac)
                        .await
                        .and_then(|reader| registry.admit_reader(reader));
                    match subscribed {
                        Ok(reader) => {
                            tracing::info!(peer = %self.peer, stream = %name, "RTMP play");
                            self.role =
                                Role::Playing(RtmpPlayer::new(reader, stream_id, self.chunk_size));
                            let accepted = self.session.accept_request(request_id)?;
                            pending.extend(
                                accepted.into_iter().filter(|r| !is_session_data_message(r)),
                            );
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, stream = %name, error = %e, "RTMP play refused");
                            let code = match e {
                                crate::bus::BusError::TooManyReaders { .. } => {
                                    "NetStream.Play.Failed"
                                }
                                _ => "NetStream.Play.StreamNotFound",
                            };
                            queue(
                                &mut self.out,
                                self.session
                                    .reject_request(request_id, code, &e.to_string())?,
                            );
                            return Ok(Flow::Close);
                        }
                    }
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    if let Role::Publishing(ingest) = &mut self.role {
                        self.last_media = tokio::time::Instant::now();
                        ingest.video(data, timestamp.value)?;
                    }
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    if let Role::Publishing(ingest) = &mut self.role {
                        self.last_media = tokio::time::Instant::now();
                        ingest.audio(data, timestamp.value)?;
                    }
                }
                ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                    if let Role::Publishing(ingest) = &mut self.role {
                        ingest.set_metadata_size(metadata.video_width, metadata.video_height);
                    }
                }
                ServerSessionEvent::PublishStreamFinished { .. }
                | ServerSessionEvent::PlayStreamFinished { .. } => {
                    return Ok(Flow::Close);
                }
                _ => {}
            }
        }
        Ok(Flow::Continue)
    }
}

/// Whether the connection goes on after what the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

async fn role_wake(role: &mut Role) -> Wake {
    match role {
        Role::Publishing(ingest) => {
            ingest.publisher_mut().kicked().await;
            Wake::Kicked
        }
        Role::Playing(player) => Wake::Media(player.next_event().await),
        Role::Idle => std::future::pending().await,
    }
}

/// Queues the bytes of a session's responses.
fn queue(out: &mut Vec<Bytes>, results: Vec<ServerSessionResult>) {
    for r in results {
        if let ServerSessionResult::OutboundResponse(packet) = r {
            out.push(Bytes::from(packet.bytes));
        }
    }
}

/// Quirk policy, for ffmpeg players: rml_rtmp answers `play` with two AMF0 data messages
/// (`|RtmpSampleAccess` and `onStatus NetStream.Data.Start`) stamped with the session clock.
/// ffmpeg's FLV demuxer turns data messages at a non-zero time into extra "text"/"data" streams,
/// which then show up in ffprobe and in `-map` defaults of some tools. Only Flash used them, so
/// they are not sent. rml_rtmp puts data messages (types 18/19) and nothing else on chunk
/// stream 3, and never sends more there after `play`, so leaving them out keeps the chunk
/// streams consistent.
fn is_session_data_message(result: &ServerSessionResult) -> bool {
    matches!(result, ServerSessionResult::OutboundResponse(p) if p.bytes.first().is_some_and(|b| b & 0x3f == 3))
}

/// `rtmp://HOST/{app}/{key}` -> `app/key`, without the key's query string.
pub fn stream_name(app: &str, key: &str) -> String {
    let key = key.split('?').next().unwrap_or_default();
    let app = app.split('?').next().unwrap_or_default().trim_matches('/');
    if key.is_empty() {
        app.to_string()
    } else if app.is_empty() {
        key.to_string()
    } else {
        format!("{app}/{key}")
    }
}

/// Writes all of `bufs` (emptying it) with as few `writev` calls as the socket allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    socket: &mut W,
    bufs: &mut Vec<Bytes>,
) -> io::Result<usize> {
    const MAX_SLICES: usize = 256;
    let mut total = 0;
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[first..]
            .iter()
            .take(MAX_SLICES)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut n = socket.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        total += n;
        while n > 0 {
            let len = bufs[first].len();
            if n >= len {
                n -= len;
                first += 1;
            } else {
                bufs[first].advance(n);
                n = 0;
            }
        }
        while first < bufs.len() && bufs[first].is_empty() {
            first += 1;
        }
    }
    bufs.clear();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs that once panicked in rml_rtmp (see [`RtmpSession::handle_input`]): a chunk
    /// that shrinks a message partly received, an AMF0 command too short for what it names.
    /// Fed as the `rtmp_session` fuzz target feeds them (the first byte picks the read size).
    #[tokio::test]
    async fn malformed_chunks_that_panic_rml_rtmp_are_an_error_not_a_panic() {
        const READ_SIZES: [usize; 8] = [1, 7, 64, 128, 1000, 4096, 65536, usize::MAX];
        for input in [
            &include_bytes!("../../fixtures/fuzz/rtmp_session/regression-shrinking-message-length")
                [..],
            &include_bytes!("../../fixtures/fuzz/rtmp_session/regression-amf0-drain")[..],
        ] {
            let registry = Registry::new(crate::bus::BusConfig::default());
            let peer = "192.0.2.1:50000".parse().unwrap();
            let read = READ_SIZES[usize::from(input[0] & 7)].min(input.len() - 1);
            let mut reads = input[1..].chunks(read);
            let first = reads.next().unwrap();
            let result =
                match RtmpSession::start(peer, 4096, Arc::default(), first, &registry).await {
                    Err(e) => Err(e),
                    Ok(mut session) => {
                        let mut result = Ok(Flow::Continue);
                        for received in reads {
                            result = session.handle_input(received, &registry).await;
                            if !matches!(result, Ok(Flow::Continue)) {
                                break;
                            }
                        }
                        result
                    }
                };
            assert!(
                matches!(result, Err(ConnError::ChunkParserPanic)),
                "{:?}",
                result.err()
            );
        }
    }

    #[test]
    fn stream_names_from_app_and_key() {
        assert_eq!(stream_name("live", "cam1"), "live/cam1");
        assert_eq!(stream_name("live", "cam1?token=abc"), "live/cam1");
        assert_eq!(stream_name("live/", "a"), "live/a");
        assert_eq!(stream_name("live", ""), "live");
    }
}
