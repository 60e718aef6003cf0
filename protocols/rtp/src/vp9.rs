//! VP9 over RTP, RFC 9628, both ways; and the `vpcC` record a VP9 track's config needs.
//!
//! Every packet starts with a payload descriptor (RFC 9628 4.2): a first byte of I (PictureID
//! present), P (inter-picture predicted), L (layer indices present), F (flexible mode), B
//! (start of a frame), E (end of a frame), V (scalability structure present) and Z flags,
//! followed by the PictureID (7 or 15 bits), the layer indices (with TL0PICIDX in
//! non-flexible mode), up to three reference differences (P_DIFF, flexible mode) and the
//! scalability structure (SS, 4.2.1). [`Vp9Depacketizer`] reads both modes and joins the
//! packets from B to E into a frame.
//!
//! What is supported: one spatial layer, any number of temporal layers. Packets of spatial
//! layers above the base one (SID > 0) are skipped, so an SVC sender gives its base layer,
//! which decodes alone. (Joining the layers of a picture would need a VP9 superframe index
//! written around them.) Browsers send one spatial layer unless an SVC scalability mode was
//! asked for.
//!
//! - A keyframe is a frame whose first packet has P=0, on the base layer.
//! - Loss or an error drops frames until the next keyframe (see `assembler`);
//!   [`Vp9Depacketizer::waiting_for_keyframe`] says when to send a PLI.
//! - Empty payloads are padding (RFC 3550 5.1); descriptors cut short are [`RtpError`]s.
//!
//! [`Vp9Packetizer`] writes flexible mode for one layer: a 15-bit PictureID, P_DIFF=1 on inter
//! frames (each frame depends on the one before; conservative, and exactly what a receiver
//! that drops to a keyframe after loss needs), and on keyframes the scalability structure
//! with the picture size, which Chromium uses to size its decoder.
//!
//! [`Vp9KeyframeInfo`] (from `switchyard_media::vp9`) reads a keyframe's uncompressed header
//! (VP9 bitstream specification 6.2) for the `vpcC` record (VP Codec ISO Media File Format
//! Binding 2.2).

use crate::assembler::Assembler;
use crate::error::{malformed, RtpError};
use crate::packet::{CodedFrame, PacketRef, Payload};
use bytes::{BufMut, BytesMut};
pub use switchyard_media::vp9::Vp9KeyframeInfo;

/// RTP packets (in order, see [`crate::reorder`]) -> VP9 frames. See the module documentation.
#[derive(Default)]
pub struct Vp9Depacketizer {
    frame: Assembler,
}

/// The parts of a payload descriptor the depacketizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Descriptor {
    len: usize,
    start: bool,
    end: bool,
    predicted: bool,
    spatial_id: u8,
}

impl Vp9Depacketizer {
    /// Takes the next packet in sequence-number order and appends the frames it completes to
    /// `out`. `lost` > 0 when packets were lost just before this one.
    pub fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<CodedFrame>,
    ) -> Result<(), RtpError> {
        if lost > 0 {
            self.frame.lost();
        }
        if packet.payload.is_empty() {
            return Ok(());
        }
        let d = match descriptor(&packet) {
            Ok(d) => d,
            Err(e) => {
                self.frame.damage();
                return Err(e);
            }
        };
        if d.spatial_id > 0 {
            // Upper spatial layers are not taken (see the module documentation); the
            // marker of the picture is on them, so the base frame ended at its E bit.
            return Ok(());
        }
        if d.start {
            self.frame.start(packet.timestamp, !d.predicted, out);
        }
        let result = self.frame.append(&packet, &packet.payload[d.len..]);
        if (d.end || packet.marker) && self.frame.in_frame() {
            self.frame.finish(out);
        }
        result
    }

    /// True until a keyframe arrives intact, at the start and after any loss or error: the
    /// caller should ask the sender for a keyframe (RTCP PLI) while this holds.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.frame.waiting_for_keyframe()
    }
}

fn descriptor(packet: &PacketRef<'_>) -> Result<Descriptor, RtpError> {
    let p = packet.payload;
    let mut at = 1;
    let byte = |at: &mut usize, what: &'static str| -> Result<u8, RtpError> {
        let b = p.get(*at).copied().ok_or_else(|| {
            malformed(
                packet,
                "VP9 payload descriptor",
                format!("cut short in its {what} at byte {at}"),
            )
        })?;
        *at += 1;
        Ok(b)
    };
    let first = p[0];
    let (i, predicted, l, f, v) = (
        first & 0x80 != 0,
        first & 0x40 != 0,
        first & 0x20 != 0,
        first & 0x10 != 0,
        first & 0x02 != 0,
    );
    if i && byte(&mut at, "PictureID")? & 0x80 != 0 {
        byte(&mut at, "PictureID")?;
    }
    let mut spatial_id = 0;
    if l {
        spatial_id = byte(&mut at, "layer indices")? >> 1 & 0x07;
        if !f {
            byte(&mut at, "TL0PICIDX")?;
        }
    }
    if f && predicted {
        // Up to three P_DIFFs, each with an N bit saying another follows.
        let mut count = 0;
        while byte(&mut at, "P_DIFF")? & 1 != 0 {
            count += 1;
            if count == 3 {
                return Err(malformed(
                    packet,
                    "VP9 payload descriptor",
                    "more than 3 reference indices (P_DIFF)".into(),
                ));
            }
        }
    }
    if v {
        let ss = byte(&mut at, "scalability structure")?;
        let layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            at += 4 * layers; // WIDTH and HEIGHT per spatial layer
        }
        if ss & 0x08 != 0 {
            let pictures = byte(&mut at, "scalability structure")?;
            for _ in 0..pictures {
                let refs = byte(&mut at, "picture group")? >> 2 & 0x03;
                at += usize::from(refs);
            }
        }
        if at > p.len() {
            return Err(malformed(
                packet,
                "VP9 payload descriptor",
                format!(
                    "the scalability structure needs {at} bytes, the packet has {}",
                    p.len()
                ),
            ));
        }
    }
    Ok(Descriptor {
        len: at,
        start: first & 0x08 != 0,
        end: first & 0x04 != 0,
        predicted,
        spatial_id,
    })
}

/// VP9 frames -> RTP payloads (RFC 9628, flexible mode, one layer).
#[derive(Debug, Clone)]
pub struct Vp9Packetizer {
    max_payload: usize,
    picture_id: u16,
}

/// Longest descriptor [`Vp9Packetizer`] writes: flags, PictureID, SS with one size.
const MAX_DESCRIPTOR_LEN: usize = 8;

impl Vp9Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes.
    ///
    /// # Panics
    ///
    /// If `max_payload` leaves no room for data after the descriptor (a configuration error).
    pub fn new(max_payload: usize) -> Self {
        assert!(
            max_payload > MAX_DESCRIPTOR_LEN,
            "VP9 RTP payloads need more than {MAX_DESCRIPTOR_LEN} bytes, not {max_payload}"
        );
        Vp9Packetizer {
            max_payload,
            picture_id: 0,
        }
    }

    /// Packetizes one frame, appending its payloads to `out` (marker on the last one). Each
    /// call is the next picture: the PictureID counts up. `keyframe` as the bus says; a
    /// keyframe's first packet carries the picture size when its header tells it.
    pub fn packetize(
        &mut self,
        frame: &[u8],
        keyframe: bool,
        out: &mut Vec<Payload>,
    ) -> Result<(), RtpError> {
        if frame.is_empty() {
            return Err(RtpError::BadFrame {
                offset: 0,
                reason: "an empty VP9 frame".into(),
            });
        }
        let id = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let size = if keyframe {
            Vp9KeyframeInfo::parse(frame).map(|i| (i.width, i.height))
        } else {
            None
        };
        let chunk = self.max_payload - MAX_DESCRIPTOR_LEN;
        let count = frame.len().div_ceil(chunk);
        let part_size = frame.len().div_ceil(count);
        for (i, part) in frame.chunks(part_size).enumerate() {
            let (first, last) = (i == 0, i + 1 == count);
            let mut data = BytesMut::with_capacity(MAX_DESCRIPTOR_LEN + part.len());
            let ss = first && keyframe;
            data.put_u8(
                0x90 // I, F
                    | if keyframe { 0 } else { 0x40 }
                    | if first { 0x08 } else { 0 }
                    | if last { 0x04 } else { 0 }
                    | if ss { 0x02 } else { 0 },
            );
            data.put_u16(0x8000 | id);
            if !keyframe {
                data.put_u8(1 << 1); // P_DIFF=1, N=0
            }
            if ss {
                match size {
                    Some((w, h)) => {
                        data.put_u8(0x10); // one spatial layer, Y: its size follows
                        data.put_u16(w as u16);
                        data.put_u16(h as u16);
                    }
                    None => data.put_u8(0x00),
                }
            }
            data.put_slice(part);
            out.push(Payload {
                data: data.freeze(),
                marker: last,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;
    use crate::testutil::{
        assert_frames_are_ivf, depacketize_all, read_ivf, read_rfc4571, Captured,
    };

    const GST_RTP: &[u8] = include_bytes!("../testdata/gst-vp9.rtp");
    const GST_IVF: &[u8] = include_bytes!("../testdata/gst-vp9.ivf");

    fn depacketize(packets: &[Captured]) -> Vec<CodedFrame> {
        let mut d = Vp9Depacketizer::default();
        depacketize_all(packets, 16, |p, lost, out| d.push(p, lost, out))
    }

    #[test]
    fn gstreamer_capture_gives_the_encoded_frames() {
        let packets = read_rfc4571(GST_RTP);
        assert!(packets.len() > 12, "frames span several packets");
        let frames = depacketize(&packets);
        assert_eq!(frames.len(), 12);
        assert_frames_are_ivf(&frames, GST_IVF, 6);
    }

    #[test]
    fn reordered_packets_give_the_same_frames() {
        let mut packets = read_rfc4571(GST_RTP);
        let mut rng = 5u64;
        for run in packets[1..].chunks_mut(6) {
            for i in (1..run.len()).rev() {
                run.swap(i, (xorshift(&mut rng) % (i as u64 + 1)) as usize);
            }
        }
        assert_eq!(depacketize(&packets), depacketize(&read_rfc4571(GST_RTP)));
    }

    #[test]
    fn loss_drops_frames_until_the_next_keyframe() {
        let mut packets = read_rfc4571(GST_RTP);
        packets.remove(2);
        let frames = depacketize(&packets);
        assert_eq!(frames.len(), 6);
        assert!(frames[0].keyframe);
        assert_eq!(&frames[0].data[..], &read_ivf(GST_IVF)[6][..]);
    }

    #[test]
    fn keyframe_header_gives_the_vpcc_record() {
        let golden = read_ivf(GST_IVF);
        let info = Vp9KeyframeInfo::parse(&golden[0]).unwrap();
        assert_eq!(
            (info.profile, info.bit_depth, info.subsampling),
            (0, 8, (1, 1))
        );
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(Vp9KeyframeInfo::parse(&golden[1]), None, "not a keyframe");
        let vpcc = info.vpcc();
        assert_eq!(&vpcc[..7], &[1, 0, 0, 0, 0, 20, 0x82]);
    }

    #[test]
    fn round_trip_through_the_packetizer() {
        let golden = read_ivf(GST_IVF);
        let mut packetizer = Vp9Packetizer::new(300);
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 0u16;
        for (i, frame) in golden.iter().enumerate() {
            let mut payloads = Vec::new();
            packetizer
                .packetize(frame, i % 6 == 0, &mut payloads)
                .unwrap();
            assert!(payloads.iter().all(|p| p.data.len() <= 300));
            if i == 0 {
                // I, F, B, V; PictureID 0; SS: one layer of 320x240.
                assert_eq!(
                    &payloads[0].data[..8],
                    &[0x9a, 0x80, 0, 0x10, 1, 64, 0, 240]
                );
            }
            for p in payloads {
                let packet = PacketRef {
                    sequence: seq,
                    timestamp: i as u32 * 3000,
                    marker: p.marker,
                    payload: &p.data,
                };
                d.push(packet, 0, &mut out).unwrap();
                seq += 1;
            }
        }
        let data: Vec<&[u8]> = out.iter().map(|f| &f.data[..]).collect();
        let golden: Vec<&[u8]> = golden.iter().map(|f| &f[..]).collect();
        assert_eq!(data, golden);
        assert!(out[0].keyframe && !out[1].keyframe);
    }

    #[test]
    fn upper_spatial_layers_are_skipped() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let p = |payload: &'static [u8], marker| PacketRef {
            sequence: 1,
            timestamp: 0,
            marker,
            payload,
        };
        // Non-flexible: L with SID 0 then SID 1, each B and E.
        d.push(p(&[0x2c, 0x00, 0x00, 0x82, 0x49], false), 0, &mut out)
            .unwrap();
        d.push(p(&[0x2c, 0x02, 0x00, 0x99], true), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &[0x82, 0x49]);
    }

    #[test]
    fn truncated_and_absurd_packets_are_errors() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let p = |payload: &'static [u8]| PacketRef {
            sequence: 1,
            timestamp: 0,
            marker: true,
            payload,
        };
        for bad in [
            &[0x80][..],
            &[0x88, 0x80],
            &[0x28],
            &[0x58, 0x03, 0x03, 0x03, 0x03],
            &[0x0a, 0xf0],
            &[0x0a, 0x18, 0, 1],
            &[0x0a, 0x08, 3, 0x0c],
        ] {
            assert!(d.push(p(bad), 0, &mut out).is_err(), "{bad:?}");
        }
        d.push(p(&[0x04, 1, 2]), 0, &mut out).unwrap();
        assert!(out.is_empty() && d.waiting_for_keyframe());
        d.push(p(&[0x0c, 0x82]), 0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }
}
