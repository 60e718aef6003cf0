//! Opus over RTP (RFC 7587): one RTP payload is exactly one Opus packet (4.2), the RTP clock
//! is always 48 kHz whatever the coded bandwidth (4.1), and the marker bit carries nothing
//! a receiver needs. Depacketizing is the identity; what a receiver wants to know is how long
//! a packet lasts, which its TOC byte tells (RFC 6716 3.1).

use crate::packet::Payload;
use bytes::Bytes;

/// Longest duration of one Opus packet: 120 ms at 48 kHz (RFC 6716 3.2.5).
const MAX_PACKET_SAMPLES: u32 = 5760;

/// Duration in 48 kHz samples of an Opus packet, from its TOC byte and, for code 3 packets,
/// its frame count byte (RFC 6716 3.1, 3.2.5). `None` for an empty or invalid packet.
pub fn packet_duration_48k(payload: &[u8]) -> Option<u32> {
    let &toc = payload.first()?;
    let config = toc >> 3;
    // Frame sizes of RFC 6716 Table 2, in 48 kHz samples (2.5 ms = 120).
    let frame = match config {
        // SILK-only (NB, MB, WB): 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid (SWB, FB): 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only (NB, WB, SWB, FB): 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(payload.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= MAX_PACKET_SAMPLES).then_some(total)
}

/// Packetizes one Opus frame (= one Opus packet): the payload shares `frame`'s bytes. Empty
/// frames are skipped (RFC 6716 3.4 R1: a packet has at least its TOC byte). The marker bit
/// stays clear: RFC 3551 4.1 reserves it for the start of a talkspurt, which only an encoder
/// with DTX knows.
pub fn packetize(frame: &Bytes, out: &mut Vec<Payload>) {
    if !frame.is_empty() {
        out.push(Payload {
            data: frame.clone(),
            marker: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_toc_byte() {
        // libopus in WebRTC: CELT FB 20 ms (config 31), SILK WB 20 ms (config 9), one frame.
        assert_eq!(packet_duration_48k(&[0xf8, 0xff, 0xfe]), Some(960));
        assert_eq!(packet_duration_48k(&[0x48]), Some(960));
        // Hybrid FB 10 ms (config 14), two frames of equal size (code 1).
        assert_eq!(packet_duration_48k(&[0x71, 1, 2]), Some(960));
        // SILK NB 60 ms, code 2 (two frames of different sizes): 120 ms, the maximum.
        assert_eq!(packet_duration_48k(&[0x1a, 1, 2]), Some(5760));
        // CELT NB 2.5 ms (config 16), code 3 with 5 frames.
        assert_eq!(packet_duration_48k(&[0x83, 0x05]), Some(600));
    }

    #[test]
    fn invalid_packets_have_no_duration() {
        assert_eq!(packet_duration_48k(&[]), None);
        // Code 3 without its frame count byte, or with zero frames.
        assert_eq!(packet_duration_48k(&[0xfb]), None);
        assert_eq!(packet_duration_48k(&[0xfb, 0x00]), None);
        // Code 3: 3 frames of 60 ms is 180 ms, over the 120 ms limit.
        assert_eq!(packet_duration_48k(&[0x1b, 0x03]), None);
    }

    #[test]
    fn packetizing_shares_the_frame() {
        let frame = Bytes::from_static(&[0xf8, 1, 2, 3]);
        let mut out = Vec::new();
        packetize(&frame, &mut out);
        packetize(&Bytes::new(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.as_ptr(), frame.as_ptr());
        assert!(!out[0].marker);
    }
}
