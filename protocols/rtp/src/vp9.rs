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
//! Spatial layers (SVC, e.g. Chromium's `scalabilityMode: 'L2T1'` or `'L3T3_KEY'`): the
//! layer frames of a picture (one RTP timestamp, SID 0, 1, ... in order, each from B to E)
//! are joined into one frame per picture, a VP9 superframe (bitstream specification Annex
//! B) whose lower layers are marked hidden (see [`switchyard_media::vp9_svc`]): every VP9
//! decoder (libvpx, FFmpeg's, Chromium's in MSE) then shows each picture once, at the top
//! layer's size, and outputs that take frames whole (RTMP, fMP4) need nothing of their own.
//! The picture ends at the marker bit (RFC 9628: set on its last packet) or, without layer
//! indices, at E; a picture whose sender dropped its upper layers is just shorter, and one
//! whose layer counts change (Chromium adds its upper layer a moment after it starts) needs
//! no new keyframe. Any number of temporal layers are taken as they come.
//!
//! - A keyframe is a frame whose first packet has P=0, on the base layer.
//! - Loss or an error drops frames until the next keyframe (see `assembler`);
//!   [`Vp9Depacketizer::waiting_for_keyframe`] says when to send a PLI.
//! - Empty payloads are padding (RFC 3550 5.1); descriptors cut short are [`RtpError`]s.
//!
//! [`Vp9Packetizer`] writes flexible mode: a 15-bit PictureID, P_DIFF=1 on inter pictures
//! (each picture depends on the one before; conservative, and exactly what a receiver that
//! drops to a keyframe after loss needs), and on keyframes (and when the number of layers
//! changes) the scalability structure with the picture sizes, which Chromium uses to size its
//! decoder. A picture joined from spatial layers goes out as its layer frames again (layer
//! indices with SID and D, B and E per layer frame, the marker on the picture's last packet).
//!
//! [`Vp9KeyframeInfo`] (from `switchyard_media::vp9`) reads a keyframe's uncompressed header
//! (VP9 bitstream specification 6.2) for the `vpcC` record (VP Codec ISO Media File Format
//! Binding 2.2).

use crate::assembler::Assembler;
use crate::error::{malformed, RtpError};
use crate::packet::{CodedFrame, PacketRef, Payload};
use bytes::{BufMut, BytesMut};
pub use switchyard_media::vp9::Vp9KeyframeInfo;
use switchyard_media::vp9_svc::{svc_layers, Joined, RefSizes, SvcPictures};

/// RTP packets (in order, see [`crate::reorder`]) -> VP9 frames (one per picture). See the
/// module documentation.
#[derive(Default)]
pub struct Vp9Depacketizer {
    frame: Assembler,
    /// Where each complete layer frame of the picture in progress ends in its data.
    layer_ends: Vec<usize>,
    /// SID of the last layer frame started in the picture in progress.
    spatial_id: Option<u8>,
    /// A layer frame of the picture in progress has started and not ended (E) yet.
    layer_open: bool,
    /// Joins the layer frames of pictures (and follows the reference slots through all).
    svc: SvcPictures,
}

/// The parts of a payload descriptor the depacketizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Descriptor {
    len: usize,
    start: bool,
    end: bool,
    predicted: bool,
    /// Layer indices present (L).
    layered: bool,
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
        if d.start {
            let same_picture = self.frame.timestamp() == Some(packet.timestamp);
            let next_layer = !self.layer_open && self.spatial_id.is_some_and(|s| d.spatial_id > s);
            if same_picture && next_layer {
                // The next spatial layer frame of the picture in progress.
                self.spatial_id = Some(d.spatial_id);
                self.layer_open = true;
            } else if same_picture || d.spatial_id > 0 {
                // A layer frame again or out of order, or an upper layer whose picture's
                // lower layers were lost: nothing of this picture can be trusted.
                self.frame.damage();
                self.spatial_id = None;
                self.layer_open = false;
                return Ok(());
            } else {
                if self.frame.in_frame() {
                    self.finish_picture(out); // its end (marker) was lost or never sent
                }
                self.frame
                    .start(packet.timestamp, !d.predicted && d.spatial_id == 0, out);
                self.layer_ends.clear();
                self.spatial_id = Some(d.spatial_id);
                self.layer_open = true;
            }
        }
        let result = self.frame.append(&packet, &packet.payload[d.len..]);
        if d.end && self.layer_open && self.frame.intact() {
            self.layer_ends.push(self.frame.len());
            self.layer_open = false;
        }
        // The picture ends with the marker bit (RFC 9628 4.1: on its last packet), or with the
        // end of a frame without layer indices (one layer). The scalability structure's layer
        // count does not tell: a sender adds and drops layers between two of them.
        if (packet.marker || (d.end && !d.layered)) && self.frame.in_frame() {
            self.finish_picture(out);
        }
        result
    }

    /// Hands out the picture in progress: its layer frames as a superframe (VP9 bitstream
    /// specification Annex B) when it has several, the lower ones hidden (see
    /// [`switchyard_media::vp9_svc`]), which decoders split again and show once.
    fn finish_picture(&mut self, out: &mut Vec<CodedFrame>) {
        if self.layer_open || self.layer_ends.is_empty() {
            // A layer frame without its end (E): unusable.
            self.frame.damage();
        }
        let before = out.len();
        self.frame.finish(out);
        if let Some(picture) = out.get_mut(before) {
            let data = picture.data.clone();
            let mut start = 0;
            let layers: Vec<&[u8]> = self
                .layer_ends
                .iter()
                .map(|&end| {
                    let layer = &data[start..end];
                    start = end;
                    layer
                })
                .collect();
            if let Some(Joined::Hidden(data) | Joined::AsSent(data)) = self.svc.join(&layers) {
                picture.data = data.into();
            }
        }
        self.layer_ends.clear();
        self.spatial_id = None;
        self.layer_open = false;
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
        if ss & 0x10 != 0 {
            at += 4 * usize::from((ss >> 5) + 1); // WIDTH and HEIGHT per spatial layer
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
        layered: l,
        spatial_id,
    })
}

/// VP9 frames -> RTP payloads (RFC 9628, flexible mode; the spatial layers of a superframe
/// as layer frames).
#[derive(Debug, Clone)]
pub struct Vp9Packetizer {
    max_payload: usize,
    picture_id: u16,
    /// Spatial layers the last scalability structure sent announced.
    signalled_layers: Option<usize>,
    /// The reference slots' picture sizes, through every frame packetized.
    refs: RefSizes,
}

/// Longest descriptor [`Vp9Packetizer`] writes: flags, PictureID, layer indices, P_DIFF, and
/// SS with the sizes of 8 layers.
const MAX_DESCRIPTOR_LEN: usize = 6 + 4 * 8;

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
            signalled_layers: None,
            refs: RefSizes::default(),
        }
    }

    /// Packetizes one picture, appending its payloads to `out` (marker on the last one). Each
    /// call is the next picture: the PictureID counts up. `keyframe` as the bus says.
    ///
    /// A superframe of hidden frames of growing size and a shown top frame is an SVC picture
    /// (what [`Vp9Depacketizer`] makes of spatial layers, see
    /// [`switchyard_media::vp9_svc::svc_layers`]): each frame goes out as the layer frame of
    /// its spatial layer (L with SID 0, 1, ...; D=1 above the base, as a layer may predict
    /// from the one below), all under one PictureID, the marker on the picture's last packet.
    /// Any other frame, libvpx's alt-ref superframes included, goes out whole as one layer
    /// frame. The scalability structure goes with keyframes and whenever the number of
    /// layers changes, with each layer's picture size when known (Chromium sizes its decoder
    /// from it).
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
        // Each layer frame with its picture size when known.
        type Size = Option<(u32, u32)>;
        let (layers, sizes): (Vec<&[u8]>, Vec<Size>) = match svc_layers(frame, &mut self.refs) {
            Some(layers) => layers.into_iter().map(|(l, size)| (l, Some(size))).unzip(),
            None => {
                let size = keyframe
                    .then(|| Vp9KeyframeInfo::parse(frame).map(|i| (i.width, i.height)))
                    .flatten();
                (vec![frame], vec![size])
            }
        };
        let count = layers.len();
        let ss = if keyframe || self.signalled_layers.is_some_and(|n| n != count) {
            self.signalled_layers = Some(count);
            let sizes: Option<Vec<(u32, u32)>> = sizes.iter().copied().collect();
            let mut ss = vec![(count as u8 - 1) << 5 | if sizes.is_some() { 0x10 } else { 0 }];
            for (w, h) in sizes.unwrap_or_default() {
                ss.extend_from_slice(&(w as u16).to_be_bytes());
                ss.extend_from_slice(&(h as u16).to_be_bytes());
            }
            Some(ss)
        } else {
            None
        };
        for (sid, layer) in layers.iter().enumerate() {
            let last_layer = sid + 1 == count;
            let ss = if sid == 0 { ss.as_deref() } else { None };
            // Flags and PictureID, layer indices, P_DIFF, SS.
            let descriptor_len =
                3 + usize::from(count > 1) + usize::from(!keyframe) + ss.map_or(0, <[u8]>::len);
            let chunk = self.max_payload - descriptor_len;
            let packets = layer.len().div_ceil(chunk);
            let part_size = layer.len().div_ceil(packets);
            for (i, part) in layer.chunks(part_size).enumerate() {
                let (first, last) = (i == 0, i + 1 == packets);
                let ss = ss.filter(|_| first);
                let mut data = BytesMut::with_capacity(descriptor_len + part.len());
                data.put_u8(
                    0x90 // I, F
                        | if keyframe { 0 } else { 0x40 }
                        | if count > 1 { 0x20 } else { 0 }
                        | if first { 0x08 } else { 0 }
                        | if last { 0x04 } else { 0 }
                        | if ss.is_some() { 0x02 } else { 0 },
                );
                data.put_u16(0x8000 | id);
                if count > 1 {
                    // TID 0, U 0, SID, D.
                    data.put_u8((sid as u8) << 1 | u8::from(sid > 0));
                }
                if !keyframe {
                    data.put_u8(1 << 1); // P_DIFF=1, N=0
                }
                if let Some(ss) = ss {
                    data.put_slice(ss);
                }
                data.put_slice(part);
                out.push(Payload {
                    data: data.freeze(),
                    marker: last && last_layer,
                });
            }
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
    use switchyard_media::vp9::{superframe_frames, superframe_index};

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

    fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> PacketRef<'_> {
        PacketRef {
            sequence,
            timestamp,
            marker,
            payload,
        }
    }

    /// Non-flexible mode, one packet per layer frame: the two layer frames of a picture
    /// come out as one superframe.
    #[test]
    fn upper_spatial_layers_join_their_picture_in_a_superframe() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        // L with SID 0 then SID 1, each B and E; the marker on the last.
        d.push(
            packet(1, 0, false, &[0x2c, 0x00, 0x00, 0x82, 0x49]),
            0,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty(), "the picture goes on");
        d.push(packet(2, 0, true, &[0x2c, 0x02, 0x00, 0x99]), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &[0x82, 0x49, 0x99, 0xc1, 2, 1, 0xc1]);
        assert!(out[0].keyframe);
        let frames = superframe_frames(&out[0].data).unwrap();
        assert_eq!(frames, vec![0..2, 2..3]);
    }

    /// What Chromium sends for `scalabilityMode: 'L2T1'` (flexible mode, captured here): a
    /// keyframe picture whose base layer has the scalability structure (two layers, 640x360
    /// and 1280x720), an upper layer predicted from the base only (P=0, D=1), and inter
    /// pictures; the marker is on the last packet of the upper layer.
    #[test]
    fn chromium_l2t1_pictures_become_superframes() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let key_base = [
            0xfa & !0x40,
            0xd9,
            0x20,
            0x10, // I F B V; PictureID; TID 0, U, SID 0
            0x30,
            0x02,
            0x80,
            0x01,
            0x68,
            0x05,
            0x00,
            0x02,
            0xd0, // SS: 2 layers, Y
            1,
            2,
            3,
        ];
        d.push(packet(1, 90, false, &key_base), 0, &mut out)
            .unwrap();
        d.push(
            packet(2, 90, false, &[0xb4, 0xd9, 0x20, 0x10, 4]),
            0,
            &mut out,
        ) // E
        .unwrap();
        d.push(
            packet(3, 90, false, &[0xb9, 0xd9, 0x20, 0x13, 5, 6]),
            0,
            &mut out,
        ) // B, SID 1, D
        .unwrap();
        assert!(out.is_empty());
        d.push(
            packet(4, 90, true, &[0xb5, 0xd9, 0x20, 0x13, 7]),
            0,
            &mut out,
        ) // E, marker
        .unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(&out[0].data[..], &[1, 2, 3, 4, 5, 6, 7, 0xc1, 4, 3, 0xc1]);
        // An inter picture (P, P_DIFF 1 on both layers).
        d.push(
            packet(5, 180, false, &[0xfc, 0xd9, 0x21, 0x10, 0x02, 8]),
            0,
            &mut out,
        )
        .unwrap();
        d.push(
            packet(6, 180, true, &[0xfd, 0xd9, 0x21, 0x13, 0x02, 9]),
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert!(!out[1].keyframe);
        assert_eq!(&out[1].data[..], &[8, 9, 0xc1, 1, 1, 0xc1]);
        // A picture whose marker was not set: the next picture's start ends it.
        d.push(
            packet(7, 270, false, &[0xfc, 0xd9, 0x22, 0x10, 0x02, 10]),
            0,
            &mut out,
        )
        .unwrap();
        d.push(
            packet(8, 270, false, &[0xfd, 0xd9, 0x22, 0x13, 0x02, 11]),
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        // A picture with its base layer only (the sender dropped the upper one): the marker
        // on the base layer ends it.
        d.push(
            packet(9, 360, true, &[0xfc, 0xd9, 0x23, 0x10, 0x02, 12]),
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(&out[2].data[..], &[10, 11, 0xc1, 1, 1, 0xc1]);
        assert_eq!(&out[3].data[..], &[12]);
    }

    /// Chromium's VP9 with `scalabilityMode: 'L2T1'`: five pictures of two layer frames
    /// (640x360, 1280x720) as the depacketizer joined them, every layer shown
    /// (fixtures/README.md).
    const CHROMIUM_L2T1: &[u8] = include_bytes!("../../../fixtures/chromium-vp9-l2t1.ivf");

    /// The bus's pictures of the capture: superframes whose base layer is hidden.
    fn chromium_pictures() -> Vec<Vec<u8>> {
        let mut joiner = SvcPictures::default();
        read_ivf(CHROMIUM_L2T1)
            .iter()
            .map(|p| {
                let layers: Vec<&[u8]> = superframe_frames(p)
                    .unwrap()
                    .into_iter()
                    .map(|r| &p[r])
                    .collect();
                match joiner.join(&layers) {
                    Some(Joined::Hidden(data)) => data,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    /// An SVC picture goes out as spatial layers (SID 0 and 1, D on the upper one, one
    /// PictureID, the marker on the picture's last packet, the SS announcing both sizes on the
    /// keyframe) and comes back as the same superframe.
    #[test]
    fn spatial_layers_round_trip_through_the_packetizer() {
        let pictures = chromium_pictures();
        let mut packetizer = Vp9Packetizer::new(1200);
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 0u16;
        for (i, picture) in pictures.iter().enumerate() {
            let mut payloads = Vec::new();
            packetizer
                .packetize(picture, i == 0, &mut payloads)
                .unwrap();
            assert!(payloads.iter().all(|p| p.data.len() <= 1200));
            let sids: Vec<u8> = payloads.iter().map(|p| p.data[3] >> 1 & 7).collect();
            let upper = sids.iter().position(|&s| s == 1).expect("an upper layer");
            assert!(sids[upper..].iter().all(|&s| s == 1) && sids[..upper].iter().all(|&s| s == 0));
            assert_eq!(payloads[0].data[3] & 1, 0, "no D on the base");
            assert_eq!(payloads[upper].data[3] & 1, 1, "D on the upper layer");
            assert_eq!(
                payloads[upper].data[0] & 0x08,
                0x08,
                "B on its first packet"
            );
            assert_eq!(
                payloads[upper - 1].data[0] & 0x04,
                0x04,
                "E on the base's last"
            );
            let markers: Vec<bool> = payloads.iter().map(|p| p.marker).collect();
            assert_eq!(markers.iter().filter(|m| **m).count(), 1);
            assert!(markers[markers.len() - 1]);
            if i == 0 {
                // I F L B V, no P; SS: two layers, Y, 640x360 and 1280x720.
                assert_eq!(payloads[0].data[0], 0xba);
                assert_eq!(
                    &payloads[0].data[4..13],
                    &[0x30, 0x02, 0x80, 0x01, 0x68, 0x05, 0x00, 0x02, 0xd0]
                );
            } else {
                // P with P_DIFF 1 on both layers, no SS.
                assert!(payloads
                    .iter()
                    .all(|p| p.data[0] & 0x42 == 0x40 && p.data[4] == 0x02));
            }
            for p in payloads {
                d.push(packet(seq, i as u32 * 3000, p.marker, &p.data), 0, &mut out)
                    .unwrap();
                seq += 1;
            }
        }
        let got: Vec<&[u8]> = out.iter().map(|f| &f.data[..]).collect();
        let want: Vec<&[u8]> = pictures.iter().map(|p| &p[..]).collect();
        assert_eq!(got, want);
        assert!(out[0].keyframe && !out[1].keyframe);
    }

    /// The depacketizer hides the base layer of Chromium's pictures (so that FFmpeg's VP9
    /// decoder shows each picture once, at the top layer's size).
    #[test]
    fn chromium_layers_are_joined_with_the_base_hidden() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 0u16;
        for (i, picture) in read_ivf(CHROMIUM_L2T1).iter().enumerate() {
            // Chromium's own layer frames, both shown, in flexible mode with layer indices.
            let ranges = superframe_frames(picture).unwrap();
            for (sid, r) in ranges.iter().enumerate() {
                let chunks: Vec<&[u8]> = picture[r.clone()].chunks(1000).collect();
                for (k, chunk) in chunks.iter().enumerate() {
                    let inter = i > 0;
                    let mut data = vec![
                        0x90 | 0x20
                            | if inter { 0x40 } else { 0 }
                            | if k == 0 { 0x08 } else { 0 }
                            | if k + 1 == chunks.len() { 0x04 } else { 0 },
                        0x80,
                        i as u8,
                        (sid as u8) << 1 | u8::from(sid > 0),
                    ];
                    if inter {
                        data.push(0x02);
                    }
                    data.extend_from_slice(chunk);
                    let marker = sid == 1 && k + 1 == chunks.len();
                    d.push(packet(seq, i as u32 * 3000, marker, &data), 0, &mut out)
                        .unwrap();
                    seq += 1;
                }
            }
        }
        let pictures = chromium_pictures();
        assert_eq!(out.len(), pictures.len());
        for (got, want) in out.iter().zip(&pictures) {
            assert!(
                got.data[..] == want[..],
                "{} and {} bytes",
                got.data.len(),
                want.len()
            );
        }
    }

    /// libvpx's alt-ref superframes (a hidden frame of the same size, then a shown one) go out
    /// whole, as one layer frame.
    #[test]
    fn alt_ref_superframes_go_out_whole() {
        let golden = read_ivf(GST_IVF);
        let mut hidden = golden[1].to_vec();
        hidden[0] &= !0x02;
        let picture: Vec<u8> = [
            &hidden[..],
            &golden[2],
            &superframe_index(&[hidden.len(), golden[2].len()]),
        ]
        .concat();
        let mut packetizer = Vp9Packetizer::new(300);
        let mut payloads = Vec::new();
        packetizer
            .packetize(&golden[0], true, &mut payloads)
            .unwrap();
        payloads.clear();
        packetizer
            .packetize(&picture, false, &mut payloads)
            .unwrap();
        assert!(
            payloads.iter().all(|p| p.data[0] & 0x20 == 0),
            "no layer indices"
        );
        let data: Vec<u8> = payloads.iter().flat_map(|p| p.data[4..].to_vec()).collect();
        assert_eq!(data, picture);
    }

    #[test]
    fn loss_in_an_upper_layer_drops_the_picture_until_a_keyframe() {
        let mut d = Vp9Depacketizer::default();
        let mut out = Vec::new();
        d.push(packet(1, 0, false, &[0x2c, 0x00, 0x00, 0x82]), 0, &mut out)
            .unwrap();
        d.push(packet(2, 0, true, &[0x2c, 0x02, 0x00, 0x99]), 0, &mut out)
            .unwrap();
        // Picture 2: its base arrives, the first packet of its upper layer is lost.
        d.push(packet(3, 90, false, &[0x6c, 0x00, 0x00, 1]), 0, &mut out)
            .unwrap();
        d.push(packet(5, 90, true, &[0x64, 0x02, 0x00, 2]), 1, &mut out)
            .unwrap();
        // Picture 3 is fine but its references are gone.
        d.push(packet(6, 180, false, &[0x6c, 0x00, 0x00, 3]), 0, &mut out)
            .unwrap();
        d.push(packet(7, 180, true, &[0x6c, 0x02, 0x00, 4]), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(d.waiting_for_keyframe());
        // An upper layer whose base layer was lost is no start either.
        d.push(packet(9, 270, true, &[0x2c, 0x02, 0x00, 5]), 1, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        d.push(packet(10, 360, true, &[0x2c, 0x00, 0x00, 6]), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[1].keyframe && !d.waiting_for_keyframe());
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
