//! WHIP ingest (RFC 9725): what a publishing peer connection's RTP becomes on the bus.
//!
//! The engine (`crate::webrtc`) owns the connection and hands this the RTP and RTCP it reads.
//! Video: a small reorder buffer (NACKed packets arrive late), the H.264 depacketizer of
//! `protocols/rtp` (RFC 6184), access units with SPS/PPS kept out of band as the track's
//! config. Audio: one Opus packet is one frame (RFC 7587 4.2). Both clocks are mapped onto the
//! stream's time origin by [`SessionClock`]: by arrival until RTCP sender reports come, then by
//! the reports (RFC 3550 6.4.1). The stream's tracks are announced once the first keyframe
//! gives the video its parameter sets (at once for audio-only publishers).

use crate::bus::Publisher;
use bytes::Bytes;
use std::time::{Duration, Instant};
use switchyard_media::h264::AvcConfig;
use switchyard_media::{CodecConfig, Frame, MediaKind, Track, TrackId};
use switchyard_rtp::clock::SessionClock;
use switchyard_rtp::h264::{H264AccessUnit, H264Depacketizer};
use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::PacketRef;

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
    depacketizer: H264Depacketizer,
    config: Option<AvcConfig>,
    units: Vec<H264AccessUnit>,
}

/// One WHIP publisher's media on its way to the bus.
pub struct WhipIngest {
    publisher: Publisher,
    clock: SessionClock,
    epoch: Instant,
    video: Option<VideoIn>,
    audio_clock: Option<usize>,
    first_audio: Option<Instant>,
    expects_video: bool,
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
    pub fn new(publisher: Publisher, expects_video: bool) -> Self {
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
            expects_video,
            announced: false,
            keyframe_wanted: true,
            last_keyframe_request: None,
            last_keyframe: None,
            seen_keyframe_requests: 0,
            last_pts: [None, None],
            bad_packets: 0,
        }
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
        let video = self.video.get_or_insert_with(|| VideoIn {
            clock: clock.add_track(90_000),
            reorder: ReorderBuffer::new(REORDER_CAPACITY),
            gap_since: None,
            depacketizer: H264Depacketizer::default(),
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
            if let Err(e) = video.depacketizer.push(packet, lost, &mut video.units) {
                self.bad_packets += 1;
                result = Err(format!("H.264 RTP: {e}"));
            }
        }
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

    fn access_unit(&mut self, unit: &H264AccessUnit, now: Instant) {
        let arrival = self.arrival(now);
        let Some(video) = self.video.as_mut() else {
            return;
        };
        if let Some((sps, pps)) = &unit.parameter_sets {
            match AvcConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()]) {
                Ok(config) => {
                    if video.config.as_ref().map(|c| &c.record) != Some(&config.record) {
                        video.config = Some(config);
                        self.announced = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %self.publisher.stream().name(), error = %e, "WHIP: unusable H.264 parameter sets");
                    self.bad_packets += 1;
                }
            }
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
        let video_pending = self.expects_video
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
                codec: CodecConfig::H264(config),
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
}
