//! VP9 keyframe headers (VP9 bitstream specification 6.2 `uncompressed_header`, 7.2) and the
//! `vpcC` record (VP Codec ISO Media File Format Binding 2.2, see [`crate::vpcc`]) built from them; the picture
//! size of a `vp09` sample entry. VP9 has no out-of-band configuration, so every keyframe
//! tells its size (a stream may change it at any keyframe; decoders follow in-band).

use crate::bits::BitReader;
pub use crate::vpcc::level_for_picture_size;
use crate::vpcc::VpccRecord;
use bytes::Bytes;

/// What a VP9 keyframe's uncompressed header (VP9 bitstream specification 6.2, 7.2) says
/// about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9KeyframeInfo {
    pub profile: u8,
    pub bit_depth: u8,
    /// (subsampling_x, subsampling_y): (1, 1) is 4:2:0.
    pub subsampling: (u8, u8),
    pub full_range: bool,
    /// `color_space` (0 unknown, 1 BT.601, 2 BT.709, ..., 7 sRGB).
    pub color_space: u8,
    pub width: u32,
    pub height: u32,
}

impl Vp9KeyframeInfo {
    /// Reads the header of a keyframe; `None` when `frame` is not a keyframe or is cut short.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let mut r = BitReader::new(frame, "VP9 uncompressed header");
        if r.bits(2).ok()? != 2 {
            return None; // frame_marker
        }
        let low = r.bits(1).ok()?;
        let high = r.bits(1).ok()?;
        let profile = (high << 1 | low) as u8;
        if profile == 3 {
            r.skip(1).ok()?;
        }
        if r.flag().ok()? {
            return None; // show_existing_frame
        }
        if r.bits(1).ok()? != 0 {
            return None; // frame_type: not KEY_FRAME
        }
        r.skip(2).ok()?; // show_frame, error_resilient_mode
        if r.bits(24).ok()? != 0x49_83_42 {
            return None; // frame_sync_code
        }
        let bit_depth = if profile >= 2 {
            if r.flag().ok()? {
                12
            } else {
                10
            }
        } else {
            8
        };
        let color_space = r.bits(3).ok()? as u8;
        let (full_range, subsampling);
        if color_space != 7 {
            full_range = r.flag().ok()?;
            subsampling = if profile == 1 || profile == 3 {
                let s = (r.bits(1).ok()? as u8, r.bits(1).ok()? as u8);
                r.skip(1).ok()?;
                s
            } else {
                (1, 1)
            };
        } else {
            full_range = true;
            subsampling = (0, 0);
            if profile == 1 || profile == 3 {
                r.skip(1).ok()?;
            }
        }
        let width = r.bits(16).ok()? + 1;
        let height = r.bits(16).ok()? + 1;
        Some(Vp9KeyframeInfo {
            profile,
            bit_depth,
            subsampling,
            full_range,
            color_space,
            width,
            height,
        })
    }

    /// The `vpcC` box payload (VP Codec ISO Media File Format Binding 2.2: version 1, flags 0,
    /// then the VPCodecConfigurationRecord), as MP4 writers and Enhanced RTMP carry it. The
    /// level is the smallest whose picture size fits (the frame rate is not known here).
    pub fn vpcc(&self) -> Bytes {
        let chroma_subsampling = match self.subsampling {
            (1, 1) => 1, // 4:2:0, siting unknown: "colocated with luma" as ffmpeg assumes
            (1, 0) => 2,
            _ => 3,
        };
        // color_space -> (primaries, transfer, matrix) of ISO/IEC 23091-4; 2 = unspecified.
        let (colour_primaries, transfer_characteristics, matrix_coefficients) =
            match self.color_space {
                1 => (6, 6, 6),  // BT.601
                2 => (1, 1, 1),  // BT.709
                3 => (6, 6, 6),  // SMPTE 170
                4 => (7, 7, 7),  // SMPTE 240
                5 => (9, 14, 9), // BT.2020
                7 => (1, 13, 0), // sRGB
                _ => (2, 2, 2),
            };
        VpccRecord {
            profile: self.profile,
            level: level_for_picture_size(self.width, self.height),
            bit_depth: self.bit_depth,
            chroma_subsampling,
            full_range: self.full_range,
            colour_primaries,
            transfer_characteristics,
            matrix_coefficients,
        }
        .to_box_payload()
    }
}

/// `vp09.PP.LL.DD` (VP Codec ISO Media File Format Binding, "Codecs Parameter String") from a
/// `vpcC` box payload (version and flags, then the record); plain `vp09` if it is too short.
pub fn codec_string(vpcc: &[u8]) -> String {
    match vpcc.get(4..7) {
        Some(&[profile, level, depth]) => {
            format!("vp09.{profile:02}.{level:02}.{:02}", depth >> 4)
        }
        _ => "vp09".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::read_ivf;

    /// FFmpeg 9.0.2 + libvpx-vp9, 426x240 (fixtures/README.md).
    const LIBVPX_VP9: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-vp9-426x240.ivf");

    #[test]
    fn libvpx_keyframe_gives_size_and_vpcc() {
        let frames = read_ivf(LIBVPX_VP9);
        let info = Vp9KeyframeInfo::parse(frames[0]).unwrap();
        assert_eq!((info.width, info.height), (426, 240));
        assert_eq!(
            (info.profile, info.bit_depth, info.subsampling),
            (0, 8, (1, 1))
        );
        let vpcc = info.vpcc();
        assert_eq!(&vpcc[..7], &[1, 0, 0, 0, 0, 20, 0x82]);
        assert_eq!(codec_string(&vpcc), "vp09.00.20.08");
        assert_eq!(Vp9KeyframeInfo::parse(frames[1]), None, "not a keyframe");
    }

    #[test]
    fn cut_short_headers_give_nothing() {
        let frames = read_ivf(LIBVPX_VP9);
        for n in 0..8 {
            assert_eq!(Vp9KeyframeInfo::parse(&frames[0][..n]), None);
        }
        assert_eq!(codec_string(&[1, 0, 0]), "vp09");
    }
}
