//! Switchyard's media model: what every input produces and every output consumes.
//!
//! A stream is a set of [`Track`]s and a sequence of [`Frame`]s. A frame is one access unit
//! with timestamps in its track's clock rate. Video frames are length-prefixed NAL units with
//! 4-byte big-endian lengths (the AVCC/HVCC sample format of ISO/IEC 14496-15); parameter sets
//! live in the track's [`CodecConfig`], never only in-band. Codec helpers (H.264, H.265, AAC,
//! and the VP8, VP9 and AV1 headers that give a picture size) live in their own modules.
//!
//! This crate does no I/O and depends on nothing async, so every parser here is testable
//! against captured bytes and fuzzable.

pub mod aac;
pub mod av1;
pub mod bits;
pub mod h264;
pub mod h265;
pub mod vp8;
pub mod vp9;

use bytes::Bytes;
use std::fmt;

/// Errors from parsing codec data received from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("{what}: truncated (needed {needed} bytes, had {had})")]
    Truncated {
        what: &'static str,
        needed: usize,
        had: usize,
    },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl MediaError {
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        MediaError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Identifies a track within one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

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

/// One elementary stream of a [`Stream`](https://docs.rs) on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub codec: CodecConfig,
    /// Units per second of this track's `pts`/`dts` (90000 for video, the sample rate for audio).
    pub clock_rate: u32,
}

impl Track {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackId,
    /// Presentation time in the track's clock rate, from the stream's time origin.
    pub pts: i64,
    /// Decode time in the track's clock rate; `dts <= pts`, monotonic per track.
    pub dts: i64,
    /// A random access point: an IDR picture for video; every audio frame is one.
    pub keyframe: bool,
    /// Video: H.264/H.265 NAL units each prefixed by a 4-byte big-endian length; VP8/VP9 the
    /// frame as encoded (a WebM block); AV1 a temporal unit in the low overhead format, every
    /// OBU with its size field, no temporal delimiter (an MP4 `av01` sample). Audio: one raw
    /// frame.
    pub data: Bytes,
}

/// Rescales a timestamp between clock rates, rounding to nearest (no drift across calls, since
/// each call converts an absolute time).
pub fn rescale(ts: i64, from_rate: u32, to_rate: u32) -> i64 {
    if from_rate == to_rate {
        return ts;
    }
    let num = ts as i128 * to_rate as i128;
    let den = from_rate as i128;
    let half = den / 2;
    (if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    }) as i64
}

/// Iterates over the NAL units of a frame in 4-byte length-prefixed form, validating every length.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits { rest: data }
}

pub struct NalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 4 {
            let had = self.rest.len();
            self.rest = &[];
            return Some(Err(MediaError::Truncated {
                what: "NAL length prefix",
                needed: 4,
                had,
            }));
        }
        let len =
            u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]) as usize;
        let body = &self.rest[4..];
        if len > body.len() {
            self.rest = &[];
            return Some(Err(MediaError::Truncated {
                what: "NAL unit",
                needed: len,
                had: body.len(),
            }));
        }
        let (nal, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(nal))
    }
}

/// Checks that `data` is a well-formed sequence of 4-byte length-prefixed NAL units.
pub fn validate_length_prefixed(data: &[u8]) -> Result<(), MediaError> {
    for nal in nal_units(data) {
        if nal?.is_empty() {
            return Err(MediaError::invalid("NAL unit", "zero length"));
        }
    }
    Ok(())
}

/// Converts length-prefixed NAL units with `size`-byte lengths (1, 2, 3 or 4) to 4-byte lengths.
pub fn to_four_byte_lengths(data: &[u8], size: usize) -> Result<Bytes, MediaError> {
    if !(1..=4).contains(&size) {
        return Err(MediaError::invalid(
            "NAL length size",
            format!("{size} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < size {
            return Err(MediaError::Truncated {
                what: "NAL length prefix",
                needed: size,
                had: rest.len(),
            });
        }
        let len = rest[..size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[size..];
        if len > rest.len() {
            return Err(MediaError::Truncated {
                what: "NAL unit",
                needed: len,
                had: rest.len(),
            });
        }
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(Bytes::from(out))
}

/// Splits an Annex B byte stream (start codes `00 00 01` / `00 00 00 01`) into NAL units.
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &(_, body_start)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&(sc, _)| sc);
        // Trailing zeros belong to the next 4-byte start code (or are trailing_zero_8bits).
        while end > body_start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > body_start {
            nals.push(&data[body_start..end]);
        }
    }
    nals
}

/// Annex B byte stream -> 4-byte length-prefixed NAL units.
pub fn annexb_to_length_prefixed(data: &[u8]) -> Bytes {
    let nals = annexb_nal_units(data);
    let mut out = Vec::with_capacity(data.len() + 4 * nals.len());
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Bytes::from(out)
}

/// 4-byte length-prefixed NAL units -> Annex B with 4-byte start codes.
pub fn length_prefixed_to_annexb(data: &[u8]) -> Result<Bytes, MediaError> {
    let mut out = Vec::with_capacity(data.len());
    for nal in nal_units(data) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal?);
    }
    Ok(Bytes::from(out))
}

/// Readers of the capture files in `fixtures/` (see its README for where each came from).
#[cfg(test)]
mod test_fixtures {
    /// The frames of an IVF file (32-byte file header; per frame a 12-byte header with the
    /// frame size, little-endian, first).
    pub fn read_ivf(data: &[u8]) -> Vec<&[u8]> {
        let mut frames = Vec::new();
        let mut rest = &data[32..];
        while rest.len() >= 12 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            frames.push(&rest[12..12 + len]);
            rest = &rest[12 + len..];
        }
        frames
    }

    /// The temporal units of `fixtures/ffmpeg9-av1-426x240.obu` (an AV1 low overhead
    /// bitstream), split at temporal delimiters, delimiters removed: MP4 `av01` samples.
    pub fn svtav1_temporal_units() -> Vec<Vec<u8>> {
        const OBU: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-av1-426x240.obu");
        let mut units: Vec<Vec<u8>> = Vec::new();
        let mut rest = OBU;
        while !rest.is_empty() {
            let (obu, used) = crate::av1::Obu::parse_sized(rest).unwrap();
            if obu.kind == crate::av1::OBU_TEMPORAL_DELIMITER {
                units.push(Vec::new());
            } else {
                units.last_mut().unwrap().extend_from_slice(&rest[..used]);
            }
            rest = &rest[used..];
        }
        units
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_round_trip_keeps_nal_units() {
        let annexb = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6,
        ];
        let lp = annexb_to_length_prefixed(&annexb);
        let nals: Vec<_> = nal_units(&lp).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5, 6][..]]
        );
        assert_eq!(
            &length_prefixed_to_annexb(&lp).unwrap()[..],
            &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6][..]
        );
    }

    #[test]
    fn absurd_nal_length_is_an_error() {
        let data = [0xff, 0xff, 0xff, 0xf0, 0x65, 1];
        assert!(matches!(
            validate_length_prefixed(&data),
            Err(MediaError::Truncated { .. })
        ));
        assert!(to_four_byte_lengths(&data, 4).is_err());
    }

    #[test]
    fn two_byte_lengths_become_four() {
        let data = [0, 2, 0x65, 9, 0, 1, 0x41];
        assert_eq!(
            &to_four_byte_lengths(&data, 2).unwrap()[..],
            &[0, 0, 0, 2, 0x65, 9, 0, 0, 0, 1, 0x41][..]
        );
    }

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

    #[test]
    fn rescale_rounds_to_nearest() {
        assert_eq!(rescale(1000, 1000, 90000), 90000);
        assert_eq!(rescale(23, 1000, 44100), 1014);
        assert_eq!(rescale(1014, 44100, 1000), 23);
        assert_eq!(rescale(-3, 90000, 1000), 0);
    }
}
