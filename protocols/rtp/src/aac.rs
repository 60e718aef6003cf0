//! AAC over RTP as `mpeg4-generic` (RFC 3640), receiving side: the AU header section (3.2.1),
//! several access units per packet (3.2.2) and one access unit fragmented over several
//! packets (3.2.3), in the modes cameras use, `AAC-hbr` (sizeLength 13, indexLength 3) and
//! `AAC-lbr` (6 and 2), or any explicit lengths.
//!
//! What [`AacFormat::from_fmtp`] reads of the SDP: `sizelength`, `indexlength`,
//! `indexdeltalength`, `ctsdeltalength`, `dtsdeltalength`, `randomaccessindication`,
//! `streamstateindication`, `auxiliarydatasizelength` (each header field is skipped or used),
//! and `constantduration`. The AudioSpecificConfig (`config`) is the caller's business.
//!
//! Policies: interleaving (an AU-Index other than 0, or a non-zero AU-Index-delta) is refused,
//! as no camera sends it; an access unit whose fragments do not all arrive is dropped (audio
//! frames are independent, so nothing else is); an access unit is at most 8 KiB (the
//! largest AAC frame of 8 channels is 6144 bits per channel, 6 KiB).

use crate::error::{malformed, RtpError};
use crate::fmtp;
use crate::packet::PacketRef;
use bytes::{BufMut, Bytes, BytesMut};

/// Largest access unit accepted.
pub const MAX_AAC_FRAME_BYTES: usize = 8192;

/// The AU header layout and frame duration of an `mpeg4-generic` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacFormat {
    size_length: u32,
    index_length: u32,
    index_delta_length: u32,
    cts_delta_length: u32,
    dts_delta_length: u32,
    random_access_indication: bool,
    stream_state_indication: u32,
    auxiliary_data_size_length: u32,
    /// RTP ticks per access unit.
    frame_duration: u32,
}

impl AacFormat {
    /// Reads the fmtp parameters (RFC 3640 4.1). `frame_samples` is the frame length the
    /// AudioSpecificConfig says (1024, or 960), used unless `constantDuration` is given.
    pub fn from_fmtp(fmtp: &str, frame_samples: u32) -> Result<AacFormat, RtpError> {
        let params = fmtp::parameters(fmtp);
        let number = |key: &'static str, max: u32| -> Result<u32, RtpError> {
            match fmtp::get(&params, key) {
                None | Some("") => Ok(0),
                Some(v) => v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    RtpError::BadParameter {
                        what: "mpeg4-generic fmtp",
                        reason: format!("{key}={v}"),
                    }
                }),
            }
        };
        let mode = fmtp::get(&params, "mode").unwrap_or("");
        let (default_size, default_index) = match mode.to_ascii_lowercase().as_str() {
            "aac-hbr" => (13, 3),
            "aac-lbr" => (6, 2),
            _ => (0, 0),
        };
        let or = |v: u32, default: u32, key: &str| {
            if fmtp::get(&params, key).is_some() {
                v
            } else {
                default
            }
        };
        let format = AacFormat {
            size_length: or(number("sizelength", 32)?, default_size, "sizelength"),
            index_length: or(number("indexlength", 32)?, default_index, "indexlength"),
            index_delta_length: or(
                number("indexdeltalength", 32)?,
                default_index,
                "indexdeltalength",
            ),
            cts_delta_length: number("ctsdeltalength", 32)?,
            dts_delta_length: number("dtsdeltalength", 32)?,
            random_access_indication: number("randomaccessindication", 1)? == 1,
            stream_state_indication: number("streamstateindication", 32)?,
            auxiliary_data_size_length: number("auxiliarydatasizelength", 32)?,
            frame_duration: match number("constantduration", u32::MAX)? {
                0 => frame_samples.max(1),
                d => d,
            },
        };
        if format.size_length == 0 {
            return Err(RtpError::BadParameter {
                what: "mpeg4-generic fmtp",
                reason: format!("no sizeLength and mode {mode:?} has none"),
            });
        }
        Ok(format)
    }
}

/// One AAC frame (raw access unit) out of [`AacDepacketizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// The RTP timestamp of this access unit (the packet's plus the duration of those
    /// before it in the packet).
    pub timestamp: u32,
    pub data: Bytes,
}

/// RTP packets (in order) -> AAC frames. See the module documentation.
pub struct AacDepacketizer {
    format: AacFormat,
    /// A fragmented access unit in progress: its timestamp, declared size, bytes so far.
    fragment: Option<(u32, usize, BytesMut)>,
}

impl AacDepacketizer {
    pub fn new(format: AacFormat) -> Self {
        AacDepacketizer {
            format,
            fragment: None,
        }
    }

    /// Takes the next packet in sequence-number order and appends the frames it completes.
    /// `lost` > 0 when packets were lost just before this one.
    pub fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<AacFrame>,
    ) -> Result<(), RtpError> {
        if lost > 0 {
            self.fragment = None;
        }
        if packet.payload.is_empty() {
            return Ok(()); // padding only
        }
        let result = self.payload(&packet, out);
        if result.is_err() {
            self.fragment = None;
        }
        result
    }

    fn payload(&mut self, packet: &PacketRef<'_>, out: &mut Vec<AacFrame>) -> Result<(), RtpError> {
        let f = self.format;
        let payload = packet.payload;
        let bad = |reason: String| malformed(packet, "mpeg4-generic", reason);
        let header_bits = payload
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| bad("no AU-headers-length".to_string()))?;
        let header_bytes = header_bits.div_ceil(8);
        let headers = payload.get(2..2 + header_bytes).ok_or_else(|| {
            bad(format!(
                "AU headers of {header_bits} bits overrun the packet ({} bytes)",
                payload.len()
            ))
        })?;
        let mut bits = Bits {
            data: headers,
            pos: 0,
            end: header_bits,
        };
        let mut sizes = Vec::new();
        while bits.pos < bits.end {
            let size = bits
                .read(f.size_length)
                .ok_or_else(|| bad("AU header cut short".into()))?;
            let index_length = if sizes.is_empty() {
                f.index_length
            } else {
                f.index_delta_length
            };
            let index = bits
                .read(index_length)
                .ok_or_else(|| bad("AU header cut short".into()))?;
            if index != 0 {
                return Err(RtpError::Unsupported {
                    sequence: packet.sequence,
                    timestamp: packet.timestamp,
                    what: "mpeg4-generic interleaving",
                });
            }
            if f.cts_delta_length > 0 && bits.read(1) == Some(1) {
                bits.read(f.cts_delta_length);
            }
            if f.dts_delta_length > 0 && bits.read(1) == Some(1) {
                bits.read(f.dts_delta_length);
            }
            if f.random_access_indication {
                bits.read(1);
            }
            bits.read(f.stream_state_indication);
            if bits.pos > bits.end {
                return Err(bad("AU header cut short".into()));
            }
            sizes.push(size as usize);
        }
        let mut data = &payload[2 + header_bytes..];
        if f.auxiliary_data_size_length > 0 {
            // RFC 3640 3.2.2: the auxiliary section, skipped.
            let mut aux = Bits {
                data,
                pos: 0,
                end: data.len() * 8,
            };
            let aux_bits = aux
                .read(f.auxiliary_data_size_length)
                .ok_or_else(|| bad("auxiliary section cut short".into()))?
                as usize;
            let skip = (f.auxiliary_data_size_length as usize + aux_bits).div_ceil(8);
            data = data
                .get(skip..)
                .ok_or_else(|| bad("auxiliary section overruns the packet".into()))?;
        }
        if let [size] = sizes[..] {
            if size > data.len() || self.fragment.is_some() {
                return self.fragment(packet, size, data, out);
            }
        }
        let mut timestamp = packet.timestamp;
        for size in sizes {
            if size > MAX_AAC_FRAME_BYTES {
                return Err(too_large(packet, size));
            }
            let frame = data.get(..size).ok_or_else(|| {
                bad(format!(
                    "access unit of {size} bytes overruns the packet ({} bytes left)",
                    data.len()
                ))
            })?;
            data = &data[size..];
            if !frame.is_empty() {
                out.push(AacFrame {
                    timestamp,
                    data: Bytes::copy_from_slice(frame),
                });
            }
            timestamp = timestamp.wrapping_add(f.frame_duration);
        }
        Ok(())
    }

    /// One fragment of an access unit of `size` bytes (RFC 3640 3.2.3): the packets share a
    /// timestamp and the last has the marker bit.
    fn fragment(
        &mut self,
        packet: &PacketRef<'_>,
        size: usize,
        data: &[u8],
        out: &mut Vec<AacFrame>,
    ) -> Result<(), RtpError> {
        if size > MAX_AAC_FRAME_BYTES {
            return Err(too_large(packet, size));
        }
        let (timestamp, declared, mut buf) = match self.fragment.take() {
            Some((t, s, buf)) if t == packet.timestamp && s == size => (t, s, buf),
            // A new access unit (the previous one lost its end, if it was unfinished).
            _ => (packet.timestamp, size, BytesMut::with_capacity(size)),
        };
        if buf.len() + data.len() > declared {
            return Err(malformed(
                packet,
                "mpeg4-generic",
                format!(
                    "fragments exceed the access unit's {declared} bytes ({} so far, {} more)",
                    buf.len(),
                    data.len()
                ),
            ));
        }
        buf.put_slice(data);
        if buf.len() == declared {
            // The marker bit should be set here; a sender that forgets it loses nothing.
            if !buf.is_empty() {
                out.push(AacFrame {
                    timestamp,
                    data: buf.freeze(),
                });
            }
        } else if packet.marker {
            // The last fragment came and the access unit is short: something was lost.
        } else {
            self.fragment = Some((timestamp, declared, buf));
        }
        Ok(())
    }
}

fn too_large(packet: &PacketRef<'_>, size: usize) -> RtpError {
    RtpError::TooLarge {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        size,
        max: MAX_AAC_FRAME_BYTES,
    }
}

/// MSB-first bits of the AU header section; reading past `end` gives `None`.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u64;
        for _ in 0..n {
            if self.pos >= self.end {
                self.pos = self.end + 1;
                return None;
            }
            let bit = (self.data.get(self.pos / 8)? >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u64::from(bit);
            self.pos += 1;
        }
        Some(v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::read_rfc4571;

    const GST_AAC: &[u8] = include_bytes!("../testdata/gst-aac.rtp");
    const GST_AAC_ADTS: &[u8] = include_bytes!("../testdata/gst-aac.adts");

    fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> PacketRef<'_> {
        PacketRef {
            sequence,
            timestamp,
            marker,
            payload,
        }
    }

    fn hbr() -> AacFormat {
        AacFormat::from_fmtp(
            "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1210",
            1024,
        )
        .unwrap()
    }

    /// An AAC-hbr payload with the given access units.
    fn hbr_payload(units: &[&[u8]]) -> Vec<u8> {
        let mut p = ((units.len() * 16) as u16).to_be_bytes().to_vec();
        for u in units {
            p.extend_from_slice(&((u.len() as u16) << 3).to_be_bytes());
        }
        for u in units {
            p.extend_from_slice(u);
        }
        p
    }

    /// The raw frames of an ADTS stream (ISO/IEC 14496-3 1.A.2).
    fn adts_frames(mut data: &[u8]) -> Vec<&[u8]> {
        let mut frames = Vec::new();
        while data.len() > 7 {
            assert_eq!((data[0], data[1] & 0xf0), (0xff, 0xf0), "ADTS sync");
            let header = if data[1] & 1 == 0 { 9 } else { 7 };
            let len = (usize::from(data[3] & 3) << 11)
                | (usize::from(data[4]) << 3)
                | usize::from(data[5] >> 5);
            frames.push(&data[header..len]);
            data = &data[len..];
        }
        frames
    }

    #[test]
    fn gstreamer_capture_gives_the_encoded_frames() {
        let mut d = AacDepacketizer::new(hbr());
        let mut out = Vec::new();
        let packets = read_rfc4571(GST_AAC);
        for p in &packets {
            d.push(p.packet(), 0, &mut out).unwrap();
        }
        let golden = adts_frames(GST_AAC_ADTS);
        assert_eq!(out.len(), golden.len());
        for (f, g) in out.iter().zip(&golden) {
            assert_eq!(&f.data[..], *g);
        }
        // 1024 samples a frame, as GStreamer rounds them from nanoseconds.
        for pair in out.windows(2) {
            let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
            assert!((1023..=1025).contains(&step), "{step}");
        }
    }

    #[test]
    fn several_units_per_packet_get_their_own_timestamps() {
        let mut d = AacDepacketizer::new(hbr());
        let mut out = Vec::new();
        let p = hbr_payload(&[&[1, 2, 3], &[4, 5], &[6]]);
        d.push(packet(1, u32::MAX - 1000, true, &p), 0, &mut out)
            .unwrap();
        let got: Vec<(u32, Vec<u8>)> = out.iter().map(|f| (f.timestamp, f.data.to_vec())).collect();
        assert_eq!(
            got,
            [
                (u32::MAX - 1000, vec![1, 2, 3]),
                (23, vec![4, 5]),
                (1047, vec![6])
            ]
        );
    }

    #[test]
    fn fragments_are_joined_and_a_lost_one_drops_the_unit() {
        let mut d = AacDepacketizer::new(hbr());
        let mut out = Vec::new();
        let unit: Vec<u8> = (0..30).collect();
        let frag = |range: std::ops::Range<usize>| {
            let mut p = vec![0, 16];
            p.extend_from_slice(&((unit.len() as u16) << 3).to_be_bytes());
            p.extend_from_slice(&unit[range]);
            p
        };
        d.push(packet(1, 0, false, &frag(0..10)), 0, &mut out)
            .unwrap();
        d.push(packet(2, 0, false, &frag(10..20)), 0, &mut out)
            .unwrap();
        d.push(packet(3, 0, true, &frag(20..30)), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data[..], unit[..]);
        // The middle fragment lost: the unit is dropped, the next one comes out.
        d.push(packet(4, 1024, false, &frag(0..10)), 0, &mut out)
            .unwrap();
        d.push(packet(6, 1024, true, &frag(20..30)), 1, &mut out)
            .unwrap();
        d.push(packet(7, 2048, true, &hbr_payload(&[&[9]])), 0, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].timestamp, 2048);
    }

    #[test]
    fn lbr_and_explicit_layouts() {
        let lbr = AacFormat::from_fmtp("mode=AAC-lbr; config=1210", 1024).unwrap();
        let mut d = AacDepacketizer::new(lbr);
        let mut out = Vec::new();
        // Two 8-bit headers: size 6 bits, index 2 bits.
        d.push(
            packet(1, 0, true, &[0, 16, 2 << 2, 1 << 2, 7, 7, 8]),
            0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].timestamp, &out[1].data[..]), (1024, &[8][..]));
        let explicit =
            AacFormat::from_fmtp("sizelength=13;indexlength=3;constantDuration=960", 1024).unwrap();
        assert_eq!(explicit.frame_duration, 960);
        assert!(AacFormat::from_fmtp("mode=generic", 1024).is_err());
        assert!(AacFormat::from_fmtp("mode=AAC-hbr;sizelength=x", 1024).is_err());
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let mut d = AacDepacketizer::new(hbr());
        let mut out = Vec::new();
        for payload in [
            &[0u8][..],
            &[0, 16, 0],
            &[0, 16, 0, 80, 1],       // unit of 10 bytes, 1 present: a fragment
            &[0, 16, 0x00, 0x09],     // AU-Index 1: interleaving
            &[0, 200, 0, 0, 0, 0, 0], // headers overrun
            &[0xff, 0xff],
        ] {
            let _ = d.push(packet(1, 0, true, payload), 0, &mut out);
        }
        assert!(d
            .push(packet(1, 0, true, &[0, 16, 0x00, 0x09]), 0, &mut out)
            .is_err());
        assert!(out.is_empty());
        let mut rng = 99u64;
        for _ in 0..5000 {
            let r = crate::test_rng::xorshift(&mut rng);
            let len = (r % 24) as usize;
            let payload: Vec<u8> = (0..len).map(|i| (r >> (i % 8 * 8)) as u8).collect();
            let _ = d.push(
                packet(1, 0, r & 1 == 0, &payload),
                (r >> 60) as u16 & 1,
                &mut out,
            );
        }
    }
}
