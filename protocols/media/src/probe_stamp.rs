//! Latency probe stamps: the wall-clock time a frame was sent, carried inside the video itself
//! so that it survives every protocol path (RTMP, WebRTC, HLS, MSE, pulls between nodes).
//!
//! A stamp is an SEI message of payload type 5, `user_data_unregistered` (H.264 D.1.7 / D.2.7;
//! H.265 D.2.7 / D.3.7 in a prefix SEI NAL unit), whose 16-byte UUID is [`PROBE_UUID`] and whose
//! user data is the send time as microseconds since the Unix epoch (8 bytes, big-endian) and
//! the protocol the source published with (4 ASCII bytes, padded with spaces: `rtmp`, `whip`).
//! Decoders skip SEI messages with a UUID they do not know, so stamped video plays anywhere.
//!
//! `switchyard source` writes one stamp into every video frame it publishes; the load
//! generator reads it from whatever it receives and reports the end-to-end latency.

use crate::bits::unescape_rbsp;

/// The UUID that marks Switchyard's probe stamps (a random version 4 UUID,
/// `5f9c2e1a-7b3d-4c8e-9a61-2d4f8b0c3e77`).
pub const PROBE_UUID: [u8; 16] = [
    0x5f, 0x9c, 0x2e, 0x1a, 0x7b, 0x3d, 0x4c, 0x8e, 0x9a, 0x61, 0x2d, 0x4f, 0x8b, 0x0c, 0x3e, 0x77,
];

/// SEI `payloadType` of `user_data_unregistered`.
const USER_DATA_UNREGISTERED: u8 = 5;
/// UUID, send time, source.
const PAYLOAD_LEN: usize = 16 + 8 + 4;
/// H.264 nal_unit_type of an SEI (7.4.1.2).
const H264_SEI: u8 = 6;
/// H.265 nal_unit_type of a prefix SEI (7.4.2.2).
const H265_PREFIX_SEI: u8 = 39;

/// What a stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeStamp {
    /// When the source sent the frame: microseconds since the Unix epoch.
    pub sent_unix_us: u64,
    /// The protocol the source published with, 4 ASCII bytes (`rtmp`, `whip`).
    pub source: [u8; 4],
}

impl ProbeStamp {
    /// The source protocol as text, trailing spaces removed (`"?"` if it is not ASCII).
    pub fn source_name(&self) -> &str {
        std::str::from_utf8(&self.source)
            .map(str::trim_end)
            .unwrap_or("?")
    }

    /// The SEI payload: UUID, send time, source.
    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut payload = [0; PAYLOAD_LEN];
        payload[..16].copy_from_slice(&PROBE_UUID);
        payload[16..24].copy_from_slice(&self.sent_unix_us.to_be_bytes());
        payload[24..].copy_from_slice(&self.source);
        payload
    }

    /// An H.264 SEI NAL unit (no length prefix, no start code) that carries this stamp.
    pub fn h264_nal(&self) -> Vec<u8> {
        sei_nal(&[H264_SEI], &self.payload())
    }

    /// An H.265 prefix SEI NAL unit (nuh_layer_id 0, nuh_temporal_id_plus1 1) that carries
    /// this stamp.
    pub fn h265_nal(&self) -> Vec<u8> {
        sei_nal(&[H265_PREFIX_SEI << 1, 1], &self.payload())
    }

    /// `access_unit` (4-byte length-prefixed NAL units) with this stamp's H.264 SEI as its
    /// first NAL unit, or its second after an access unit delimiter (7.4.1.2.3: an AUD comes
    /// first, SEI NAL units before the first VCL NAL unit).
    pub fn insert_h264(&self, access_unit: &[u8]) -> Vec<u8> {
        insert_first(access_unit, &self.h264_nal(), |h| h & 0x1f == H264_AUD)
    }

    /// `access_unit` (4-byte length-prefixed NAL units) with this stamp's H.265 prefix SEI
    /// first, or after an access unit delimiter (H.265 7.4.2.4.4).
    pub fn insert_h265(&self, access_unit: &[u8]) -> Vec<u8> {
        insert_first(access_unit, &self.h265_nal(), |h| {
            (h >> 1) & 0x3f == H265_AUD
        })
    }
}

/// H.264 nal_unit_type of an access unit delimiter (7.4.1.2).
const H264_AUD: u8 = 9;
/// H.265 nal_unit_type of an access unit delimiter (7.4.2.2).
const H265_AUD: u8 = 35;

/// `nal` with a 4-byte length inserted at the start of `access_unit`, or after its first NAL
/// unit when `is_aud` says that one (its first header byte) is an access unit delimiter.
fn insert_first(access_unit: &[u8], nal: &[u8], is_aud: impl Fn(u8) -> bool) -> Vec<u8> {
    let first_len = access_unit
        .get(..4)
        .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize);
    let at = match (first_len, access_unit.get(4)) {
        (Some(len), Some(&header)) if is_aud(header) && 4 + len <= access_unit.len() => 4 + len,
        _ => 0,
    };
    let mut out = Vec::with_capacity(access_unit.len() + 4 + nal.len());
    out.extend_from_slice(&access_unit[..at]);
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    out.extend_from_slice(nal);
    out.extend_from_slice(&access_unit[at..]);
    out
}

/// header + sei_message (payloadType, payloadSize, payload) + rbsp_trailing_bits, with
/// emulation prevention bytes inserted (H.264 7.4.1).
fn sei_nal(header: &[u8], payload: &[u8; PAYLOAD_LEN]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(PAYLOAD_LEN + 3);
    rbsp.push(USER_DATA_UNREGISTERED);
    rbsp.push(PAYLOAD_LEN as u8);
    rbsp.extend_from_slice(payload);
    rbsp.push(0x80);
    let mut nal = header.to_vec();
    let mut zeros = 0;
    for b in rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        nal.push(b);
    }
    nal
}

/// The stamp in one NAL unit, if it is an H.264 SEI or an H.265 prefix SEI whose first
/// message is a probe stamp. Anything else, malformed input included, is `None`.
pub fn read_nal(nal: &[u8]) -> Option<ProbeStamp> {
    let header_len = match nal.first()? {
        b if b & 0x1f == H264_SEI && b & 0x80 == 0 => 1,
        b if (b >> 1) & 0x3f == H265_PREFIX_SEI => 2,
        _ => return None,
    };
    // A stamp is short: unescape only what it can span.
    let end = nal.len().min(header_len + 2 + PAYLOAD_LEN + 8);
    let rbsp = unescape_rbsp(nal.get(header_len..end)?);
    if rbsp.first() != Some(&USER_DATA_UNREGISTERED)
        || rbsp.get(1) != Some(&(PAYLOAD_LEN as u8))
        || rbsp.get(2..18)? != PROBE_UUID
    {
        return None;
    }
    let payload = rbsp.get(2..2 + PAYLOAD_LEN)?;
    Some(ProbeStamp {
        sent_unix_us: u64::from_be_bytes(payload[16..24].try_into().ok()?),
        source: payload[24..28].try_into().ok()?,
    })
}

/// The first stamp among the NAL units of a 4-byte length-prefixed access unit (the bus's
/// frame format, MP4 samples). Stops quietly at malformed lengths.
pub fn read_access_unit(data: &[u8]) -> Option<ProbeStamp> {
    crate::nal_units(data)
        .map_while(Result::ok)
        .find_map(read_nal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sent_unix_us: u64) -> ProbeStamp {
        ProbeStamp {
            sent_unix_us,
            source: *b"rtmp",
        }
    }

    #[test]
    fn h264_and_h265_stamps_round_trip() {
        for sent in [0, 1, 0x0000_0300_0000_0001, 1_764_755_000_123_456, u64::MAX] {
            assert_eq!(
                read_nal(&stamp(sent).h264_nal()),
                Some(stamp(sent)),
                "{sent}"
            );
            assert_eq!(
                read_nal(&stamp(sent).h265_nal()),
                Some(stamp(sent)),
                "{sent}"
            );
        }
        assert_eq!(stamp(1).source_name(), "rtmp");
    }

    #[test]
    fn zeros_in_the_time_are_escaped() {
        // Three zero bytes in a row would read as a start code in an Annex B stream.
        let nal = stamp(0x0000_0001_0000_0000).h264_nal();
        assert!(!nal.windows(3).any(|w| w == [0, 0, 0] || w == [0, 0, 1]));
        assert_eq!(read_nal(&nal), Some(stamp(0x0000_0001_0000_0000)));
    }

    #[test]
    fn finds_the_stamp_among_a_frame_s_nal_units() {
        let mut frame = Vec::new();
        for nal in [
            &[0x09, 0xf0][..],
            &stamp(42).h264_nal(),
            &[0x65, 0x88, 0x84],
        ] {
            frame.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            frame.extend_from_slice(nal);
        }
        assert_eq!(read_access_unit(&frame), Some(stamp(42)));
        assert_eq!(read_access_unit(&frame[..frame.len() - 1]), Some(stamp(42)));
        assert_eq!(read_access_unit(&[0, 0, 0, 9, 6]), None);
    }

    fn length_prefixed(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    #[test]
    fn a_stamp_goes_first_or_right_after_the_access_unit_delimiter() {
        let sei = stamp(9).h264_nal();
        let idr: &[u8] = &[0x65, 0x88, 0x84];
        assert_eq!(
            stamp(9).insert_h264(&length_prefixed(&[idr])),
            length_prefixed(&[&sei, idr])
        );
        let aud: &[u8] = &[0x09, 0xf0];
        assert_eq!(
            stamp(9).insert_h264(&length_prefixed(&[aud, idr])),
            length_prefixed(&[aud, &sei, idr])
        );
        let h265_sei = stamp(9).h265_nal();
        let (h265_aud, h265_idr): (&[u8], &[u8]) = (&[35 << 1, 1, 0x50], &[19 << 1, 1, 0xaf]);
        assert_eq!(
            stamp(9).insert_h265(&length_prefixed(&[h265_aud, h265_idr])),
            length_prefixed(&[h265_aud, &h265_sei, h265_idr])
        );
        assert_eq!(
            read_access_unit(&stamp(9).insert_h265(&length_prefixed(&[h265_idr]))),
            Some(stamp(9))
        );
        // An access unit too short to hold its first NAL unit gets the stamp in front.
        let mut want = length_prefixed(&[&sei]);
        want.extend_from_slice(&[0, 0, 0, 9, 9]);
        assert_eq!(stamp(9).insert_h264(&[0, 0, 0, 9, 9]), want);
    }

    #[test]
    fn other_sei_and_garbage_are_not_stamps() {
        let mut other = stamp(7).h264_nal();
        other[5] ^= 0xff; // inside the UUID
        assert_eq!(read_nal(&other), None);
        for garbage in [&[][..], &[6], &[6, 5], &[6, 5, 28, 0x5f], &[0x65, 1, 2, 3]] {
            assert_eq!(read_nal(garbage), None);
        }
        // A forbidden_zero_bit set is not an H.264 NAL unit.
        let mut forbidden = stamp(7).h264_nal();
        forbidden[0] |= 0x80;
        assert_eq!(read_nal(&forbidden), None);
    }
}
