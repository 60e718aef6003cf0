//! The media half of an RTSP pull: RTP and RTCP packets of the chosen streams (from retina over
//! TCP, or from our UDP sockets) become tracks and frames on the bus. Does no I/O and reads no
//! clock: arrival times come in as arguments.
//!
//! - **Order and loss.** Over UDP packets may arrive out of order: each stream has a small
//!   reorder buffer ([`ReorderBuffer`], 256 packets, a gap waited for at most
//!   [`REORDER_WAIT`]), so a swapped pair is put back in order and only sequence numbers that
//!   never arrive count as lost (`packets_lost` in the API). Over TCP packets come in order and
//!   the loss is what retina counts (gaps in the sequence numbers the camera sent).
//! - **Depacketizing** (switchyard-rtp): H.264 (RFC 6184), H.265 (RFC 7798), AAC
//!   (`mpeg4-generic`, RFC 3640); one Opus or G.711 packet is one frame (RFC 7587 4.2, RFC
//!   3551 4.5). Parameter sets come from the SDP (`sprop-parameter-sets`, `sprop-vps`/`-sps`/
//!   `-pps`, RFC 6184 8.1, RFC 7798 7.1) and from the stream; a change publishes new tracks.
//!   Loss drops video until the next keyframe (IDR, or IRAP for H.265).
//! - **Timing.** All tracks are mapped onto one origin by [`SessionClock`]: by arrival until
//!   both tracks' RTCP sender reports are known, then by the reports (RFC 3550 6.4.1), which
//!   put audio and video sampled at the same instant at the same time whatever their RTP
//!   timestamps' random offsets and however differently late each arrives. Frames keep their
//!   RTP clock as the track clock. The correction moves the audio, never the video; when it
//!   steps the audio back, the frames that would go backwards are dropped. A track whose RTP
//!   timestamps jump (a camera's encoder, or gst-rtsp-server's shared pipeline, restarting)
//!   goes on aligned by arrival, then by the next reports: no reconnection.
//! - **Bad packets** are counted and logged (the first, then every hundredth) and skipped;
//!   a payload structure we do not implement (H.265 PACI, AAC interleaving) ends the pull
//!   with a message, since every packet after it would fail too.

use super::sdp::{AudioKind, Choice, MediaDescription, Presentation, VideoKind};
use crate::bus::Publisher;
use crate::inputs::pull::{PullError, PullSink};
use crate::webrtc::ClientCounters;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_media::aac::AudioSpecificConfig;
use switchyard_media::h264::AvcConfig;
use switchyard_media::h265::HevcConfig;
use switchyard_media::{CodecConfig, Frame, MediaKind, Track, TrackId};
use switchyard_rtp::aac::{AacDepacketizer, AacFormat, AacFrame};
use switchyard_rtp::clock::SessionClock;
use switchyard_rtp::h264::{H264AccessUnit, H264Depacketizer};
use switchyard_rtp::h265::{H265AccessUnit, H265Depacketizer};
use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::{fmtp, rtcp, PacketRef, RtpError};

pub const VIDEO_TRACK: TrackId = TrackId(1);
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// Sequence numbers a stream's reorder buffer spans (UDP).
const REORDER_CAPACITY: usize = 256;
/// How long a missing packet holds later ones back before it is given up as lost (UDP).
pub const REORDER_WAIT: Duration = Duration::from_millis(100);
/// A jump of the sequence numbers larger than this is a restarted sender, not loss.
const MAX_COUNTED_LOSS: u16 = 3000;

/// A packet held in a reorder buffer: payload, sequence number, timestamp, marker.
type Held = (Bytes, u16, u32, bool);

enum Depacketizer {
    H264(H264Depacketizer, Vec<H264AccessUnit>),
    H265(H265Depacketizer, Vec<H265AccessUnit>),
    Aac(AacDepacketizer, Vec<AacFrame>),
    /// Opus and G.711: one packet, one frame.
    Whole,
}

/// One chosen stream on its way to the bus.
struct Stream {
    /// Its index in the presentation (retina's stream id).
    index: usize,
    kind: MediaKind,
    /// Its track in the session clock.
    clock: usize,
    depacketizer: Depacketizer,
    reorder: Option<ReorderBuffer<Held>>,
    gap_since: Option<Instant>,
    last_pts: Option<i64>,
}

/// RTSP packets -> bus. See the module documentation.
pub struct Ingest {
    pub publisher: Option<Publisher>,
    counters: Arc<ClientCounters>,
    streams: Vec<Stream>,
    clock: SessionClock,
    epoch: Instant,
    video: Option<Track>,
    audio: Option<Track>,
    /// Whether a video stream was chosen (tracks wait for its configuration).
    wants_video: bool,
    /// Tracks as last handed to the bus; `None` until every chosen track has its config.
    published: Option<Vec<Track>>,
    /// When the last frame went to the bus (the idle timeout counts from it).
    pub last_media: Instant,
    frames_before_config: u64,
    bad_packets: u64,
    lost: u64,
    running_reported: bool,
}

impl Ingest {
    /// The tracks and depacketizers of the chosen streams, configured from the SDP. `reorder`:
    /// packets may arrive out of order (UDP). A stream the SDP makes unusable (AAC without a
    /// config) is a permanent error: retrying cannot help.
    pub fn new(
        presentation: &Presentation,
        choice: &Choice,
        reorder: bool,
        now: Instant,
    ) -> Result<Ingest, PullError> {
        let mut ingest = Ingest {
            publisher: None,
            counters: Arc::default(),
            streams: Vec::new(),
            clock: SessionClock::new(),
            epoch: now,
            video: None,
            audio: None,
            wants_video: choice.video.is_some(),
            published: None,
            last_media: now,
            frames_before_config: 0,
            bad_packets: 0,
            lost: 0,
            running_reported: false,
        };
        if let Some((index, kind)) = choice.video {
            let desc = &presentation.streams[index];
            let depacketizer = match kind {
                VideoKind::H264 => Depacketizer::H264(H264Depacketizer::default(), Vec::new()),
                VideoKind::H265 => Depacketizer::H265(H265Depacketizer::default(), Vec::new()),
            };
            if let Some(config) = video_config_from_sdp(kind, desc) {
                ingest.set_video_config(config);
            }
            ingest.add_stream(index, MediaKind::Video, 90_000, depacketizer, reorder);
            // Sender reports move the audio to the video, never the video (a jump of the
            // picture is seen; a few audio frames dropped are hardly heard).
            let clock = ingest.streams[0].clock;
            ingest.clock.prefer_reference(clock);
        }
        if let Some((index, kind)) = choice.audio {
            let desc = &presentation.streams[index];
            let (codec, depacketizer) = audio_config(kind, desc)?;
            let clock_rate = desc.clock_rate.max(1);
            tracing::debug!(codec = %codec.rfc6381_codec(), clock_rate, "RTSP audio track");
            ingest.audio = Some(Track {
                id: AUDIO_TRACK,
                codec,
                clock_rate,
            });
            ingest.add_stream(index, MediaKind::Audio, clock_rate, depacketizer, reorder);
        }
        Ok(ingest)
    }

    fn add_stream(
        &mut self,
        index: usize,
        kind: MediaKind,
        clock_rate: u32,
        depacketizer: Depacketizer,
        reorder: bool,
    ) {
        let clock = self.clock.add_track(clock_rate);
        self.streams.push(Stream {
            index,
            kind,
            clock,
            depacketizer,
            reorder: reorder.then(|| ReorderBuffer::new(REORDER_CAPACITY)),
            gap_since: None,
            last_pts: None,
        });
    }

    /// The counters the API shows for this attempt (`packets_lost`).
    pub fn counters(&self) -> Arc<ClientCounters> {
        self.counters.clone()
    }

    /// RTP packets lost so far (never arrived; reordered ones are not lost).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    fn arrival(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// One RTP packet of presentation stream `index`. `lost`: packets the transport knows
    /// were lost just before it (TCP: retina's count); UDP counts its own after reordering.
    #[allow(clippy::too_many_arguments)]
    pub fn rtp(
        &mut self,
        index: usize,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        lost: u16,
        now: Instant,
    ) -> Result<(), PullError> {
        let Some(s) = self.streams.iter().position(|s| s.index == index) else {
            return Ok(());
        };
        self.counters.packets.fetch_add(1, Ordering::Relaxed);
        let stream = &mut self.streams[s];
        let Some(reorder) = stream.reorder.as_mut() else {
            return self.packet(s, (payload, sequence, timestamp, marker), lost, now);
        };
        reorder.push(sequence, (payload, sequence, timestamp, marker));
        self.release(s, now)
    }

    /// Hands what the stream's reorder buffer releases to its depacketizer.
    fn release(&mut self, s: usize, now: Instant) -> Result<(), PullError> {
        loop {
            let stream = &mut self.streams[s];
            let Some(reorder) = stream.reorder.as_mut() else {
                return Ok(());
            };
            if reorder.has_gap() {
                stream.gap_since.get_or_insert(now);
            } else {
                stream.gap_since = None;
            }
            let Some((held, lost)) = reorder.pop() else {
                return Ok(());
            };
            self.packet(s, held, lost, now)?;
        }
    }

    /// Gives up on the gaps that waited [`REORDER_WAIT`] (call at [`Ingest::gap_deadline`]).
    pub fn flush_gaps(&mut self, now: Instant) -> Result<(), PullError> {
        for s in 0..self.streams.len() {
            let stream = &mut self.streams[s];
            let (Some(reorder), Some(since)) = (stream.reorder.as_mut(), stream.gap_since) else {
                continue;
            };
            if now.saturating_duration_since(since) >= REORDER_WAIT {
                reorder.skip_gap();
                stream.gap_since = None;
                self.release(s, now)?;
            }
        }
        Ok(())
    }

    /// When the oldest gap in a reorder buffer is to be given up.
    pub fn gap_deadline(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter_map(|s| s.gap_since)
            .min()
            .map(|t| t + REORDER_WAIT)
    }

    /// One packet in order.
    fn packet(&mut self, s: usize, held: Held, lost: u16, now: Instant) -> Result<(), PullError> {
        let (payload, sequence, timestamp, marker) = held;
        if lost > 0 && lost <= MAX_COUNTED_LOSS {
            tracing::debug!(
                stream = self.streams[s].index,
                sequence,
                lost,
                "RTP packets lost"
            );
            self.lost += u64::from(lost);
            self.counters.lost.store(self.lost, Ordering::Relaxed);
        }
        let packet = PacketRef {
            sequence,
            timestamp,
            marker,
            payload: &payload,
        };
        let stream = &mut self.streams[s];
        let result = match &mut stream.depacketizer {
            Depacketizer::H264(d, out) => d.push(packet, lost, out),
            Depacketizer::H265(d, out) => d.push(packet, lost, out),
            Depacketizer::Aac(d, out) => d.push(packet, lost, out),
            Depacketizer::Whole => {
                if !payload.is_empty() {
                    self.audio_frame(s, timestamp, payload, now);
                }
                return Ok(());
            }
        };
        if let Err(e) = result {
            self.bad_packet(s, e)?;
        }
        self.drain(s, now);
        Ok(())
    }

    /// A packet the depacketizer refused: counted and logged, or the end of the pull for a
    /// payload structure no later packet will pass either.
    fn bad_packet(&mut self, s: usize, e: RtpError) -> Result<(), PullError> {
        let what = match self.streams[s].kind {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        };
        if matches!(e, RtpError::Unsupported { .. }) {
            return Err(PullError::permanent(format!("the camera's {what}: {e}")));
        }
        self.bad_packets += 1;
        if self.bad_packets % 100 == 1 {
            tracing::warn!(stream = %self.stream_name(), bad_packets = self.bad_packets, error = %e, "RTSP {what} packet skipped");
        }
        Ok(())
    }

    fn stream_name(&self) -> String {
        self.publisher
            .as_ref()
            .map(|p| p.stream().name().to_string())
            .unwrap_or_default()
    }

    /// Sends what the stream's depacketizer completed to the bus.
    fn drain(&mut self, s: usize, now: Instant) {
        let stream = &mut self.streams[s];
        match &mut stream.depacketizer {
            Depacketizer::H264(_, out) => {
                let units = std::mem::take(out);
                for au in &units {
                    let config = au.parameter_sets.as_ref().map(|(sps, pps)| {
                        AvcConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()])
                            .map(CodecConfig::H264)
                            .map_err(|e| format!("H.264 parameter sets: {e}"))
                    });
                    self.video_frame(s, au.timestamp, au.data.clone(), au.keyframe, config, now);
                }
                if let Depacketizer::H264(_, out) = &mut self.streams[s].depacketizer {
                    *out = units;
                    out.clear();
                }
            }
            Depacketizer::H265(_, out) => {
                let units = std::mem::take(out);
                for au in &units {
                    let config = au.parameter_sets.as_ref().map(|sets| {
                        HevcConfig::from_parameter_sets(
                            std::slice::from_ref(&sets.vps),
                            std::slice::from_ref(&sets.sps),
                            std::slice::from_ref(&sets.pps),
                        )
                        .map(CodecConfig::H265)
                        .map_err(|e| format!("H.265 parameter sets: {e}"))
                    });
                    self.video_frame(s, au.timestamp, au.data.clone(), au.keyframe, config, now);
                }
                if let Depacketizer::H265(_, out) = &mut self.streams[s].depacketizer {
                    *out = units;
                    out.clear();
                }
            }
            Depacketizer::Aac(_, out) => {
                let frames = std::mem::take(out);
                for f in &frames {
                    self.audio_frame(s, f.timestamp, f.data.clone(), now);
                }
                if let Depacketizer::Aac(_, out) = &mut self.streams[s].depacketizer {
                    *out = frames;
                    out.clear();
                }
            }
            Depacketizer::Whole => {}
        }
    }

    /// An RTCP compound packet of presentation stream `index`: its sender reports align the
    /// stream's clock with the others'.
    pub fn rtcp(&mut self, index: usize, data: &[u8]) {
        let Some(stream) = self.streams.iter().find(|s| s.index == index) else {
            return;
        };
        let clock = stream.clock;
        for sr in rtcp::sender_reports(data) {
            self.clock.sender_report(clock, sr.ntp, sr.rtp);
        }
        self.log_resyncs();
    }

    fn log_resyncs(&mut self) {
        while let Some((track, step)) = self.clock.take_restart() {
            let Some(stream) = self.streams.iter().find(|s| s.clock == track) else {
                continue;
            };
            let rate = match stream.kind {
                MediaKind::Video => 90_000,
                MediaKind::Audio => self.audio.as_ref().map_or(1, |t| t.clock_rate.max(1)),
            };
            let step_s = step as f64 / f64::from(rate);
            tracing::info!(stream = %self.stream_name(), track = %stream.kind, step_s, "RTSP RTP timestamps jumped (encoder or server restarted): the track goes on aligned by arrival until the next sender report");
        }
        while let Some(r) = self.clock.take_resync() {
            let Some(stream) = self.streams.iter().find(|s| s.clock == r.track) else {
                continue;
            };
            let rate = match stream.kind {
                MediaKind::Video => 90_000,
                MediaKind::Audio => self.audio.as_ref().map_or(1, |t| t.clock_rate.max(1)),
            };
            let step_ms = r.step as f64 * 1000.0 / f64::from(rate);
            if r.applied {
                tracing::info!(stream = %self.stream_name(), track = %stream.kind, step_ms, "RTSP tracks aligned by RTCP sender reports");
            } else {
                tracing::warn!(stream = %self.stream_name(), track = %stream.kind, step_ms, "RTSP sender reports disagree with arrival by more than 10 s; not applied");
            }
        }
    }

    fn pts(&mut self, s: usize, timestamp: u32, now: Instant) -> i64 {
        let arrival = self.arrival(now);
        let pts = self.clock.map(self.streams[s].clock, timestamp, arrival);
        self.log_resyncs();
        pts
    }

    fn video_frame(
        &mut self,
        s: usize,
        timestamp: u32,
        data: Bytes,
        keyframe: bool,
        config: Option<Result<CodecConfig, String>>,
        now: Instant,
    ) {
        match config {
            Some(Ok(config)) => self.set_video_config(config),
            Some(Err(e)) => {
                tracing::warn!(stream = %self.stream_name(), error = %e, "RTSP video parameter sets not usable");
            }
            None => {}
        }
        let pts = self.pts(s, timestamp, now);
        if !self.sync_tracks() {
            self.frames_before_config += 1;
            return;
        }
        // Cameras repeat timestamps (two frames in one RTP tick); a sender-report correction
        // may step back: decode times must still increase.
        let stream = &mut self.streams[s];
        let pts = match stream.last_pts {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        stream.last_pts = Some(pts);
        self.push(
            Frame {
                track: VIDEO_TRACK,
                pts,
                dts: pts,
                keyframe,
                data,
            },
            now,
        );
    }

    fn audio_frame(&mut self, s: usize, timestamp: u32, data: Bytes, now: Instant) {
        let pts = self.pts(s, timestamp, now);
        if !self.sync_tracks() {
            self.frames_before_config += 1;
            return;
        }
        let stream = &mut self.streams[s];
        if stream.last_pts.is_some_and(|last| pts <= last) {
            return; // behind what was sent (a correction stepped back): dropped
        }
        stream.last_pts = Some(pts);
        self.push(
            Frame {
                track: AUDIO_TRACK,
                pts,
                dts: pts,
                keyframe: true,
                data,
            },
            now,
        );
    }

    fn set_video_config(&mut self, codec: CodecConfig) {
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
        if self.wants_video && self.video.is_none() {
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

    fn push(&mut self, frame: Frame, now: Instant) {
        self.last_media = now.max(self.last_media);
        if let Some(p) = &self.publisher {
            p.push(frame);
        }
    }

    /// Tells the manager once that media flows.
    pub fn tick(&mut self, sink: &mut dyn PullSink) {
        if !self.running_reported && self.published.is_some() {
            self.running_reported = true;
            sink.running();
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.frames_before_config > 0 || self.bad_packets > 0 || self.lost > 0 {
            tracing::debug!(
                frames_before_config = self.frames_before_config,
                bad_packets = self.bad_packets,
                lost = self.lost,
                "RTSP session ended"
            );
        }
    }
}

/// The video configuration the SDP gives, if its parameter sets are there and usable (they
/// may also come only in the stream; a camera's stale or broken ones are replaced by those).
fn video_config_from_sdp(kind: VideoKind, desc: &MediaDescription) -> Option<CodecConfig> {
    let params = fmtp::parameters(&desc.fmtp);
    let result = match kind {
        VideoKind::H264 => {
            let sets = fmtp::base64_list(
                "sprop-parameter-sets",
                fmtp::get(&params, "sprop-parameter-sets")?,
            )
            .map_err(|e| e.to_string());
            sets.and_then(|sets| {
                let (sps, pps): (Vec<Bytes>, Vec<Bytes>) = sets
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .partition(|s| s[0] & 0x1f == switchyard_media::h264::NAL_SPS);
                let pps: Vec<Bytes> = pps
                    .into_iter()
                    .filter(|p| p[0] & 0x1f == switchyard_media::h264::NAL_PPS)
                    .collect();
                AvcConfig::from_parameter_sets(sps, pps)
                    .map(CodecConfig::H264)
                    .map_err(|e| e.to_string())
            })
        }
        VideoKind::H265 => {
            let list = |key: &'static str| {
                fmtp::base64_list(key, fmtp::get(&params, key).unwrap_or(""))
                    .map_err(|e| e.to_string())
            };
            (|| {
                let (vps, sps, pps) = (list("sprop-vps")?, list("sprop-sps")?, list("sprop-pps")?);
                HevcConfig::from_parameter_sets(&vps, &sps, &pps)
                    .map(CodecConfig::H265)
                    .map_err(|e| e.to_string())
            })()
        }
    };
    match result {
        Ok(config) => Some(config),
        Err(e) => {
            tracing::info!(error = %e, "RTSP: parameter sets in the SDP not usable; waiting for them in the stream");
            None
        }
    }
}

/// The audio track's configuration and depacketizer from the SDP.
fn audio_config(
    kind: AudioKind,
    desc: &MediaDescription,
) -> Result<(CodecConfig, Depacketizer), PullError> {
    let channels = desc.channels.map(|c| c.min(255) as u8);
    Ok(match kind {
        AudioKind::Aac => {
            let params = fmtp::parameters(&desc.fmtp);
            let config = fmtp::get(&params, "config").and_then(hex).ok_or_else(|| {
                PullError::permanent("AAC track without a usable config in the SDP")
            })?;
            let asc = AudioSpecificConfig::parse(Bytes::from(config))
                .map_err(|e| PullError::permanent(format!("AAC config in the SDP: {e}")))?;
            let format = AacFormat::from_fmtp(&desc.fmtp, 1024)
                .map_err(|e| PullError::permanent(format!("AAC in the SDP: {e}")))?;
            (
                CodecConfig::Aac(asc),
                Depacketizer::Aac(AacDepacketizer::new(format), Vec::new()),
            )
        }
        // RFC 7587 7: the rtpmap always says 48000/2; `sprop-stereo` tells what is sent, but
        // decoders handle stereo streams carrying mono anyway.
        AudioKind::Opus => (
            CodecConfig::Opus {
                channels: channels.unwrap_or(2),
                head: None,
            },
            Depacketizer::Whole,
        ),
        AudioKind::G711(law) => (
            CodecConfig::G711 {
                law,
                channels: channels.unwrap_or(1),
            },
            Depacketizer::Whole,
        ),
    })
}

/// Hex digits (RFC 3640's `config`) to bytes.
fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
