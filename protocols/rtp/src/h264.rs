//! H.264 over RTP, RFC 6184 packetization-mode 1 (non-interleaved, 6.3): single NAL unit
//! packets (5.6), STAP-A aggregation (5.7.1) and FU-A fragmentation (5.8), both ways.
//!
//! [`H264Depacketizer`] turns packets, in order (see [`crate::reorder`]), into access units of
//! 4-byte length-prefixed NAL units with SPS and PPS taken out (they travel in the track's
//! `AvcConfig`). What real senders do, and how it is handled:
//!
//! - SPS and PPS come in a STAP-A (GStreamer `rtph264pay aggregate-mode=zero-latency`) or as
//!   separate single NAL unit packets (OBS, GStreamer's default, ffmpeg); either way they are
//!   kept and handed out with the next access unit after they change.
//! - An IDR picture is often several slices, each its own NAL unit and each possibly FU-A
//!   fragmented (x264 `slices=N`, hardware encoders); the access unit is every NAL unit with
//!   one RTP timestamp (RFC 6184 5.1).
//! - Some cameras never set the marker bit: an access unit also ends when the timestamp
//!   changes (one frame of extra latency for them only).
//! - Packet loss (`lost` > 0, or an FU-A whose start or end is missing) drops the damaged
//!   access unit and every one after it until an IDR, so a decoder never sees a broken
//!   reference chain; [`H264Depacketizer::waiting_for_keyframe`] tells the caller to ask for
//!   one (RTCP PLI, RFC 4585 6.3.1). The depacketizer also starts in that state.
//! - Empty payloads are padding-only packets (RFC 3550 5.1, bandwidth probing) and belong to
//!   no access unit. NAL unit types 0, 30 and 31 are ignored (RFC 6184 5.4, Table 3).
//! - Lengths that overrun the packet, truncated headers and interleaved-mode packet types
//!   (STAP-B, MTAP, FU-B) are [`RtpError`]s; the depacketizer stays usable.
//!
//! Access unit delimiters and filler data are dropped: they carry nothing a muxer needs. So are
//! NAL units of the types H.264 leaves unspecified (0, 24-31) found inside a STAP-A or FU-A:
//! they are RTP's packet types, so they could not be sent on.
//!
//! [`H264Packetizer`] does the reverse for one access unit, sharing the frame's bytes for
//! every NAL unit that fits one packet.

use crate::error::RtpError;
use crate::framing::{self, AccessUnitFraming, NalUnitPayloads};
use crate::packet::{PacketRef, Payload};
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;
use switchyard_media::h264::{is_keyframe, nal_type, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};

/// NAL unit type of filler data (H.264 Table 7-1).
const NAL_FILLER: u8 = 12;
/// Payload type (in the NAL unit type field) of a STAP-A (RFC 6184 5.7.1).
const STAP_A: u8 = 24;
/// Payload type of an FU-A (RFC 6184 5.8).
const FU_A: u8 = 28;

/// Largest access unit the depacketizer assembles. A 4K intra picture at a high bitrate is a
/// few megabytes; beyond this a sender is broken (or hostile), and memory must stay bounded.
pub const MAX_ACCESS_UNIT_BYTES: usize = 16 << 20;

/// Smallest `max_payload` an [`H264Packetizer`] works with: an FU-A needs two header bytes
/// and one byte of data.
pub const MIN_PAYLOAD: usize = 3;

/// One access unit out of [`H264Depacketizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264AccessUnit {
    /// The RTP timestamp of its packets (90 kHz).
    pub timestamp: u32,
    /// 4-byte length-prefixed NAL units (AVCC), SPS, PPS, delimiters and filler removed.
    pub data: Bytes,
    /// Holds an IDR slice.
    pub keyframe: bool,
    /// `(SPS, PPS)` NAL units when they changed since the last access unit handed out (and
    /// always with the first one when they are known).
    pub parameter_sets: Option<(Bytes, Bytes)>,
}

/// RTP packets (in order) -> H.264 access units. See the module documentation.
///
/// Only the latest SPS and PPS are kept: an encoder that uses several PPS ids at once (rare;
/// no browser or common camera does) is not supported.
pub struct H264Depacketizer {
    /// NAL units of the access unit in progress, 4-byte length-prefixed.
    au: BytesMut,
    /// The access unit in progress: its timestamp, and whether part of it is missing.
    framing: AccessUnitFraming,
    /// Where in `au` the NAL unit being reassembled from FU-A fragments starts (at its
    /// length prefix, filled in when the last fragment comes).
    fragment: Option<usize>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    parameters_changed: bool,
    waiting_for_idr: bool,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        H264Depacketizer {
            au: BytesMut::new(),
            framing: AccessUnitFraming::default(),
            fragment: None,
            sps: None,
            pps: None,
            parameters_changed: false,
            // Pictures before the first IDR cannot be decoded.
            waiting_for_idr: true,
        }
    }
}

impl H264Depacketizer {
    /// Takes the next packet in sequence-number order and appends the access units it
    /// completes to `out`. `lost` > 0 when packets were lost just before this one (from
    /// [`ReorderBuffer::pop`](crate::reorder::ReorderBuffer::pop)).
    ///
    /// On an error the access unit this packet belongs to is dropped and output resumes at
    /// the next IDR; the depacketizer stays usable.
    pub fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<H264AccessUnit>,
    ) -> Result<(), RtpError> {
        framing::push(self, packet, lost, out)
    }

    /// True until an IDR arrives intact, at the start and after any loss or error: the caller
    /// should ask the sender for a keyframe (RTCP PLI) while this holds.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_idr
    }

    fn damage(&mut self) {
        self.framing.damaged = true;
        self.waiting_for_idr = true;
    }

    fn payload(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        let payload = packet.payload;
        let header = payload[0];
        let kind = header & 0x1f;
        if kind != FU_A {
            // An FU-A whose end packet never came.
            self.abandon_fragment();
        }
        match kind {
            1..=23 => self.nal(packet, payload),
            STAP_A => {
                framing::for_each_aggregated(packet, 1, "STAP-A", |nal| self.nal(packet, nal))
            }
            FU_A => self.fu_a(packet, header),
            25 => Err(unsupported(packet, "H.264 STAP-B (interleaved mode)")),
            26 => Err(unsupported(packet, "H.264 MTAP16 (interleaved mode)")),
            27 => Err(unsupported(packet, "H.264 MTAP24 (interleaved mode)")),
            29 => Err(unsupported(packet, "H.264 FU-B (interleaved mode)")),
            _ => Ok(()), // 0, 30, 31: reserved, "ignore" (RFC 6184 5.4, Table 3)
        }
    }

    /// FU-A fragments are reassembled in place at the end of the access unit (no copy
    /// per NAL unit), behind a length prefix written when the last fragment comes.
    fn fu_a(&mut self, packet: &PacketRef<'_>, indicator: u8) -> Result<(), RtpError> {
        let Some(&fu) = packet.payload.get(1) else {
            return Err(malformed(packet, "FU-A", "no FU header".to_string()));
        };
        let (start, end, kind) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1f);
        let body = &packet.payload[2..];
        if start {
            // A start while another NAL unit is in progress: that one never ended.
            self.abandon_fragment();
            self.reserve(packet, 5 + body.len())?;
            self.fragment = Some(self.au.len());
            self.au.put_u32(0);
            self.au.put_u8((indicator & 0xe0) | kind);
            self.au.put_slice(body);
        } else {
            match self.fragment {
                Some(at) if nal_type(&self.au[at + 4..]) == kind => {
                    self.reserve(packet, body.len())?;
                    self.au.put_slice(body);
                }
                // A continuation of another NAL unit, or of one whose start we never saw (lost,
                // or the stream was joined in the middle of it).
                _ => {
                    self.abandon_fragment();
                    self.damage();
                }
            }
        }
        // Start and end in one FU-A is forbidden (RFC 6184 5.8) but unambiguous: accepted.
        if let (true, Some(at)) = (end, self.fragment) {
            self.fragment = None;
            let nal = &mut self.au[at..];
            match nal_type(&nal[4..]) {
                NAL_SPS | NAL_PPS | NAL_AUD | NAL_FILLER | 0 | 24..=31 => {
                    // Not part of the access unit's data (and rarely fragmented): move it out.
                    let nal = nal[4..].to_vec();
                    self.au.truncate(at);
                    self.nal(packet, &nal)?;
                }
                _ => {
                    let len = (nal.len() - 4) as u32;
                    nal[..4].copy_from_slice(&len.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    /// Drops a partly reassembled FU-A NAL unit, which damages its access unit.
    fn abandon_fragment(&mut self) {
        if let Some(at) = self.fragment.take() {
            self.au.truncate(at);
            self.damage();
        }
    }

    /// Checks that the access unit may grow by `more` bytes.
    fn reserve(&self, packet: &PacketRef<'_>, more: usize) -> Result<(), RtpError> {
        let size = self.au.len() + more;
        if size > MAX_ACCESS_UNIT_BYTES {
            return Err(too_large(packet, size));
        }
        Ok(())
    }

    /// One complete NAL unit of the access unit in progress.
    fn nal(&mut self, packet: &PacketRef<'_>, nal: &[u8]) -> Result<(), RtpError> {
        if nal.is_empty() {
            return Ok(());
        }
        match nal_type(nal) {
            NAL_SPS => {
                if self.sps.as_deref() != Some(nal) {
                    self.sps = Some(Bytes::copy_from_slice(nal));
                    self.parameters_changed = true;
                }
            }
            NAL_PPS => {
                if self.pps.as_deref() != Some(nal) {
                    self.pps = Some(Bytes::copy_from_slice(nal));
                    self.parameters_changed = true;
                }
            }
            // Types 0 and 24-31 are unspecified in H.264 (RTP uses them for its own packet
            // types); inside an aggregate or fragment they cannot be sent on as they are.
            NAL_AUD | NAL_FILLER | 0 | 24..=31 => {}
            _ => {
                self.reserve(packet, 4 + nal.len())?;
                self.au.put_u32(nal.len() as u32);
                self.au.put_slice(nal);
            }
        }
        Ok(())
    }

    /// Ends the access unit in progress and hands it out unless it is damaged or cannot be
    /// decoded (no IDR since the last damage).
    fn finish(&mut self, out: &mut Vec<H264AccessUnit>) {
        let Some(timestamp) = self.framing.timestamp.take() else {
            return;
        };
        let incomplete = self.fragment.take().is_some();
        if std::mem::take(&mut self.framing.damaged) || incomplete {
            self.au.clear();
            self.waiting_for_idr = true;
            return;
        }
        if self.au.is_empty() {
            return; // only parameter sets, delimiters or ignored NAL units
        }
        let data = self.au.split().freeze();
        let keyframe = is_keyframe(&data);
        if self.waiting_for_idr && !keyframe {
            return;
        }
        self.waiting_for_idr = false;
        let parameter_sets = match (&self.sps, &self.pps) {
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
            parameter_sets,
        });
    }
}

fn malformed(packet: &PacketRef<'_>, what: &'static str, reason: String) -> RtpError {
    RtpError::Malformed {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        what,
        reason,
    }
}

fn unsupported(packet: &PacketRef<'_>, what: &'static str) -> RtpError {
    RtpError::Unsupported {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        what,
    }
}

fn too_large(packet: &PacketRef<'_>, size: usize) -> RtpError {
    RtpError::TooLarge {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        size,
        max: MAX_ACCESS_UNIT_BYTES,
    }
}

/// H.264 access units -> RTP payloads (RFC 6184 packetization-mode 1).
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    max_payload: usize,
}

impl H264Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes (e.g. 1200 for WebRTC: an
    /// MTU of 1280 minus IP, UDP, RTP, header extensions and SRTP tag).
    ///
    /// # Panics
    ///
    /// If `max_payload` is below [`MIN_PAYLOAD`] (a configuration error, not input).
    pub fn new(max_payload: usize) -> Self {
        assert!(
            max_payload >= MIN_PAYLOAD,
            "H.264 RTP payloads need at least {MIN_PAYLOAD} bytes, not {max_payload}"
        );
        H264Packetizer { max_payload }
    }

    /// Packetizes one access unit given as 4-byte length-prefixed NAL units, appending its
    /// payloads to `out`; the marker bit is set on the last one (RFC 6184 5.1).
    ///
    /// Before an IDR (`keyframe`, or an IDR slice in `frame`) the given SPS and PPS are sent
    /// as one STAP-A, unless the access unit carries both itself: receivers that joined late
    /// (or lost the first ones) can decode from any keyframe. NAL units that fit a packet go
    /// as single NAL unit packets sharing `frame`'s bytes; larger ones as FU-A fragments of
    /// equal size. Access unit delimiters, filler data and NAL unit types that H.264 leaves
    /// unspecified (0, 24-31: they would read as RTP packet types) are dropped.
    ///
    /// Malformed length prefixes are an error and append nothing.
    pub fn packetize(
        &self,
        frame: &Bytes,
        keyframe: bool,
        sps: &[Bytes],
        pps: &[Bytes],
        out: &mut Vec<Payload>,
    ) -> Result<(), RtpError> {
        let (mut has_idr, mut has_sps, mut has_pps) = (false, false, false);
        for range in nal_ranges(frame) {
            match frame.get(range?.start).map(|h| h & 0x1f) {
                Some(NAL_IDR) => has_idr = true,
                Some(NAL_SPS) => has_sps = true,
                Some(NAL_PPS) => has_pps = true,
                _ => {}
            }
        }
        let first = out.len();
        if (keyframe || has_idr) && !(has_sps && has_pps) {
            self.parameter_sets(sps, pps, out);
        }
        for range in nal_ranges(frame).flatten() {
            match frame.get(range.start).map(|h| h & 0x1f) {
                // Unspecified types would read as RTP packet types (STAP-A, FU-A...).
                None | Some(NAL_AUD | NAL_FILLER | 0 | 24..=31) => {}
                Some(_) => self.nal(frame, range, out),
            }
        }
        if let Some(last) = out.get_mut(first..).and_then(|p| p.last_mut()) {
            last.marker = true;
        }
        Ok(())
    }

    /// SPS and PPS as one STAP-A when they fit, else one by one.
    fn parameter_sets(&self, sps: &[Bytes], pps: &[Bytes], out: &mut Vec<Payload>) {
        let sets = || sps.iter().chain(pps).filter(|s| !s.is_empty());
        let size = 1 + sets().map(|s| 2 + s.len()).sum::<usize>();
        if size == 1 {
            return;
        }
        if size <= self.max_payload && sets().all(|s| s.len() <= usize::from(u16::MAX)) {
            // F is the OR of the aggregated units' F bits, NRI their maximum (RFC 6184 5.7).
            let f = sets().fold(0, |f, s| f | (s[0] & 0x80));
            let nri = sets().map(|s| s[0] & 0x60).max().unwrap_or(0);
            let mut stap = BytesMut::with_capacity(size);
            stap.put_u8(f | nri | STAP_A);
            for s in sets() {
                stap.put_u16(s.len() as u16);
                stap.put_slice(s);
            }
            out.push(Payload {
                data: stap.freeze(),
                marker: false,
            });
        } else {
            for s in sets() {
                self.nal(s, 0..s.len(), out);
            }
        }
    }

    /// One NAL unit (`source[range]`, not empty): a single NAL unit packet or FU-A fragments.
    fn nal(&self, source: &Bytes, range: Range<usize>, out: &mut Vec<Payload>) {
        if range.len() <= self.max_payload {
            out.push(Payload {
                data: source.slice(range),
                marker: false,
            });
            return;
        }
        let nal = &source[range];
        let (header, body) = (nal[0], &nal[1..]);
        let indicator = (header & 0xe0) | FU_A;
        let fragments = body.len().div_ceil(self.max_payload - 2);
        let (base, longer) = (body.len() / fragments, body.len() % fragments);
        // All fragments in one allocation, shared by slicing. Fragment `i` holds `base` bytes
        // of the body, one more for the first `longer` ones, behind its 2-byte header.
        let mut buf = BytesMut::with_capacity(body.len() + 2 * fragments);
        let mut rest = body;
        for i in 0..fragments {
            let (chunk, tail) = rest.split_at(base + usize::from(i < longer));
            rest = tail;
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i == fragments - 1 { 0x40 } else { 0 };
            buf.put_u8(indicator);
            buf.put_u8(start | end | (header & 0x1f));
            buf.put_slice(chunk);
        }
        let buf = buf.freeze();
        let mut start = 0;
        for i in 0..fragments {
            let end = start + 2 + base + usize::from(i < longer);
            out.push(Payload {
                data: buf.slice(start..end),
                marker: false,
            });
            start = end;
        }
    }
}

/// The byte ranges of the NAL units of 4-byte length-prefixed `data` (empty ones skipped); an
/// error ends the iteration.
pub(crate) fn nal_ranges(data: &[u8]) -> impl Iterator<Item = Result<Range<usize>, RtpError>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let rest = data.get(pos..).filter(|r| !r.is_empty())?;
        let offset = pos;
        if rest.len() < 4 {
            pos = data.len() + 1;
            return Some(Err(RtpError::BadFrame {
                offset,
                reason: format!(
                    "{} byte(s) left, too short for a 4-byte NAL unit length",
                    rest.len()
                ),
            }));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > rest.len() - 4 {
            pos = data.len() + 1;
            return Some(Err(RtpError::BadFrame {
                offset,
                reason: format!(
                    "NAL unit length {len} overruns the frame ({} bytes left)",
                    rest.len() - 4
                ),
            }));
        }
        pos += 4 + len;
        if len > 0 {
            return Some(Ok(offset + 4..pos));
        }
    })
}

impl NalUnitPayloads for H264Depacketizer {
    type AccessUnit = H264AccessUnit;

    fn framing(&mut self) -> &mut AccessUnitFraming {
        &mut self.framing
    }

    fn payload(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        H264Depacketizer::payload(self, packet)
    }

    fn abandon_fragment(&mut self) {
        H264Depacketizer::abandon_fragment(self)
    }

    fn damage(&mut self) {
        H264Depacketizer::damage(self)
    }

    fn finish(&mut self, out: &mut Vec<H264AccessUnit>) {
        H264Depacketizer::finish(self, out)
    }
}

#[cfg(test)]
mod tests;
