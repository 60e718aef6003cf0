//! RTSP pull input: an IP camera's stream (RTSP 1.0, RFC 2326) becomes a bus stream.
//!
//! [retina](https://docs.rs/retina) speaks RTSP (DESCRIBE / SETUP / PLAY, digest and basic
//! auth, keepalives, TEARDOWN), receives RTP interleaved on the RTSP connection (TCP, the
//! default) or over UDP, and depacketizes H.264 (RFC 6184), AAC (RFC 3640) and G.711
//! (RFC 3551). Retina has no Opus depacketizer, and its `demuxed()` refuses a session in which
//! any set-up stream lacks one, so a session with an Opus track (RFC 7587: one packet is one
//! frame) runs in retina's raw-RTP mode and this file depacketizes H.264 itself
//! ([`H264Depacketizer`]).
//!
//! Timing: retina gives every RTP timestamp relative to the stream's start, which `PLAY`'s
//! `RTP-Info` `rtptime` places at the same normal-play-time for every stream, so all tracks
//! share one origin and audio stays in sync with video. Frames keep their RTP clock as the
//! track clock (90 kHz video, the sample rate for audio).
//!
//! Credentials never leave this file in clear: the URL handed to retina has none (they go in
//! [`Credentials`]) and everything shown or logged uses [`redact`].

use crate::bus::Publisher;
use crate::pulls::{PullError, PullSink};
use bytes::{BufMut, Bytes, BytesMut};
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

/// Replaces the `user:pass@` of a URL with `***@`, so a source can be shown and logged.
/// Works on any string, parseable or not.
pub fn redact(source: &str) -> String {
    let Some(scheme_end) = source.find("://") else {
        return source.to_string();
    };
    let rest = &source[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &source[..scheme_end + 3],
            &rest[at..] // keeps the '@' and everything after it
        ),
        None => source.to_string(),
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
                    let ts = pkt.timestamp().elapsed();
                    let (stream_id, mark, loss) = (pkt.stream_id(), pkt.mark(), pkt.loss());
                    ingest.raw_packet(stream_id, ts, mark, loss, pkt.into_payload_bytes())?;
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
        ts: i64,
        mark: bool,
        loss: u16,
        payload: Bytes,
    ) -> Result<(), PullError> {
        if Some(stream_id) == self.video_stream {
            let Some(depacketizer) = self.raw_h264.as_mut() else {
                return Ok(());
            };
            let mut out = Vec::new();
            depacketizer
                .push(ts, mark, loss > 0, &payload, &mut out)
                .map_err(|e| PullError::retry(format!("H.264 RTP: {e}")))?;
            for au in out {
                let config = match au.new_parameters {
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
                self.video(stream_id, au.timestamp, au.data, au.keyframe, config);
            }
        } else {
            // Opus: one packet is one frame (RFC 7587 4.2).
            self.audio(stream_id, ts, payload);
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

/// An access unit out of [`H264Depacketizer`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct H264AccessUnit {
    pub timestamp: i64,
    /// 4-byte length-prefixed NAL units, parameter sets removed.
    pub data: Bytes,
    pub keyframe: bool,
    /// New (SPS, PPS) when this access unit changed them.
    pub new_parameters: Option<(Bytes, Bytes)>,
}

/// H.264 RTP depacketizer (RFC 6184, non-interleaved mode: single NAL unit packets, STAP-A,
/// FU-A) for raw-RTP sessions. Access units end at the marker bit or when the timestamp
/// changes (some cameras forget the marker). After a loss the damaged access unit is dropped
/// and so is everything until the next IDR, so decoders never see a broken reference chain.
#[derive(Default)]
pub(crate) struct H264Depacketizer {
    au: BytesMut,
    au_timestamp: Option<i64>,
    au_broken: bool,
    fragment: Option<BytesMut>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    parameters_changed: bool,
    waiting_for_idr: bool,
}

impl H264Depacketizer {
    pub fn push(
        &mut self,
        timestamp: i64,
        mark: bool,
        loss: bool,
        payload: &[u8],
        out: &mut Vec<H264AccessUnit>,
    ) -> Result<(), String> {
        if loss {
            self.fragment = None;
            self.au_broken = true;
        }
        if self.au_timestamp.is_some_and(|t| t != timestamp) {
            self.finish(out);
        }
        self.au_timestamp = Some(timestamp);
        let Some(&header) = payload.first() else {
            return Ok(()); // empty payload: padding-only packet
        };
        match header & 0x1f {
            1..=23 => self.nal(payload),
            24 => {
                // STAP-A: 16-bit sizes, each followed by one NAL unit.
                let mut rest = &payload[1..];
                while rest.len() >= 2 {
                    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    let nal = rest.get(2..2 + len).ok_or_else(|| {
                        format!("STAP-A NAL unit of {len} bytes overruns the packet")
                    })?;
                    self.nal(nal);
                    rest = &rest[2 + len..];
                }
            }
            28 => {
                let fu = *payload.get(1).ok_or("FU-A without its header")?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let body = &payload[2..];
                if start {
                    let mut nal = BytesMut::with_capacity(body.len() * 4);
                    nal.put_u8((header & 0xe0) | (fu & 0x1f));
                    nal.put_slice(body);
                    self.fragment = Some(nal);
                } else if let Some(nal) = self.fragment.as_mut() {
                    nal.put_slice(body);
                } else {
                    // A middle/end fragment whose start we never saw.
                    self.au_broken = true;
                }
                if end {
                    if let Some(nal) = self.fragment.take() {
                        self.nal(&nal);
                    }
                }
            }
            t => {
                return Err(format!(
                    "NAL packet type {t} (interleaved mode) is not supported"
                ))
            }
        }
        if mark {
            self.finish(out);
        }
        Ok(())
    }

    fn nal(&mut self, nal: &[u8]) {
        if nal.is_empty() {
            return;
        }
        match nal[0] & 0x1f {
            7 => {
                if self.sps.as_deref() != Some(nal) {
                    self.sps = Some(Bytes::copy_from_slice(nal));
                    self.parameters_changed = true;
                }
            }
            8 => {
                if self.pps.as_deref() != Some(nal) {
                    self.pps = Some(Bytes::copy_from_slice(nal));
                    self.parameters_changed = true;
                }
            }
            _ => {
                self.au.put_u32(nal.len() as u32);
                self.au.put_slice(nal);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<H264AccessUnit>) {
        let Some(timestamp) = self.au_timestamp.take() else {
            return;
        };
        let data = self.au.split().freeze();
        if self.au_broken || self.fragment.is_some() {
            self.au_broken = false;
            self.fragment = None;
            self.waiting_for_idr = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        let keyframe = h264::is_keyframe(&data);
        if self.waiting_for_idr && !keyframe {
            return;
        }
        self.waiting_for_idr = false;
        let new_parameters = match (&self.sps, &self.pps) {
            (Some(sps), Some(pps)) if self.parameters_changed => {
                self.parameters_changed = false;
                Some((sps.clone(), pps.clone()))
            }
            _ => None,
        };
        out.push(H264AccessUnit {
            timestamp,
            data,
            keyframe,
            new_parameters,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_everywhere() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101"),
            "rtsp://***@10.0.0.5:554/Streaming/101"
        );
        assert_eq!(redact("rtsp://cam/live?a=b@c"), "rtsp://cam/live?a=b@c");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(redact("rtsp://u:p@w@host/x"), "rtsp://***@host/x");
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
    fn stap_a_and_fu_a_make_one_access_unit_with_parameters_out_of_band() {
        let mut d = H264Depacketizer::default();
        let mut out = Vec::new();
        d.push(0, false, false, &stap_a(&[SPS, PPS]), &mut out)
            .unwrap();
        // IDR slice split in three FU-A fragments.
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..200u8).map(|i| i | 1))
            .collect();
        let fu = |start: bool, end: bool, body: &[u8]| {
            let mut p = vec![
                (idr[0] & 0xe0) | 28,
                (idr[0] & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
            ];
            p.extend_from_slice(body);
            p
        };
        d.push(0, false, false, &fu(true, false, &idr[1..80]), &mut out)
            .unwrap();
        d.push(0, false, false, &fu(false, false, &idr[80..150]), &mut out)
            .unwrap();
        assert!(out.is_empty());
        d.push(0, true, false, &fu(false, true, &idr[150..]), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        let au = &out[0];
        assert!(au.keyframe);
        assert_eq!(&au.data[..4], &(idr.len() as u32).to_be_bytes());
        assert_eq!(&au.data[4..], &idr[..]);
        let (sps, pps) = au.new_parameters.clone().unwrap();
        assert_eq!((&sps[..], &pps[..]), (SPS, PPS));
        assert!(AvcConfig::from_parameter_sets(vec![sps], vec![pps]).is_ok());

        // A P slice without marker ends when the timestamp changes; repeated SPS/PPS are no
        // change.
        out.clear();
        d.push(3000, false, false, &stap_a(&[SPS, PPS]), &mut out)
            .unwrap();
        d.push(3000, false, false, &[0x41, 0x9a, 0x02], &mut out)
            .unwrap();
        d.push(6000, true, false, &[0x41, 0x9a, 0x04], &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].timestamp, 3000);
        assert!(!out[0].keyframe && out[0].new_parameters.is_none());
        assert_eq!(out[1].timestamp, 6000);
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

    #[test]
    fn after_a_loss_frames_resume_at_the_next_idr() {
        let mut d = H264Depacketizer::default();
        let mut out = Vec::new();
        d.push(0, true, false, &[0x65, 0x88, 0x80], &mut out)
            .unwrap();
        d.push(3000, true, true, &[0x41, 0x9a, 0x02], &mut out)
            .unwrap();
        d.push(6000, true, false, &[0x41, 0x9a, 0x04], &mut out)
            .unwrap();
        d.push(9000, true, false, &[0x65, 0x88, 0x84], &mut out)
            .unwrap();
        let times: Vec<i64> = out.iter().map(|a| a.timestamp).collect();
        assert_eq!(times, [0, 9000]);
        assert!(d.push(0, true, false, &[0x79, 0, 0], &mut out).is_err());
        assert!(d
            .push(0, true, false, &[0x78, 0, 9, 0x41], &mut out)
            .is_err());
    }
}
