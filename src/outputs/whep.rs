//! WHEP playback: bus frames as RTP for WebRTC viewers.
//!
//! A [`Feed`] is one stream as the viewers of this process see it: it packetizes each frame
//! once (H.264 per RFC 6184 with SPS/PPS before every IDR; H.265 per RFC 7798 with VPS/SPS/PPS
//! before every IRAP; VP8 per RFC 7741; VP9 per RFC 9628; AV1 per the AV1 RTP spec with the
//! sequence header before every keyframe; Opus per RFC 7587) and keeps the packetized frames
//! since the last keyframe, so a viewer that connects starts on a keyframe at once. A [`Viewer`] only stamps its own RTP header (SSRC, payload type, sequence number,
//! timestamp) on the shared payloads.
//!
//! **GOP catch-up.** A viewer joining mid-GOP gets the cached frames from the keyframe on,
//! faster than real time: [`CATCH_UP_PACKETS`] every [`CATCH_UP_INTERVAL`] (about 37 Mbit/s;
//! live frames that come meanwhile wait behind them), each frame with its own RTP timestamp,
//! so a receiver sees the source's frame timing (RFC 3550 5.1). Sender reports (RFC 3550
//! 6.4.1) go on mapping the wall clock to the live edge: when the catch-up starts, the newest
//! cached frame stands for "now", and catch-up frames never move that mapping, so lip sync and
//! the receiver's view of our clock see the old frames as old.
//!
//! What Chromium makes of them (Chromium 156, 720p at 2 Mbit/s with a 4 s GOP, joining 3 s into
//! it; `tests/interop/chromium_whep.mjs`): its jitter buffer estimates each frame's due time
//! from its timestamp and the arrivals so far, so the catch-up frames, seconds older than the
//! newest one to arrive, are all due at once. Each is decoded as soon as it is complete (a
//! P-frame needs every frame before it: none can be skipped), and the renderer shows what is
//! due at each display refresh, dropping the older ones: the keyframe appears about 0.15 s
//! after the POST, 3 s behind live, the picture fast-forwards through the catch-up (0.1-0.3 s)
//! and is at the live edge half a second after the first frame, with no freeze. Timestamps
//! squeezed to one tick apart, as before, put the first frame at the live edge, but the live
//! frames after them looked late to Chromium's jitter estimate: frozen 0.24-1.1 s in 4 of 5
//! runs and 0.2 s behind live half a second in. Sent at once instead of paced, the catch-up
//! (900 packets here) overran aiortc's socket buffer, and its NACKs ask for 128 packets at most.

use super::video_rtp::VideoPacketizer;
use crate::bus::{BusFrame, TrackSet};
use crate::webrtc::srtp::{rtp_header, RTP_HEADER_LEN};
use bytes::Bytes;
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use switchyard_media::{rescale, CodecConfig, MediaKind, TrackId};
use switchyard_rtp::Payload;

/// Largest RTP payload we send; with headers, SRTP tag and UDP/IP it stays under 1280 bytes.
pub const MAX_PAYLOAD: usize = 1150;
/// Cap on the cached GOP (frames); a longer GOP makes late joiners wait for the next keyframe.
const MAX_GOP_FRAMES: usize = 600;
/// A viewer's GOP catch-up leaves in slices of about this many packets (whole frames, at least
/// one; twice as many when the slice is late by an interval or more) ...
pub const CATCH_UP_PACKETS: usize = 40;
/// ... one slice every this long: 4000 packets/s, about 37 Mbit/s. Sent at once, the catch-up
/// of a 4 s GOP of 2 Mbit/s video (about 900 packets) overran the socket buffer of aiortc
/// (about 200 kB, Linux's default), which then asks again for 128 packets at most.
pub const CATCH_UP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
/// Frames that may wait behind a viewer's catch-up; a stream that outruns the pace makes the
/// viewer start again at the next keyframe instead.
const MAX_PENDING: usize = MAX_GOP_FRAMES;

/// Why a track's codec is not sent to WebRTC viewers (`None`: it is sent).
pub fn not_sent_reason(codec: &CodecConfig) -> Option<String> {
    match codec {
        CodecConfig::H264(_)
        | CodecConfig::H265(_)
        | CodecConfig::Vp8
        | CodecConfig::Vp9 { .. }
        | CodecConfig::Av1 { .. }
        | CodecConfig::Opus { .. } => None,
        other => Some(match other.kind() {
            MediaKind::Video => format!(
                "{} video is not sent over WebRTC (H.264, H.265, VP8, VP9 and AV1 are)",
                other.name()
            ),
            MediaKind::Audio if crate::audio::AVAILABLE => format!(
                "{} audio is not sent over WebRTC as it is: browsers need Opus",
                other.name()
            ),
            MediaKind::Audio => format!(
                "{} audio is not sent over WebRTC: browsers need Opus, and this build has no audio conversion (build with --features transcode)",
                other.name()
            ),
        }),
    }
}

/// How the stream's video changed (its first video track's configuration), as
/// [`Feed::on_tracks`] reports it: viewers of the same codec go on at the next keyframe, which
/// carries the new parameter sets in band; a viewer whose session negotiated another codec
/// cannot be sent this one.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoUpdate {
    pub before: Option<CodecConfig>,
    pub after: Option<CodecConfig>,
}

/// A frame packetized for every viewer.
#[derive(Debug)]
pub struct Packetized {
    pub kind: MediaKind,
    /// RTP timestamp before any viewer's offset: the pts in the RTP clock.
    pub timestamp: u32,
    /// The pts in seconds on the stream's timeline (one origin for every track), which sender
    /// reports map wall-clock time onto.
    pub pts_secs: f64,
    pub keyframe: bool,
    pub payloads: Vec<Payload>,
}

/// One stream as seen by this process's WebRTC viewers.
pub struct Feed {
    tracks: Arc<TrackSet>,
    video: Option<TrackId>,
    audio: Option<TrackId>,
    packetizer: Option<VideoPacketizer>,
    gop: Vec<Arc<Packetized>>,
    b_frames_warned: bool,
    /// Why a track is not sent (shown in the session list).
    pub notes: Vec<String>,
    name: String,
}

impl Feed {
    pub fn new(name: &str) -> Self {
        Feed {
            tracks: Arc::new(TrackSet::default()),
            video: None,
            audio: None,
            packetizer: None,
            gop: Vec::new(),
            b_frames_warned: false,
            notes: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Takes the stream's new track set; says how its video changed, if it did. The video
    /// sent is the stream's first video track; a new configuration of it (new parameter sets,
    /// another codec) starts a new packetizer and cache, while other changes (audio that comes
    /// late) keep them.
    pub fn on_tracks(&mut self, tracks: Arc<TrackSet>) -> Option<VideoUpdate> {
        let video_of = |t: &TrackSet| t.video().map(|t| (t.id, t.codec.clone()));
        let (before, after) = (video_of(&self.tracks), video_of(&tracks));
        self.notes.clear();
        self.audio = None;
        for track in tracks.tracks.iter() {
            match &track.codec {
                CodecConfig::Opus { .. } => self.audio = Some(track.id),
                video if video.kind() == MediaKind::Video => {
                    if Some(track.id) == after.as_ref().map(|(id, _)| *id) {
                        self.notes.extend(not_sent_reason(video));
                    }
                }
                other => self.notes.extend(not_sent_reason(other)),
            }
        }
        for note in &self.notes {
            tracing::warn!(stream = %self.name, "{note}");
        }
        self.tracks = tracks;
        if before == after {
            return None;
        }
        self.gop.clear();
        self.packetizer = after
            .as_ref()
            .and_then(|(_, c)| VideoPacketizer::new(c, MAX_PAYLOAD));
        self.video = after
            .as_ref()
            .filter(|_| self.packetizer.is_some())
            .map(|(id, _)| *id);
        Some(VideoUpdate {
            before: before.map(|(_, c)| c),
            after: after.map(|(_, c)| c),
        })
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Packetizes a frame for all viewers; `None` for tracks that are not sent.
    pub fn on_frame(&mut self, bus_frame: &BusFrame) -> Option<Arc<Packetized>> {
        let frame = &bus_frame.frame;
        let track = self.tracks.get(frame.track)?;
        let kind = if Some(frame.track) == self.video {
            MediaKind::Video
        } else if Some(frame.track) == self.audio {
            MediaKind::Audio
        } else {
            return None;
        };
        let rtp_rate = if kind == MediaKind::Video {
            90_000
        } else {
            48_000
        };
        let timestamp = rescale(frame.pts, track.clock_rate, rtp_rate) as u32;
        let mut payloads = Vec::new();
        if kind == MediaKind::Video {
            if frame.pts != frame.dts && !self.b_frames_warned {
                self.b_frames_warned = true;
                tracing::warn!(stream = %self.name, "the stream has B-frames: WebRTC players decode them but may stutter; publish without B-frames (e.g. x264 -bf 0 / baseline) for WebRTC viewers");
            }
            let packetizer = self.packetizer.as_mut()?;
            if let Err(e) = packetizer.packetize(&frame.data, frame.keyframe, &mut payloads) {
                tracing::debug!(stream = %self.name, error = %e, "frame not packetized");
                return None;
            }
        } else {
            payloads.push(Payload {
                data: frame.data.clone(),
                marker: true,
            });
        }
        let packetized = Arc::new(Packetized {
            kind,
            timestamp,
            pts_secs: frame.pts as f64 / track.clock_rate.max(1) as f64,
            keyframe: kind == MediaKind::Video && frame.keyframe,
            payloads,
        });
        if kind == MediaKind::Video {
            if packetized.keyframe {
                self.gop.clear();
            }
            if !self.gop.is_empty() || packetized.keyframe {
                if self.gop.len() < MAX_GOP_FRAMES {
                    self.gop.push(packetized.clone());
                } else {
                    self.gop.clear();
                }
            }
        }
        Some(packetized)
    }

    /// Frames lost on the way from the bus: the cache no longer leads to the live edge.
    pub fn on_lost(&mut self) {
        self.gop.clear();
    }

    /// The video frames since the last keyframe, oldest first.
    pub fn gop(&self) -> &[Arc<Packetized>] {
        &self.gop
    }
}

/// Packets a viewer keeps for retransmission on NACK (RFC 4585 6.2.1): about a second of a
/// 2 Mbps stream. They are kept as the shared packetized frames, with where each began in the
/// viewer's numbering: a few bytes per frame. A GOP catch-up is kept on top of that until as
/// many live packets have followed it: a burst is what overruns a receiver's socket buffer.
const NACK_HISTORY: usize = 256;

/// One RTP packet for one viewer: its own header on the shared payload.
#[derive(Debug, Clone)]
pub struct OutPacket {
    pub header: [u8; RTP_HEADER_LEN],
    /// Rollover count of the sequence number (RFC 3711 3.3.1), for SRTP.
    pub roc: u32,
    pub payload: Bytes,
}

impl OutPacket {
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.header[2], self.header[3]])
    }
}

/// One sending track of a viewer.
#[derive(Debug, Clone)]
pub struct TrackOut {
    pub sender: RTCRtpSenderId,
    pub ssrc: u32,
    pub payload_type: u8,
    clock_rate: u32,
    sequence: u16,
    roc: u32,
    base: u32,
    /// Recent frames, oldest first, for retransmission (video only) ...
    history: Option<VecDeque<SentFrame>>,
    /// ... and how many packets they hold; ...
    history_packets: usize,
    /// ... and how many more than [`NACK_HISTORY`] it keeps for now (the catch-up).
    history_extra: usize,
    /// For RTCP sender reports (RFC 3550 6.4.1).
    packets_sent: u32,
    octets_sent: u32,
    last_timestamp: u32,
    /// The stream-timeline time (s) of the last frame sent, as its RTP timestamp says.
    last_pts_secs: f64,
    last_sent_at: Option<Instant>,
}

impl TrackOut {
    pub fn new(sender: RTCRtpSenderId, ssrc: u32, payload_type: u8, kind: MediaKind) -> Self {
        TrackOut {
            sender,
            ssrc,
            payload_type,
            clock_rate: match kind {
                MediaKind::Video => 90_000,
                MediaKind::Audio => 48_000,
            },
            sequence: rand::random::<u16>() & 0x7fff,
            roc: 0,
            base: rand::random(),
            history: (kind == MediaKind::Video).then(VecDeque::new),
            history_packets: 0,
            history_extra: 0,
            packets_sent: 0,
            octets_sent: 0,
            last_timestamp: 0,
            last_pts_secs: 0.0,
            last_sent_at: None,
        }
    }

    /// The extended sequence number (RFC 3711 3.3.1 index) of the next packet.
    fn next_index(&self) -> u64 {
        (u64::from(self.roc) << 16) | u64::from(self.sequence)
    }

    /// The live edge of the stream is `frame`, at `now`: what sender reports extrapolate from
    /// until a live frame goes out.
    fn pin(&mut self, frame: &Packetized, now: Instant) {
        self.last_timestamp = self.base.wrapping_add(frame.timestamp);
        self.last_pts_secs = frame.pts_secs;
        self.last_sent_at = Some(now);
    }

    /// Appends the packets of `frame`; `live` when it goes out as it comes from the bus (its
    /// time on the stream's timeline is now), not from the catch-up.
    fn packets(
        &mut self,
        frame: &Arc<Packetized>,
        now: Instant,
        live: bool,
        out: &mut Vec<OutPacket>,
    ) {
        let timestamp = self.base.wrapping_add(frame.timestamp);
        let first = self.next_index();
        if let Some(history) = &mut self.history {
            history.push_back(SentFrame {
                first,
                timestamp,
                frame: frame.clone(),
            });
            self.history_packets += frame.payloads.len();
            while let Some(oldest) = history.front() {
                let without = self.history_packets - oldest.frame.payloads.len();
                if without < NACK_HISTORY + self.history_extra {
                    break;
                }
                self.history_packets = without;
                history.pop_front();
            }
        }
        for payload in &frame.payloads {
            let packet = OutPacket {
                header: rtp_header(
                    payload.marker,
                    self.payload_type,
                    self.sequence,
                    timestamp,
                    self.ssrc,
                ),
                roc: self.roc,
                payload: payload.data.clone(),
            };
            self.sequence = self.sequence.wrapping_add(1);
            if self.sequence == 0 {
                self.roc = self.roc.wrapping_add(1);
            }
            self.packets_sent = self.packets_sent.wrapping_add(1);
            self.octets_sent = self.octets_sent.wrapping_add(payload.data.len() as u32);
            out.push(packet);
        }
        if live && !frame.payloads.is_empty() {
            self.pin(frame, now);
        }
    }

    /// The packet sent with `sequence`, if it is still kept.
    pub fn retransmission(&self, sequence: u16) -> Option<OutPacket> {
        let history = self.history.as_ref()?;
        let newest = self.next_index().checked_sub(1)?;
        let age = (newest as u16).wrapping_sub(sequence);
        let index = newest.checked_sub(u64::from(age))?;
        let sent = history.iter().rev().find(|f| f.first <= index)?;
        let payload = sent.frame.payloads.get((index - sent.first) as usize)?;
        Some(OutPacket {
            header: rtp_header(
                payload.marker,
                self.payload_type,
                sequence,
                sent.timestamp,
                self.ssrc,
            ),
            roc: (index >> 16) as u32,
            payload: payload.data.clone(),
        })
    }

    /// What a sender report says (RFC 3550 6.4.1) when the wall clock stands at `pts_now` on
    /// the stream's timeline: the RTP time of that instant, and the packet and payload-octet
    /// counts; `None` before anything was sent.
    fn report_at(&self, pts_now: f64) -> Option<(u32, u32, u32)> {
        self.last_sent_at?;
        let ticks = ((pts_now - self.last_pts_secs) * f64::from(self.clock_rate)).round() as i64;
        Some((
            self.last_timestamp.wrapping_add(ticks as u32),
            self.packets_sent,
            self.octets_sent,
        ))
    }
}

/// A frame as one viewer got it, for retransmissions.
#[derive(Debug, Clone)]
struct SentFrame {
    /// The extended sequence number of its first packet.
    first: u64,
    /// Its RTP timestamp for this viewer.
    timestamp: u32,
    frame: Arc<Packetized>,
}

/// One WHEP viewer's sending state.
pub struct Viewer {
    pub video: Option<TrackOut>,
    pub audio: Option<TrackOut>,
    /// Video goes out from a keyframe on (set again after frames were lost).
    video_started: bool,
    /// Video frames not sent yet: the rest of the GOP catch-up, then the live frames that came
    /// meanwhile (at most [`MAX_PENDING`]).
    pending: VecDeque<Arc<Packetized>>,
    /// When the last slice of the catch-up went out.
    last_slice: Option<Instant>,
    pub connected_at: Option<Instant>,
}

impl Viewer {
    pub fn new(video: Option<TrackOut>, audio: Option<TrackOut>) -> Self {
        Viewer {
            video,
            audio,
            video_started: false,
            pending: VecDeque::new(),
            last_slice: None,
            connected_at: None,
        }
    }

    /// RTP packets of a live frame for this viewer (none if it does not take that track,
    /// video is waiting for a keyframe, or the frame waits behind the catch-up).
    pub fn live(&mut self, frame: &Arc<Packetized>, now: Instant, out: &mut Vec<OutPacket>) {
        match frame.kind {
            MediaKind::Video => {
                let Some(track) = self.video.as_mut() else {
                    return;
                };
                if !self.video_started {
                    if !frame.keyframe {
                        return;
                    }
                    self.video_started = true;
                }
                if !self.pending.is_empty() {
                    if self.pending.len() < MAX_PENDING {
                        self.pending.push_back(frame.clone());
                    } else {
                        self.restart_video();
                    }
                    return;
                }
                track.history_extra = track.history_extra.saturating_sub(frame.payloads.len());
                track.packets(frame, now, true, out);
            }
            MediaKind::Audio => {
                if let Some(track) = self.audio.as_mut() {
                    track.packets(frame, now, true, out);
                }
            }
        }
    }

    /// Starts a viewer that just connected on the cached GOP (`gop`, from its keyframe on):
    /// every frame with its own timestamp, faster than real time (see the module doc for what
    /// the receiver makes of them). Appends the first slice; [`Viewer::pace`] gives the rest.
    pub fn catch_up(&mut self, gop: &[Arc<Packetized>], now: Instant, out: &mut Vec<OutPacket>) {
        let Some(track) = self.video.as_mut() else {
            return;
        };
        let (Some(first), Some(newest)) = (gop.first(), gop.last()) else {
            return;
        };
        if !first.keyframe {
            return;
        }
        track.history_extra = gop.iter().map(|f| f.payloads.len()).sum();
        track.pin(newest, now);
        self.pending.extend(gop.iter().cloned());
        self.last_slice = None;
        self.video_started = true;
        self.pace(now, out);
    }

    /// The next slice of the catch-up (about [`CATCH_UP_PACKETS`], whole frames); whether more
    /// is waiting, due after [`CATCH_UP_INTERVAL`].
    pub fn pace(&mut self, now: Instant, out: &mut Vec<OutPacket>) -> bool {
        let Some(track) = self.video.as_mut() else {
            self.pending.clear();
            return false;
        };
        let late = self
            .last_slice
            .is_some_and(|last| now.saturating_duration_since(last) >= 2 * CATCH_UP_INTERVAL);
        self.last_slice = Some(now);
        let full = CATCH_UP_PACKETS * if late { 2 } else { 1 };
        let mut budget = full;
        while let Some(frame) = self.pending.front() {
            let packets = frame.payloads.len();
            if packets > budget && budget < full {
                break;
            }
            budget = budget.saturating_sub(packets);
            if let Some(frame) = self.pending.pop_front() {
                track.packets(&frame, now, false, out);
            }
        }
        !self.pending.is_empty()
    }

    /// Whether the catch-up is still going out.
    pub fn catching_up(&self) -> bool {
        !self.pending.is_empty()
    }

    /// After a loss, video resumes at the next keyframe.
    pub fn restart_video(&mut self) {
        self.video_started = false;
        self.pending.clear();
    }

    pub fn wants_video(&self) -> bool {
        self.video.is_some()
    }

    /// Sender reports for this viewer's tracks at `now`: each track's RTP time for the same
    /// instant of the stream's timeline, so a receiver lines audio and video up by their
    /// timestamps (RFC 3550 6.4.1, "to synchronize playback") however late either left here,
    /// e.g. audio out of a converter. The timeline is pinned to the wall clock by the track
    /// that sent last.
    pub fn sender_reports(&self, now: Instant) -> Vec<(&TrackOut, (u32, u32, u32))> {
        let tracks = [&self.video, &self.audio];
        let Some((sent_at, pts)) = tracks
            .iter()
            .filter_map(|t| t.as_ref())
            .filter_map(|t| Some((t.last_sent_at?, t.last_pts_secs)))
            .max_by_key(|(at, _)| *at)
        else {
            return Vec::new();
        };
        let pts_now = pts + now.saturating_duration_since(sent_at).as_secs_f64();
        tracks
            .into_iter()
            .filter_map(|t| t.as_ref())
            .filter_map(|t| Some((t, t.report_at(pts_now)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: MediaKind, timestamp: u32, keyframe: bool, packets: usize) -> Arc<Packetized> {
        let clock = match kind {
            MediaKind::Video => 90_000.0,
            MediaKind::Audio => 48_000.0,
        };
        Arc::new(Packetized {
            kind,
            timestamp,
            pts_secs: f64::from(timestamp) / clock,
            keyframe,
            payloads: (0..packets)
                .map(|i| Payload {
                    data: Bytes::from(vec![i as u8; 10]),
                    marker: i + 1 == packets,
                })
                .collect(),
        })
    }

    fn timestamp(p: &OutPacket) -> u32 {
        u32::from_be_bytes(p.header[4..8].try_into().unwrap())
    }

    fn video_track() -> TrackOut {
        TrackOut::new(RTCRtpSenderId::default(), 1, 102, MediaKind::Video)
    }

    #[test]
    fn viewers_start_on_a_keyframe_and_number_their_own_packets() {
        let now = Instant::now();
        let mut viewer = Viewer::new(
            Some(video_track()),
            Some(TrackOut::new(
                RTCRtpSenderId::default(),
                2,
                111,
                MediaKind::Audio,
            )),
        );
        let mut out = Vec::new();
        viewer.live(&frame(MediaKind::Video, 3000, false, 2), now, &mut out);
        assert!(out.is_empty(), "no video before a keyframe");
        viewer.live(&frame(MediaKind::Audio, 960, true, 1), now, &mut out);
        assert_eq!(out.len(), 1, "audio at once");
        assert_eq!(out[0].header[1], 0x80 | 111, "marker and payload type");
        out.clear();
        viewer.live(&frame(MediaKind::Video, 6000, true, 3), now, &mut out);
        viewer.live(&frame(MediaKind::Video, 9000, false, 2), now, &mut out);
        assert_eq!(out.len(), 5);
        for pair in out.windows(2) {
            assert_eq!(pair[1].sequence(), pair[0].sequence().wrapping_add(1));
        }
        assert!(out[2].header[1] & 0x80 != 0 && out[1].header[1] & 0x80 == 0);
        assert_eq!(timestamp(&out[3]).wrapping_sub(timestamp(&out[0])), 3000);
        assert!(out.iter().all(|p| p.header[8..12] == 1u32.to_be_bytes()
            && p.header[1] & 0x7f == 102
            && p.header[0] == 0x80));
    }

    #[test]
    fn sequence_numbers_roll_over_with_the_srtp_rollover_count() {
        let mut track = video_track();
        track.sequence = 65_534;
        let mut out = Vec::new();
        track.packets(
            &frame(MediaKind::Video, 0, true, 4),
            Instant::now(),
            true,
            &mut out,
        );
        let got: Vec<(u16, u32)> = out.iter().map(|p| (p.sequence(), p.roc)).collect();
        assert_eq!(got, [(65_534, 0), (65_535, 0), (0, 1), (1, 1)]);
    }

    #[test]
    fn recent_video_packets_are_kept_for_retransmission() {
        let mut track = video_track();
        track.sequence = 65_000;
        let mut out = Vec::new();
        for i in 0..100 {
            track.packets(
                &frame(MediaKind::Video, i * 3000, i == 0, 6),
                Instant::now(),
                true,
                &mut out,
            );
        }
        let newest = out.last().unwrap().sequence();
        for (age, sent) in out.iter().rev().enumerate() {
            let again = track.retransmission(sent.sequence());
            if age < NACK_HISTORY {
                let again = again.expect("recent packets are kept");
                assert_eq!(again.header, sent.header, "packet {age} back");
                assert_eq!((again.roc, &again.payload), (sent.roc, &sent.payload));
            } else if age >= NACK_HISTORY + 6 {
                assert!(again.is_none(), "packet {age} back is no longer kept");
            }
        }
        assert!(track.retransmission(newest.wrapping_add(1)).is_none());
        assert!(
            out.iter().any(|p| p.roc == 1),
            "the test crosses a rollover"
        );
        let audio = TrackOut::new(RTCRtpSenderId::default(), 2, 111, MediaKind::Audio);
        assert!(audio.history.is_none(), "audio is not retransmitted");
    }

    #[test]
    fn sender_reports_extrapolate_the_rtp_clock() {
        let mut viewer = Viewer::new(Some(video_track()), None);
        let start = Instant::now();
        assert!(viewer.sender_reports(start).is_empty());
        let mut out = Vec::new();
        viewer.live(&frame(MediaKind::Video, 3000, true, 2), start, &mut out);
        let reports = viewer.sender_reports(start + std::time::Duration::from_millis(100));
        let (rtp_time, packets, octets) = reports[0].1;
        assert_eq!(rtp_time.wrapping_sub(timestamp(&out[0])), 9000);
        assert_eq!((packets, octets), (2, 20));
    }

    #[test]
    fn sender_reports_map_both_tracks_to_one_instant_however_late_each_was_sent() {
        let audio = TrackOut::new(RTCRtpSenderId::default(), 2, 111, MediaKind::Audio);
        let mut viewer = Viewer::new(Some(video_track()), Some(audio));
        let start = Instant::now();
        let mut out = Vec::new();
        // Video at 10.000 s sent at once; audio at 9.990 s sent 40 ms later (out of an audio
        // converter).
        viewer.live(&frame(MediaKind::Video, 900_000, true, 1), start, &mut out);
        let ms = std::time::Duration::from_millis;
        viewer.live(
            &frame(MediaKind::Audio, 479_520, false, 1),
            start + ms(40),
            &mut out,
        );
        let (video_ts, audio_ts) = (timestamp(&out[0]), timestamp(&out[1]));
        let reports = viewer.sender_reports(start + ms(100));
        let pts_of = |i: usize, sent: u32, clock: f64, pts: f64| {
            pts + f64::from(reports[i].1 .0.wrapping_sub(sent) as i32) / clock
        };
        let video_now = pts_of(0, video_ts, 90_000.0, 10.0);
        let audio_now = pts_of(1, audio_ts, 48_000.0, 9.99);
        assert!(
            (video_now - audio_now).abs() < 1e-4,
            "{video_now} vs {audio_now}"
        );
        assert!(
            (audio_now - 10.05).abs() < 1e-4,
            "pinned by the last sent: {audio_now}"
        );
    }

    #[test]
    fn feed_packetizes_each_video_codec_and_explains_the_others() {
        use switchyard_media::{Frame, Track};
        let frame = |data: &'static [u8], keyframe| {
            BusFrame::new(
                Frame {
                    track: TrackId(1),
                    pts: 3000,
                    dts: 3000,
                    keyframe,
                    data: Bytes::from_static(data),
                },
                keyframe,
                0,
            )
        };
        let tracks = |codec| {
            Arc::new(TrackSet {
                generation: 1,
                tracks: vec![Track {
                    id: TrackId(1),
                    codec,
                    clock_rate: 90_000,
                }],
            })
        };
        let mut feed = Feed::new("test");
        // VP8: descriptor with S, PictureID 0, then the frame.
        feed.on_tracks(tracks(CodecConfig::Vp8));
        assert!(feed.has_video() && feed.notes.is_empty());
        let out = feed.on_frame(&frame(&[0x10, 0x02, 0x00], true)).unwrap();
        assert_eq!(
            &out.payloads[0].data[..],
            &[0x90, 0x80, 0x80, 0x00, 0x10, 0x02, 0x00]
        );
        assert!(out.keyframe && out.payloads[0].marker);
        assert_eq!(feed.gop().len(), 1);
        // VP9: flexible mode; an inter frame refers to the one before (P_DIFF 1).
        feed.on_tracks(tracks(CodecConfig::Vp9 {
            vpcc: Bytes::from_static(&[1, 0, 0, 0, 0, 10, 0x82, 2, 2, 2, 0, 0]),
        }));
        let out = feed.on_frame(&frame(&[0x86, 0x00], false)).unwrap();
        assert_eq!(
            &out.payloads[0].data[..],
            &[0xdc, 0x80, 0x00, 0x02, 0x86, 0x00]
        );
        // AV1: the OBU without its size field, in one W=0 element.
        feed.on_tracks(tracks(CodecConfig::Av1 {
            av1c: Bytes::from_static(&[0x81, 0, 0x0c, 0]),
        }));
        let out = feed
            .on_frame(&frame(&[0x32, 2, 0x20, 0x05], false))
            .unwrap();
        assert_eq!(&out.payloads[0].data[..], &[0x00, 3, 0x30, 0x20, 0x05]);
        // H.265: the hvcC's VPS, SPS and PPS in an AP before an IRAP (IDR_W_RADL) picture.
        let mut record = [&[1u8, 1, 0x60, 0, 0, 0, 0x90][..], &[0; 15], &[3]].concat();
        for (t, nal) in [
            (32u8, [0x40u8, 1, 0x0c]),
            (33, [0x42, 1, 1]),
            (34, [0x44, 1, 0xc1]),
        ] {
            record.extend_from_slice(&[t, 0, 1, 0, 3]);
            record.extend_from_slice(&nal);
        }
        let config = switchyard_media::h265::HevcConfig::parse(record.into()).unwrap();
        feed.on_tracks(tracks(CodecConfig::H265(config)));
        let out = feed
            .on_frame(&frame(&[0, 0, 0, 3, 0x26, 1, 0xaf], true))
            .unwrap();
        assert_eq!(out.payloads[0].data[..2], [48 << 1, 1], "an AP first");
        assert_eq!(&out.payloads[1].data[..], &[0x26, 1, 0xaf]);
        // G.711 is not sent, and the feed says why.
        feed.on_tracks(tracks(CodecConfig::G711 {
            law: switchyard_media::G711Law::ALaw,
            channels: 1,
        }));
        assert!(!feed.has_video());
        assert!(feed.notes[0].contains("pcm_alaw audio is not sent over WebRTC"));
    }

    #[test]
    fn new_parameter_sets_go_in_band_before_the_next_keyframe_and_audio_changes_keep_the_cache() {
        use switchyard_media::{h264::AvcConfig, Frame, Track};
        // libx264 High 640x360, and the same at another level: two configurations of one codec.
        let sps = |level: u8| {
            Bytes::from(vec![
                0x67, 0x64, 0x00, level, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00,
                0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
            ])
        };
        let pps = Bytes::from_static(&[0x68, 0xef, 0xbc, 0xb0]);
        let video = |level| Track {
            id: TrackId(1),
            codec: CodecConfig::H264(
                AvcConfig::from_parameter_sets(vec![sps(level)], vec![pps.clone()]).unwrap(),
            ),
            clock_rate: 90_000,
        };
        let opus = Track {
            id: TrackId(2),
            codec: CodecConfig::Opus {
                channels: 2,
                head: None,
            },
            clock_rate: 48_000,
        };
        let set = |generation, tracks| Arc::new(TrackSet { generation, tracks });
        let idr = BusFrame::new(
            Frame {
                track: TrackId(1),
                pts: 0,
                dts: 0,
                keyframe: true,
                data: Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x84]),
            },
            true,
            0,
        );
        let mut feed = Feed::new("test");
        let update = feed.on_tracks(set(1, vec![video(0x1e)])).unwrap();
        assert_eq!(update.before, None);
        feed.on_frame(&idr).unwrap();
        // Audio that comes late changes nothing for video: the cache stays.
        assert_eq!(
            feed.on_tracks(set(2, vec![video(0x1e), opus.clone()])),
            None
        );
        assert_eq!(feed.gop().len(), 1);
        // New parameter sets: a new cache, and the next IDR carries them (STAP-A, RFC 6184 5.7.1).
        let update = feed.on_tracks(set(3, vec![video(0x1f), opus])).unwrap();
        assert!(matches!(update.after, Some(CodecConfig::H264(_))));
        assert!(feed.gop().is_empty() && feed.has_video());
        let out = feed.on_frame(&idr).unwrap();
        let stap = &out.payloads[0].data;
        assert_eq!(stap[0] & 0x1f, 24);
        assert_eq!(&stap[3..3 + 26], &sps(0x1f)[..]);
    }

    #[test]
    fn catch_up_sends_the_gop_with_its_own_timestamps_and_reports_stay_on_the_live_edge() {
        let ms = std::time::Duration::from_millis;
        let now = Instant::now();
        // 30 frames of 25 fps video (3600 ticks apart, 4 packets each), the first a keyframe,
        // then live frames.
        let at = |i: u32, packets| frame(MediaKind::Video, 90_000 + i * 3600, i == 0, packets);
        let gop: Vec<_> = (0..30).map(|i| at(i, 4)).collect();
        let mut viewer = Viewer::new(Some(video_track()), None);
        let mut out = Vec::new();
        viewer.catch_up(&gop[1..], now, &mut out);
        assert!(
            out.is_empty() && !viewer.catching_up(),
            "a GOP starts at its keyframe"
        );
        viewer.catch_up(&gop, now, &mut out);
        assert_eq!(out.len(), CATCH_UP_PACKETS, "the first slice at once");
        // A sender report meanwhile maps the wall clock to the live edge (the newest cached
        // frame, now), not to the old frames going out.
        let newest = viewer
            .video
            .as_ref()
            .unwrap()
            .base
            .wrapping_add(90_000 + 29 * 3600);
        let reports = viewer.sender_reports(now + ms(100));
        assert_eq!(reports[0].1 .0.wrapping_sub(newest), 9000);
        // A live frame that comes meanwhile waits behind the catch-up.
        viewer.live(&at(30, 2), now + ms(5), &mut out);
        assert_eq!(out.len(), CATCH_UP_PACKETS);
        let mut slices = 1;
        loop {
            slices += 1;
            if !viewer.pace(now + ms(10 * (slices - 1)), &mut out) {
                break;
            }
        }
        assert_eq!(out.len(), 30 * 4 + 2);
        assert_eq!(
            slices,
            4,
            "{} packets in slices of {CATCH_UP_PACKETS}",
            out.len()
        );
        // A slice that is late is twice as large.
        let mut other = Viewer::new(Some(video_track()), None);
        other.catch_up(&gop, now, &mut Vec::new());
        let mut late = Vec::new();
        other.pace(now + ms(25), &mut late);
        assert_eq!(late.len(), 2 * CATCH_UP_PACKETS);
        let frames: Vec<u32> = out.chunks(2).map(|p| timestamp(&p[0])).collect();
        for (i, pair) in frames.windows(2).enumerate() {
            assert_eq!(
                pair[1].wrapping_sub(pair[0]),
                if i % 2 == 1 { 3600 } else { 0 },
                "each frame keeps its spacing"
            );
        }
        for pair in out.windows(2) {
            assert_eq!(pair[1].sequence(), pair[0].sequence().wrapping_add(1));
        }
        // Caught up: live frames go out at once, and the reports follow them.
        out.clear();
        viewer.live(&at(31, 1), now + ms(45), &mut out);
        assert_eq!(timestamp(&out[0]).wrapping_sub(newest), 2 * 3600);
        let reports = viewer.sender_reports(now + ms(145));
        assert_eq!(reports[0].1 .0.wrapping_sub(newest), 2 * 3600 + 9000);
        assert_eq!(reports[0].1 .1, 30 * 4 + 2 + 1, "packets counted");
        // Every catch-up packet can still be sent again.
        let track = viewer.video.as_ref().unwrap();
        let first = timestamp(
            &track
                .retransmission(out[0].sequence().wrapping_sub(122))
                .unwrap(),
        );
        assert_eq!(first.wrapping_sub(newest), (29 * 3600u32).wrapping_neg());
    }

    #[test]
    fn a_stream_that_outruns_the_catch_up_restarts_at_the_next_keyframe() {
        let now = Instant::now();
        let gop: Vec<_> = (0..10)
            .map(|i| frame(MediaKind::Video, i * 3600, i == 0, 50))
            .collect();
        let mut viewer = Viewer::new(Some(video_track()), None);
        let mut out = Vec::new();
        viewer.catch_up(&gop, now, &mut out);
        assert_eq!(out.len(), 50, "at least one frame per slice");
        for i in 10..10 + MAX_PENDING as u32 {
            viewer.live(&frame(MediaKind::Video, i * 3600, false, 1), now, &mut out);
        }
        assert!(!viewer.catching_up(), "given up");
        out.clear();
        viewer.live(&frame(MediaKind::Video, 0, false, 1), now, &mut out);
        assert!(out.is_empty(), "waits for a keyframe");
        viewer.live(&frame(MediaKind::Video, 0, true, 1), now, &mut out);
        assert_eq!(out.len(), 1);
    }
}
