//! H.265 over RTP, RFC 7798, receiving side: single NAL unit packets (4.4.1), aggregation
//! packets (AP, 4.4.2) and fragmentation units (FU, 4.4.3), with `sprop-max-don-diff` 0 (no
//! DONL fields: what every camera and GStreamer's `rtph265pay` send).
//!
//! [`H265Depacketizer`] turns packets, in order (see [`crate::reorder`]), into access units of
//! 4-byte length-prefixed NAL units with VPS, SPS and PPS taken out (they travel in the track's
//! `hvcC`, built by [`HevcConfig::from_parameter_sets`](switchyard_media::h265::HevcConfig)).
//! What real senders do, and how it is handled:
//!
//! - VPS, SPS and PPS come in one AP (GStreamer `rtph265pay aggregate-mode=zero-latency`, most
//!   cameras) or as three single NAL unit packets (`rtph265pay`'s default, ffmpeg); either way
//!   they are kept and handed out with the next access unit after they change. Those a camera
//!   sends only in the SDP (`sprop-vps`, `sprop-sps`, `sprop-pps`, RFC 7798 7.1) are the
//!   caller's business.
//! - A picture is often several slice segments (x265 `--slices`, hardware encoders), each its
//!   own NAL unit and each possibly fragmented; the access unit is every NAL unit with one RTP
//!   timestamp (RFC 7798 4.1). Large prefix SEI (x265 writes its settings in one of 2 kB) are
//!   fragmented like slices.
//! - Some cameras never set the marker bit: an access unit also ends when the timestamp
//!   changes (one frame of extra latency for them only).
//! - Packet loss (`lost` > 0, or an FU whose start or end is missing) drops the damaged access
//!   unit and every one after it until an IRAP picture (IDR, CRA or BLA), so a decoder never
//!   sees a broken reference chain; [`H265Depacketizer::waiting_for_keyframe`] says so. The
//!   depacketizer also starts in that state.
//! - Empty payloads are padding-only packets (RFC 3550 5.1) and belong to no access unit.
//! - PACI packets (type 50, 4.4.4) are refused: no camera sends them, and what they carry
//!   (temporal scalability control) means nothing to a gateway. Types 51-63 are unspecified
//!   (H.265 Table 7-1) and ignored, as are those types found inside an AP or FU: they would
//!   read as RTP packet types if sent on.
//! - Lengths that overrun the packet and truncated headers are [`RtpError`]s; the depacketizer
//!   stays usable.
//!
//! Access unit delimiters and filler data are dropped: they carry nothing a muxer needs.
//!
//! [`H265Packetizer`] does the reverse for one access unit (sending side, for WHEP viewers):
//! single NAL unit packets sharing the frame's bytes, FUs for NAL units over the payload size,
//! and VPS, SPS and PPS (from the track's `hvcC`) in one AP before every IRAP picture.

use crate::error::{malformed, RtpError};
use crate::framing::{self, AccessUnitFraming, NalUnitPayloads};
use crate::h264::nal_ranges;
use crate::h264::MAX_ACCESS_UNIT_BYTES;
use crate::packet::{PacketRef, Payload};
use bytes::{BufMut, Bytes, BytesMut};
use std::ops::Range;
use switchyard_media::h265::{
    is_irap, is_keyframe, nal_type, NAL_AUD, NAL_FD, NAL_PPS, NAL_SPS, NAL_VPS,
};

/// Payload type (in the NAL unit type field) of an aggregation packet (RFC 7798 4.4.2).
const AP: u8 = 48;
/// Payload type of a fragmentation unit (RFC 7798 4.4.3).
const FU: u8 = 49;
/// Payload type of a PACI packet (RFC 7798 4.4.4).
const PACI: u8 = 50;

/// The parameter sets of an H.265 stream: one of each (a stream that uses several PPS ids at
/// once is not supported; no camera does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265ParameterSets {
    pub vps: Bytes,
    pub sps: Bytes,
    pub pps: Bytes,
}

/// One access unit out of [`H265Depacketizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265AccessUnit {
    /// The RTP timestamp of its packets (90 kHz).
    pub timestamp: u32,
    /// 4-byte length-prefixed NAL units (HVCC sample form), VPS, SPS, PPS, delimiters and
    /// filler removed.
    pub data: Bytes,
    /// Holds an IRAP slice (IDR, CRA or BLA): decoding can start here.
    pub keyframe: bool,
    /// The parameter sets when they changed since the last access unit handed out (and always
    /// with the first one when they are known).
    pub parameter_sets: Option<H265ParameterSets>,
}

/// RTP packets (in order) -> H.265 access units. See the module documentation.
pub struct H265Depacketizer {
    /// NAL units of the access unit in progress, 4-byte length-prefixed.
    au: BytesMut,
    /// The access unit in progress: its timestamp, and whether part of it is missing.
    framing: AccessUnitFraming,
    /// Where in `au` the NAL unit being reassembled from FU fragments starts (at its length
    /// prefix, filled in when the last fragment comes).
    fragment: Option<usize>,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    parameters_changed: bool,
    waiting_for_irap: bool,
}

impl Default for H265Depacketizer {
    fn default() -> Self {
        H265Depacketizer {
            au: BytesMut::new(),
            framing: AccessUnitFraming::default(),
            fragment: None,
            vps: None,
            sps: None,
            pps: None,
            parameters_changed: false,
            // Pictures before the first IRAP cannot be decoded.
            waiting_for_irap: true,
        }
    }
}

impl H265Depacketizer {
    /// Takes the next packet in sequence-number order and appends the access units it
    /// completes to `out`. `lost` > 0 when packets were lost just before this one (from
    /// [`ReorderBuffer::pop`](crate::reorder::ReorderBuffer::pop)).
    ///
    /// On an error the access unit this packet belongs to is dropped and output resumes at
    /// the next IRAP picture; the depacketizer stays usable.
    pub fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<H265AccessUnit>,
    ) -> Result<(), RtpError> {
        framing::push(self, packet, lost, out)
    }

    /// True until an IRAP picture arrives intact, at the start and after any loss or error:
    /// the caller may ask the sender for a keyframe while this holds.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_irap
    }

    fn damage(&mut self) {
        self.framing.damaged = true;
        self.waiting_for_irap = true;
    }

    fn payload(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        let payload = packet.payload;
        if payload.len() < 2 {
            return Err(malformed(
                packet,
                "H.265 payload",
                format!("{} byte(s), shorter than the 2-byte header", payload.len()),
            ));
        }
        let kind = nal_type(payload);
        if kind != FU {
            // An FU whose end packet never came.
            self.abandon_fragment();
        }
        match kind {
            0..=47 => self.nal(packet, payload),
            AP => framing::for_each_aggregated(packet, 2, "H.265 AP", |nal| self.nal(packet, nal)),
            FU => self.fu(packet),
            PACI => Err(RtpError::Unsupported {
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                what: "H.265 PACI packet",
            }),
            _ => Ok(()), // 51-63: unspecified
        }
    }

    /// FU fragments are reassembled in place at the end of the access unit (no copy per NAL
    /// unit), behind a length prefix written when the last fragment comes.
    fn fu(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        let payload = packet.payload;
        let Some(&fu) = payload.get(2) else {
            return Err(malformed(packet, "H.265 FU", "no FU header".to_string()));
        };
        let (start, end, kind) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x3f);
        let body = &payload[3..];
        if start {
            // A start while another NAL unit is in progress: that one never ended.
            self.abandon_fragment();
            self.reserve(packet, 6 + body.len())?;
            self.fragment = Some(self.au.len());
            self.au.put_u32(0);
            // The NAL unit header is the payload header with FuType as its type (4.4.3).
            self.au.put_u8((payload[0] & 0x81) | (kind << 1));
            self.au.put_u8(payload[1]);
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
        // Start and end in one FU is forbidden (4.4.3) but unambiguous: accepted.
        if let (true, Some(at)) = (end, self.fragment) {
            self.fragment = None;
            let nal = &mut self.au[at..];
            match nal_type(&nal[4..]) {
                NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD | NAL_FD | 48..=63 => {
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

    /// Drops a partly reassembled FU NAL unit, which damages its access unit.
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
            return Err(RtpError::TooLarge {
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                size,
                max: MAX_ACCESS_UNIT_BYTES,
            });
        }
        Ok(())
    }

    /// One complete NAL unit of the access unit in progress.
    fn nal(&mut self, packet: &PacketRef<'_>, nal: &[u8]) -> Result<(), RtpError> {
        if nal.len() < 2 {
            // Not even a NAL unit header: nothing a decoder could use.
            return Ok(());
        }
        let slot = match nal_type(nal) {
            NAL_VPS => &mut self.vps,
            NAL_SPS => &mut self.sps,
            NAL_PPS => &mut self.pps,
            // RTP's own packet types (48-50) and the unspecified ones cannot be sent on.
            NAL_AUD | NAL_FD | 48..=63 => return Ok(()),
            _ => {
                self.reserve(packet, 4 + nal.len())?;
                self.au.put_u32(nal.len() as u32);
                self.au.put_slice(nal);
                return Ok(());
            }
        };
        if slot.as_deref() != Some(nal) {
            *slot = Some(Bytes::copy_from_slice(nal));
            self.parameters_changed = true;
        }
        Ok(())
    }

    /// Ends the access unit in progress and hands it out unless it is damaged or cannot be
    /// decoded (no IRAP since the last damage).
    fn finish(&mut self, out: &mut Vec<H265AccessUnit>) {
        let Some(timestamp) = self.framing.timestamp.take() else {
            return;
        };
        let incomplete = self.fragment.take().is_some();
        if std::mem::take(&mut self.framing.damaged) || incomplete {
            self.au.clear();
            self.waiting_for_irap = true;
            return;
        }
        if self.au.is_empty() {
            return; // only parameter sets, delimiters or ignored NAL units
        }
        let data = self.au.split().freeze();
        let keyframe = is_keyframe(&data);
        if self.waiting_for_irap && !keyframe {
            return;
        }
        self.waiting_for_irap = false;
        let parameter_sets = match (&self.vps, &self.sps, &self.pps) {
            (Some(vps), Some(sps), Some(pps)) if self.parameters_changed => {
                self.parameters_changed = false;
                Some(H265ParameterSets {
                    vps: vps.clone(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                })
            }
            _ => None,
        };
        out.push(H265AccessUnit {
            timestamp,
            data,
            keyframe,
            parameter_sets,
        });
    }
}

/// Smallest `max_payload` an [`H265Packetizer`] works with: an FU needs three header bytes
/// and one byte of data.
pub const MIN_PAYLOAD: usize = 4;

/// H.265 access units -> RTP payloads (RFC 7798, `sprop-max-don-diff` 0: no DONL fields).
#[derive(Debug, Clone)]
pub struct H265Packetizer {
    max_payload: usize,
}

impl H265Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes.
    ///
    /// # Panics
    ///
    /// If `max_payload` is below [`MIN_PAYLOAD`] (a configuration error, not input).
    pub fn new(max_payload: usize) -> Self {
        assert!(
            max_payload >= MIN_PAYLOAD,
            "H.265 RTP payloads need at least {MIN_PAYLOAD} bytes, not {max_payload}"
        );
        H265Packetizer { max_payload }
    }

    /// Packetizes one access unit given as 4-byte length-prefixed NAL units, appending its
    /// payloads to `out`; the marker bit is set on the last one (RFC 7798 4.1).
    ///
    /// Before an IRAP picture (`keyframe`, or an IRAP slice in `frame`) the given parameter
    /// sets (VPS, SPS, PPS, as [`HevcConfig::parameter_sets`] lists them) are sent as one AP
    /// (4.4.2), or one by one when they do not fit, unless the access unit carries VPS, SPS
    /// and PPS itself. NAL units that fit a packet go as single NAL unit packets (4.4.1)
    /// sharing `frame`'s bytes; larger ones as FUs (4.4.3) of equal size. Access unit
    /// delimiters, filler data and types 48-63 (RTP's packet types, or unspecified) are
    /// dropped.
    ///
    /// Malformed length prefixes are an error and append nothing.
    ///
    /// [`HevcConfig::parameter_sets`]: switchyard_media::h265::HevcConfig::parameter_sets
    pub fn packetize(
        &self,
        frame: &Bytes,
        keyframe: bool,
        parameter_sets: &[Bytes],
        out: &mut Vec<Payload>,
    ) -> Result<(), RtpError> {
        let (mut irap, mut vps, mut sps, mut pps) = (false, false, false, false);
        for range in nal_ranges(frame) {
            let range = range?;
            match nal_type(&frame[range]) {
                NAL_VPS => vps = true,
                NAL_SPS => sps = true,
                NAL_PPS => pps = true,
                t => irap |= is_irap(t),
            }
        }
        let first = out.len();
        if (keyframe || irap) && !(vps && sps && pps) {
            self.parameter_sets(parameter_sets, out);
        }
        for range in nal_ranges(frame).flatten() {
            if range.len() < 2 {
                continue; // no room for a NAL unit header
            }
            match nal_type(&frame[range.clone()]) {
                NAL_AUD | NAL_FD | 48..=63 => {}
                _ => self.nal(frame, range, out),
            }
        }
        if let Some(last) = out.get_mut(first..).and_then(|p| p.last_mut()) {
            last.marker = true;
        }
        Ok(())
    }

    /// The parameter sets as one AP when they fit, else one by one.
    fn parameter_sets(&self, sets: &[Bytes], out: &mut Vec<Payload>) {
        let sets = || sets.iter().filter(|s| s.len() >= 2);
        let count = sets().count();
        if count == 0 {
            return;
        }
        let size = 2 + sets().map(|s| 2 + s.len()).sum::<usize>();
        if count > 1 && size <= self.max_payload && sets().all(|s| s.len() <= 0xffff) {
            // F is the OR of the aggregated units' F bits, LayerId and TID their lowest
            // (RFC 7798 4.4.2).
            let f = sets().fold(0, |f, s| f | (s[0] & 0x80));
            let layer = sets()
                .map(|s| (u16::from(s[0] & 1) << 5) | u16::from(s[1] >> 3))
                .min()
                .unwrap_or(0);
            let tid = sets().map(|s| s[1] & 7).min().unwrap_or(1);
            let mut ap = BytesMut::with_capacity(size);
            ap.put_u8(f | (AP << 1) | (layer >> 5) as u8);
            ap.put_u8((((layer & 0x1f) as u8) << 3) | tid);
            for s in sets() {
                ap.put_u16(s.len() as u16);
                ap.put_slice(s);
            }
            out.push(Payload {
                data: ap.freeze(),
                marker: false,
            });
        } else {
            for s in sets() {
                self.nal(s, 0..s.len(), out);
            }
        }
    }

    /// One NAL unit (`source[range]`, with its 2-byte header): a single NAL unit packet or
    /// FUs.
    fn nal(&self, source: &Bytes, range: Range<usize>, out: &mut Vec<Payload>) {
        if range.len() <= self.max_payload {
            out.push(Payload {
                data: source.slice(range),
                marker: false,
            });
            return;
        }
        let nal = &source[range];
        let (header, body) = ([nal[0], nal[1]], &nal[2..]);
        // The payload header is the NAL unit's with the type replaced by 49 (4.4.3).
        let indicator = [(header[0] & 0x81) | (FU << 1), header[1]];
        let kind = nal_type(nal);
        let fragments = body.len().div_ceil(self.max_payload - 3);
        let (base, longer) = (body.len() / fragments, body.len() % fragments);
        // All fragments in one allocation, shared by slicing.
        let mut buf = BytesMut::with_capacity(body.len() + 3 * fragments);
        let mut rest = body;
        let mut ends = Vec::with_capacity(fragments);
        for i in 0..fragments {
            let (chunk, tail) = rest.split_at(base + usize::from(i < longer));
            rest = tail;
            let start = if i == 0 { 0x80 } else { 0 };
            let end = if i == fragments - 1 { 0x40 } else { 0 };
            buf.put_slice(&indicator);
            buf.put_u8(start | end | kind);
            buf.put_slice(chunk);
            ends.push(buf.len());
        }
        let buf = buf.freeze();
        let mut start = 0;
        for end in ends {
            out.push(Payload {
                data: buf.slice(start..end),
                marker: false,
            });
            start = end;
        }
    }
}

impl NalUnitPayloads for H265Depacketizer {
    type AccessUnit = H265AccessUnit;

    fn framing(&mut self) -> &mut AccessUnitFraming {
        &mut self.framing
    }

    fn payload(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        H265Depacketizer::payload(self, packet)
    }

    fn abandon_fragment(&mut self) {
        H265Depacketizer::abandon_fragment(self)
    }

    fn damage(&mut self) {
        H265Depacketizer::damage(self)
    }

    fn finish(&mut self, out: &mut Vec<H265AccessUnit>) {
        H265Depacketizer::finish(self, out)
    }
}

#[cfg(test)]
mod tests;
