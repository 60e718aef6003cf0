//! The measuring client's receive side (`ClientRole::Count`, the load generator's WHEP
//! sessions): what a real receiver does with RTP, minus decoding, on the engine's fast path.
//!
//! Once DTLS is done, every SRTP packet is decrypted in place in the receive buffer
//! ([`super::srtp::SrtpReceiver`]) and never goes through `rtc`. Per video packet:
//!
//! - sequence tracking (RFC 3550 A.1): the extended sequence number, a window of what arrived
//!   (duplicates and reordering tolerated), loss = expected - received;
//! - interarrival jitter (RFC 3550 A.8) on the 90 kHz RTP timestamp, over packets in order;
//! - frames: an RTP timestamp, closed by the marker bit or by a newer timestamp; a keyframe
//!   has an IDR (H.264: NAL type 5 in a single NAL unit, STAP-A or FU-A start; H.265: IRAP;
//!   VP8/VP9/AV1: the payload descriptor's key flag); the probe stamp comes from SEI NAL units
//!   (single or aggregated);
//! - feedback as a real receiver sends it, protected as SRTCP ([`super::srtp::SrtcpSender`]):
//!   a generic NACK (RFC 4585 6.2.1) for each missing sequence number, once, after a short
//!   reorder wait (a bounded list), and a PLI (RFC 4585 6.3.1) when no keyframe came within
//!   [`KEYFRAME_WAIT`] of connecting or a missing packet was given up (at most one per
//!   [`PLI_INTERVAL`]), each preceded by a receiver report (RFC 3550 6.4.2) as a compound
//!   packet.
//!
//! Audio packets are only counted. What is measured goes to the session's
//! [`MediaSink`](super::client::MediaSink).

use super::client::{MediaSink, ReceivedFrame};
use super::peer::VideoCodec;
use super::srtp::{rtp_header_len, SrtcpSender, SrtpReceiver};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Our Opus payload type (the offer's; the answer keeps it).
const AUDIO_PAYLOAD_TYPE: u8 = 111;
/// Video RTP clock (every video codec of WebRTC).
const VIDEO_CLOCK: f64 = 90_000.0;
/// A missing packet is asked again this long after the gap was seen (reordering).
pub const REORDER_WAIT: Duration = Duration::from_millis(10);
/// A missing packet asked again and still not here after this long is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_millis(300);
/// A PLI when no keyframe came this long after connecting.
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(1);
/// At most one PLI per this interval.
pub const PLI_INTERVAL: Duration = Duration::from_secs(1);
/// Missing packets tracked at most; older ones are given up.
const MAX_MISSING: usize = 256;
/// Sequence numbers asked in one NACK packet at most (RFC 4585: any number of FCI entries).
const MAX_NACK_ITEMS: usize = 64;
/// The window of sequence numbers whose arrival is remembered (duplicates, late packets).
const WINDOW: u64 = 1024;

/// The receiving state of one measuring client connection.
pub(super) struct CountReceiver {
    sink: Box<dyn MediaSink>,
    srtp: Option<(SrtpReceiver, SrtcpSender)>,
    video_codec: Option<VideoCodec>,
    /// Our SSRC as the sender of RTCP.
    ssrc: u32,
    connected_at: Option<Instant>,
    video: Option<VideoStream>,
    keyframe_seen: bool,
    last_pli: Option<Instant>,
    /// A PLI is wanted (a packet was given up).
    pli_wanted: bool,
    /// Scratch space for the feedback we build.
    rtcp: Vec<u8>,
    nack_items: Vec<u16>,
}

impl CountReceiver {
    pub(super) fn new(sink: Box<dyn MediaSink>) -> Self {
        CountReceiver {
            sink,
            srtp: None,
            video_codec: None,
            ssrc: rand::random::<u32>() | 1,
            connected_at: None,
            video: None,
            keyframe_seen: false,
            last_pli: None,
            pli_wanted: false,
            rtcp: Vec::with_capacity(256),
            nack_items: Vec::with_capacity(MAX_NACK_ITEMS),
        }
    }

    /// The video codec the answer settled on.
    pub(super) fn set_video_codec(&mut self, codec: Option<VideoCodec>) {
        self.video_codec = codec;
    }

    /// ICE and DTLS are done: the keys to decrypt with and to protect feedback with.
    pub(super) fn connected(&mut self, srtp: (SrtpReceiver, SrtcpSender), now: Instant) {
        self.srtp = Some(srtp);
        self.connected_at = Some(now);
        self.sink.connected();
    }

    pub(super) fn is_ready(&self) -> bool {
        self.srtp.is_some()
    }

    /// One SRTP packet from the socket, decrypted in place. Feedback to send, if any, is
    /// appended to `out` as SRTCP datagrams (each one's end in `ends`).
    pub(super) fn packet(
        &mut self,
        datagram: &mut [u8],
        now: Instant,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) {
        let Some((srtp, _)) = self.srtp.as_mut() else {
            return;
        };
        let wire_len = datagram.len();
        let Ok(len) = srtp.unprotect(datagram) else {
            return; // not authentic: not ours to count
        };
        let packet = &datagram[..len];
        let Some(header_len) = rtp_header_len(packet) else {
            return;
        };
        let payload_type = packet[1] & 0x7f;
        let video = payload_type != AUDIO_PAYLOAD_TYPE;
        self.sink.packet(video, wire_len);
        if !video {
            return;
        }
        let ssrc = u32::from_be_bytes(packet[8..12].try_into().expect("4 bytes"));
        let stream = match &mut self.video {
            Some(stream) if stream.ssrc == ssrc => stream,
            _ => self.video.insert(VideoStream::new(ssrc, now)),
        };
        let mut payload = &packet[header_len..];
        if packet[0] & 0x20 != 0 {
            // RFC 3550 5.1: the last padding byte counts the padding.
            let pad = usize::from(*payload.last().unwrap_or(&0));
            payload = &payload[..payload.len().saturating_sub(pad)];
        }
        let rtp = Rtp {
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes(packet[4..8].try_into().expect("4 bytes")),
            marker: packet[1] & 0x80 != 0,
            payload,
        };
        let codec = self.video_codec.unwrap_or(VideoCodec::H264);
        let given_up_before = stream.given_up;
        let (sink, keyframe_seen) = (&mut self.sink, &mut self.keyframe_seen);
        stream.packet(&rtp, codec, now, |frame| {
            *keyframe_seen |= frame.keyframe;
            sink.frame(&frame);
        });
        self.sink.stats(stream.lost(), stream.jitter());
        if stream.given_up != given_up_before {
            self.pli_wanted = true;
        }
        self.feedback(now, out, ends);
    }

    /// Timers: NACKs due and PLIs wanted, also when no packet comes (called about once a
    /// second by the engine, and after each video packet).
    pub(super) fn feedback(&mut self, now: Instant, out: &mut Vec<u8>, ends: &mut Vec<usize>) {
        let Some((_, srtcp)) = self.srtp.as_mut() else {
            return;
        };
        let Some(connected_at) = self.connected_at else {
            return;
        };
        self.nack_items.clear();
        if let Some(stream) = &mut self.video {
            if stream.due_nacks(now, &mut self.nack_items) {
                self.pli_wanted = true;
            }
        }
        let media_ssrc = self.video.as_ref().map(|v| v.ssrc);
        if !self.nack_items.is_empty() {
            if let (Some(stream), Some(media_ssrc)) = (&mut self.video, media_ssrc) {
                self.rtcp.clear();
                stream.receiver_report(self.ssrc, &mut self.rtcp);
                write_nack(self.ssrc, media_ssrc, &self.nack_items, &mut self.rtcp);
                if srtcp.protect(&self.rtcp, out).is_ok() {
                    ends.push(out.len());
                    self.sink.feedback(1, 0);
                }
            }
        }
        let no_keyframe = !self.keyframe_seen && now >= connected_at + KEYFRAME_WAIT;
        let may_pli = self.last_pli.is_none_or(|last| now >= last + PLI_INTERVAL);
        if (no_keyframe || self.pli_wanted) && may_pli {
            // Without a video SSRC yet there is nothing to name in a PLI.
            if let (Some(stream), Some(media_ssrc)) = (&mut self.video, media_ssrc) {
                self.rtcp.clear();
                stream.receiver_report(self.ssrc, &mut self.rtcp);
                write_pli(self.ssrc, media_ssrc, &mut self.rtcp);
                if srtcp.protect(&self.rtcp, out).is_ok() {
                    ends.push(out.len());
                    self.sink.feedback(0, 1);
                }
                self.last_pli = Some(now);
                self.pli_wanted = false;
            }
        }
    }
}

/// The fields of one RTP packet the receiver reads.
struct Rtp<'a> {
    sequence: u16,
    timestamp: u32,
    marker: bool,
    payload: &'a [u8],
}

/// A missing sequence number: when its gap was seen, and when it was asked again.
struct Missing {
    sequence: u64,
    seen: Instant,
    nacked: Option<Instant>,
}

/// One received video stream (one SSRC).
struct VideoStream {
    ssrc: u32,
    /// RFC 3550 A.1, with extended (64-bit) sequence numbers.
    base: u64,
    highest: u64,
    received: u64,
    /// Arrival bits of the last [`WINDOW`] sequence numbers, by `sequence % WINDOW`.
    arrived: [u64; (WINDOW / 64) as usize],
    /// RFC 3550 A.3 fraction lost: expected and received at the last report.
    expected_prior: u64,
    received_prior: u64,
    /// RFC 3550 A.8: the last transit time and the jitter, in RTP timestamp units.
    epoch: Instant,
    last_transit: Option<f64>,
    jitter: f64,
    /// The RTP timestamp unwrapped (the last one seen, extended).
    last_timestamp: Option<u64>,
    /// The frame being received: its timestamp, keyframe flag and stamp.
    open: Option<OpenFrame>,
    /// The timestamp of the last frame closed.
    closed: Option<u64>,
    missing: VecDeque<Missing>,
    /// Missing packets given up so far (never recovered).
    given_up: u64,
}

struct OpenFrame {
    timestamp: u64,
    keyframe: bool,
    stamp: Option<switchyard_media::probe_stamp::ProbeStamp>,
}

impl VideoStream {
    fn new(ssrc: u32, now: Instant) -> Self {
        VideoStream {
            ssrc,
            base: 0,
            highest: 0,
            received: 0,
            arrived: [0; (WINDOW / 64) as usize],
            expected_prior: 0,
            received_prior: 0,
            epoch: now,
            last_transit: None,
            jitter: 0.0,
            last_timestamp: None,
            open: None,
            closed: None,
            missing: VecDeque::new(),
            given_up: 0,
        }
    }

    fn bit(&mut self, sequence: u64) -> (&mut u64, u64) {
        let slot = sequence % WINDOW;
        (&mut self.arrived[(slot / 64) as usize], 1 << (slot % 64))
    }

    /// Packets lost so far: expected - received (RFC 3550 A.3), never negative.
    fn lost(&self) -> u64 {
        if self.received == 0 {
            return 0;
        }
        (self.highest - self.base + 1).saturating_sub(self.received)
    }

    fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter / VIDEO_CLOCK)
    }

    /// Counts a packet; `frame_done` gets each frame it closes.
    fn packet(
        &mut self,
        rtp: &Rtp<'_>,
        codec: VideoCodec,
        now: Instant,
        mut frame_done: impl FnMut(ReceivedFrame),
    ) {
        let first = self.received == 0;
        let sequence = if first {
            // Far from 0 so that sequence numbers before the first one stay positive.
            let s = (1 << 32) + u64::from(rtp.sequence);
            (self.base, self.highest) = (s, s);
            s
        } else {
            extend(self.highest, rtp.sequence)
        };
        let timestamp = match self.last_timestamp {
            None => (1 << 32) + u64::from(rtp.timestamp),
            Some(last) => extend32(last, rtp.timestamp),
        };
        let in_order = first || sequence > self.highest;
        if in_order {
            if !first {
                self.advance(sequence, now);
            }
            let (word, bit) = self.bit(sequence);
            *word |= bit;
            self.received += 1;
            // RFC 3550 A.8, in RTP timestamp units.
            let arrival = now.duration_since(self.epoch).as_secs_f64() * VIDEO_CLOCK;
            let transit = arrival - timestamp as f64;
            if let Some(last) = self.last_transit {
                let d = (transit - last).abs();
                self.jitter += (d - self.jitter) / 16.0;
            }
            self.last_transit = Some(transit);
            self.last_timestamp = Some(timestamp);
        } else if self.highest - sequence < WINDOW && sequence >= self.base {
            let (word, bit) = self.bit(sequence);
            if *word & bit != 0 {
                return; // a duplicate
            }
            *word |= bit;
            self.received += 1;
            if let Some(i) = self.missing.iter().position(|m| m.sequence == sequence) {
                self.missing.remove(i);
            }
        } else {
            return; // too old to place
        }

        // Frames: a newer timestamp in order opens one (closing the one before); the marker
        // bit closes it.
        match &self.open {
            Some(open) if open.timestamp == timestamp => {}
            _ if !in_order => return, // late, of a frame already closed
            _ if self.closed == Some(timestamp) => return,
            _ => {
                if let Some(frame) = self.close(now) {
                    frame_done(frame);
                }
                self.open = Some(OpenFrame {
                    timestamp,
                    keyframe: false,
                    stamp: None,
                });
            }
        }
        inspect(codec, rtp.payload, self.open.as_mut().expect("open"));
        if rtp.marker {
            if let Some(frame) = self.close(now) {
                frame_done(frame);
            }
        }
    }

    fn close(&mut self, now: Instant) -> Option<ReceivedFrame> {
        let open = self.open.take()?;
        self.closed = Some(open.timestamp);
        Some(ReceivedFrame {
            arrived: now,
            rtp_time: open.timestamp.saturating_sub(1 << 32),
            keyframe: open.keyframe,
            stamp: open.stamp,
        })
    }

    /// The highest sequence number moves to `sequence`: the numbers skipped are missing.
    fn advance(&mut self, sequence: u64, now: Instant) {
        let gap = sequence - self.highest - 1;
        if gap >= WINDOW {
            self.arrived = [0; (WINDOW / 64) as usize];
        } else {
            for s in self.highest + 1..=sequence {
                let (word, bit) = self.bit(s);
                *word &= !bit;
            }
        }
        let first_missing = sequence - gap.min(MAX_MISSING as u64);
        if gap > MAX_MISSING as u64 {
            self.given_up += gap - MAX_MISSING as u64;
        }
        for s in first_missing..sequence {
            if self.missing.len() >= MAX_MISSING {
                self.missing.pop_front();
                self.given_up += 1;
            }
            self.missing.push_back(Missing {
                sequence: s,
                seen: now,
                nacked: None,
            });
        }
        // Entries that left the window can no longer be told apart from new ones.
        while self
            .missing
            .front()
            .is_some_and(|m| sequence - m.sequence >= WINDOW)
        {
            self.missing.pop_front();
            self.given_up += 1;
        }
        self.highest = sequence;
    }

    /// The sequence numbers to NACK now (each once); returns whether some were given up.
    fn due_nacks(&mut self, now: Instant, items: &mut Vec<u16>) -> bool {
        let before = self.given_up;
        let mut i = 0;
        while i < self.missing.len() {
            let m = &mut self.missing[i];
            match m.nacked {
                Some(at) if now >= at + GIVE_UP_AFTER => {
                    self.missing.remove(i);
                    self.given_up += 1;
                    continue;
                }
                None if now >= m.seen + REORDER_WAIT && items.len() < MAX_NACK_ITEMS => {
                    m.nacked = Some(now);
                    items.push(m.sequence as u16);
                }
                _ => {}
            }
            i += 1;
        }
        self.given_up != before
    }

    /// A receiver report (RFC 3550 6.4.2) with one report block for this stream.
    fn receiver_report(&mut self, ssrc: u32, out: &mut Vec<u8>) {
        let expected = self.highest - self.base + 1;
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received.saturating_sub(self.received_prior);
        (self.expected_prior, self.received_prior) = (expected, self.received);
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let lost = self.lost().min(0x7f_ffff) as u32;
        out.extend_from_slice(&[0x81, 201, 0, 7]);
        out.extend_from_slice(&ssrc.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&((u32::from(fraction) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&(self.highest as u32).to_be_bytes());
        out.extend_from_slice(&(self.jitter as u32).to_be_bytes());
        out.extend_from_slice(&[0; 8]); // LSR, DLSR: no sender report kept
    }
}

/// The extended sequence number of `sequence` closest to `highest` (RFC 3550 A.1).
fn extend(highest: u64, sequence: u16) -> u64 {
    let candidate = (highest & !0xffff) | u64::from(sequence);
    if candidate + 0x8000 < highest {
        candidate + 0x1_0000
    } else if candidate > highest + 0x8000 && candidate >= 0x1_0000 {
        candidate - 0x1_0000
    } else {
        candidate
    }
}

/// The unwrapped RTP timestamp of `timestamp` closest to `last`.
fn extend32(last: u64, timestamp: u32) -> u64 {
    let candidate = (last & !0xffff_ffff) | u64::from(timestamp);
    if candidate + 0x8000_0000 < last {
        candidate + 0x1_0000_0000
    } else if candidate > last + 0x8000_0000 && candidate >= 0x1_0000_0000 {
        candidate - 0x1_0000_0000
    } else {
        candidate
    }
}

/// Keyframe and probe stamp from one packet's payload.
fn inspect(codec: VideoCodec, payload: &[u8], frame: &mut OpenFrame) {
    let Some(&first) = payload.first() else {
        return;
    };
    let stamp = &mut frame.stamp;
    let mut sei = |unit: &[u8]| {
        if stamp.is_none() {
            *stamp = switchyard_media::probe_stamp::read_nal(unit);
        }
    };
    match codec {
        VideoCodec::H264 => match first & 0x1f {
            5 => frame.keyframe = true,
            6 => sei(payload),
            // STAP-A (RFC 6184 5.7.1)
            24 => for_each_aggregated(payload, 1, |unit| {
                let kind = unit[0] & 0x1f;
                if kind == 6 {
                    sei(unit);
                } else if kind == 5 {
                    frame.keyframe = true;
                }
            }),
            // FU-A start of an IDR (RFC 6184 5.8)
            28 if payload
                .get(1)
                .is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5) =>
            {
                frame.keyframe = true;
            }
            _ => {}
        },
        VideoCodec::H265 => {
            let irap = |kind: u8| (16..=21).contains(&kind);
            match (first >> 1) & 0x3f {
                39 => sei(payload),
                // AP (RFC 7798 4.4.2)
                48 => for_each_aggregated(payload, 2, |unit| {
                    let kind = (unit[0] >> 1) & 0x3f;
                    if kind == 39 {
                        sei(unit);
                    } else if irap(kind) {
                        frame.keyframe = true;
                    }
                }),
                // FU start (RFC 7798 4.4.3)
                49 if payload
                    .get(2)
                    .is_some_and(|h| h & 0x80 != 0 && irap(h & 0x3f)) =>
                {
                    frame.keyframe = true;
                }
                kind if irap(kind) => frame.keyframe = true,
                _ => {}
            }
        }
        VideoCodec::Vp8 => frame.keyframe |= vp8_keyframe(payload),
        // RFC 9628 4.2: B (start of a frame) with P (inter-picture predicted) clear.
        VideoCodec::Vp9 { .. } => frame.keyframe |= first & 0x08 != 0 && first & 0x40 == 0,
        // AV1 RTP 4.4: N, the first packet of a coded video sequence.
        VideoCodec::Av1 => frame.keyframe |= first & 0x08 != 0,
    }
}

/// RFC 7741 4.2-4.3: the first packet of a partition 0 whose frame tag has P = 0.
fn vp8_keyframe(payload: &[u8]) -> bool {
    let Some(&descriptor) = payload.first() else {
        return false;
    };
    if descriptor & 0x10 == 0 || descriptor & 0x07 != 0 {
        return false; // not the start of partition 0
    }
    let mut offset = 1;
    if descriptor & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        offset += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M).
            offset += if payload.get(offset).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if x & 0x40 != 0 {
            offset += 1;
        }
        if x & 0x30 != 0 {
            offset += 1;
        }
    }
    payload.get(offset).is_some_and(|b| b & 0x01 == 0)
}

/// Calls `unit` with each NAL unit of an aggregation packet: 16-bit sizes after `header_len`
/// bytes; stops quietly at a malformed size.
fn for_each_aggregated(payload: &[u8], header_len: usize, mut unit: impl FnMut(&[u8])) {
    let mut offset = header_len;
    while let Some(size) = payload.get(offset..offset + 2) {
        let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
        let Some(nal) = payload.get(offset + 2..offset + 2 + size) else {
            return;
        };
        if !nal.is_empty() {
            unit(nal);
        }
        offset += 2 + size;
    }
}

/// A generic NACK (RFC 4585 6.2.1): FCI entries of a PID and a bitmask of the 16 after it.
fn write_nack(sender: u32, media: u32, sequences: &[u16], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0x81, 205, 0, 0]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    let mut i = 0;
    while i < sequences.len() {
        let pid = sequences[i];
        let mut mask: u16 = 0;
        i += 1;
        while i < sequences.len() {
            let offset = sequences[i].wrapping_sub(pid);
            if offset == 0 || offset > 16 {
                break;
            }
            mask |= 1 << (offset - 1);
            i += 1;
        }
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&mask.to_be_bytes());
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// A picture loss indication (RFC 4585 6.3.1).
fn write_pli(sender: u32, media: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x81, 206, 0, 2]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
}

#[cfg(test)]
mod tests;
