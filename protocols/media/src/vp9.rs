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
    /// For a superframe (spatial layers joined, see [`crate::vp9_svc`]) its first frame must
    /// be a keyframe, and the picture size is the last frame's (the top layer, the one shown)
    /// when its header states it.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let Some(frames) = superframe_frames(frame) else {
            return Self::parse_frame(frame);
        };
        let mut info = Self::parse_frame(&frame[frames[0].clone()])?;
        let last = &frame[frames[frames.len() - 1].clone()];
        if let Some((width, height)) = Vp9FrameHeader::parse(last).and_then(|h| h.size) {
            (info.width, info.height) = (width, height);
        }
        Some(info)
    }

    fn parse_frame(frame: &[u8]) -> Option<Self> {
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

/// What a frame's uncompressed header (VP9 bitstream specification 6.2) says about how it is
/// shown and how large it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9FrameHeader {
    /// `show_frame`, or true for `show_existing_frame` (which shows a frame decoded before).
    pub shown: bool,
    pub keyframe: bool,
    /// The frame size when the header states it: keyframes, intra-only frames, and inter
    /// frames that take no reference's size (`found_ref` = 0 for all three references, as the
    /// upper spatial layer of an SVC keyframe picture does). `None` for `show_existing_frame`
    /// and for sizes copied from a reference.
    pub size: Option<(u32, u32)>,
}

impl Vp9FrameHeader {
    /// Reads the start of a frame's uncompressed header; `None` when it is not a VP9 frame or
    /// is cut short.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let mut r = BitReader::new(frame, "VP9 uncompressed header");
        if r.bits(2).ok()? != 2 {
            return None; // frame_marker
        }
        let low = r.bits(1).ok()?;
        let high = r.bits(1).ok()?;
        let profile = high << 1 | low;
        if profile == 3 {
            r.skip(1).ok()?;
        }
        if r.flag().ok()? {
            return Some(Vp9FrameHeader {
                shown: true,
                keyframe: false,
                size: None,
            }); // show_existing_frame
        }
        let keyframe = !r.flag().ok()?; // frame_type 0 is KEY_FRAME
        let shown = r.flag().ok()?;
        let error_resilient = r.flag().ok()?;
        let size = if keyframe {
            Vp9KeyframeInfo::parse_frame(frame).map(|i| (i.width, i.height))
        } else {
            let intra_only = !shown && r.flag().ok()?;
            if !error_resilient {
                r.skip(2).ok()?; // reset_frame_context
            }
            if intra_only {
                if r.bits(24).ok()? != 0x49_83_42 {
                    return None; // frame_sync_code
                }
                if profile > 0 {
                    skip_color_config(&mut r, profile)?;
                }
                r.skip(8).ok()?; // refresh_frame_flags
                Some(read_frame_size(&mut r)?)
            } else {
                r.skip(8).ok()?; // refresh_frame_flags
                r.skip(3 * 4).ok()?; // ref_frame_idx and sign bias, per reference
                let mut found_ref = false;
                for _ in 0..3 {
                    if r.flag().ok()? {
                        found_ref = true;
                        break;
                    }
                }
                if found_ref {
                    None
                } else {
                    Some(read_frame_size(&mut r)?)
                }
            }
        };
        Some(Vp9FrameHeader {
            shown,
            keyframe,
            size,
        })
    }
}

/// `color_config()` (VP9 bitstream specification 6.2.2) of a `profile` > 0 intra-only frame.
fn skip_color_config(r: &mut BitReader<'_>, profile: u32) -> Option<()> {
    if profile >= 2 {
        r.skip(1).ok()?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3).ok()?;
    let subsampling_bits = if profile == 1 || profile == 3 { 3 } else { 0 };
    if color_space != 7 {
        r.skip(1 + subsampling_bits).ok()?; // color_range, subsampling, reserved
    } else if subsampling_bits > 0 {
        r.skip(1).ok()?;
    }
    Some(())
}

fn read_frame_size(r: &mut BitReader<'_>) -> Option<(u32, u32)> {
    let width = r.bits(16).ok()? + 1;
    let height = r.bits(16).ok()? + 1;
    Some((width, height))
}

/// Where each frame of a superframe lies (VP9 bitstream specification Annex B): the sizes in
/// its index, which must fit before the index. `None` when `data` has no superframe index (one
/// frame) or a broken one.
pub fn superframe_frames(data: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let marker = *data.last()?;
    if marker & 0xe0 != 0xc0 {
        return None;
    }
    let size_bytes = usize::from(marker >> 3 & 0x03) + 1;
    let frames = usize::from(marker & 0x07) + 1;
    let index_len = 2 + size_bytes * frames;
    let index_start = data.len().checked_sub(index_len)?;
    if data[index_start] != marker {
        return None;
    }
    let mut ranges = Vec::with_capacity(frames);
    let mut at = 0;
    for sizes in data[index_start + 1..data.len() - 1].chunks(size_bytes) {
        let size = sizes
            .iter()
            .rev()
            .fold(0usize, |n, &b| n << 8 | usize::from(b));
        let end = at + size;
        if size == 0 || end > index_start {
            return None;
        }
        ranges.push(at..end);
        at = end;
    }
    Some(ranges)
}

/// The superframe index (VP9 bitstream specification Annex B) for frames of `sizes` bytes
/// (2 to 8 of them), to follow the frames: a marker byte, each size little-endian in as few
/// bytes as the largest needs, the marker again.
///
/// # Panics
///
/// If `sizes` has fewer than 1 or more than 8 sizes, or one of 4 GiB or more.
pub fn superframe_index(sizes: &[usize]) -> Vec<u8> {
    assert!((1..=8).contains(&sizes.len()), "{} frames", sizes.len());
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let size_bytes = match largest {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        _ => 4,
    };
    assert!(largest <= u32::MAX as usize, "a frame of {largest} bytes");
    let marker = 0xc0 | (size_bytes as u8 - 1) << 3 | (sizes.len() as u8 - 1);
    let mut index = Vec::with_capacity(2 + size_bytes * sizes.len());
    index.push(marker);
    for &size in sizes {
        index.extend_from_slice(&(size as u32).to_le_bytes()[..size_bytes]);
    }
    index.push(marker);
    index
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
    fn frame_headers_say_shown_key_and_size() {
        let frames = read_ivf(LIBVPX_VP9);
        assert_eq!(
            Vp9FrameHeader::parse(frames[0]),
            Some(Vp9FrameHeader {
                shown: true,
                keyframe: true,
                size: Some((426, 240))
            })
        );
        let inter = Vp9FrameHeader::parse(frames[1]).unwrap();
        assert!(!inter.keyframe);
        // libvpx's second frame takes the size of its reference (found_ref).
        assert_eq!(inter.size, None);
        for n in 0..3 {
            assert_eq!(Vp9FrameHeader::parse(&frames[1][..n]), None);
        }
    }

    #[test]
    fn superframe_index_round_trips() {
        let frames = read_ivf(LIBVPX_VP9);
        for sizes in [vec![3, 5], vec![300, 70_000, 1], vec![1; 8]] {
            let mut data = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                data.extend(std::iter::repeat_n(i as u8, size));
            }
            data.extend(superframe_index(&sizes));
            let ranges = superframe_frames(&data).unwrap();
            let got: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            assert_eq!(got, sizes);
            assert_eq!(ranges[0].start, 0);
        }
        assert_eq!(superframe_index(&[3, 5]), [0xc1, 3, 5, 0xc1]);
        assert_eq!(superframe_frames(frames[0]), None, "one frame, no index");
        // Sizes past the index, a zero size, a marker that does not repeat.
        assert_eq!(superframe_frames(&[0, 0xc1, 3, 5, 0xc1]), None);
        assert_eq!(superframe_frames(&[0, 0, 0xc1, 0, 2, 0xc1]), None);
        assert_eq!(superframe_frames(&[1, 2, 3, 0xc0, 1, 0xc1]), None);
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
