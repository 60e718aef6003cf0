//! AV1 over RTP, "RTP Payload Format For AV1" v1.0 (aomediacodec.github.io/av1-rtp-spec),
//! both ways; and the `av1C` record an AV1 track's config needs.
//!
//! A packet is a one-byte aggregation header (4.4: Z, the first OBU element continues one
//! from the last packet; Y, the last element continues in the next packet; W, the number of
//! elements, 0 meaning each has a length; N, the first packet of a coded video sequence) and
//! OBU elements, each an OBU with or without its own size field, most with a LEB128 length
//! before them. [`Av1Depacketizer`] joins fragments and turns a temporal unit (every packet of
//! one RTP timestamp, ended by the marker bit) into the "low overhead bitstream format" that
//! an MP4 `av01` sample holds (AV1 ISOBMFF binding 2.4): every OBU with obu_has_size_field=1;
//! temporal delimiters, tile lists and padding dropped (the RTP spec 5 says senders drop the
//! first two; the ISOBMFF binding wants none of them in samples).
//!
//! - A temporal unit is a keyframe when it holds a sequence header and its first frame
//!   header is a shown KEY_FRAME (AV1 5.9.2); the N bit is only a hint, since a decoder that
//!   starts there needs the sequence header anyway.
//! - Loss, a continuation without its start and any error drop temporal units until the next
//!   keyframe; [`Av1Depacketizer::waiting_for_keyframe`] says when to send a PLI.
//! - Empty payloads are padding (RFC 3550 5.1); lengths that overrun the packet, OBU
//!   headers with the forbidden bit and other contradictions are [`RtpError`]s.
//!
//! What is not supported: streams with a reduced still-picture header (no real-time sender
//! uses them) are read as if they had a full one, and scalable streams pass through with all
//! their layers (no operating point is chosen).
//!
//! [`Av1Packetizer`] sends a temporal unit as W=0 packets (every element has a length),
//! splitting OBUs across packets with Z/Y, N on the first packet of a keyframe, and the
//! track's sequence header before keyframes that lack one.

use crate::error::{malformed, RtpError};
use crate::h264::MAX_ACCESS_UNIT_BYTES;
use crate::packet::{CodedFrame, PacketRef, Payload};
use bytes::{BufMut, Bytes, BytesMut};

pub use switchyard_media::av1::{
    av1c_config_obus, Av1SequenceInfo, OBU_FRAME, OBU_FRAME_HEADER, OBU_PADDING,
    OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST,
};
use switchyard_media::av1::{leb128, leb128_len, obus, put_leb128, Obu};

/// RTP packets (in order, see [`crate::reorder`]) -> AV1 temporal units. See the module
/// documentation.
pub struct Av1Depacketizer {
    /// OBUs of the temporal unit in progress, low overhead format.
    tu: BytesMut,
    timestamp: Option<u32>,
    damaged: bool,
    /// Packets were lost with no temporal unit in progress: the next may lack its start.
    next_damaged: bool,
    /// An OBU element whose last packet is still to come (the packet before had Y set).
    fragment: Option<BytesMut>,
    has_sequence_header: bool,
    /// Whether the first frame header of the temporal unit is a KEY_FRAME after a sequence
    /// header, once seen.
    key_frame: Option<bool>,
    waiting_for_keyframe: bool,
}

impl Default for Av1Depacketizer {
    fn default() -> Self {
        Av1Depacketizer {
            tu: BytesMut::new(),
            timestamp: None,
            damaged: false,
            next_damaged: false,
            fragment: None,
            has_sequence_header: false,
            key_frame: None,
            waiting_for_keyframe: true,
        }
    }
}

impl Av1Depacketizer {
    /// Takes the next packet in sequence-number order and appends the temporal units it
    /// completes to `out`. `lost` > 0 when packets were lost just before this one.
    pub fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<CodedFrame>,
    ) -> Result<(), RtpError> {
        if lost > 0 {
            self.damage();
            self.fragment = None;
            self.next_damaged = true;
        }
        if packet.payload.is_empty() {
            return Ok(());
        }
        if self.timestamp != Some(packet.timestamp) {
            // A new timestamp is a new temporal unit, marker bit or not.
            self.finish(out);
            self.timestamp = Some(packet.timestamp);
            self.damaged = self.next_damaged;
        }
        self.next_damaged = false;
        let result = self.elements(&packet);
        if result.is_err() {
            self.fragment = None;
            self.damage();
        }
        if packet.marker {
            self.finish(out);
        }
        result
    }

    /// True until a keyframe arrives intact, at the start and after any loss or error: the
    /// caller should ask the sender for a keyframe (RTCP PLI) while this holds.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    fn damage(&mut self) {
        self.damaged = true;
        self.waiting_for_keyframe = true;
    }

    fn elements(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError> {
        let p = packet.payload;
        let header = p[0];
        let (z, y, w) = (
            header & 0x80 != 0,
            header & 0x40 != 0,
            usize::from((header >> 4) & 3),
        );
        let mut at = 1;
        let mut index = 0usize;
        while at < p.len() {
            index += 1;
            let len = if w != 0 && index == w {
                p.len() - at
            } else {
                let (len, n) = leb128(&p[at..]).ok_or_else(|| {
                    malformed(
                        packet,
                        "AV1 OBU element",
                        format!("bad LEB128 length at byte {at}"),
                    )
                })?;
                at += n;
                usize::try_from(len).unwrap_or(usize::MAX)
            };
            let element = p.get(at..at.saturating_add(len)).ok_or_else(|| {
                malformed(
                    packet,
                    "AV1 OBU element",
                    format!(
                        "length {len} at byte {at} overruns the packet ({} bytes)",
                        p.len()
                    ),
                )
            })?;
            at += len;
            let continues = index == 1 && z;
            let continued = (at >= p.len() || (w != 0 && index == w)) && y;
            if !continues && self.fragment.take().is_some() {
                // The packet before promised a continuation (Y) that this one lacks (Z).
                self.damage();
            }
            if continues {
                let Some(fragment) = self.fragment.as_mut() else {
                    // Its start was lost (or dropped after an error).
                    self.damage();
                    continue;
                };
                fragment.extend_from_slice(element);
            } else if continued {
                self.fragment = Some(BytesMut::from(element));
            }
            if self
                .fragment
                .as_ref()
                .is_some_and(|f| f.len() > MAX_ACCESS_UNIT_BYTES)
            {
                self.fragment = None;
                self.damage();
                return Err(RtpError::TooLarge {
                    sequence: packet.sequence,
                    timestamp: packet.timestamp,
                    size: MAX_ACCESS_UNIT_BYTES + 1,
                    max: MAX_ACCESS_UNIT_BYTES,
                });
            }
            if continued {
                continue;
            }
            if continues {
                let whole = self.fragment.take().expect("just extended").freeze();
                self.obu(packet, &whole)?;
            } else {
                self.obu(packet, element)?;
            }
        }
        if y && at == 1 {
            return Err(malformed(
                packet,
                "AV1 aggregation header",
                "Y set on a packet without OBU elements".into(),
            ));
        }
        Ok(())
    }

    /// One whole OBU element: appended to the temporal unit with its size field.
    fn obu(&mut self, packet: &PacketRef<'_>, element: &[u8]) -> Result<(), RtpError> {
        if self.damaged {
            return Ok(());
        }
        let obu = Obu::parse(element).map_err(|reason| malformed(packet, "AV1 OBU", reason))?;
        match obu.kind {
            OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING => return Ok(()),
            OBU_SEQUENCE_HEADER => self.has_sequence_header = true,
            OBU_FRAME_HEADER | OBU_FRAME if self.key_frame.is_none() => {
                // A decoder starting here needs the sequence header before the frame.
                self.key_frame = Some(self.has_sequence_header && is_key_frame_header(obu.payload));
            }
            _ => {}
        }
        if self.tu.len() + element.len() + 8 > MAX_ACCESS_UNIT_BYTES {
            let size = self.tu.len() + element.len();
            self.damage();
            return Err(RtpError::TooLarge {
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                size,
                max: MAX_ACCESS_UNIT_BYTES,
            });
        }
        obu.write(&mut self.tu);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<CodedFrame>) {
        let Some(timestamp) = self.timestamp.take() else {
            return;
        };
        if self.fragment.take().is_some() {
            // The temporal unit ended inside an OBU.
            self.damage();
        }
        let keyframe = self.key_frame == Some(true);
        if !self.damaged && !self.tu.is_empty() && (keyframe || !self.waiting_for_keyframe) {
            if keyframe {
                self.waiting_for_keyframe = false;
            }
            out.push(CodedFrame {
                timestamp,
                data: self.tu.split().freeze(),
                keyframe,
            });
        } else if !self.damaged && !self.tu.is_empty() {
            self.waiting_for_keyframe = true;
        }
        self.tu.clear();
        self.damaged = false;
        self.has_sequence_header = false;
        self.key_frame = None;
    }
}

/// Whether a frame header (the payload of an OBU_FRAME_HEADER or OBU_FRAME) starts a shown
/// KEY_FRAME: show_existing_frame = 0, frame_type = 0 (AV1 5.9.2, full sequence header).
fn is_key_frame_header(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0xe0 == 0)
}

/// AV1 temporal units -> RTP payloads. See the module documentation.
#[derive(Debug, Clone)]
pub struct Av1Packetizer {
    max_payload: usize,
}

impl Av1Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes.
    ///
    /// # Panics
    ///
    /// If `max_payload` is below 4 (a configuration error): an aggregation header, a length
    /// and one byte of an OBU must fit.
    pub fn new(max_payload: usize) -> Self {
        assert!(
            max_payload >= 4,
            "AV1 RTP payloads need at least 4 bytes, not {max_payload}"
        );
        Av1Packetizer { max_payload }
    }

    /// Packetizes one temporal unit in low overhead format, appending its payloads to `out`
    /// (marker on the last one). `config_obus` are the track's configOBUs (the `av1C` record
    /// after its first 4 bytes, see [`av1c_config_obus`]): a keyframe without a sequence
    /// header gets the one found there. Malformed OBUs are an error and append nothing.
    pub fn packetize(
        &self,
        tu: &[u8],
        keyframe: bool,
        config_obus: &[u8],
        out: &mut Vec<Payload>,
    ) -> Result<(), RtpError> {
        let bad = |reason: String| RtpError::BadFrame { offset: 0, reason };
        let mut elements: Vec<Obu<'_>> = Vec::new();
        for obu in obus(tu) {
            let obu = obu.map_err(bad)?;
            if !matches!(
                obu.kind,
                OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING
            ) {
                elements.push(obu);
            }
        }
        if keyframe && !elements.iter().any(|o| o.kind == OBU_SEQUENCE_HEADER) {
            let headers = obus(config_obus)
                .filter_map(Result::ok)
                .filter(|o| o.kind == OBU_SEQUENCE_HEADER);
            elements.splice(0..0, headers);
        }
        if elements.is_empty() {
            return Err(bad("a temporal unit without OBUs to send".into()));
        }
        let first = out.len();
        let mut packet = BytesMut::with_capacity(self.max_payload);
        packet.put_u8(0);
        // Whether the packet being built starts with the rest of an element (its Z bit).
        let mut z = false;
        for obu in &elements {
            let mut element = BytesMut::with_capacity(obu.element_len());
            element.put_u8(obu.header[0] & !0x02);
            element.put_slice(&obu.header[1..]);
            element.put_slice(obu.payload);
            let mut rest = &element[..];
            while !rest.is_empty() {
                let room = self.max_payload - packet.len();
                // The longest part whose length and bytes fit the room left.
                let mut take = rest.len().min(room.saturating_sub(1));
                while take > 0 && leb128_len(take as u64) + take > room {
                    take -= 1;
                }
                if take == 0 {
                    // No room for even a byte: the element starts in the next packet.
                    self.flush(&mut packet, z, false, out);
                    z = false;
                    continue;
                }
                put_leb128(&mut packet, take as u64);
                packet.put_slice(&rest[..take]);
                rest = &rest[take..];
                if !rest.is_empty() {
                    // The element goes on in the next packet.
                    self.flush(&mut packet, z, true, out);
                    z = true;
                }
            }
        }
        if packet.len() > 1 {
            self.flush(&mut packet, z, false, out);
        }
        if let Some(last) = out.last_mut() {
            last.marker = true;
        }
        if keyframe {
            let data = &mut out[first].data;
            let mut with_n = BytesMut::from(&data[..]);
            with_n[0] |= 0x08;
            *data = with_n.freeze();
        }
        Ok(())
    }

    /// Closes the packet being built. `z`: its first element continues the packet before;
    /// `y`: its last element continues in the next one.
    fn flush(&self, packet: &mut BytesMut, z: bool, y: bool, out: &mut Vec<Payload>) {
        if packet.len() <= 1 {
            return;
        }
        packet[0] = if z { 0x80 } else { 0 } | if y { 0x40 } else { 0 };
        out.push(Payload {
            data: packet.split().freeze(),
            marker: false,
        });
        packet.put_u8(0);
    }
}

/// The AV1CodecConfigurationRecord (`av1C`, AV1 ISOBMFF binding 2.3.3) of the first sequence
/// header in a temporal unit (low overhead format), with that header as its configOBUs;
/// `None` when the temporal unit has no readable sequence header.
pub fn av1c_from_temporal_unit(tu: &[u8]) -> Option<Bytes> {
    let obu = obus(tu)
        .map_while(Result::ok)
        .find(|o| o.kind == OBU_SEQUENCE_HEADER)?;
    let info = Av1SequenceInfo::parse(obu.payload)?;
    let mut out = BytesMut::new();
    out.put_u8(0x81); // marker, version 1
    out.put_u8(info.profile << 5 | info.level);
    out.put_u8(
        info.tier << 7
            | u8::from(info.high_bitdepth) << 6
            | u8::from(info.twelve_bit) << 5
            | u8::from(info.monochrome) << 4
            | info.subsampling.0 << 3
            | info.subsampling.1 << 2
            | info.chroma_sample_position,
    );
    out.put_u8(0); // no initial_presentation_delay
    obu.write(&mut out);
    Some(out.freeze())
}

/// Whether a temporal unit (low overhead format) is a keyframe as [`Av1Depacketizer`] decides
/// it: a sequence header and a shown KEY_FRAME first.
pub fn is_keyframe(tu: &[u8]) -> bool {
    let mut sequence_header = false;
    for obu in obus(tu).map_while(Result::ok) {
        match obu.kind {
            OBU_SEQUENCE_HEADER => sequence_header = true,
            OBU_FRAME_HEADER | OBU_FRAME => {
                return sequence_header && is_key_frame_header(obu.payload)
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const AOM_OBU: &[u8] = include_bytes!("../testdata/aom-av1.obu");

    /// The encoder's temporal units, split at temporal delimiters, delimiters removed.
    fn temporal_units() -> Vec<Vec<u8>> {
        switchyard_media::av1::temporal_units(AOM_OBU).unwrap()
    }

    fn send(
        d: &mut Av1Depacketizer,
        payloads: &[Payload],
        seq: &mut u16,
        timestamp: u32,
        out: &mut Vec<CodedFrame>,
    ) {
        for p in payloads {
            let packet = PacketRef {
                sequence: *seq,
                timestamp,
                marker: p.marker,
                payload: &p.data,
            };
            d.push(packet, 0, out).unwrap();
            *seq = seq.wrapping_add(1);
        }
    }

    #[test]
    fn round_trip_gives_the_encoded_temporal_units() {
        let units = temporal_units();
        assert_eq!(units.len(), 8);
        for max in [60, 1200] {
            let packetizer = Av1Packetizer::new(max);
            let mut d = Av1Depacketizer::default();
            let (mut out, mut seq) = (Vec::new(), 0);
            for (i, tu) in units.iter().enumerate() {
                let mut payloads = Vec::new();
                packetizer
                    .packetize(tu, is_keyframe(tu), &[], &mut payloads)
                    .unwrap();
                assert!(payloads.iter().all(|p| p.data.len() <= max));
                assert_eq!(payloads[0].data[0] & 0x08 != 0, i % 4 == 0, "N bit");
                send(&mut d, &payloads, &mut seq, i as u32 * 3600, &mut out);
            }
            assert_eq!(out.len(), 8);
            for (i, (f, tu)) in out.iter().zip(&units).enumerate() {
                assert_eq!(&f.data[..], &tu[..], "temporal unit {i}");
                assert_eq!(f.keyframe, i % 4 == 0, "temporal unit {i}");
            }
        }
    }

    #[test]
    fn sequence_header_gives_the_av1c_record() {
        let units = temporal_units();
        let av1c = av1c_from_temporal_unit(&units[0]).unwrap();
        // Main profile, 8-bit 4:2:0 (ffprobe: "Main").
        assert_eq!(av1c[0], 0x81);
        assert_eq!(av1c[1] >> 5, 0);
        assert_eq!(av1c[2] & 0x7c, 0x0c);
        let codec = switchyard_media::CodecConfig::Av1 { av1c: av1c.clone() };
        assert!(codec.rfc6381_codec().starts_with("av01.0."));
        assert_eq!(av1c_config_obus(&av1c)[0] >> 3 & 0x0f, OBU_SEQUENCE_HEADER);
        let (seq, _) = Obu::parse_sized(av1c_config_obus(&av1c)).unwrap();
        let info = Av1SequenceInfo::parse(seq.payload).unwrap();
        assert_eq!((info.max_width, info.max_height), (160, 120));
        assert_eq!(av1c_from_temporal_unit(&units[1]), None);
    }

    #[test]
    fn keyframes_without_a_sequence_header_get_the_tracks() {
        let units = temporal_units();
        let av1c = av1c_from_temporal_unit(&units[0]).unwrap();
        let mut bare = Vec::new();
        for obu in obus(&units[0]).map(Result::unwrap) {
            if obu.kind != OBU_SEQUENCE_HEADER {
                let mut b = BytesMut::new();
                obu.write(&mut b);
                bare.extend_from_slice(&b);
            }
        }
        let mut payloads = Vec::new();
        Av1Packetizer::new(1200)
            .packetize(&bare, true, av1c_config_obus(&av1c), &mut payloads)
            .unwrap();
        let (mut d, mut out, mut seq) = (Av1Depacketizer::default(), Vec::new(), 0);
        send(&mut d, &payloads, &mut seq, 0, &mut out);
        assert_eq!(&out[0].data[..], &units[0][..]);
    }

    #[test]
    fn hand_built_packets_with_w_z_y_and_size_fields() {
        // Packet 1: W=2; a sequence-header-like OBU without size field (length-prefixed),
        // then the first part of a frame OBU (the rest of the packet), continued (Y).
        // Packet 2: Z, W=1: the frame OBU's last part. The frame OBU's header says KEY_FRAME.
        let seq_header = [0x08, 0xaa, 0xbb];
        let p1 = [&[0x60, 3][..], &seq_header, &[0x30, 0x10, 0x01]].concat();
        let p2 = [0x90, 0x02, 0x03];
        // Packet 3 (next temporal unit): W=0, one element with its own size field and a
        // temporal delimiter, which is dropped.
        let p3 = [0x00, 2, 0x12, 0x00, 4, 0x32, 2, 0x20, 0x05];
        let mut d = Av1Depacketizer::default();
        let mut out = Vec::new();
        let pk = |payload: &[u8], ts, marker| (payload.to_vec(), ts, marker);
        for (payload, ts, marker) in [pk(&p1, 0, false), pk(&p2, 0, true), pk(&p3, 3000, true)] {
            let packet = PacketRef {
                sequence: 0,
                timestamp: ts,
                marker,
                payload: &payload,
            };
            d.push(packet, 0, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert_eq!(
            &out[0].data[..],
            &[0x0a, 2, 0xaa, 0xbb, 0x32, 4, 0x10, 0x01, 0x02, 0x03]
        );
        assert!(out[0].keyframe);
        assert_eq!(&out[1].data[..], &[0x32, 2, 0x20, 0x05]);
        assert!(!out[1].keyframe);
    }

    #[test]
    fn loss_drops_temporal_units_until_the_next_keyframe() {
        let units = temporal_units();
        let packetizer = Av1Packetizer::new(200);
        let mut d = Av1Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 0u16;
        for (i, tu) in units.iter().enumerate() {
            let mut payloads = Vec::new();
            packetizer
                .packetize(tu, is_keyframe(tu), &[], &mut payloads)
                .unwrap();
            for (j, p) in payloads.iter().enumerate() {
                seq = seq.wrapping_add(1);
                if i == 1 && j == 0 {
                    continue; // lost
                }
                let packet = PacketRef {
                    sequence: seq,
                    timestamp: i as u32 * 3600,
                    marker: p.marker,
                    payload: &p.data,
                };
                let lost = u16::from(i == 1 && j == 1);
                d.push(packet, lost, &mut out).unwrap();
            }
        }
        assert_eq!(out.len(), 5, "unit 0, then 4-7");
        assert_eq!(&out[1].data[..], &units[4][..]);
        assert!(out[1].keyframe);
    }

    #[test]
    fn truncated_and_absurd_packets_are_errors() {
        let mut d = Av1Depacketizer::default();
        let mut out = Vec::new();
        for bad in [
            &[0x00, 5, 0x30][..],                                          // length overruns
            &[0x00, 0x80],                                                 // LEB128 cut short
            &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // LEB128 too long
            &[0x10, 0x80, 0x00],                                           // forbidden bit
            &[0x10, 0x34],       // extension header cut short
            &[0x10, 0x32, 9, 1], // OBU size overruns the element
            &[0x40],             // Y without elements
        ] {
            let packet = PacketRef {
                sequence: 1,
                timestamp: 0,
                marker: true,
                payload: bad,
            };
            assert!(d.push(packet, 0, &mut out).is_err(), "{bad:?}");
        }
        // Hundreds of empty elements in a damaged temporal unit (found by fuzzing).
        let mut many = vec![0u8; 400];
        many[0] = 0x00;
        let packet = PacketRef {
            sequence: 5,
            timestamp: 7,
            marker: false,
            payload: &many,
        };
        let _ = d.push(packet, 1, &mut out);
        // A continuation without its start: dropped, no error.
        let packet = PacketRef {
            sequence: 2,
            timestamp: 1,
            marker: true,
            payload: &[0x90, 0x01],
        };
        d.push(packet, 0, &mut out).unwrap();
        assert!(out.is_empty() && d.waiting_for_keyframe());
        assert!(Av1Packetizer::new(100)
            .packetize(&[0x30, 5, 1], false, &[], &mut Vec::new())
            .is_err());
    }
}
