//! RTSP pull input: an IP camera's stream (RTSP 1.0, RFC 2326) becomes a bus stream.
//!
//! Two transports, one media path:
//!
//! - **TCP** (the default): [retina](https://docs.rs/retina) speaks RTSP (DESCRIBE / SETUP /
//!   PLAY, digest and basic auth, keepalives, TEARDOWN) and receives RTP interleaved on the
//!   RTSP connection, in its raw-RTP mode: every packet comes to us in order with the count
//!   of those lost before it.
//! - **UDP**: our own client (`udp.rs`), since retina drops every UDP packet that arrives
//!   after a later one (it has no reorder buffer); ours hands packets over as they come and
//!   the ingest reorders them.
//!
//! Either way the ingest (`ingest.rs`) depacketizes with switchyard-rtp (H.264, H.265, AAC,
//! Opus, G.711), reorders UDP in a small window so only truly missing packets count as lost
//! (`packets_lost` in the API), and maps every track onto one timeline by RTCP sender reports
//! (RFC 3550 6.4.1), so audio and video keep the sync the camera gave them. The stream
//! description and the choice of streams are `sdp.rs`; the source URL, `source.rs`.
//!
//! Credentials never leave this module in clear: the URL handed to retina or our client has
//! none (they are kept apart) and everything shown or logged uses [`RtspSource::redacted`].

mod ingest;
mod message;
mod sdp;
mod source;
mod udp;

pub use source::{RtspSettings, RtspSource, RtspTransport};

use crate::inputs::pull::{PullError, PullSink};
use futures_util::StreamExt;
use ingest::Ingest;
use retina::client::{
    InitialTimestampPolicy, PacketItem, PlayOptions, SessionIdPolicy, SessionOptions, SetupOptions,
    TeardownPolicy, Transport,
};
use udp::{Received, UdpSession};

// ---------------------------------------------------------------------------------------------
// Camera quirks over TCP, all in one place.
//
// Real cameras break RTSP in known ways; retina models each as a policy. These are the ones
// we choose and why. Each is harmless with a compliant server. (The UDP client's are in
// udp.rs.)
// ---------------------------------------------------------------------------------------------

/// Options fixed when the session is created.
fn session_options(source: &RtspSource) -> SessionOptions {
    SessionOptions::default()
        .creds(source.creds.clone())
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")).to_string())
        // Some cameras (reported by retina users for several cheap brands) answer each SETUP
        // with a different session id; keeping the first one works with them and changes
        // nothing for compliant servers.
        .session_id(SessionIdPolicy::UseFirst)
        // TEARDOWN once on TCP (closing the connection ends the session anyway), and for
        // live555 versions known to keep sending on stale sessions. Retina's default.
        .teardown(TeardownPolicy::Auto)
}

/// Options chosen at PLAY.
fn play_options() -> PlayOptions {
    PlayOptions::default()
        // Hikvision, Reolink and other firmwares omit `rtptime` from RTP-Info for some
        // streams (or send values that do not match their RTP); retina needs it only for its
        // own timeline, which we do not use (sender reports align the tracks), so a missing
        // one must not refuse the stream.
        .initial_timestamp(InitialTimestampPolicy::Permissive)
    // No `enforce_timestamps_with_max_jump_secs`: retina would end the session at any step
    // back of a stream's RTP clock, which gst-rtsp-server makes on every other client's PLAY
    // of a shared stream (it restarts the pipeline), and the reconnection makes the next one.
    // Our session clock takes a jump as a restarted track instead (ingest.rs).
}

// ---------------------------------------------------------------------------------------------

fn retina_error(context: &str, e: retina::Error) -> PullError {
    let message = format!("{context}: {e}");
    match e.status_code() {
        // Wrong credentials or a path that does not exist: retrying cannot help until
        // someone changes the source.
        Some(401 | 403 | 404) => PullError::permanent(message),
        _ => PullError::retry(message),
    }
}

/// Pulls `source` until the session fails or ends. Returns only with an error: the end of a
/// live stream is one too, since the manager then reconnects.
pub async fn run(
    source: &RtspSource,
    settings: &RtspSettings,
    sink: &mut dyn PullSink,
) -> PullError {
    let result = match source.transport() {
        RtspTransport::Tcp => run_tcp(source, settings, sink).await,
        RtspTransport::Udp => run_udp(source, settings, sink).await,
    };
    match result {
        Ok(()) => PullError::retry("the camera ended the stream"),
        Err(e) => e,
    }
}

/// The chosen streams of a presentation, or why there are none.
fn choose(source: &RtspSource, presentation: &sdp::Presentation) -> Result<sdp::Choice, PullError> {
    let choice = sdp::choose(presentation);
    if !choice.skipped.is_empty() {
        tracing::info!(source = %source.redacted(), streams = ?choice.skipped, "RTSP streams not pulled (unsupported codec or extra)");
    }
    if choice.video.is_none() && choice.audio.is_none() {
        return Err(PullError::permanent(format!(
            "no supported track (H.264 or H.265 video, AAC/Opus/G.711 audio); the camera offers {}",
            if choice.skipped.is_empty() {
                "none".to_string()
            } else {
                choice.skipped.join(", ")
            }
        )));
    }
    Ok(choice)
}

fn connect_timeout(settings: &RtspSettings) -> PullError {
    PullError::retry(format!(
        "no answer within {} s (connect, DESCRIBE, SETUP, PLAY)",
        settings.connect_timeout.as_secs()
    ))
}

/// Claims the bus name and hands the ingest its publisher and the API its counters.
fn start_publishing(
    source: &RtspSource,
    ingest: &mut Ingest,
    sink: &mut dyn PullSink,
) -> Result<(), PullError> {
    let publisher = sink
        .publish()
        .map_err(|e| PullError::retry(format!("cannot publish: {e}")))?;
    ingest.publisher = Some(publisher);
    sink.counters(ingest.counters());
    tracing::info!(source = %source.redacted(), transport = ?source.transport(), "RTSP session playing");
    Ok(())
}

/// Why the session should end now: the publisher was kicked, or no media came for the idle
/// timeout. Pending otherwise.
async fn interrupted(ingest: &mut Ingest, settings: &RtspSettings) -> PullError {
    let deadline = tokio::time::Instant::from_std(ingest.last_media + settings.idle_timeout);
    let publisher = ingest.publisher.as_mut().expect("publishing");
    tokio::select! {
        _ = publisher.kicked() => PullError::retry(format!("publisher {}", publisher.kick_reason())),
        _ = tokio::time::sleep_until(deadline) => PullError::retry(format!(
            "no media for {} s", settings.idle_timeout.as_secs()
        )),
    }
}

async fn run_tcp(
    source: &RtspSource,
    settings: &RtspSettings,
    sink: &mut dyn PullSink,
) -> Result<(), PullError> {
    let setup = async {
        let mut session =
            retina::client::Session::describe(source.url.clone(), session_options(source))
                .await
                .map_err(|e| retina_error("DESCRIBE", e))?;
        // Retina parsed the SDP already; ours gives the fmtp parameters it does not expose,
        // for the same streams in the same order.
        let presentation = sdp::parse(session.sdp(), &source.url)
            .map_err(|e| PullError::retry(format!("DESCRIBE: {e}")))?;
        if presentation.streams.len() != session.streams().len() {
            return Err(PullError::retry(format!(
                "DESCRIBE: {} media sections read, retina read {}",
                presentation.streams.len(),
                session.streams().len()
            )));
        }
        let choice = choose(source, &presentation)?;
        let ingest = Ingest::new(&presentation, &choice, false, std::time::Instant::now())?;
        for i in choice.indexes() {
            session
                .setup(
                    i,
                    SetupOptions::default().transport(Transport::Tcp(Default::default())),
                )
                .await
                .map_err(|e| retina_error("SETUP", e))?;
        }
        let playing = session
            .play(play_options())
            .await
            .map_err(|e| retina_error("PLAY", e))?;
        Ok::<_, PullError>((playing, ingest))
    };
    let (mut playing, mut ingest) = tokio::time::timeout(settings.connect_timeout, setup)
        .await
        .map_err(|_| connect_timeout(settings))??;
    start_publishing(source, &mut ingest, sink)?;
    loop {
        let item = tokio::select! {
            item = playing.next() => item,
            e = interrupted(&mut ingest, settings) => return Err(e),
        };
        let now = std::time::Instant::now();
        match item {
            None => return Ok(()),
            Some(Err(e)) => return Err(retina_error("RTP", e)),
            Some(Ok(PacketItem::Rtp(pkt))) => {
                let (index, sequence, marker, loss) = (
                    pkt.stream_id(),
                    pkt.sequence_number(),
                    pkt.mark(),
                    pkt.loss(),
                );
                let timestamp = pkt.header().timestamp();
                ingest.rtp(
                    index,
                    sequence,
                    timestamp,
                    marker,
                    pkt.into_payload_bytes(),
                    loss,
                    now,
                )?;
            }
            Some(Ok(PacketItem::Rtcp(rtcp))) => ingest.rtcp(rtcp.stream_id(), rtcp.raw()),
            Some(Ok(_)) => {}
        }
        ingest.tick(sink);
    }
}

async fn run_udp(
    source: &RtspSource,
    settings: &RtspSettings,
    sink: &mut dyn PullSink,
) -> Result<(), PullError> {
    let deadline = tokio::time::Instant::now() + settings.connect_timeout;
    let (session, presentation) = tokio::time::timeout_at(deadline, UdpSession::describe(source))
        .await
        .map_err(|_| connect_timeout(settings))??;
    // From here on the camera may send until told to stop: TEARDOWN however the pull ends,
    // also when the manager drops this future (DELETE, an on-demand pull without readers).
    let mut guard = TeardownOnDrop(Some(session));
    let session = guard.0.as_mut().expect("just set");
    let setup = async {
        let choice = choose(source, &presentation)?;
        let ingest = Ingest::new(&presentation, &choice, true, std::time::Instant::now())?;
        for i in choice.indexes() {
            session.setup(&presentation, i).await?;
        }
        session.play().await?;
        Ok::<_, PullError>(ingest)
    };
    let result = match tokio::time::timeout_at(deadline, setup).await {
        Err(_) => Err(connect_timeout(settings)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(mut ingest)) => {
            let result = match start_publishing(source, &mut ingest, sink) {
                Ok(()) => play_udp(session, &mut ingest, settings, sink).await,
                Err(e) => Err(e),
            };
            if ingest.lost() > 0 {
                tracing::info!(source = %source.redacted(), packets_lost = ingest.lost(), "RTSP over UDP: packets lost");
            }
            result
        }
    };
    if let Some(session) = guard.0.take() {
        session.teardown().await;
    }
    result
}

/// Tears a UDP session down in the background when dropped before [`UdpSession::teardown`].
struct TeardownOnDrop(Option<UdpSession>);

impl Drop for TeardownOnDrop {
    fn drop(&mut self) {
        if let (Some(session), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(session.teardown());
        }
    }
}

async fn play_udp(
    session: &mut UdpSession,
    ingest: &mut Ingest,
    settings: &RtspSettings,
    sink: &mut dyn PullSink,
) -> Result<(), PullError> {
    loop {
        session.maintain().await?;
        let timer = tokio::time::Instant::from_std(
            ingest
                .gap_deadline()
                .map_or(session.next_timer().into_std(), |gap| {
                    gap.min(session.next_timer().into_std())
                }),
        );
        let received = tokio::select! {
            received = session.recv() => Some(received?),
            _ = tokio::time::sleep_until(timer) => None,
            e = interrupted(ingest, settings) => return Err(e),
        };
        let now = std::time::Instant::now();
        match received {
            Some(Received::Rtp {
                index,
                header,
                packet,
            }) => {
                let payload = packet.slice(header.payload.clone());
                ingest.rtp(
                    index,
                    header.sequence,
                    header.timestamp,
                    header.marker,
                    payload,
                    0,
                    now,
                )?;
            }
            Some(Received::Rtcp { index, packet }) => ingest.rtcp(index, &packet),
            Some(Received::Rtsp(msg)) => session.handle(msg).await?,
            Some(Received::Ignored) | None => {}
        }
        ingest.flush_gaps(now)?;
        ingest.tick(sink);
    }
}
