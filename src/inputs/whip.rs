//! WHIP ingest (RFC 9725): what a publishing peer connection's RTP becomes on the bus.
//!
//! The engine (`crate::webrtc`) owns the connection and hands this the RTP and RTCP it reads.
//! Video: a small reorder buffer (NACKed packets arrive late), then the depacketizer of the
//! negotiated codec from `protocols/rtp`: H.264 (RFC 6184; SPS/PPS kept out of band as the
//! track's avcC), VP8 (RFC 7741), VP9 (RFC 9628; the track's vpcC read from the keyframe
//! header) or AV1 (AV1 RTP spec; the track's av1C built from the sequence header). Audio: one Opus packet is one frame (RFC 7587 4.2). Both clocks are mapped onto the
//! stream's time origin by [`SessionClock`]: by arrival until RTCP sender reports come, then by
//! the reports (RFC 3550 6.4.1). The stream's tracks are announced once the first keyframe
//! gives the video its configuration (at once for audio-only publishers).

use crate::bus::Publisher;
use crate::webrtc::peer::VideoCodec;
use bytes::Bytes;
use std::time::{Duration, Instant};
use switchyard_media::h264::AvcConfig;
use switchyard_media::{CodecConfig, Frame, MediaKind, Track, TrackId};
use switchyard_rtp::av1::{av1c_from_temporal_unit, Av1Depacketizer};
use switchyard_rtp::clock::SessionClock;
use switchyard_rtp::h264::{H264AccessUnit, H264Depacketizer};
use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::vp8::Vp8Depacketizer;
use switchyard_rtp::vp9::{Vp9Depacketizer, Vp9KeyframeInfo};
use switchyard_rtp::{CodedFrame, PacketRef, RtpError};

pub const VIDEO_TRACK: TrackId = TrackId(1);
pub const AUDIO_TRACK: TrackId = TrackId(2);
/// Packets held while waiting for a missing one (a NACKed retransmission takes one RTT).
const REORDER_CAPACITY: usize = 128;
/// How long a gap may hold later packets back before it is given up as lost.
const REORDER_WAIT: Duration = Duration::from_millis(120);
/// At most one keyframe request (PLI) per this interval.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Browsers send a keyframe only when asked; HLS segments, late joiners' GOP cache and
/// recovery after loss need one regularly, so one is asked for when this much time passed
/// without one.
pub const MAX_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// Audio waits this long for the video's parameter sets, then goes out alone (the video
/// joins the tracks when it comes).
const VIDEO_WAIT: Duration = Duration::from_secs(3);

struct VideoIn {
    clock: usize,
    reorder: ReorderBuffer<(Bytes, u16, u32, bool)>,
    gap_since: Option<Instant>,
    depacketizer: Depacketizer,
    config: Option<CodecConfig>,
    units: Vec<VideoUnit>,
}

/// The depacketizer of the negotiated video codec.
enum Depacketizer {
    H264(H264Depacketizer, Vec<H264AccessUnit>),
    Vp8(Vp8Depacketizer, Vec<CodedFrame>),
    Vp9(Vp9Depacketizer, Vec<CodedFrame>),
    Av1(Av1Depacketizer, Vec<CodedFrame>),
}

/// A depacketized video frame and, when it brings one, its track's new configuration.
struct VideoUnit {
    timestamp: u32,
    data: Bytes,
    keyframe: bool,
    config: Option<Result<CodecConfig, String>>,
}

impl Depacketizer {
    fn new(codec: VideoCodec) -> Self {
        match codec {
            // Publishers are never offered H.265 (peer.rs's publish order has no H.265).
            VideoCodec::H264 | VideoCodec::H265 => {
                Depacketizer::H264(H264Depacketizer::default(), Vec::new())
            }
            VideoCodec::Vp8 => Depacketizer::Vp8(Vp8Depacketizer::default(), Vec::new()),
            VideoCodec::Vp9 { .. } => Depacketizer::Vp9(Vp9Depacketizer::default(), Vec::new()),
            VideoCodec::Av1 => Depacketizer::Av1(Av1Depacketizer::default(), Vec::new()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Depacketizer::H264(..) => "H.264",
            Depacketizer::Vp8(..) => "VP8",
            Depacketizer::Vp9(..) => "VP9",
            Depacketizer::Av1(..) => "AV1",
        }
    }

    fn push(&mut self, packet: PacketRef<'_>, lost: u16) -> Result<(), RtpError> {
        match self {
            Depacketizer::H264(d, out) => d.push(packet, lost, out),
            Depacketizer::Vp8(d, out) => d.push(packet, lost, out),
            Depacketizer::Vp9(d, out) => d.push(packet, lost, out),
            Depacketizer::Av1(d, out) => d.push(packet, lost, out),
        }
    }

    fn waiting_for_keyframe(&self) -> bool {
        match self {
            Depacketizer::H264(d, _) => d.waiting_for_keyframe(),
            Depacketizer::Vp8(d, _) => d.waiting_for_keyframe(),
            Depacketizer::Vp9(d, _) => d.waiting_for_keyframe(),
            Depacketizer::Av1(d, _) => d.waiting_for_keyframe(),
        }
    }

    /// Moves the frames depacketized so far to `units`, with the configuration each
    /// keyframe gives.
    fn drain(&mut self, units: &mut Vec<VideoUnit>) {
        let coded = |f: CodedFrame, config: Option<Result<CodecConfig, String>>| VideoUnit {
            timestamp: f.timestamp,
            data: f.data,
            keyframe: f.keyframe,
            config,
        };
        match self {
            Depacketizer::H264(_, out) => units.extend(out.drain(..).map(|au| VideoUnit {
                timestamp: au.timestamp,
                keyframe: au.keyframe,
                config: au.parameter_sets.map(|(sps, pps)| {
                    AvcConfig::from_parameter_sets(vec![sps], vec![pps])
                        .map(CodecConfig::H264)
                        .map_err(|e| format!("unusable H.264 parameter sets: {e}"))
                }),
                data: au.data,
            })),
            Depacketizer::Vp8(_, out) => units.extend(out.drain(..).map(|f| {
                let config = f.keyframe.then_some(Ok(CodecConfig::Vp8));
                coded(f, config)
            })),
            Depacketizer::Vp9(_, out) => units.extend(out.drain(..).map(|f| {
                let config = f.keyframe.then(|| {
                    Vp9KeyframeInfo::parse(&f.data)
                        .map(|info| CodecConfig::Vp9 { vpcc: info.vpcc() })
                        .ok_or_else(|| "a VP9 keyframe without a readable header".to_string())
                });
                coded(f, config)
            })),
            Depacketizer::Av1(_, out) => units.extend(out.drain(..).map(|f| {
                let config = f.keyframe.then(|| {
                    av1c_from_temporal_unit(&f.data)
                        .map(|av1c| CodecConfig::Av1 { av1c })
                        .ok_or_else(|| {
                            "an AV1 keyframe without a readable sequence header".to_string()
                        })
                });
                coded(f, config)
            })),
        }
    }
}

/// One WHIP publisher's media on its way to the bus.
pub struct WhipIngest {
    publisher: Publisher,
    clock: SessionClock,
    epoch: Instant,
    video: Option<VideoIn>,
    audio_clock: Option<usize>,
    first_audio: Option<Instant>,
    /// The negotiated video codec, when the publisher sends video.
    video_codec: Option<VideoCodec>,
    announced: bool,
    keyframe_wanted: bool,
    last_keyframe_request: Option<Instant>,
    last_keyframe: Option<Instant>,
    seen_keyframe_requests: u64,
    /// Last timestamp pushed per track (video, audio): a sender-report correction may step
    /// a clock back, and the bus wants timestamps that never go backwards.
    last_pts: [Option<i64>; 2],
    /// Errors of the depacketizer, counted (a bad packet is skipped, not fatal).
    pub bad_packets: u64,
}

impl WhipIngest {
    pub fn new(publisher: Publisher, video_codec: Option<VideoCodec>) -> Self {
        // Arrival time counts from the stream's start, so a publisher handed from one session
        // to the next (a WHEP pull reconnecting) keeps its timestamps growing.
        let epoch = publisher.stream().started();
        WhipIngest {
            publisher,
            clock: SessionClock::new(),
            epoch,
            video: None,
            audio_clock: None,
            first_audio: None,
            video_codec,
            announced: false,
            keyframe_wanted: true,
            last_keyframe_request: None,
            last_keyframe: None,
            seen_keyframe_requests: 0,
            last_pts: [None, None],
            bad_packets: 0,
        }
    }

    /// The video codec, when it is known only after the ingest was made (a WHEP pull learns it
    /// from the answer); before any media.
    pub fn set_video_codec(&mut self, codec: Option<VideoCodec>) {
        self.video_codec = codec;
    }

    /// The bus publisher back, when the session ends (a WHEP pull keeps its stream through a
    /// reconnection).
    pub fn into_publisher(self) -> Publisher {
        self.publisher
    }

    pub fn stream_name(&self) -> &str {
        self.publisher.stream().name()
    }

    fn arrival(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// One RTP packet of the peer's `kind` track.
    pub fn rtp(
        &mut self,
        kind: MediaKind,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), String> {
        match kind {
            MediaKind::Video => self.video_packet(sequence, timestamp, marker, payload, now),
            MediaKind::Audio => {
                self.audio_packet(timestamp, payload, now);
                Ok(())
            }
        }
    }

    fn video_packet(
        &mut self,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        now: Instant,
    ) -> Result<(), String> {
        let clock = &mut self.clock;
        let codec = self.video_codec.unwrap_or(VideoCodec::H264);
        let video = self.video.get_or_insert_with(|| VideoIn {
            clock: clock.add_track(90_000),
            reorder: ReorderBuffer::new(REORDER_CAPACITY),
            gap_since: None,
            depacketizer: Depacketizer::new(codec),
            config: None,
            units: Vec::new(),
        });
        video
            .reorder
            .push(sequence, (payload, sequence, timestamp, marker));
        if video.reorder.has_gap() {
            let since = *video.gap_since.get_or_insert(now);
            if now.duration_since(since) > REORDER_WAIT {
                video.reorder.skip_gap();
                video.gap_since = None;
            }
        } else {
            video.gap_since = None;
        }
        let mut result = Ok(());
        while let Some(((payload, sequence, timestamp, marker), lost)) = video.reorder.pop() {
            let packet = PacketRef {
                sequence,
                timestamp,
                marker,
                payload: &payload,
            };
            if let Err(e) = video.depacketizer.push(packet, lost) {
                self.bad_packets += 1;
                result = Err(format!("{} RTP: {e}", video.depacketizer.name()));
            }
        }
        video.depacketizer.drain(&mut video.units);
        if video.depacketizer.waiting_for_keyframe() {
            self.keyframe_wanted = true;
        }
        let units = std::mem::take(&mut video.units);
        for unit in units.iter() {
            self.access_unit(unit, now);
        }
        if let Some(video) = self.video.as_mut() {
            video.units = units;
            video.units.clear();
        }
        result
    }

    fn access_unit(&mut self, unit: &VideoUnit, now: Instant) {
        let arrival = self.arrival(now);
        let Some(video) = self.video.as_mut() else {
            return;
        };
        match &unit.config {
            Some(Ok(config)) if video.config.as_ref() != Some(config) => {
                video.config = Some(config.clone());
                self.announced = false;
            }
            Some(Err(e)) => {
                tracing::warn!(stream = %self.publisher.stream().name(), error = %e, "WHIP: no track configuration from this keyframe");
                self.bad_packets += 1;
            }
            Some(Ok(_)) | None => {}
        }
        if video.config.is_none() {
            self.keyframe_wanted = true;
            return;
        }
        let pts = self.clock.map(video.clock, unit.timestamp, arrival);
        let pts = self.monotonic(0, pts);
        if unit.keyframe {
            self.keyframe_wanted = false;
            self.last_keyframe = Some(now);
        }
        self.announce();
        self.publisher.push(Frame {
            track: VIDEO_TRACK,
            pts,
            dts: pts,
            keyframe: unit.keyframe,
            data: unit.data.clone(),
        });
    }

    fn audio_packet(&mut self, timestamp: u32, payload: Bytes, now: Instant) {
        if payload.is_empty() {
            return;
        }
        let arrival = self.arrival(now);
        let clock = match self.audio_clock {
            Some(c) => c,
            None => {
                let c = self.clock.add_track(48_000);
                self.audio_clock = Some(c);
                self.first_audio = Some(now);
                // Audio that starts after the video was announced joins the tracks.
                self.announced = false;
                c
            }
        };
        let pts = self.clock.map(clock, timestamp, arrival);
        let pts = self.monotonic(1, pts);
        let video_pending = self.video_codec.is_some()
            && self.video.as_ref().is_none_or(|v| v.config.is_none())
            && self
                .first_audio
                .is_some_and(|t| now.duration_since(t) < VIDEO_WAIT);
        if video_pending {
            return; // tracks are announced with the video's parameter sets
        }
        self.announce();
        self.publisher.push(Frame {
            track: AUDIO_TRACK,
            pts,
            dts: pts,
            keyframe: true,
            data: payload,
        });
    }

    fn monotonic(&mut self, slot: usize, pts: i64) -> i64 {
        let pts = match self.last_pts[slot] {
            Some(last) if pts <= last => last + 1,
            _ => pts,
        };
        self.last_pts[slot] = Some(pts);
        pts
    }

    /// An RTCP sender report of the track of `kind` (RFC 3550 6.4.1).
    pub fn sender_report(&mut self, kind: MediaKind, ntp: u64, rtp: u32) {
        let track = match kind {
            MediaKind::Video => self.video.as_ref().map(|v| v.clock),
            MediaKind::Audio => self.audio_clock,
        };
        if let Some(track) = track {
            self.clock.sender_report(track, ntp, rtp);
        }
    }

    fn announce(&mut self) {
        if self.announced {
            return;
        }
        let mut tracks = Vec::new();
        if let Some(config) = self.video.as_ref().and_then(|v| v.config.clone()) {
            tracks.push(Track {
                id: VIDEO_TRACK,
                codec: config,
                clock_rate: 90_000,
            });
        }
        if self.audio_clock.is_some() {
            tracks.push(Track {
                id: AUDIO_TRACK,
                codec: CodecConfig::Opus {
                    channels: 2,
                    head: None,
                },
                clock_rate: 48_000,
            });
        }
        self.publisher.set_tracks(tracks);
        self.announced = true;
    }

    /// Asks for a keyframe on the next [`WhipIngest::take_keyframe_request`] (a viewer joined
    /// or lost pictures).
    pub fn request_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// Whether to send the publisher a PLI now (rate-limited): asked for by a viewer or a bus
    /// reader, needed after loss, or due ([`MAX_KEYFRAME_INTERVAL`]).
    pub fn take_keyframe_request(&mut self, now: Instant) -> bool {
        let requests = self.publisher.stream().keyframe_requests();
        if requests != self.seen_keyframe_requests {
            self.seen_keyframe_requests = requests;
            self.keyframe_wanted = true;
        }
        if self.video.is_some()
            && self
                .last_keyframe
                .is_some_and(|t| now.duration_since(t) >= MAX_KEYFRAME_INTERVAL)
        {
            self.keyframe_wanted = true;
        }
        if !self.keyframe_wanted {
            return false;
        }
        if self
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        self.last_keyframe_request = Some(now);
        true
    }

    /// Whether the publisher was kicked through the API or taken over.
    pub fn is_kicked(&self) -> bool {
        self.publisher.is_kicked()
    }

    /// Why it was kicked.
    pub fn kick_reason(&self) -> String {
        self.publisher.kick_reason()
    }
}
