//! The fixed RTP header (RFC 3550 5.1) of a datagram, for callers that receive plain RTP
//! themselves (an RTSP session over UDP); SRTP callers get theirs from their WebRTC stack.
//!
//! CSRC lists and a header extension (5.3.1) are skipped; padding (the P bit, its count in
//! the last byte) is removed. What contradicts itself is an [`RtpError`], never a panic.

use crate::error::RtpError;
use std::ops::Range;

/// The fields of an RTP header a receiver uses, and where the payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload's bytes in the datagram (after CSRCs and extension, before padding).
    pub payload: Range<usize>,
}

/// Parses the RTP header of `packet` (one datagram).
pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
    let bad = |reason: String| RtpError::Malformed {
        sequence: packet
            .get(2..4)
            .map_or(0, |s| u16::from_be_bytes([s[0], s[1]])),
        timestamp: packet
            .get(4..8)
            .map_or(0, |t| u32::from_be_bytes([t[0], t[1], t[2], t[3]])),
        what: "RTP header",
        reason,
    };
    if packet.len() < 12 {
        return Err(bad(format!(
            "{} bytes, shorter than a header",
            packet.len()
        )));
    }
    if packet[0] >> 6 != 2 {
        return Err(bad(format!("version {}", packet[0] >> 6)));
    }
    let mut start = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet
            .get(start + 2..start + 4)
            .map(|w| usize::from(u16::from_be_bytes([w[0], w[1]])))
            .ok_or_else(|| bad("header extension cut short".to_string()))?;
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        let padding = usize::from(packet[end - 1]);
        if padding == 0 {
            return Err(bad("padding count 0".to_string()));
        }
        end = end.saturating_sub(padding);
    }
    if start > end {
        return Err(bad(format!(
            "header of {start} bytes and padding leave no room in {} bytes",
            packet.len()
        )));
    }
    Ok(RtpHeader {
        payload_type: packet[1] & 0x7f,
        marker: packet[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        payload: start..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header_csrcs_extension_and_padding() {
        let mut p = vec![
            0x80, 0xe0, 0x12, 0x34, 0, 0, 0x03, 0xe8, 0xde, 0xad, 0xbe, 0xef,
        ];
        p.extend_from_slice(b"payload");
        let h = parse(&p).unwrap();
        assert_eq!(
            (h.payload_type, h.marker, h.sequence, h.timestamp, h.ssrc),
            (96, true, 0x1234, 1000, 0xdead_beef)
        );
        assert_eq!(&p[h.payload.clone()], b"payload");
        // One CSRC, a one-word extension, 3 bytes of padding.
        let mut p = vec![0xb1, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        p.extend_from_slice(&[7, 8, 0, 0, 3]);
        let h = parse(&p).unwrap();
        assert!(!h.marker);
        assert_eq!(&p[h.payload], &[7, 8]);
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse(&[0x80; 11]).is_err());
        assert!(parse(&[0x40; 12]).is_err()); // version 1
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 9];
        assert!(parse(&p).is_err()); // extension longer than the packet
        p[0] = 0xa0;
        p.truncate(12);
        p.push(0);
        assert!(parse(&p).is_err()); // padding count 0
        p.pop();
        p.push(200);
        assert!(parse(&p).is_err()); // more padding than packet
        for n in 0..40 {
            let _ = parse(&[0xbf; 40][..n]);
        }
    }
}
