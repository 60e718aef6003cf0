//! VP8 keyframe headers (RFC 6386 9.1): the frame tag and, on keyframes, the start code and
//! picture size, for the `vp08` sample entry and the `vpcC` record (VP Codec ISO Media File
//! Format Binding 2.2, see [`crate::vpcc`]) that Enhanced RTMP's `vp08` sequence start
//! carries. VP8 has no out-of-band configuration: every keyframe tells its size (a stream may
//! change it at any keyframe; decoders follow in-band).

use crate::vpcc::{level_for_picture_size, VpccRecord};
use bytes::Bytes;

/// What a VP8 keyframe's uncompressed data chunk (RFC 6386 9.1) says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8KeyframeInfo {
    /// The frame tag's `version` (0-3), which the VP codec ISO binding calls the profile.
    pub profile: u8,
    pub width: u32,
    pub height: u32,
}

impl Vp8KeyframeInfo {
    /// Reads the header of a keyframe; `None` when `frame` is not a keyframe, lacks the start
    /// code or is cut short.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let h = frame.get(..10)?;
        // Frame tag, 3 bytes little-endian: key_frame (0 = keyframe), version (3 bits),
        // show_frame, first_part_size (19 bits).
        if h[0] & 0x01 != 0 {
            return None;
        }
        if h[3..6] != [0x9d, 0x01, 0x2a] {
            return None;
        }
        // 14 bits of size and 2 of scaling (upscaling is the display's business), LE.
        let width = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
        let height = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
        if width == 0 || height == 0 {
            return None;
        }
        Some(Vp8KeyframeInfo {
            profile: (h[0] >> 1) & 0x07,
            width,
            height,
        })
    }

    /// The `vpcC` box payload for a stream starting with this keyframe: the frame tag's
    /// version as the profile, the level of the picture size (the binding uses VP9's table),
    /// 8-bit 4:2:0 (the only format VP8 has, RFC 6386 9.2), studio range, and BT.601's
    /// matrix (`color_space` 0 is "YUV as in BT.601"; primaries and transfer unspecified).
    pub fn vpcc(&self) -> Bytes {
        VpccRecord {
            profile: self.profile.min(3),
            level: level_for_picture_size(self.width, self.height),
            bit_depth: 8,
            chroma_subsampling: 1,
            full_range: false,
            colour_primaries: 2,
            transfer_characteristics: 2,
            matrix_coefficients: 6,
        }
        .to_box_payload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::read_ivf;

    /// FFmpeg 9.0.2 + libvpx, 426x240 (fixtures/README.md).
    const LIBVPX_VP8: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-vp8-426x240.ivf");

    #[test]
    fn libvpx_keyframe_gives_its_picture_size() {
        let frames = read_ivf(LIBVPX_VP8);
        assert_eq!(
            Vp8KeyframeInfo::parse(frames[0]),
            Some(Vp8KeyframeInfo {
                profile: 0,
                width: 426,
                height: 240
            })
        );
        assert_eq!(Vp8KeyframeInfo::parse(frames[1]), None, "not a keyframe");
    }

    #[test]
    fn libvpx_keyframe_gives_a_vpcc() {
        let info = Vp8KeyframeInfo::parse(read_ivf(LIBVPX_VP8)[0]).unwrap();
        assert_eq!(
            &info.vpcc()[..],
            &[1, 0, 0, 0, 0, 20, 0x82, 2, 2, 6, 0, 0],
            "profile 0, level 2.0, 8-bit 4:2:0"
        );
    }

    #[test]
    fn cut_short_or_damaged_headers_give_nothing() {
        let frames = read_ivf(LIBVPX_VP8);
        for n in 0..10 {
            assert_eq!(Vp8KeyframeInfo::parse(&frames[0][..n]), None);
        }
        let mut bad = frames[0].to_vec();
        bad[4] = 0;
        assert_eq!(Vp8KeyframeInfo::parse(&bad), None, "start code");
    }
}
