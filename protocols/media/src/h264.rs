//! H.264 helpers: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), the parts of
//! the sequence parameter set an output needs (H.264 7.3.2.1.1: profile, level, picture size),
//! RFC 6381 codec strings and keyframe detection.

use crate::bits::{unescape_rbsp, BitReader};
use crate::error::MediaError;
use crate::nal::nal_units;
use bytes::{BufMut, Bytes, BytesMut};

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// What an output needs from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    /// The byte of constraint_set flags that follows `profile_idc`.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

/// Parses an SPS NAL unit (with its NAL header byte).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, MediaError> {
    if nal_type(nal) != NAL_SPS {
        return Err(MediaError::invalid(
            "H.264 SPS",
            format!("NAL type {} is not an SPS", nal_type(nal)),
        ));
    }
    let rbsp = unescape_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp, "H.264 SPS");
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(MediaError::invalid(
                "H.264 SPS",
                format!("chroma_format_idc {chroma_format_idc}"),
            ));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        let _bit_depth_luma = r.ue()?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            // seq_scaling_matrix_present_flag: skip the scaling lists (7.3.2.1.1.1).
            let lists = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..lists {
                if r.flag()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            // delta_scale is in -128..=127 (7.4.2.1.1.1); more would
                            // overflow the sum below (found by the flv_body fuzz target).
                            let delta = r.se()?;
                            if !(-128..=127).contains(&delta) {
                                return Err(MediaError::invalid(
                                    "H.264 SPS",
                                    format!("scaling list delta_scale {delta}"),
                                ));
                            }
                            next = (last + delta + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    let poc_type = r.ue()?;
    if poc_type == 0 {
        let _log2_max_poc_lsb = r.ue()?;
    } else if poc_type == 1 {
        r.flag()?;
        r.se()?;
        r.se()?;
        let cycle = r.ue()?;
        if cycle > 255 {
            return Err(MediaError::invalid(
                "H.264 SPS",
                format!("num_ref_frames_in_pic_order_cnt_cycle {cycle}"),
            ));
        }
        for _ in 0..cycle {
            r.se()?;
        }
    } else if poc_type > 2 {
        return Err(MediaError::invalid(
            "H.264 SPS",
            format!("pic_order_cnt_type {poc_type}"),
        ));
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps = r.flag()?;
    let width_mbs = r.ue()? as u64 + 1;
    let height_map_units = r.ue()? as u64 + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive = r.flag()?;
    }
    let _direct_8x8 = r.flag()?;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = r.ue()? as u64;
        crop_r = r.ue()? as u64;
        crop_t = r.ue()? as u64;
        crop_b = r.ue()? as u64;
    }
    let frame_height_mul = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        0 => (1, frame_height_mul),
        1 => (2, 2 * frame_height_mul),
        2 => (2, frame_height_mul),
        _ => (1, frame_height_mul),
    };
    let full_w = width_mbs * 16;
    let full_h = height_map_units * 16 * frame_height_mul;
    let crop_w = (crop_l + crop_r) * crop_unit_x;
    let crop_h = (crop_t + crop_b) * crop_unit_y;
    if crop_w >= full_w || crop_h >= full_h || full_w > 16384 || full_h > 16384 {
        return Err(MediaError::invalid(
            "H.264 SPS",
            format!("picture size {full_w}x{full_h} with cropping {crop_w}x{crop_h}"),
        ));
    }
    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        width: (full_w - crop_w) as u32,
        height: (full_h - crop_h) as u32,
    })
}

/// An H.264 decoder configuration: the parameter sets and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub sps: SpsInfo,
    pub sps_nals: Vec<Bytes>,
    pub pps_nals: Vec<Bytes>,
    /// The record exactly as received (or as built by [`AvcConfig::from_parameter_sets`]), with
    /// `lengthSizeMinusOne` rewritten to 3 since frames on the bus always use 4-byte lengths.
    pub record: Bytes,
    /// The NAL length size the source used (frames with other sizes are converted on input).
    pub source_length_size: u8,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord.
    pub fn parse(record: &[u8]) -> Result<AvcConfig, MediaError> {
        const WHAT: &str = "AVCDecoderConfigurationRecord";
        if record.len() < 7 {
            return Err(MediaError::Truncated {
                what: WHAT,
                needed: 7,
                had: record.len(),
            });
        }
        if record[0] != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {}", record[0]),
            ));
        }
        let source_length_size = (record[4] & 3) + 1;
        if source_length_size == 3 {
            return Err(MediaError::invalid(WHAT, "NAL length size of 3 bytes"));
        }
        let mut pos = 5;
        let take_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>, MediaError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let hdr = record.get(*pos..*pos + 2).ok_or(MediaError::Truncated {
                    what: WHAT,
                    needed: *pos + 2,
                    had: record.len(),
                })?;
                let len = u16::from_be_bytes([hdr[0], hdr[1]]) as usize;
                let body = record
                    .get(*pos + 2..*pos + 2 + len)
                    .ok_or(MediaError::Truncated {
                        what: WHAT,
                        needed: *pos + 2 + len,
                        had: record.len(),
                    })?;
                sets.push(Bytes::copy_from_slice(body));
                *pos += 2 + len;
            }
            Ok(sets)
        };
        let num_sps = (record[pos] & 0x1f) as usize;
        pos += 1;
        let sps_nals = take_sets(num_sps, &mut pos)?;
        let num_pps = *record.get(pos).ok_or(MediaError::Truncated {
            what: WHAT,
            needed: pos + 1,
            had: record.len(),
        })? as usize;
        pos += 1;
        let pps_nals = take_sets(num_pps, &mut pos)?;
        let first_sps = sps_nals
            .first()
            .ok_or_else(|| MediaError::invalid(WHAT, "no SPS"))?;
        if pps_nals.is_empty() {
            return Err(MediaError::invalid(WHAT, "no PPS"));
        }
        let sps = parse_sps(first_sps)?;
        let mut normalized = record.to_vec();
        normalized[4] |= 3;
        Ok(AvcConfig {
            sps,
            sps_nals,
            pps_nals,
            record: Bytes::from(normalized),
            source_length_size,
        })
    }

    /// Builds the record from SPS and PPS NAL units (as received in-band, e.g. over RTP).
    pub fn from_parameter_sets(
        sps_nals: Vec<Bytes>,
        pps_nals: Vec<Bytes>,
    ) -> Result<AvcConfig, MediaError> {
        let first = sps_nals
            .first()
            .ok_or_else(|| MediaError::invalid("H.264 parameter sets", "no SPS"))?;
        if pps_nals.is_empty() {
            return Err(MediaError::invalid("H.264 parameter sets", "no PPS"));
        }
        let sps = parse_sps(first)?;
        let mut rec = BytesMut::new();
        rec.put_u8(1);
        rec.put_u8(sps.profile_idc);
        rec.put_u8(sps.constraint_flags);
        rec.put_u8(sps.level_idc);
        rec.put_u8(0xff); // reserved 6 bits + lengthSizeMinusOne = 3
        rec.put_u8(0xe0 | sps_nals.len() as u8);
        for s in &sps_nals {
            rec.put_u16(s.len() as u16);
            rec.put_slice(s);
        }
        rec.put_u8(pps_nals.len() as u8);
        for p in &pps_nals {
            rec.put_u16(p.len() as u16);
            rec.put_slice(p);
        }
        Ok(AvcConfig {
            sps,
            sps_nals,
            pps_nals,
            record: rec.freeze(),
            source_length_size: 4,
        })
    }

    /// `avc1.PPCCLL` (RFC 6381 3.3).
    pub fn rfc6381_codec(&self) -> String {
        format!(
            "avc1.{:02X}{:02X}{:02X}",
            self.sps.profile_idc, self.sps.constraint_flags, self.sps.level_idc
        )
    }

    /// Profile name as ffprobe prints it.
    pub fn profile_name(&self) -> &'static str {
        match self.sps.profile_idc {
            66 if self.sps.constraint_flags & 0x40 != 0 => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4 Predictive",
            _ => "unknown",
        }
    }
}

/// True when a 4-byte length-prefixed H.264 access unit holds an IDR slice. Malformed data is
/// not a keyframe.
pub fn is_keyframe(data: &[u8]) -> bool {
    nal_units(data).any(|n| matches!(n, Ok(nal) if nal_type(nal) == NAL_IDR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaling_list_delta_out_of_range_is_an_error() {
        // From the flv_body fuzz target: a High profile SPS whose scaling list has a
        // delta_scale of about 2^31.
        let sps = [
            0x67, 0x64, 0x00, 0x1e, 0xfe, 0x00, 0x01, 0x03, 0x00, 0x00, 0xea, 0x00, 0x00, 0x00,
            0x00, 0xff, 0xff, 0xfe, 0x04, 0x68, 0xef, 0xbc, 0x03, 0x80, 0x38, 0x96,
        ];
        let e = parse_sps(&sps).unwrap_err().to_string();
        assert!(e.contains("delta_scale"), "{e}");
    }

    // SPS and PPS of ffmpeg 5.1 libx264 `-profile:v high` 640x360, copied from the AVC sequence
    // header in fixtures/ffmpeg-h264-high-bf2-aac.flv.
    const SPS_HIGH_640X360: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
    ];

    #[test]
    fn sps_gives_size_profile_level() {
        let info = parse_sps(&SPS_HIGH_640X360).unwrap();
        assert_eq!((info.profile_idc, info.level_idc), (100, 30));
        assert_eq!((info.width, info.height), (640, 360));
    }

    #[test]
    fn record_round_trips_through_parameter_sets() {
        let pps = Bytes::from_static(&[0x68, 0xef, 0xbc, 0xb0]);
        let cfg = AvcConfig::from_parameter_sets(
            vec![Bytes::copy_from_slice(&SPS_HIGH_640X360)],
            vec![pps],
        )
        .unwrap();
        let parsed = AvcConfig::parse(&cfg.record).unwrap();
        assert_eq!(parsed, cfg);
        assert_eq!(cfg.rfc6381_codec(), "avc1.64001E");
        assert_eq!(cfg.profile_name(), "High");
    }

    #[test]
    fn bad_sps_is_an_error_not_a_panic() {
        assert!(parse_sps(&[0x67, 0x64]).is_err());
        assert!(parse_sps(&[0x67, 0x64, 0, 0x1e, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(AvcConfig::parse(&[1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 40, 0x67]).is_err());
    }

    #[test]
    fn keyframe_detection() {
        assert!(is_keyframe(&[0, 0, 0, 2, 0x06, 0, 0, 0, 0, 2, 0x65, 0x88]));
        assert!(!is_keyframe(&[0, 0, 0, 2, 0x41, 0x9a]));
        assert!(!is_keyframe(&[0, 0, 9, 2, 0x65]));
    }
}
