//! RTSP pull input: an IP camera's stream (RTSP 1.0, RFC 2326) becomes a bus stream.
//!
//! [retina](https://docs.rs/retina) speaks RTSP (DESCRIBE / SETUP / PLAY, digest and basic
//! auth, keepalives, TEARDOWN), receives RTP interleaved on the RTSP connection (TCP, the
//! default) or over UDP, and depacketizes H.264 (RFC 6184), AAC (RFC 3640) and G.711
//! (RFC 3551). Retina has no Opus depacketizer, and its `demuxed()` refuses a session in which
//! any set-up stream lacks one, so a session with an Opus track (RFC 7587: one packet is one
//! frame) runs in retina's raw-RTP mode and H.264 is depacketized by switchyard-rtp's
//! [`H264Depacketizer`]. Retina already drops out-of-order packets and counts losses there,
//! so no reorder buffer is needed.
//!
//! Timing: retina gives every RTP timestamp relative to the stream's start, which `PLAY`'s
//! `RTP-Info` `rtptime` places at the same normal-play-time for every stream, so all tracks
//! share one origin and audio stays in sync with video. Frames keep their RTP clock as the
//! track clock (90 kHz video, the sample rate for audio).
//!
//! Credentials never leave this file in clear: the URL handed to retina has none (they go in
//! [`Credentials`]) and everything shown or logged uses [`redact`].

use crate::bus::Publisher;
use crate::inputs::pull::{redact, PullError, PullSink};
use bytes::Bytes;
use futures_util::StreamExt;
use retina::client::{
    Credentials, InitialTimestampPolicy, PacketItem, PlayOptions, SessionIdPolicy, SessionOptions,
    SetupOptions, TeardownPolicy, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use std::num::NonZeroU32;
use std::time::Duration;
use switchyard_media::aac::AudioSpecificConfig;
use switchyard_media::h264::{self, AvcConfig};
use switchyard_media::{CodecConfig, Frame, G711Law, Track, TrackId};
use switchyard_rtp::h264::H264Depacketizer;
use switchyard_rtp::PacketRef;
use tokio::time::Instant;
use url::Url;

pub const VIDEO_TRACK: TrackId = TrackId(1);
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// How RTP packets travel from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtspTransport {
    /// Interleaved on the RTSP TCP connection (RFC 2326 10.12): passes NAT and firewalls.
    Tcp,
    /// RTP/RTCP on UDP port pairs: lower latency on a LAN, but no reordering by retina and
    /// losses show as decoder errors.
    Udp,
}

impl std::str::FromStr for RtspTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            _ => Err(format!("transport must be tcp or udp, not {s:?}")),
        }
    }
}

/// A parsed `rtsp://[user:pass@]host[:port]/path[?transport=tcp|udp]` source.
#[derive(Clone)]
pub struct RtspSource {
    /// What retina connects to: no credentials, no `transport` parameter.
    url: Url,
    creds: Option<Credentials>,
    transport: RtspTransport,
    redacted: String,
}

impl std::fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &self.redacted)
            .field("transport", &self.transport)
            .finish()
    }
}

impl RtspSource {
    /// Parses a source URL. `default_transport` applies unless the URL's query says otherwise.
    /// Error messages never contain the credentials.
    pub fn parse(source: &str, default_transport: RtspTransport) -> Result<Self, String> {
        let shown = redact(source);
        let mut url = Url::parse(source).map_err(|e| format!("malformed URL {shown}: {e}"))?;
        if url.scheme() != "rtsp" {
            return Err(format!("{shown}: not an rtsp:// URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown}: no host"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let creds = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(Credentials {
                username: decode(url.username()),
                password: decode(url.password().unwrap_or("")),
            })
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport = default_transport;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            if k == "transport" {
                transport = v.parse().map_err(|e| format!("{shown}: {e}"))?;
            } else {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let redacted = redact(&{
            let mut shown = url.clone();
            if creds.is_some() {
                let _ = shown.set_username("user");
            }
            shown.to_string()
        });
        Ok(RtspSource {
            url,
            creds,
            transport,
            redacted,
        })
    }

    /// The URL without credentials (`***@` marks where they were).
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub fn transport(&self) -> RtspTransport {
        self.transport
    }
}

/// Settings of one pull attempt.
#[derive(Debug, Clone)]
pub struct RtspSettings {
    /// DESCRIBE, SETUP and PLAY must be done within this time.
    pub connect_timeout: Duration,
    /// A session that delivers no media frame for this long is ended (and retried).
    pub idle_timeout: Duration,
}

// ---------------------------------------------------------------------------------------------
// Camera quirks, all in one place.
//
// Real cameras break RTSP in known ways; retina models each as a policy. These are the ones
// we choose and why. Each is harmless with a compliant server.
// ---------------------------------------------------------------------------------------------

/// Options fixed when the session is created.
fn session_options(creds: Option<Credentials>) -> SessionOptions {
    SessionOptions::default()
        .creds(creds)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")).to_string())
        // Some cameras (reported by retina users for several cheap brands) answer each SETUP
        // with a different session id; keeping the first one works with them and changes
        // nothing for compliant servers.
        .session_id(SessionIdPolicy::UseFirst)
        // TEARDOWN once on TCP (closing the connection ends the session anyway); always on UDP
        // and for live555 versions known to keep sending on stale sessions. Retina's default.
        .teardown(TeardownPolicy::Auto)
}

/// Options chosen at PLAY.
fn play_options() -> PlayOptions {
    PlayOptions::default()
        // Hikvision, Reolink and other firmwares omit `rtptime` from RTP-Info for some
        // streams (or send values that do not match their RTP). Use RTP-Info when every stream
        // has it (tracks then share one origin exactly); otherwise start each stream at its
        // first packet rather than refusing to play.
        .initial_timestamp(InitialTimestampPolicy::Permissive)
        // A camera whose RTP clock jumps (reboot of the encoder behind an RTSP proxy, 32-bit
        // wrap handled wrongly) would otherwise give timestamps that go backwards for ever;
        // an error reconnects and starts a fresh timeline.
        .enforce_timestamps_with_max_jump_secs(NonZeroU32::new(10).expect("nonzero"))
}

/// Frame format asked of retina: what the bus wants (4-byte NAL lengths, parameter sets only
/// out of band, raw AAC with its AudioSpecificConfig).
const FRAME_FORMAT: FrameFormat = FrameFormat::MP4;

// ---------------------------------------------------------------------------------------------

/// Which RTSP streams we take and what they become.
#[derive(Debug, Clone, PartialEq)]
enum AudioKind {
    /// AAC (`mpeg4-generic`, RFC 3640), depacketized by retina.
    Aac,
    /// Opus (RFC 7587), raw RTP payloads.
    Opus,
    /// G.711 (RFC 3551), depacketized by retina's simple-audio path.
    G711(G711Law),
}

/// Picks the first H.264 stream and the first AAC/Opus/G.711 stream of a presentation.
fn choose_streams(
    streams: &[retina::client::Stream],
) -> (Option<usize>, Option<(usize, AudioKind)>, Vec<String>) {
    let mut video = None;
    let mut audio = None;
    let mut skipped = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let what = format!("{}/{}", s.media(), s.encoding_name());
        match (s.media(), s.encoding_name()) {
            ("video", "h264") if video.is_none() => video = Some(i),
            ("audio", "mpeg4-generic") if audio.is_none() => audio = Some((i, AudioKind::Aac)),
            ("audio", "opus") if audio.is_none() => audio = Some((i, AudioKind::Opus)),
            ("audio", "pcma") if audio.is_none() => {
                audio = Some((i, AudioKind::G711(G711Law::ALaw)))
            }
            ("audio", "pcmu") if audio.is_none() => {
                audio = Some((i, AudioKind::G711(G711Law::MuLaw)))
            }
            _ => skipped.push(what),
        }
    }
    (video, audio, skipped)
}

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
    match run_inner(source, settings, sink).await {
        Ok(()) => PullError::retry("the camera ended the stream"),
        Err(e) => e,
    }
}

async fn run_inner(
    source: &RtspSource,
    settings: &RtspSettings,
    sink: &mut dyn PullSink,
) -> Result<(), PullError> {
    let setup = async {
        let mut session = retina::client::Session::describe(
            source.url.clone(),
            session_options(source.creds.clone()),
        )
        .await
        .map_err(|e| retina_error("DESCRIBE", e))?;
        let (video, audio, skipped) = choose_streams(session.streams());
        if !skipped.is_empty() {
            tracing::info!(source = %source.redacted, streams = ?skipped, "RTSP streams not pulled (unsupported codec or extra)");
        }
        if video.is_none() && audio.is_none() {
            return Err(PullError::permanent(format!(
                "no supported track (H.264 video, AAC/Opus/G.711 audio); the camera offers {}",
                if skipped.is_empty() {
                    "none".to_string()
                } else {
                    skipped.join(", ")
                }
            )));
        }
        let transport = match source.transport {
            RtspTransport::Tcp => Transport::Tcp(Default::default()),
            RtspTransport::Udp => Transport::Udp(Default::default()),
        };
        for i in video.iter().copied().chain(audio.as_ref().map(|a| a.0)) {
            session
                .setup(
                    i,
                    SetupOptions::default()
                        .transport(transport.clone())
                        .frame_format(FRAME_FORMAT),
                )
                .await
                .map_err(|e| retina_error("SETUP", e))?;
        }
        let mut ingest = Ingest::new(video, audio.clone());
        ingest.read_initial_params(session.streams())?;
        let playing = session
            .play(play_options())
            .await
            .map_err(|e| retina_error("PLAY", e))?;
        Ok::<_, PullError>((playing, ingest))
    };
    let (playing, mut ingest) = tokio::time::timeout(settings.connect_timeout, setup)
        .await
        .map_err(|_| {
            PullError::retry(format!(
                "no answer within {} s (connect, DESCRIBE, SETUP, PLAY)",
                settings.connect_timeout.as_secs()
            ))
        })??;
    let publisher = sink
        .publish()
        .map_err(|e| PullError::retry(format!("cannot publish: {e}")))?;
    ingest.publisher = Some(publisher);
    tracing::info!(source = %source.redacted, transport = ?source.transport, raw_rtp = ingest.raw_mode(), "RTSP session playing");
    if ingest.raw_mode() {
        let mut session = playing;
        loop {
            let item = next_with_idle(&mut ingest, settings, session.next()).await?;
            match item {
                None => return Ok(()),
                Some(Err(e)) => return Err(retina_error("RTP", e)),
                Some(Ok(PacketItem::Rtp(pkt))) => {
                    let header = RawHeader {
                        sequence: pkt.sequence_number(),
                        rtp_timestamp: pkt.header().timestamp(),
                        elapsed: pkt.timestamp().elapsed(),
                        marker: pkt.mark(),
                        loss: pkt.loss(),
                    };
                    let stream_id = pkt.stream_id();
                    ingest.raw_packet(stream_id, header, pkt.into_payload_bytes())?;
                }
                Some(Ok(_)) => {} // RTCP
            }
            ingest.tick(sink);
        }
    } else {
        let mut demuxed = playing
            .demuxed()
            .map_err(|e| retina_error("depacketizing", e))?;
        loop {
            let item = next_with_idle(&mut ingest, settings, demuxed.next()).await?;
            match item {
                None => return Ok(()),
                Some(Err(e)) => return Err(retina_error("RTP", e)),
                Some(Ok(CodecItem::VideoFrame(f))) => {
                    let new_config = if f.has_new_parameters() || ingest.video_config_missing() {
                        demuxed
                            .streams()
                            .get(f.stream_id())
                            .and_then(|s| s.parameters())
                            .map(avc_config)
                            .transpose()?
                            .flatten()
                    } else {
                        None
                    };
                    let keyframe = f.is_random_access_point();
                    let ts = f.timestamp().elapsed();
                    let stream_id = f.stream_id();
                    let data = Bytes::from(f.into_data());
                    ingest.video(stream_id, ts, data, keyframe, new_config);
                }
                Some(Ok(CodecItem::AudioFrame(f))) => {
                    let ts = f.timestamp().elapsed();
                    ingest.audio(f.stream_id(), ts, Bytes::copy_from_slice(f.data()));
                }
                Some(Ok(_)) => {} // RTCP, ONVIF metadata
            }
            ingest.tick(sink);
        }
    }
}

/// Awaits the next session item unless the publisher is kicked or no media came for the idle
/// timeout.
async fn next_with_idle<T>(
    ingest: &mut Ingest,
    settings: &RtspSettings,
    next: impl std::future::Future<Output = T>,
) -> Result<T, PullError> {
    let deadline = ingest.last_media + settings.idle_timeout;
    let publisher = ingest.publisher.as_mut().expect("publishing");
    tokio::select! {
        item = next => Ok(item),
        _ = publisher.kicked() => Err(PullError::retry("publisher kicked through the API")),
        _ = tokio::time::sleep_until(deadline) => Err(PullError::retry(format!(
            "no media for {} s", settings.idle_timeout.as_secs()
        ))),
    }
}

/// Builds an AvcConfig from retina's parameters (None for non-H.264 parameters).
fn avc_config(params: ParametersRef<'_>) -> Result<Option<AvcConfig>, PullError> {
    match params {
        ParametersRef::Video(v) => match v.codec_params() {
            VideoParametersCodec::H264 { sps, pps } => {
                AvcConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()])
                    .map(Some)
                    .map_err(|e| PullError::retry(format!("H.264 parameter sets: {e}")))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Keeps a track's decode times strictly increasing: cameras repeat timestamps (two frames
/// in one RTP tick) and retina's timeline is per stream.
#[derive(Default)]
struct TrackClock {
    last_dts: Option<i64>,
}

impl TrackClock {
    /// (pts, dts) for a frame whose RTP timestamp is `ts`. Without B-frames (cameras almost
    /// never use them) the RTP timestamp is both; a timestamp that does not advance is moved
    /// one tick after the previous frame.
    fn times(&mut self, ts: i64) -> (i64, i64) {
        let dts = match self.last_dts {
            Some(last) if ts <= last => last + 1,
            _ => ts,
        };
        self.last_dts = Some(dts);
        (ts.max(dts), dts)
    }
}

/// The media half of a session: retina's frames (or raw packets) -> tracks and bus frames.
/// Does no I/O.
struct Ingest {
    publisher: Option<Publisher>,
    video_stream: Option<usize>,
    audio_stream: Option<(usize, AudioKind)>,
    video: Option<Track>,
    audio: Option<Track>,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    /// Tracks as last handed to the bus; `None` until every chosen track has its config.
    published: Option<Vec<Track>>,
    /// Raw-RTP mode's H.264 depacketizer (only when the session has an Opus track).
    raw_h264: Option<H264Depacketizer>,
    last_media: Instant,
    frames_before_config: u64,
    running_reported: bool,
}

impl Ingest {
    fn new(video_stream: Option<usize>, audio_stream: Option<(usize, AudioKind)>) -> Self {
        let raw = matches!(audio_stream, Some((_, AudioKind::Opus)));
        Ingest {
            publisher: None,
            raw_h264: (raw && video_stream.is_some()).then(H264Depacketizer::default),
            video_stream,
            audio_stream,
            video: None,
            audio: None,
            video_clock: TrackClock::default(),
            audio_clock: TrackClock::default(),
            published: None,
            last_media: Instant::now(),
            frames_before_config: 0,
            running_reported: false,
        }
    }

    fn raw_mode(&self) -> bool {
        matches!(self.audio_stream, Some((_, AudioKind::Opus)))
    }

    fn video_config_missing(&self) -> bool {
        self.video_stream.is_some() && self.video.is_none()
    }

    /// Track configs known from the SDP (sprop-parameter-sets, AAC config, channels).
    fn read_initial_params(&mut self, streams: &[retina::client::Stream]) -> Result<(), PullError> {
        if let Some(i) = self.video_stream {
            if let Some(config) = streams[i]
                .parameters()
                .map(avc_config)
                .transpose()?
                .flatten()
            {
                self.set_video_config(config);
            }
        }
        if let Some((i, kind)) = self.audio_stream.clone() {
            let s = &streams[i];
            let channels = s.channels().map(|c| c.get().min(255) as u8);
            let codec = match kind {
                AudioKind::Aac => {
                    let Some(ParametersRef::Audio(p)) = s.parameters() else {
                        return Err(PullError::permanent(
                            "AAC track without a usable config in the SDP",
                        ));
                    };
                    let asc = AudioSpecificConfig::parse(Bytes::copy_from_slice(p.extra_data()))
                        .map_err(|e| PullError::permanent(format!("AAC config in the SDP: {e}")))?;
                    CodecConfig::Aac(asc)
                }
                // RFC 7587 7: the rtpmap always says 48000/2; `sprop-stereo` tells what is
                // sent, but decoders handle stereo streams carrying mono anyway.
                AudioKind::Opus => CodecConfig::Opus {
                    channels: channels.unwrap_or(2),
                    head: None,
                },
                AudioKind::G711(law) => CodecConfig::G711 {
                    law,
                    channels: channels.unwrap_or(1),
                },
            };
            tracing::debug!(codec = %codec.rfc6381_codec(), clock_rate = s.clock_rate_hz(), "RTSP audio track");
            self.audio = Some(Track {
                id: AUDIO_TRACK,
                codec,
                clock_rate: s.clock_rate_hz(),
            });
        }
        Ok(())
    }

    fn set_video_config(&mut self, config: AvcConfig) {
        let codec = CodecConfig::H264(config);
        if self.video.as_ref().is_some_and(|t| t.codec == codec) {
            return;
        }
        self.video = Some(Track {
            id: VIDEO_TRACK,
            codec,
            clock_rate: 90_000,
        });
    }

    /// Hands the tracks to the bus when they are all known, and again when they change.
    fn sync_tracks(&mut self) -> bool {
        if self.video_config_missing() {
            return false;
        }
        let tracks: Vec<Track> = self
            .video
            .iter()
            .chain(self.audio.iter())
            .cloned()
            .collect();
        if self.published.as_ref() != Some(&tracks) {
            if let Some(p) = self.publisher.as_mut() {
                let name = p.stream().name().to_string();
                for t in &tracks {
                    tracing::info!(stream = %name, kind = %t.kind(), codec = %t.codec.rfc6381_codec(), clock_rate = t.clock_rate, "RTSP track");
                }
                p.set_tracks(tracks.clone());
            }
            self.published = Some(tracks);
        }
        true
    }

    fn video(
        &mut self,
        stream_id: usize,
        ts: i64,
        data: Bytes,
        keyframe: bool,
        new_config: Option<AvcConfig>,
    ) {
        if Some(stream_id) != self.video_stream {
            return;
        }
        if let Some(config) = new_config {
            self.set_video_config(config);
        }
        if !self.sync_tracks() {
            self.frames_before_config += 1;
            return;
        }
        if data.is_empty() {
            return;
        }
        // Retina calls an access unit without non-IDR slices a random access point (an
        // SEI-only unit is one); GOPs must start where a decoder can.
        let keyframe = keyframe && h264::is_keyframe(&data);
        let (pts, dts) = self.video_clock.times(ts);
        self.push(Frame {
            track: VIDEO_TRACK,
            pts,
            dts,
            keyframe,
            data,
        });
    }

    fn audio(&mut self, stream_id: usize, ts: i64, data: Bytes) {
        if self.audio_stream.as_ref().map(|a| a.0) != Some(stream_id) || data.is_empty() {
            return;
        }
        if !self.sync_tracks() {
            self.frames_before_config += 1;
            return;
        }
        let (pts, dts) = self.audio_clock.times(ts);
        self.push(Frame {
            track: AUDIO_TRACK,
            pts,
            dts,
            keyframe: true,
            data,
        });
    }

    /// One RTP packet in raw mode (sessions with Opus).
    fn raw_packet(
        &mut self,
        stream_id: usize,
        header: RawHeader,
        payload: Bytes,
    ) -> Result<(), PullError> {
        if Some(stream_id) == self.video_stream {
            let Some(depacketizer) = self.raw_h264.as_mut() else {
                return Ok(());
            };
            let packet = PacketRef {
                sequence: header.sequence,
                timestamp: header.rtp_timestamp,
                marker: header.marker,
                payload: &payload,
            };
            let mut out = Vec::new();
            depacketizer
                .push(packet, header.loss, &mut out)
                .map_err(|e| PullError::retry(format!("H.264 RTP: {e}")))?;
            for au in out {
                let config = match au.parameter_sets {
                    Some((sps, pps)) => {
                        match AvcConfig::from_parameter_sets(vec![sps], vec![pps]) {
                            Ok(c) => Some(c),
                            Err(e) => {
                                return Err(PullError::retry(format!("H.264 parameter sets: {e}")))
                            }
                        }
                    }
                    None => None,
                };
                // An access unit ends at the packet that completes it or at the next one (no
                // marker), so its timestamp is this packet's or a little before: retina's
                // timeline at this packet, moved by the 32-bit difference.
                let ts = header.elapsed
                    + i64::from(au.timestamp.wrapping_sub(header.rtp_timestamp) as i32);
                self.video(stream_id, ts, au.data, au.keyframe, config);
            }
        } else {
            // Opus: one packet is one frame (RFC 7587 4.2).
            self.audio(stream_id, header.elapsed, payload);
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame) {
        self.last_media = Instant::now();
        if let Some(p) = &self.publisher {
            p.push(frame);
        }
    }

    /// Tells the manager once that media flows.
    fn tick(&mut self, sink: &mut dyn PullSink) {
        if !self.running_reported && self.published.is_some() {
            self.running_reported = true;
            sink.running();
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.frames_before_config > 0 {
            tracing::debug!(
                frames = self.frames_before_config,
                "RTSP frames dropped before the video parameter sets came"
            );
        }
    }
}

/// What raw mode needs of an RTP packet's header.
#[derive(Debug, Clone, Copy)]
struct RawHeader {
    sequence: u16,
    /// The timestamp as sent.
    rtp_timestamp: u32,
    /// Retina's extended timestamp since the stream's start (shared origin across streams).
    elapsed: i64,
    marker: bool,
    /// Packets lost just before this one.
    loss: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_parsed_without_their_credentials() {
        let s =
            RtspSource::parse("rtsp://admin:p%40ss@cam.local/live", RtspTransport::Tcp).unwrap();
        assert_eq!(s.url.as_str(), "rtsp://cam.local/live");
        assert_eq!(s.creds.as_ref().unwrap().password, "p@ss");
        assert_eq!(s.redacted(), "rtsp://***@cam.local/live");
        assert!(!format!("{s:?}").contains("p%40ss"));
        let err =
            RtspSource::parse("rtsp://admin:secret@[bad/live", RtspTransport::Tcp).unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn transport_comes_from_the_query_which_is_stripped() {
        let s =
            RtspSource::parse("rtsp://cam:8554/live?transport=udp", RtspTransport::Tcp).unwrap();
        assert_eq!(s.transport(), RtspTransport::Udp);
        assert_eq!(s.url.as_str(), "rtsp://cam:8554/live");
        let s = RtspSource::parse(
            "rtsp://cam/live?channel=2&transport=tcp",
            RtspTransport::Udp,
        )
        .unwrap();
        assert_eq!(s.transport(), RtspTransport::Tcp);
        assert_eq!(s.url.as_str(), "rtsp://cam/live?channel=2");
        assert!(RtspSource::parse("rtsp://cam/live?transport=sctp", RtspTransport::Tcp).is_err());
        assert!(RtspSource::parse("http://cam/live", RtspTransport::Tcp).is_err());
        assert!(RtspSource::parse("rtsp://", RtspTransport::Tcp).is_err());
    }

    #[test]
    fn repeated_timestamps_still_increase() {
        let mut c = TrackClock::default();
        assert_eq!(c.times(0), (0, 0));
        assert_eq!(c.times(3000), (3000, 3000));
        assert_eq!(c.times(3000), (3001, 3001));
        assert_eq!(c.times(6000), (6000, 6000));
    }

    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x78];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    #[test]
    fn raw_mode_depacketizes_h264_on_retinas_timeline() {
        use crate::bus::{Peer, ReaderEvent, TryRecv};
        let registry = crate::bus::Registry::new(Default::default());
        let mut ingest = Ingest::new(Some(0), Some((1, AudioKind::Opus)));
        assert!(ingest.raw_mode() && ingest.raw_h264.is_some());
        ingest.audio = Some(Track {
            id: AUDIO_TRACK,
            codec: CodecConfig::Opus {
                channels: 2,
                head: None,
            },
            clock_rate: 48_000,
        });
        ingest.publisher = Some(registry.publish("cam", Peer::new("rtsp", None)).unwrap());
        let mut reader = registry.subscribe("cam", Peer::new("test", None)).unwrap();
        // The RTP timestamps wrap between frames; retina's timeline does not.
        let base = u32::MAX - 1000;
        let header = |sequence, ticks: u32, marker| RawHeader {
            sequence,
            rtp_timestamp: base.wrapping_add(ticks),
            elapsed: i64::from(ticks),
            marker,
            loss: 0,
        };
        let packets: [(usize, RawHeader, &[u8]); 5] = [
            (0, header(1, 0, false), &stap_a(&[SPS, PPS])),
            (0, header(2, 0, true), &[0x65, 0x88, 0x80]),
            // A P frame without marker: it ends when the next one starts.
            (0, header(3, 3000, false), &[0x41, 0x9a, 0x02]),
            (1, header(1, 960, true), &[0xf8, 0xff, 0xfe]),
            (0, header(4, 6000, true), &[0x41, 0x9a, 0x04]),
        ];
        for (stream_id, header, payload) in packets {
            ingest
                .raw_packet(stream_id, header, Bytes::copy_from_slice(payload))
                .unwrap();
        }
        let (mut frames, mut tracks) = (Vec::new(), 0);
        while let TryRecv::Event(event) = reader.try_recv() {
            match event {
                ReaderEvent::Frame(f) => frames.push(f.frame.clone()),
                ReaderEvent::Tracks(t) => tracks = t.tracks.len(),
                ReaderEvent::Lost { .. } => panic!("lost frames"),
            }
        }
        assert_eq!(tracks, 2);
        let got: Vec<(TrackId, i64, bool)> = frames
            .iter()
            .map(|f| (f.track, f.pts, f.keyframe))
            .collect();
        assert_eq!(
            got,
            [
                (VIDEO_TRACK, 0, true),
                (AUDIO_TRACK, 960, true),
                (VIDEO_TRACK, 3000, false),
                (VIDEO_TRACK, 6000, false),
            ]
        );
        assert_eq!(&frames[0].data[..], &[0, 0, 0, 3, 0x65, 0x88, 0x80]);
        // A loss drops everything until the next IDR.
        let mut lost = header(6, 12000, true);
        lost.loss = 1;
        ingest
            .raw_packet(0, lost, Bytes::from_static(&[0x41, 0x9a, 0x06]))
            .unwrap();
        assert!(ingest.raw_h264.as_ref().unwrap().waiting_for_keyframe());
    }

    #[test]
    fn parameter_set_changes_publish_new_tracks() {
        let registry = crate::bus::Registry::new(Default::default());
        let mut ingest = Ingest::new(Some(0), Some((1, AudioKind::G711(G711Law::MuLaw))));
        ingest.audio = Some(Track {
            id: AUDIO_TRACK,
            codec: CodecConfig::G711 {
                law: G711Law::MuLaw,
                channels: 1,
            },
            clock_rate: 8000,
        });
        ingest.publisher = Some(
            registry
                .publish("cam", crate::bus::Peer::new("rtsp", None))
                .unwrap(),
        );
        let stream = registry.get("cam").unwrap();
        // Audio before the video's parameter sets is held back: no tracks yet.
        ingest.audio(1, 0, Bytes::from_static(&[0xff; 160]));
        assert_eq!(stream.tracks().borrow().generation, 0);
        let idr = Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x80]);
        let config = || {
            AvcConfig::from_parameter_sets(
                vec![Bytes::from_static(SPS)],
                vec![Bytes::from_static(PPS)],
            )
            .unwrap()
        };
        ingest.video(0, 0, idr.clone(), true, Some(config()));
        let tracks = stream.tracks().borrow().clone();
        assert_eq!((tracks.generation, tracks.tracks.len()), (1, 2));
        // The same parameters again change nothing; different ones are a new track set.
        ingest.video(0, 3000, idr.clone(), true, Some(config()));
        assert_eq!(stream.tracks().borrow().generation, 1);
        let mut sps = SPS.to_vec();
        sps[3] = 0x1f; // level 3.1
        let changed =
            AvcConfig::from_parameter_sets(vec![Bytes::from(sps)], vec![Bytes::from_static(PPS)])
                .unwrap();
        ingest.video(0, 6000, idr, true, Some(changed));
        let tracks = stream.tracks().borrow().clone();
        assert_eq!(tracks.generation, 2);
        assert_eq!(tracks.video().unwrap().codec.rfc6381_codec(), "avc1.42C01F");
        assert_eq!(stream.counters().frames_in, 3);
    }
}
