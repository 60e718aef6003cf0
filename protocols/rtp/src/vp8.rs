//! VP8 over RTP, RFC 7741, both ways.
//!
//! Every packet starts with a payload descriptor (RFC 7741 4.2): a first byte with X (extended
//! control bits follow), N (non-reference frame), S (start of a partition) and the partition
//! index PID; then, when X is set, a byte of I/L/T/K flags and the optional PictureID (7 or 15
//! bits), TL0PICIDX and TID/Y/KEYIDX fields. [`Vp8Depacketizer`] skips the descriptor and
//! joins the rest into frames:
//!
//! - A frame starts with S=1 and PID=0 and ends at the marker bit (RFC 7741 4.1); a sender
//!   that forgets the marker has its frame ended by the next timestamp.
//! - A keyframe has the P bit clear in the first byte of the VP8 payload header (RFC 7741
//!   4.3, RFC 6386 9.1), which the first packet of a frame carries.
//! - Loss or an error drops frames until the next keyframe (see `assembler`);
//!   [`Vp8Depacketizer::waiting_for_keyframe`] says when to send a PLI.
//! - Empty payloads are padding (RFC 3550 5.1); descriptors cut short are [`RtpError`]s.
//!
//! The output is the VP8 frame as encoded (what a WebM block or IVF frame holds).
//!
//! [`Vp8Packetizer`] sends each frame as packets with a four-byte descriptor: X=1, I=1 and a
//! 15-bit PictureID (Chromium uses it to tell frames apart when it reports loss), S=1 on the
//! first packet.

use crate::assembler::Assembler;
use crate::error::{malformed, RtpError};
use crate::packet::{CodedFrame, PacketRef, Payload};
use bytes::{BufMut, Bytes, BytesMut};

/// Length of the descriptor [`Vp8Packetizer`] writes.
const DESCRIPTOR_LEN: usize = 4;

/// RTP packets (in order, see [`crate::reorder`]) -> VP8 frames. See the module documentation.
#[derive(Default)]
pub struct Vp8Depacketizer {
    frame: Assembler,
}

impl Vp8Depacketizer {
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
        let (descriptor, start) = match descriptor_len(&packet) {
            Ok(d) => d,
            Err(e) => {
                self.frame.damage();
                return Err(e);
            }
        };
        let data = &packet.payload[descriptor..];
        if start {
            let Some(&header) = data.first() else {
                self.frame.damage();
                return Err(malformed(
                    &packet,
                    "VP8 payload",
                    "the first packet of a frame has no payload header".into(),
                ));
            };
            self.frame.start(packet.timestamp, header & 1 == 0, out);
        }
        let result = self.frame.append(&packet, data);
        if packet.marker && self.frame.in_frame() {
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

/// Length of a packet's payload descriptor, and whether the packet starts a frame.
fn descriptor_len(packet: &PacketRef<'_>) -> Result<(usize, bool), RtpError> {
    let p = packet.payload;
    let short = |needed: usize| {
        malformed(
            packet,
            "VP8 payload descriptor",
            format!("needs {needed} bytes, the packet has {}", p.len()),
        )
    };
    let first = p[0];
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut len = 1;
    if first & 0x80 != 0 {
        let ext = *p.get(1).ok_or_else(|| short(2))?;
        len = 2;
        if ext & 0x80 != 0 {
            // PictureID: 15 bits when its first bit (M) is set, else 7.
            let id = *p.get(len).ok_or_else(|| short(len + 1))?;
            len += if id & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // TID, Y, KEYIDX
        }
    }
    if p.len() < len {
        return Err(short(len));
    }
    Ok((len, start))
}

/// VP8 frames -> RTP payloads (RFC 7741).
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    max_payload: usize,
    picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer whose payloads are at most `max_payload` bytes.
    ///
    /// # Panics
    ///
    /// If `max_payload` leaves no room for data after the descriptor (a configuration error).
    pub fn new(max_payload: usize) -> Self {
        assert!(
            max_payload > DESCRIPTOR_LEN,
            "VP8 RTP payloads need more than {DESCRIPTOR_LEN} bytes, not {max_payload}"
        );
        Vp8Packetizer {
            max_payload,
            picture_id: 0,
        }
    }

    /// Packetizes one frame, appending its payloads to `out` (marker on the last one). Each
    /// call is the next picture: the PictureID counts up.
    pub fn packetize(&mut self, frame: &[u8], out: &mut Vec<Payload>) -> Result<(), RtpError> {
        if frame.is_empty() {
            return Err(RtpError::BadFrame {
                offset: 0,
                reason: "an empty VP8 frame".into(),
            });
        }
        let id = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let chunk = self.max_payload - DESCRIPTOR_LEN;
        let count = frame.len().div_ceil(chunk);
        // Equal sizes: no tiny last packet.
        let size = frame.len().div_ceil(count);
        for (i, part) in frame.chunks(size).enumerate() {
            let mut data = BytesMut::with_capacity(DESCRIPTOR_LEN + part.len());
            data.put_u8(if i == 0 { 0x90 } else { 0x80 });
            data.put_u8(0x80);
            data.put_u16(0x8000 | id);
            data.put_slice(part);
            out.push(Payload {
                data: data.freeze(),
                marker: i + 1 == count,
            });
        }
        Ok(())
    }
}

/// Whether a VP8 frame is a keyframe (RFC 6386 9.1: the frame tag's first bit is 0).
pub fn is_keyframe(frame: &Bytes) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;
    use crate::testutil::{
        assert_frames_are_ivf, depacketize_all, read_ivf, read_rfc4571, Captured,
    };

    const GST_RTP: &[u8] = include_bytes!("../testdata/gst-vp8.rtp");
    const GST_IVF: &[u8] = include_bytes!("../testdata/gst-vp8.ivf");

    fn depacketize(packets: &[Captured]) -> Vec<CodedFrame> {
        let mut d = Vp8Depacketizer::default();
        depacketize_all(packets, 16, |p, lost, out| d.push(p, lost, out))
    }

    #[test]
    fn gstreamer_capture_gives_the_encoded_frames() {
        let packets = read_rfc4571(GST_RTP);
        assert!(packets.len() > 12, "frames span several packets");
        let frames = depacketize(&packets);
        assert_eq!(frames.len(), 12);
        assert_frames_are_ivf(&frames, GST_IVF, 6);
        assert_eq!(frames[1].timestamp.wrapping_sub(frames[0].timestamp), 3600);
    }

    #[test]
    fn reordered_packets_give_the_same_frames() {
        let mut packets = read_rfc4571(GST_RTP);
        let mut rng = 11u64;
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
        // A packet in the middle of the first keyframe.
        packets.remove(2);
        let frames = depacketize(&packets);
        assert_eq!(frames.len(), 6);
        assert!(frames[0].keyframe);
        assert_eq!(&frames[0].data[..], &read_ivf(GST_IVF)[6][..]);
    }

    #[test]
    fn round_trip_through_the_packetizer() {
        let golden = read_ivf(GST_IVF);
        let mut packetizer = Vp8Packetizer::new(300);
        let mut d = Vp8Depacketizer::default();
        let mut out = Vec::new();
        let mut seq = 0u16;
        for (i, frame) in golden.iter().enumerate() {
            let mut payloads = Vec::new();
            packetizer.packetize(frame, &mut payloads).unwrap();
            assert!(payloads.iter().all(|p| p.data.len() <= 300));
            assert_eq!(payloads[0].data[0] & 0x10, 0x10);
            assert_eq!(
                u16::from_be_bytes([payloads[0].data[2], payloads[0].data[3]]) & 0x7fff,
                i as u16
            );
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
        assert!(is_keyframe(&out[0].data) && !is_keyframe(&out[1].data));
    }

    #[test]
    fn truncated_and_absurd_packets_are_errors() {
        let mut d = Vp8Depacketizer::default();
        let mut out = Vec::new();
        let p = |payload: &'static [u8]| PacketRef {
            sequence: 1,
            timestamp: 0,
            marker: true,
            payload,
        };
        for bad in [
            &[0x80][..],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x80],
            &[0x90, 0xf0, 0x01],
            &[0x10],
        ] {
            assert!(d.push(p(bad), 0, &mut out).is_err(), "{bad:?}");
        }
        // Continuations without a start, and padding: nothing, no error.
        d.push(p(&[0x00, 1, 2, 3]), 0, &mut out).unwrap();
        d.push(p(&[]), 0, &mut out).unwrap();
        assert!(out.is_empty() && d.waiting_for_keyframe());
        // Recovers on the next keyframe.
        d.push(p(&[0x10, 0x00, 0x9d]), 0, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(!d.waiting_for_keyframe());
    }
}
