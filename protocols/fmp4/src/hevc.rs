//! Picture size from an H.265 sequence parameter set (ITU-T H.265 7.3.2.2.1, with
//! profile_tier_level from 7.3.3), for the `hvc1` sample entry when the track's
//! [`HevcConfig`](switchyard_media::h265::HevcConfig) does not know its resolution.
//!
//! Chromium's MSE rejects a video config with an empty coded size, so a sample entry of 0x0 is
//! not an option there; ffmpeg would not mind (it reads the SPS itself).

use switchyard_media::bits::{unescape_rbsp, BitReader};
use switchyard_media::MediaError;

/// Cropped picture size (width, height) from an SPS NAL unit (with its 2-byte NAL header).
pub(crate) fn sps_resolution(nal: &[u8]) -> Result<(u32, u32), MediaError> {
    const WHAT: &str = "H.265 SPS";
    let rbsp = unescape_rbsp(nal.get(2..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp, WHAT);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.skip(1)?; // sps_temporal_id_nesting_flag
                // profile_tier_level(1, sps_max_sub_layers_minus1): the general part is 88 bits of profile
                // and 8 of level.
    r.skip(96)?;
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
    let (w, h) = (width.saturating_sub(crop_w), height.saturating_sub(crop_h));
    if w == 0 || h == 0 {
        return Err(MediaError::invalid(WHAT, format!("picture size {w}x{h}")));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_sps_is_an_error_not_a_panic() {
        assert!(sps_resolution(&[]).is_err());
        assert!(sps_resolution(&[0x42, 0x01, 0x01]).is_err());
    }
}
