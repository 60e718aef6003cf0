//! H.265 helpers: NAL unit types (ITU-T H.265 7.4.2.2, Table 7-1), the parts of the sequence
//! parameter set a container needs (7.3.2.2.1 with profile_tier_level from 7.3.3: profile,
//! tier, level, chroma format, bit depths, picture size), the HEVCDecoderConfigurationRecord
//! (ISO/IEC 14496-15 8.3.3.1) both ways and its RFC 6381 codec string (ISO/IEC 14496-15 E.3),
//! and keyframe detection.

use crate::bits::{unescape_rbsp, BitReader};
use crate::error::MediaError;
use crate::nal::nal_units;
use bytes::{BufMut, Bytes, BytesMut};

/// Video parameter set.
pub const NAL_VPS: u8 = 32;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// Picture parameter set.
pub const NAL_PPS: u8 = 34;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 35;
/// Filler data.
pub const NAL_FD: u8 = 38;
/// Prefix SEI.
pub const NAL_PREFIX_SEI: u8 = 39;

/// The `nal_unit_type` of a NAL unit (the 6 bits after the forbidden bit of its 2-byte
/// header); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// An intra random access point picture's slice (BLA, IDR, CRA and the reserved IRAP types,
/// 16..=23): decoding can start there.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// True when a 4-byte length-prefixed H.265 access unit holds an IRAP slice. Malformed data
/// is not a keyframe.
pub fn is_keyframe(data: &[u8]) -> bool {
    nal_units(data).any(|n| matches!(n, Ok(nal) if is_irap(nal_type(nal))))
}

/// What a container needs from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    /// sps_max_sub_layers_minus1 + 1.
    pub max_sub_layers: u8,
    pub temporal_id_nesting: bool,
    /// The general part of profile_tier_level (12 bytes): profile space, tier and profile
    /// idc, 32 compatibility flags, 48 bits of constraint flags, level idc, as in the record.
    pub general_profile_tier_level: [u8; 12],
    pub chroma_format_idc: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Cropped picture size (conformance window applied).
    pub width: u32,
    pub height: u32,
}

/// Parses an SPS NAL unit (with its 2-byte NAL unit header).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, MediaError> {
    const WHAT: &str = "H.265 SPS";
    if nal_type(nal) != NAL_SPS || nal.len() < 3 {
        return Err(MediaError::invalid(
            WHAT,
            format!("NAL type {} is not an SPS", nal_type(nal)),
        ));
    }
    let rbsp = unescape_rbsp(&nal[2..]);
    let mut r = BitReader::new(&rbsp, WHAT);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nesting = r.flag()?;
    // profile_tier_level(1, sps_max_sub_layers_minus1), 7.3.3: the general part is 88 bits of
    // profile and 8 of level, byte-aligned here (it starts at bit 8 of the RBSP).
    let mut general_profile_tier_level = [0u8; 12];
    for b in general_profile_tier_level.iter_mut() {
        *b = r.bits(8)? as u8;
    }
    let mut sub_layer_present = Vec::with_capacity(max_sub_layers_minus1 as usize);
    for _ in 0..max_sub_layers_minus1 {
        sub_layer_present.push((r.flag()?, r.flag()?));
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for (profile_present, level_present) in sub_layer_present {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return Err(MediaError::invalid(
            WHAT,
            format!("chroma_format_idc {chroma_format_idc}"),
        ));
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.flag()?;
    let width = r.ue()?;
    let height = r.ue()?;
    let (mut crop_w, mut crop_h) = (0u32, 0u32);
    if r.flag()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        // Table 6-1: SubWidthC / SubHeightC from ChromaArrayType.
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let sub_w = if matches!(chroma_array_type, 1 | 2) {
            2
        } else {
            1
        };
        let sub_h = if chroma_array_type == 1 { 2 } else { 1 };
        crop_w = left.saturating_add(right).saturating_mul(sub_w);
        crop_h = top.saturating_add(bottom).saturating_mul(sub_h);
    }
    let bit_depth_luma = r.ue()?.saturating_add(8);
    let bit_depth_chroma = r.ue()?.saturating_add(8);
    if bit_depth_luma > 16 || bit_depth_chroma > 16 {
        return Err(MediaError::invalid(
            WHAT,
            format!("bit depth {bit_depth_luma}/{bit_depth_chroma}"),
        ));
    }
    let (width, height) = (width.saturating_sub(crop_w), height.saturating_sub(crop_h));
    if width == 0 || height == 0 {
        return Err(MediaError::invalid(
            WHAT,
            format!("picture size {width}x{height}"),
        ));
    }
    Ok(SpsInfo {
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
        general_profile_tier_level,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma as u8,
        bit_depth_chroma: bit_depth_chroma as u8,
        width,
        height,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    pub general_profile_compatibility_flags: u32,
    pub general_constraint_indicator_flags: [u8; 6],
    pub general_level_idc: u8,
    /// Picture size, when known from elsewhere (stream metadata).
    pub resolution: Option<(u32, u32)>,
    pub record: Bytes,
}

impl HevcConfig {
    pub fn parse(record: Bytes) -> Result<HevcConfig, MediaError> {
        const WHAT: &str = "HEVCDecoderConfigurationRecord";
        if record.len() < 23 {
            return Err(MediaError::Truncated {
                what: WHAT,
                needed: 23,
                had: record.len(),
            });
        }
        if record[0] != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {}", record[0]),
            ));
        }
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&record[6..12]);
        Ok(HevcConfig {
            general_profile_space: record[1] >> 6,
            general_tier_flag: record[1] & 0x20 != 0,
            general_profile_idc: record[1] & 0x1f,
            general_profile_compatibility_flags: u32::from_be_bytes([
                record[2], record[3], record[4], record[5],
            ]),
            general_constraint_indicator_flags: constraints,
            general_level_idc: record[12],
            resolution: None,
            record,
        })
    }

    /// Builds the record from VPS, SPS and PPS NAL units (as received in-band or in an SDP's
    /// `sprop-vps`/`sprop-sps`/`sprop-pps`, RFC 7798 7.1): profile, tier, level, chroma format
    /// and bit depths from the first SPS, 4-byte NAL lengths, one array per parameter set type
    /// (complete: they are all here). The picture size comes from the SPS too.
    pub fn from_parameter_sets(
        vps: &[Bytes],
        sps: &[Bytes],
        pps: &[Bytes],
    ) -> Result<HevcConfig, MediaError> {
        const WHAT: &str = "H.265 parameter sets";
        let first = sps
            .first()
            .ok_or_else(|| MediaError::invalid(WHAT, "no SPS"))?;
        if vps.is_empty() {
            return Err(MediaError::invalid(WHAT, "no VPS"));
        }
        if pps.is_empty() {
            return Err(MediaError::invalid(WHAT, "no PPS"));
        }
        let info = parse_sps(first)?;
        let arrays = [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)];
        for (_, sets) in arrays {
            if sets.len() > usize::from(u16::MAX) || sets.iter().any(|s| s.len() > 0xffff) {
                return Err(MediaError::invalid(WHAT, "parameter set too large"));
            }
        }
        let mut rec = BytesMut::new();
        rec.put_u8(1); // configurationVersion
        rec.put_slice(&info.general_profile_tier_level[..11]);
        rec.put_u8(info.general_profile_tier_level[11]); // general_level_idc
        rec.put_u16(0xf000); // reserved, min_spatial_segmentation_idc 0 (unknown)
        rec.put_u8(0xfc); // reserved, parallelismType 0 (unknown)
        rec.put_u8(0xfc | info.chroma_format_idc);
        rec.put_u8(0xf8 | (info.bit_depth_luma - 8));
        rec.put_u8(0xf8 | (info.bit_depth_chroma - 8));
        rec.put_u16(0); // avgFrameRate unknown
                        // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3.
        rec.put_u8(
            ((info.max_sub_layers & 7) << 3) | (u8::from(info.temporal_id_nesting) << 2) | 3,
        );
        rec.put_u8(arrays.len() as u8);
        for (kind, sets) in arrays {
            rec.put_u8(0x80 | kind); // array_completeness 1
            rec.put_u16(sets.len() as u16);
            for s in sets {
                rec.put_u16(s.len() as u16);
                rec.put_slice(s);
            }
        }
        let mut config = HevcConfig::parse(rec.freeze())?;
        config.resolution = Some((info.width, info.height));
        Ok(config)
    }

    /// The parameter set NAL units of the record's arrays, in order (VPS, SPS, PPS as built by
    /// [`HevcConfig::from_parameter_sets`]; SEI arrays too if a record has them).
    pub fn parameter_sets(&self) -> Vec<Bytes> {
        let mut out = Vec::new();
        let rec = &self.record;
        let Some(&count) = rec.get(22) else {
            return out;
        };
        let mut pos = 23;
        for _ in 0..count {
            let Some(n) = rec.get(pos + 1..pos + 3) else {
                break;
            };
            let n = u16::from_be_bytes([n[0], n[1]]);
            pos += 3;
            for _ in 0..n {
                let Some(len) = rec.get(pos..pos + 2) else {
                    return out;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(_) = rec.get(pos + 2..pos + 2 + len) else {
                    return out;
                };
                out.push(rec.slice(pos + 2..pos + 2 + len));
                pos += 2 + len;
            }
        }
        out
    }

    /// e.g. `hvc1.1.6.L93.B0`.
    pub fn rfc6381_codec(&self) -> String {
        let space = match self.general_profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        // The compatibility flags are written in reverse bit order, as hex without leading zeros.
        let compat = self.general_profile_compatibility_flags.reverse_bits();
        let tier = if self.general_tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{compat:X}.{tier}{}",
            self.general_profile_idc, self.general_level_idc
        );
        let last = self
            .general_constraint_indicator_flags
            .iter()
            .rposition(|b| *b != 0);
        if let Some(last) = last {
            for b in &self.general_constraint_indicator_flags[..=last] {
                s.push_str(&format!(".{b:X}"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The parameter sets of x265 3.5 (GStreamer 1.22 `x265enc`, Main profile 320x240), from
    // the capture in protocols/rtp/testdata/gst.h265.
    pub(crate) const VPS: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x92, 0x80, 0x90,
    ];
    pub(crate) const SPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x2a, 0x49, 0x32, 0xbf, 0xfc, 0x00,
        0x04, 0x00, 0x05, 0xa8, 0x30, 0x30, 0x30, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00,
        0x03, 0x03, 0x21,
    ];
    pub(crate) const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x42, 0x40];

    #[test]
    fn sps_gives_profile_level_and_size() {
        let info = parse_sps(SPS).unwrap();
        assert_eq!((info.width, info.height), (320, 240));
        assert_eq!(info.chroma_format_idc, 1);
        assert_eq!((info.bit_depth_luma, info.bit_depth_chroma), (8, 8));
        assert_eq!(info.max_sub_layers, 1);
        assert_eq!(info.general_profile_tier_level[0], 0x01); // Main
        assert_eq!(info.general_profile_tier_level[11], 60); // level 2
    }

    #[test]
    fn record_from_parameter_sets_round_trips() {
        let sets = |s: &'static [u8]| vec![Bytes::from_static(s)];
        let cfg = HevcConfig::from_parameter_sets(&sets(VPS), &sets(SPS), &sets(PPS)).unwrap();
        // As ffprobe names it: Main, level 2 (60 / 30), Main tier, progressive source flag.
        assert_eq!(cfg.rfc6381_codec(), "hvc1.1.6.L60.90");
        assert_eq!(cfg.resolution, Some((320, 240)));
        assert_eq!(cfg.record[21] & 3, 3, "4-byte NAL lengths");
        let parsed = HevcConfig::parse(cfg.record.clone()).unwrap();
        assert_eq!(parsed.general_level_idc, 60);
        assert_eq!(
            cfg.parameter_sets(),
            [
                Bytes::from_static(VPS),
                Bytes::from_static(SPS),
                Bytes::from_static(PPS)
            ]
        );
        assert!(HevcConfig::from_parameter_sets(&[], &sets(SPS), &sets(PPS)).is_err());
        assert!(HevcConfig::from_parameter_sets(&sets(VPS), &sets(PPS), &sets(PPS)).is_err());
    }

    #[test]
    fn bad_sps_is_an_error_not_a_panic() {
        for n in 0..SPS.len() {
            let _ = parse_sps(&SPS[..n]);
        }
        assert!(parse_sps(&SPS[..10]).is_err());
        assert!(parse_sps(PPS).is_err());
    }

    #[test]
    fn keyframes_are_irap_pictures() {
        // IDR_N_LP, CRA, TRAIL_R
        assert!(is_keyframe(&[0, 0, 0, 3, 0x28, 0x01, 0xaf]));
        assert!(is_keyframe(&[
            0, 0, 0, 2, 0x4e, 0x01, 0, 0, 0, 3, 0x2a, 0x01, 0xaf
        ]));
        assert!(!is_keyframe(&[0, 0, 0, 3, 0x02, 0x01, 0xd0]));
        assert!(!is_keyframe(&[0, 0, 9, 2, 0x28]));
    }

    #[test]
    fn main_profile_codec_string() {
        let mut rec = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        rec.resize(23, 0);
        let cfg = HevcConfig::parse(Bytes::from(rec)).unwrap();
        assert_eq!(cfg.rfc6381_codec(), "hvc1.1.6.L93.90");
        assert!(HevcConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
    }
}
