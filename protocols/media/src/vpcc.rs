//! The VP codec configuration record (`vpcC`, VP Codec ISO Media File Format Binding 2.2) of
//! VP8 and VP9, as the `vpcC` box payload (version 1, flags 0, then the record) that MP4
//! writers and Enhanced RTMP (`vp08`/`vp09` sequence start) carry.
//!
//! [`VpccRecord::parse`] reads the box payload and, as some writers send it, the bare record
//! without version and flags; [`VpccRecord::to_box_payload`] always writes the box payload.
//! Neither VP8 nor VP9 decoders need the record (every keyframe tells what they need); it
//! describes the stream (profile, level, bit depth, chroma subsampling, colour).

use crate::error::MediaError;
use bytes::Bytes;

const WHAT: &str = "vpcC";

/// The fields of a VPCodecConfigurationRecord (binding 2.2; `codecIntializationData` is
/// empty for VP8 and VP9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpccRecord {
    pub profile: u8,
    /// 10 x the level (VP9 bitstream specification Annex A), e.g. 31 for 3.1.
    pub level: u8,
    /// 8, 10 or 12.
    pub bit_depth: u8,
    /// 0 4:2:0 vertical, 1 4:2:0 colocated with luma, 2 4:2:2, 3 4:4:4.
    pub chroma_subsampling: u8,
    pub full_range: bool,
    /// ISO/IEC 23091-4 code points; 2 is "unspecified".
    pub colour_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
}

/// Length of the record without codec initialization data.
const RECORD_LEN: usize = 8;

impl VpccRecord {
    /// Reads a `vpcC` box payload (version 1, flags 0, record) or a bare record. The form is
    /// told by the first four bytes: `01 00 00 00` cannot start a bare record, whose third
    /// byte (bit depth) is never 0.
    pub fn parse(data: &[u8]) -> Result<Self, MediaError> {
        let record = match data.get(..4) {
            Some([1, 0, 0, 0]) => &data[4..],
            Some([0, 0, 0, 0]) => {
                return Err(MediaError::Unsupported(
                    "a vpcC of version 0 (the binding's draft layout)".into(),
                ))
            }
            Some(_) => data,
            None => {
                return Err(MediaError::Truncated {
                    what: WHAT,
                    needed: RECORD_LEN,
                    had: data.len(),
                })
            }
        };
        if record.len() < RECORD_LEN {
            return Err(MediaError::Truncated {
                what: WHAT,
                needed: RECORD_LEN,
                had: record.len(),
            });
        }
        let init_size = usize::from(u16::from_be_bytes([record[6], record[7]]));
        if record.len() < RECORD_LEN + init_size {
            return Err(MediaError::Truncated {
                what: WHAT,
                needed: RECORD_LEN + init_size,
                had: record.len(),
            });
        }
        let r = VpccRecord {
            profile: record[0],
            level: record[1],
            bit_depth: record[2] >> 4,
            chroma_subsampling: record[2] >> 1 & 0x07,
            full_range: record[2] & 1 == 1,
            colour_primaries: record[3],
            transfer_characteristics: record[4],
            matrix_coefficients: record[5],
        };
        if r.profile > 3 {
            return Err(MediaError::invalid(
                WHAT,
                format!("profile {} (VP8 and VP9 have 0 to 3)", r.profile),
            ));
        }
        if !matches!(r.bit_depth, 8 | 10 | 12) {
            return Err(MediaError::invalid(
                WHAT,
                format!("bit depth {} (8, 10 or 12)", r.bit_depth),
            ));
        }
        if r.chroma_subsampling > 3 {
            return Err(MediaError::invalid(
                WHAT,
                format!("chroma subsampling {} (0 to 3)", r.chroma_subsampling),
            ));
        }
        Ok(r)
    }

    /// The `vpcC` box payload: version 1, flags 0, the record, no initialization data.
    pub fn to_box_payload(&self) -> Bytes {
        Bytes::from(vec![
            1, // version
            0,
            0,
            0, // flags
            self.profile,
            self.level,
            self.bit_depth << 4 | (self.chroma_subsampling & 0x07) << 1 | u8::from(self.full_range),
            self.colour_primaries,
            self.transfer_characteristics,
            self.matrix_coefficients,
            0,
            0, // codecIntializationDataSize
        ])
    }
}

/// `data` (a `vpcC` box payload or a bare record, checked by [`VpccRecord::parse`]) as a box
/// payload: the same bytes when they already are one, else the record behind version 1 and
/// flags 0.
pub fn as_box_payload(data: Bytes) -> Result<Bytes, MediaError> {
    VpccRecord::parse(&data)?;
    if data.starts_with(&[1, 0, 0, 0]) {
        Ok(data)
    } else {
        Ok([&[1, 0, 0, 0][..], &data[..]].concat().into())
    }
}

/// The smallest level of the VP9 bitstream specification's Annex A (as 10 x level) whose
/// maximum picture size holds `width` x `height`; the frame rate is not known, so it is not
/// counted. The binding uses the same table for VP8, which has no levels of its own.
pub fn level_for_picture_size(width: u32, height: u32) -> u8 {
    const LEVELS: [(u64, u8); 8] = [
        (36_864, 10),
        (73_728, 11),
        (122_880, 20),
        (245_760, 21),
        (552_960, 30),
        (983_040, 31),
        (2_228_224, 41),
        (8_912_896, 52),
    ];
    let samples = u64::from(width) * u64::from(height);
    LEVELS
        .iter()
        .find(|(max, _)| samples <= *max)
        .map_or(62, |(_, l)| *l)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FFmpeg 9.0.2's `vp09` sequence start for 320x240 libvpx-vp9 (its FLV muxer).
    const FFMPEG9_VP9: [u8; 12] = [1, 0, 0, 0, 0, 20, 0x82, 2, 2, 2, 0, 0];

    #[test]
    fn ffmpeg_box_payload_reads_and_writes_back() {
        let r = VpccRecord::parse(&FFMPEG9_VP9).unwrap();
        assert_eq!(
            r,
            VpccRecord {
                profile: 0,
                level: 20,
                bit_depth: 8,
                chroma_subsampling: 1,
                full_range: false,
                colour_primaries: 2,
                transfer_characteristics: 2,
                matrix_coefficients: 2,
            }
        );
        assert_eq!(&r.to_box_payload()[..], &FFMPEG9_VP9[..]);
    }

    #[test]
    fn bare_records_become_box_payloads() {
        let bare = Bytes::copy_from_slice(&FFMPEG9_VP9[4..]);
        assert_eq!(
            VpccRecord::parse(&bare).unwrap(),
            VpccRecord::parse(&FFMPEG9_VP9).unwrap()
        );
        assert_eq!(&as_box_payload(bare).unwrap()[..], &FFMPEG9_VP9[..]);
        let boxed = Bytes::from_static(&FFMPEG9_VP9);
        assert_eq!(as_box_payload(boxed.clone()).unwrap(), boxed);
    }

    #[test]
    fn short_or_impossible_records_are_errors() {
        for n in 0..12 {
            assert!(VpccRecord::parse(&FFMPEG9_VP9[..n]).is_err(), "{n} bytes");
        }
        let with = |i: usize, v: u8| {
            let mut r = FFMPEG9_VP9;
            r[i] = v;
            VpccRecord::parse(&r)
        };
        assert!(with(4, 4).is_err(), "profile 4");
        assert!(with(6, 0x92).is_err(), "bit depth 9");
        assert!(with(6, 0x8e).is_err(), "chroma subsampling 7");
        assert!(with(11, 1).is_err(), "initialization data past the end");
        assert!(matches!(
            VpccRecord::parse(&[0, 0, 0, 0, 0, 10, 0x80, 2, 2, 2, 0, 0]),
            Err(MediaError::Unsupported(_))
        ));
    }

    #[test]
    fn levels_follow_the_picture_size() {
        assert_eq!(level_for_picture_size(426, 240), 20);
        assert_eq!(level_for_picture_size(640, 480), 30);
        assert_eq!(level_for_picture_size(1280, 720), 31);
        assert_eq!(level_for_picture_size(1920, 1080), 41);
        assert_eq!(level_for_picture_size(7680, 4320), 62);
    }
}
