//! The RTMP server: listener, handshake, session commands, and the connection loop that
//! drives a publisher ([`RtmpIngest`]) or a player ([`RtmpPlayer`]).
//!
//! rml_rtmp does the handshake and the chunk/message/session state (RTMP spec, Adobe 2012);
//! FLV bodies are ours. A stream `rtmp://HOST/{app}/{key}` is the bus name `app/key`; a query
//! string on the key (`key?token=...`, as OBS and CDNs use) is not part of the name.

pub mod client;

use crate::audio::AudioNeed;
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
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    /// A player's writes are gathered for up to this long and sent together (at most one frame
    /// of added delay at 30 fps); fewer, larger writes cost less CPU per player. 0 writes each
    /// message as it comes.
    pub coalesce_ms: u64,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: ([0, 0, 0, 0], 1935).into(),
            chunk_size: 4096,
            write_timeout_secs: 30,
            handshake_timeout_secs: 10,
            coalesce_ms: 30,
        }
    }
}

/// Why a connection ended early; logged once per connection.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("RTMP session: {0:?}")]
    Session(rml_rtmp::sessions::ServerSessionError),
    #[error("{0}")]
    Media(#[from] crate::inputs::rtmp::IngestError),
    #[error("player stopped reading for {0:?}")]
    WriteStalled(Duration),
}

impl From<rml_rtmp::sessions::ServerSessionError> for ConnError {
    fn from(e: rml_rtmp::sessions::ServerSessionError) -> Self {
        ConnError::Session(e)
    }
}

/// Accepts RTMP connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    config: RtmpConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
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
        let _ = socket.set_nodelay(true);
        let (registry, config, shutdown) = (registry.clone(), config.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut conn = Connection::new(socket, peer, &config);
            match conn.run(&registry, &shutdown).await {
                Ok(()) => tracing::debug!(%peer, "RTMP connection closed"),
                Err(e) => tracing::info!(%peer, error = %e, "RTMP connection closed"),
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

struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    buf: Box<[u8]>,
    out: Vec<Bytes>,
    chunk_size: u32,
    write_timeout: Duration,
    handshake_timeout: Duration,
    coalesce: Duration,
    app: String,
}

/// Players send little (acknowledgements, pings); publishers send the media.
const PLAYER_READ_BUFFER: usize = 4 * 1024;
const PUBLISHER_READ_BUFFER: usize = 64 * 1024;

impl Connection {
    fn new(socket: TcpStream, peer: SocketAddr, config: &RtmpConfig) -> Self {
        Connection {
            socket,
            peer,
            buf: vec![0; PLAYER_READ_BUFFER].into_boxed_slice(),
            out: Vec::new(),
            chunk_size: config.chunk_size,
            write_timeout: Duration::from_secs(config.write_timeout_secs),
            handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
            coalesce: Duration::from_millis(config.coalesce_ms),
            app: String::new(),
        }
    }

    async fn run(
        &mut self,
        registry: &Registry,
        shutdown: &CancellationToken,
    ) -> Result<(), ConnError> {
        let leftover = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(self.handshake_timeout, self.handshake()) => r.map_err(|_| ConnError::Timeout("handshake"))??,
        };
        let session_config = ServerSessionConfig {
            chunk_size: self.chunk_size,
            ..ServerSessionConfig::new()
        };
        let (mut session, results) = ServerSession::new(session_config)?;
        let mut role = Role::Idle;
        self.apply(results, &mut session, &mut role, registry)
            .await?;
        let leftover_results = session.handle_input(&leftover)?;
        self.apply(leftover_results, &mut session, &mut role, registry)
            .await?;
        self.flush(&role).await?;
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        // While a player's writes are being coalesced, the reader is not polled: the player
        // sleeps until the window ends instead of waking for every frame.
        let mut flush_at: Option<tokio::time::Instant> = None;
        loop {
            let wake = tokio::select! {
                _ = shutdown.cancelled() => Wake::Shutdown,
                _ = tokio::time::sleep_until(deadline), if matches!(role, Role::Idle) => return Err(ConnError::Timeout("connect/publish/play")),
                _ = tokio::time::sleep_until(flush_at.unwrap_or(deadline)), if flush_at.is_some() => Wake::FlushDue,
                r = self.socket.read(&mut self.buf) => Wake::Input(r),
                w = role_wake(&mut role), if flush_at.is_none() => w,
            };
            match wake {
                Wake::Shutdown | Wake::Kicked => {
                    if let Role::Publishing(_) = role {
                        tracing::info!(peer = %self.peer, "RTMP publisher disconnected by the server");
                    }
                    return Ok(());
                }
                Wake::Input(Ok(0)) => return Ok(()),
                Wake::Input(Ok(n)) => {
                    let results = session.handle_input(&self.buf[..n])?;
                    if self
                        .apply(results, &mut session, &mut role, registry)
                        .await?
                        == Flow::Close
                    {
                        self.flush(&role).await?;
                        return Ok(());
                    }
                    if matches!(role, Role::Publishing(_)) && self.buf.len() < PUBLISHER_READ_BUFFER
                    {
                        self.buf = vec![0; PUBLISHER_READ_BUFFER].into_boxed_slice();
                    }
                }
                Wake::Input(Err(e)) => return Err(e.into()),
                Wake::Media(None) => {
                    tracing::info!(peer = %self.peer, "stream ended; closing RTMP player");
                    self.flush(&role).await?;
                    return Ok(());
                }
                Wake::Media(Some(event)) => {
                    if let Role::Playing(player) = &mut role {
                        if player.encode_pending(event, &mut self.out) == Pending::Ended {
                            self.flush(&role).await?;
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
                    if let Role::Playing(player) = &mut role {
                        if player.drain_pending(&mut self.out) == Pending::Ended {
                            self.flush(&role).await?;
                            return Ok(());
                        }
                    }
                }
            }
            self.flush(&role).await?;
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

    /// Queues the session's responses and acts on its events.
    async fn apply(
        &mut self,
        results: Vec<ServerSessionResult>,
        session: &mut ServerSession,
        role: &mut Role,
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
                    self.app = app_name;
                    pending.extend(session.accept_request(request_id)?);
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    app_name,
                    stream_key,
                    ..
                } => {
                    if !matches!(role, Role::Idle) {
                        return Ok(Flow::Close);
                    }
                    let name = stream_name(&app_name, &stream_key);
                    match registry.publish(&name, Peer::new("rtmp", Some(self.peer))) {
                        Ok(publisher) => {
                            tracing::info!(peer = %self.peer, stream = %name, "RTMP publish");
                            *role = Role::Publishing(RtmpIngest::new(publisher));
                            pending.extend(session.accept_request(request_id)?);
                        }
                        Err(e) => {
                            tracing::warn!(peer = %self.peer, stream = %name, error = %e, "RTMP publish refused");
                            self.queue(session.reject_request(
                                request_id,
                                "NetStream.Publish.BadName",
                                &e.to_string(),
                            )?);
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
                    if !matches!(role, Role::Idle) {
                        return Ok(Flow::Close);
                    }
                    let name = stream_name(&app_name, &stream_key);
                    // A stream nobody publishes may be one an on-demand pull brings.
                    registry.wait_for_stream(&name).await;
                    // RTMP players and servers take AAC: other audio is converted.
                    let peer = Peer::new("rtmp", Some(self.peer));
                    match crate::audio::subscribe(registry, &name, peer, AudioNeed::Aac).await {
                        Ok(reader) => {
                            tracing::info!(peer = %self.peer, stream = %name, "RTMP play");
                            *role =
                                Role::Playing(RtmpPlayer::new(reader, stream_id, self.chunk_size));
                            let accepted = session.accept_request(request_id)?;
                            pending.extend(
                                accepted.into_iter().filter(|r| !is_session_data_message(r)),
                            );
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.peer, stream = %name, error = %e, "RTMP play refused");
                            self.queue(session.reject_request(
                                request_id,
                                "NetStream.Play.StreamNotFound",
                                &e.to_string(),
                            )?);
                            return Ok(Flow::Close);
                        }
                    }
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    if let Role::Publishing(ingest) = role {
                        ingest.video(data, timestamp.value)?;
                    }
                }
                ServerSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => {
                    if let Role::Publishing(ingest) = role {
                        ingest.audio(data, timestamp.value)?;
                    }
                }
                ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                    if let Role::Publishing(ingest) = role {
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

    fn queue(&mut self, results: Vec<ServerSessionResult>) {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                self.out.push(Bytes::from(packet.bytes));
            }
        }
    }

    /// Writes everything queued, in one vectored write where the socket takes it.
    async fn flush(&mut self, role: &Role) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = tokio::time::timeout(
            self.write_timeout,
            write_all_vectored(&mut self.socket, &mut self.out),
        )
        .await
        .map_err(|_| ConnError::WriteStalled(self.write_timeout))??;
        if let Role::Playing(player) = role {
            player.reader().add_bytes_out(written);
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
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
async fn write_all_vectored(socket: &mut TcpStream, bufs: &mut Vec<Bytes>) -> io::Result<usize> {
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

    #[test]
    fn stream_names_from_app_and_key() {
        assert_eq!(stream_name("live", "cam1"), "live/cam1");
        assert_eq!(stream_name("live", "cam1?token=abc"), "live/cam1");
        assert_eq!(stream_name("live/", "a"), "live/a");
        assert_eq!(stream_name("live", ""), "live");
    }
}
