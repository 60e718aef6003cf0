//! Helpers shared by the unit tests: reading the captures in `testdata/` and feeding them
//! through a reorder buffer into a depacketizer.

use crate::error::RtpError;
use crate::packet::{CodedFrame, PacketRef};
use crate::reorder::ReorderBuffer;

/// One RTP packet of a capture.
#[derive(Clone, Debug)]
pub struct Captured {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

impl Captured {
    pub fn packet(&self) -> PacketRef<'_> {
        PacketRef {
            sequence: self.sequence,
            timestamp: self.timestamp,
            marker: self.marker,
            payload: &self.payload,
        }
    }
}

/// Every packet through a reorder buffer of `window` packets into a depacketizer's `push`;
/// what it produced.
pub fn depacketize_all<T>(
    packets: &[Captured],
    window: usize,
    mut push: impl FnMut(PacketRef<'_>, u16, &mut Vec<T>) -> Result<(), RtpError>,
) -> Vec<T> {
    let mut reorder = ReorderBuffer::new(window);
    let mut out = Vec::new();
    for p in packets {
        reorder.push(p.sequence, p);
        while let Some((p, lost)) = reorder.pop() {
            push(p.packet(), lost, &mut out).unwrap();
        }
    }
    out
}

/// Asserts that `frames` are the IVF file's frames, byte for byte, with a keyframe every
/// `gop` frames.
pub fn assert_frames_are_ivf(frames: &[CodedFrame], ivf: &[u8], gop: usize) {
    let golden = read_ivf(ivf);
    assert_eq!(frames.len(), golden.len());
    for (i, (f, g)) in frames.iter().zip(&golden).enumerate() {
        assert_eq!(&f.data[..], &g[..], "frame {i}");
        assert_eq!(f.keyframe, i % gop == 0, "frame {i}");
    }
}

/// RTP packets framed by 2-byte lengths (RFC 4571), as GStreamer's `rtpstreampay` writes them.
pub fn read_rfc4571(mut data: &[u8]) -> Vec<Captured> {
    let mut packets = Vec::new();
    while !data.is_empty() {
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        let p = &data[2..2 + len];
        data = &data[2 + len..];
        assert_eq!(p[0] >> 6, 2, "RTP version");
        let mut start = 12 + 4 * (p[0] & 0x0f) as usize;
        if p[0] & 0x10 != 0 {
            let words = u16::from_be_bytes([p[start + 2], p[start + 3]]) as usize;
            start += 4 + 4 * words;
        }
        let end = if p[0] & 0x20 != 0 {
            len - p[len - 1] as usize
        } else {
            len
        };
        packets.push(Captured {
            sequence: u16::from_be_bytes([p[2], p[3]]),
            timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            marker: p[1] & 0x80 != 0,
            payload: p[start..end].to_vec(),
        });
    }
    packets
}

/// The frames of an IVF file (as GStreamer's `avmux_ivf` writes it): a 32-byte file header,
/// then per frame a 4-byte little-endian size, an 8-byte pts and the frame.
pub fn read_ivf(data: &[u8]) -> Vec<Vec<u8>> {
    assert_eq!(&data[..4], b"DKIF");
    let mut rest = &data[32..];
    let mut frames = Vec::new();
    while rest.len() >= 12 {
        let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        frames.push(rest[12..12 + size].to_vec());
        rest = &rest[12 + size..];
    }
    frames
}
