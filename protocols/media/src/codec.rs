//! What a track carries: its [`MediaKind`] and the [`CodecConfig`] a decoder needs besides the
//! frames (ISO/IEC 14496-15 records for H.264/H.265, `av1C`, `vpcC`, the AAC
//! AudioSpecificConfig, the OpusHead), with the names, RFC 6381 codec strings and picture sizes
//! derived from it.

use bytes::Bytes;
use std::fmt;

use crate::{aac, av1, h264, h265, vp8, vp9};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        })
    }
}

/// G.711 companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    ALaw,
    MuLaw,
}

/// Everything a decoder needs besides the frames themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecConfig {
    /// H.264 with its AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3).
    H264(h264::AvcConfig),
    /// H.265 with its HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3).
    H265(h265::HevcConfig),
    /// AV1 with its AV1CodecConfigurationRecord (av1C, AV1 ISOBMFF binding 2.3.3; see [`av1`]).
    Av1 { av1c: Bytes },
    /// VP8 needs no out-of-band configuration.
    Vp8,
    /// VP9 with its VPCodecConfigurationRecord (vpcC): the box payload with its version (1)
    /// and flags, as Enhanced RTMP carries it (see [`vp9`]).
    Vp9 { vpcc: Bytes },
    /// AAC with its AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
    Aac(aac::AudioSpecificConfig),
    /// Opus with its identification header (RFC 7845 5.1) when the source had one.
    Opus { channels: u8, head: Option<Bytes> },
    /// G.711 at 8 kHz.
    G711 { law: G711Law, channels: u8 },
}

impl CodecConfig {
    pub fn kind(&self) -> MediaKind {
        match self {
            CodecConfig::H264(_)
            | CodecConfig::H265(_)
            | CodecConfig::Av1 { .. }
            | CodecConfig::Vp8
            | CodecConfig::Vp9 { .. } => MediaKind::Video,
            CodecConfig::Aac(_) | CodecConfig::Opus { .. } | CodecConfig::G711 { .. } => {
                MediaKind::Audio
            }
        }
    }

    /// Short codec name, as ffprobe would print it.
    pub fn name(&self) -> &'static str {
        match self {
            CodecConfig::H264(_) => "h264",
            CodecConfig::H265(_) => "hevc",
            CodecConfig::Av1 { .. } => "av1",
            CodecConfig::Vp8 => "vp8",
            CodecConfig::Vp9 { .. } => "vp9",
            CodecConfig::Aac(_) => "aac",
            CodecConfig::Opus { .. } => "opus",
            CodecConfig::G711 {
                law: G711Law::ALaw, ..
            } => "pcm_alaw",
            CodecConfig::G711 {
                law: G711Law::MuLaw,
                ..
            } => "pcm_mulaw",
        }
    }

    /// The RFC 6381 `codecs` parameter value (as used in MIME types and HLS playlists).
    pub fn rfc6381_codec(&self) -> String {
        match self {
            CodecConfig::H264(c) => c.rfc6381_codec(),
            CodecConfig::H265(c) => c.rfc6381_codec(),
            CodecConfig::Av1 { av1c } => av1_codec_string(av1c),
            // VP8 has no levels of its own, but the VP codec binding's string has a level field;
            // the picture size is not in this config, so 4.1 (VP9's table: up to 1080p) stands
            // for any WebRTC-sized stream (Chromium takes no `vp08` in MP4 MSE at all).
            CodecConfig::Vp8 => "vp08.00.41.08".to_string(),
            CodecConfig::Vp9 { vpcc } => vp9::codec_string(vpcc),
            CodecConfig::Aac(c) => c.rfc6381_codec(),
            CodecConfig::Opus { .. } => "opus".to_string(),
            CodecConfig::G711 {
                law: G711Law::ALaw, ..
            } => "alaw".to_string(),
            CodecConfig::G711 {
                law: G711Law::MuLaw,
                ..
            } => "ulaw".to_string(),
        }
    }

    /// Picture size when the configuration tells it: H.264, H.265, and AV1 when its av1C has
    /// the sequence header among its configOBUs. VP8 and VP9 have none (see
    /// [`CodecConfig::keyframe_resolution`]).
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            CodecConfig::H264(c) => Some((c.sps.width, c.sps.height)),
            CodecConfig::H265(c) => c.resolution,
            CodecConfig::Av1 { av1c } => av1::picture_size(av1::av1c_config_obus(av1c)),
            _ => None,
        }
    }

    /// Picture size as a keyframe of this codec tells it (VP8 and VP9 frame headers, an AV1
    /// sequence header in the temporal unit), else as the configuration does. For a sample
    /// entry or metadata of a stream whose configuration lacks it; the size may change at a
    /// later keyframe, which decoders of these codecs follow in-band.
    pub fn keyframe_resolution(&self, data: &[u8]) -> Option<(u32, u32)> {
        match self {
            CodecConfig::Vp8 => vp8::Vp8KeyframeInfo::parse(data).map(|i| (i.width, i.height)),
            CodecConfig::Vp9 { .. } => {
                vp9::Vp9KeyframeInfo::parse(data).map(|i| (i.width, i.height))
            }
            CodecConfig::Av1 { .. } => av1::picture_size(data).or_else(|| self.resolution()),
            _ => self.resolution(),
        }
    }
}

/// `av01.P.LLT.DD` (AV1 Codec ISO Media File Format Binding, "Codecs Parameter String") from an
/// AV1CodecConfigurationRecord; plain `av01` if the record is too short to tell.
fn av1_codec_string(av1c: &[u8]) -> String {
    let (Some(&b1), Some(&b2)) = (av1c.get(1), av1c.get(2)) else {
        return "av01".to_string();
    };
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let bit_depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    format!("av01.{profile}.{level:02}{tier}.{bit_depth:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av1_codec_string_from_av1c() {
        // av1C of SVT-AV1 (FFmpeg 9.0.2) for 320x240, from fixtures/ffmpeg9-av1.flv: main
        // profile, level index 0 (2.0), main tier, 8-bit.
        let av1c = Bytes::from_static(&[0x81, 0x00, 0x0c, 0x00]);
        assert_eq!(CodecConfig::Av1 { av1c }.rfc6381_codec(), "av01.0.00M.08");
        assert_eq!(
            CodecConfig::Av1 { av1c: Bytes::new() }.rfc6381_codec(),
            "av01"
        );
    }
}
