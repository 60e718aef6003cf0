//! FLV audio and video tag bodies (the payloads of RTMP message types 8 and 9) <-> Switchyard
//! media. Covers the legacy FLV format (Adobe FLV spec v10.1, annex E.4.2/E.4.3: AVC and AAC
//! with sequence headers and composition-time offsets, G.711) and Enhanced RTMP v2
//! (veovera/enhanced-rtmp: `ExHeader` tags with FourCC `hvc1`, `av01`, `vp08`, `vp09`, `Opus`,
//! `mp4a`). VP8 and VP9 sequence starts carry a VPCodecConfigurationRecord (`vpcC`, read as the
//! box payload FFmpeg writes or as a bare record); VP8's configuration has no record on the
//! bus, so its sequence start is built from a keyframe ([`vp8_sequence_header`]).
//!
//! Parsing never copies a payload: frames are slices of the body's [`Bytes`]. RTMP chunking
//! and sessions are not here (rml_rtmp does them); [`file`](mod@file) reads FLV files for tests.

mod error;
pub mod file;

use bytes::{Buf, Bytes};
use switchyard_media::{
    aac::AudioSpecificConfig,
    h264::AvcConfig,
    h265::HevcConfig,
    vp8::Vp8KeyframeInfo,
    vpcc::{self, VpccRecord},
    CodecConfig, G711Law,
};

pub use error::FlvError;

/// A video codec as signalled in a tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
    Vp8,
    Vp9,
}

/// An audio codec as signalled in a tag header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    Opus,
    G711(G711Law),
}

/// What a video tag body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// Decoder configuration (AVC sequence header / `SequenceStart`).
    SequenceStart(CodecConfig),
    /// One access unit. `data` is the body's NAL units as sent (length size as in the config).
    Frame {
        keyframe: bool,
        composition_ms: i32,
        data: Bytes,
    },
    SequenceEnd,
    /// A valid tag that carries no frame for us (command frames, metadata, multitrack).
    Ignored(&'static str),
}

/// What an audio tag body carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    SequenceStart(CodecConfig),
    /// One raw audio frame; for codecs without a sequence header, `config` says what it is.
    Frame {
        data: Bytes,
        config: Option<CodecConfig>,
    },
    SequenceEnd,
    Ignored(&'static str),
}

const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_COMMAND: u8 = 5;

fn truncated(what: &'static str, needed: usize, had: usize) -> FlvError {
    FlvError::Truncated { what, needed, had }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> FlvError {
    FlvError::Invalid {
        what,
        reason: reason.into(),
    }
}

fn read_si24(b: &[u8]) -> i32 {
    ((((b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32) << 8) as i32) >> 8
}

/// Parses a video tag body (RTMP message type 9).
pub fn parse_video(mut body: Bytes) -> Result<(VideoCodec, VideoTag), FlvError> {
    const WHAT: &str = "video";
    let first = *body.first().ok_or_else(|| truncated(WHAT, 1, 0))?;
    let frame_type = (first >> 4) & 0x07;
    if first & 0x80 == 0 {
        // Legacy FLV: codec id in the low nibble; only AVC (7) is a codec we carry.
        let codec_id = first & 0x0f;
        if codec_id != 7 {
            return Err(invalid(
                WHAT,
                format!("legacy codec id {codec_id} is not supported (only AVC, 7)"),
            ));
        }
        if body.len() < 5 {
            return Err(truncated(WHAT, 5, body.len()));
        }
        if frame_type == FRAME_TYPE_COMMAND {
            return Ok((
                VideoCodec::H264,
                VideoTag::Ignored("video info/command frame"),
            ));
        }
        let packet_type = body[1];
        let cts = read_si24(&body[2..5]);
        body.advance(5);
        let tag = match packet_type {
            0 => VideoTag::SequenceStart(CodecConfig::H264(AvcConfig::parse(&body)?)),
            1 => VideoTag::Frame {
                keyframe: frame_type == FRAME_TYPE_KEY,
                composition_ms: cts,
                data: body,
            },
            2 => VideoTag::SequenceEnd,
            other => return Err(invalid(WHAT, format!("AVCPacketType {other}"))),
        };
        return Ok((VideoCodec::H264, tag));
    }
    // Enhanced RTMP ExVideoTagHeader.
    let packet_type = first & 0x0f;
    match packet_type {
        6 => {
            return Ok((
                VideoCodec::H264,
                VideoTag::Ignored("multitrack video is not supported"),
            ))
        }
        7 => {
            return Ok((
                VideoCodec::H264,
                VideoTag::Ignored("ModEx video packets are not supported"),
            ))
        }
        _ => {}
    }
    if frame_type == FRAME_TYPE_COMMAND && packet_type != 4 {
        return Ok((VideoCodec::H264, VideoTag::Ignored("video command frame")));
    }
    if body.len() < 5 {
        return Err(truncated(WHAT, 5, body.len()));
    }
    let codec = match &body[1..5] {
        b"avc1" => VideoCodec::H264,
        b"hvc1" => VideoCodec::H265,
        b"av01" => VideoCodec::Av1,
        b"vp08" => VideoCodec::Vp8,
        b"vp09" => VideoCodec::Vp9,
        other => {
            return Err(invalid(
                WHAT,
                format!(
                    "FourCC {:?} is not supported",
                    String::from_utf8_lossy(other)
                ),
            ))
        }
    };
    body.advance(5);
    let keyframe = frame_type == FRAME_TYPE_KEY;
    let tag = match packet_type {
        0 => VideoTag::SequenceStart(match codec {
            VideoCodec::H264 => CodecConfig::H264(AvcConfig::parse(&body)?),
            VideoCodec::H265 => CodecConfig::H265(HevcConfig::parse(body)?),
            VideoCodec::Av1 => CodecConfig::Av1 { av1c: body },
            VideoCodec::Vp8 => {
                // VP8 needs nothing out of band; the record is checked and dropped.
                let record = VpccRecord::parse(&body)?;
                if record.bit_depth != 8 {
                    return Err(invalid(
                        WHAT,
                        format!("a vp08 vpcC of {} bits (VP8 is 8-bit)", record.bit_depth),
                    ));
                }
                CodecConfig::Vp8
            }
            VideoCodec::Vp9 => CodecConfig::Vp9 {
                vpcc: vpcc::as_box_payload(body)?,
            },
        }),
        1 => {
            // CodedFrames: AVC and HEVC carry a composition time offset, AV1, VP8 and VP9 do not.
            let composition_ms = if matches!(codec, VideoCodec::H264 | VideoCodec::H265) {
                if body.len() < 3 {
                    return Err(truncated(WHAT, 3, body.len()));
                }
                let cts = read_si24(&body[..3]);
                body.advance(3);
                cts
            } else {
                0
            };
            VideoTag::Frame {
                keyframe,
                composition_ms,
                data: body,
            }
        }
        2 => VideoTag::SequenceEnd,
        3 => VideoTag::Frame {
            keyframe,
            composition_ms: 0,
            data: body,
        },
        4 => VideoTag::Ignored("video metadata"),
        5 => VideoTag::Ignored("MPEG-2 TS sequence start"),
        other => return Err(invalid(WHAT, format!("VideoPacketType {other}"))),
    };
    Ok((codec, tag))
}

/// Parses an audio tag body (RTMP message type 8).
pub fn parse_audio(mut body: Bytes) -> Result<(AudioCodec, AudioTag), FlvError> {
    const WHAT: &str = "audio";
    let first = *body.first().ok_or_else(|| truncated(WHAT, 1, 0))?;
    let sound_format = first >> 4;
    match sound_format {
        10 => {
            if body.len() < 2 {
                return Err(truncated(WHAT, 2, body.len()));
            }
            let packet_type = body[1];
            body.advance(2);
            let tag = match packet_type {
                0 => AudioTag::SequenceStart(CodecConfig::Aac(AudioSpecificConfig::parse(body)?)),
                1 => AudioTag::Frame {
                    data: body,
                    config: None,
                },
                other => return Err(invalid(WHAT, format!("AACPacketType {other}"))),
            };
            Ok((AudioCodec::Aac, tag))
        }
        7 | 8 => {
            let law = if sound_format == 7 {
                G711Law::ALaw
            } else {
                G711Law::MuLaw
            };
            let channels = if first & 1 == 1 { 2 } else { 1 };
            body.advance(1);
            Ok((
                AudioCodec::G711(law),
                AudioTag::Frame {
                    data: body,
                    config: Some(CodecConfig::G711 { law, channels }),
                },
            ))
        }
        9 => {
            // Enhanced RTMP ExAudioTagHeader: packet type in the low nibble, then a FourCC.
            let packet_type = first & 0x0f;
            match packet_type {
                5 => {
                    return Ok((
                        AudioCodec::Opus,
                        AudioTag::Ignored("multitrack audio is not supported"),
                    ))
                }
                7 => {
                    return Ok((
                        AudioCodec::Opus,
                        AudioTag::Ignored("ModEx audio packets are not supported"),
                    ))
                }
                _ => {}
            }
            if body.len() < 5 {
                return Err(truncated(WHAT, 5, body.len()));
            }
            let codec = match &body[1..5] {
                b"Opus" => AudioCodec::Opus,
                b"mp4a" => AudioCodec::Aac,
                other => {
                    return Err(invalid(
                        WHAT,
                        format!(
                            "FourCC {:?} is not supported",
                            String::from_utf8_lossy(other)
                        ),
                    ))
                }
            };
            body.advance(5);
            let tag = match packet_type {
                0 => AudioTag::SequenceStart(match codec {
                    AudioCodec::Aac => CodecConfig::Aac(AudioSpecificConfig::parse(body)?),
                    _ => CodecConfig::Opus {
                        channels: opus_head_channels(&body)?,
                        head: Some(body),
                    },
                }),
                1 => AudioTag::Frame {
                    data: body,
                    config: None,
                },
                2 => AudioTag::SequenceEnd,
                4 => AudioTag::Ignored("multichannel config"),
                other => return Err(invalid(WHAT, format!("AudioPacketType {other}"))),
            };
            Ok((codec, tag))
        }
        other => Err(invalid(
            WHAT,
            format!("sound format {other} is not supported (AAC, Opus and G.711 are)"),
        )),
    }
}

/// Channel count from an Opus identification header (RFC 7845 5.1).
fn opus_head_channels(head: &[u8]) -> Result<u8, FlvError> {
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return Err(invalid("audio", "Opus sequence start is not an OpusHead"));
    }
    Ok(head[9])
}

/// The bytes that precede a frame's payload in a video tag body; see [`video_frame_header`].
pub type TagHeader = ([u8; 8], usize);

/// Tag header for a video frame of `codec`: legacy AVC for H.264, Enhanced RTMP otherwise.
/// Returns `None` for codecs FLV cannot carry.
pub fn video_frame_header(
    codec: &CodecConfig,
    keyframe: bool,
    composition_ms: i32,
) -> Option<TagHeader> {
    let frame_type = if keyframe { 0x10 } else { 0x20 };
    let cts = composition_ms.to_be_bytes();
    match codec {
        CodecConfig::H264(_) => Some(([frame_type | 7, 1, cts[1], cts[2], cts[3], 0, 0, 0], 5)),
        CodecConfig::H265(_) => Some((
            [
                0x80 | frame_type | 1,
                b'h',
                b'v',
                b'c',
                b'1',
                cts[1],
                cts[2],
                cts[3],
            ],
            8,
        )),
        CodecConfig::Av1 { .. } => {
            Some(([0x80 | frame_type | 1, b'a', b'v', b'0', b'1', 0, 0, 0], 5))
        }
        CodecConfig::Vp8 => Some(([0x80 | frame_type | 1, b'v', b'p', b'0', b'8', 0, 0, 0], 5)),
        CodecConfig::Vp9 { .. } => {
            Some(([0x80 | frame_type | 1, b'v', b'p', b'0', b'9', 0, 0, 0], 5))
        }
        _ => None,
    }
}

/// Whether FLV carries video of `codec` (legacy AVC or Enhanced RTMP).
pub fn carries_video(codec: &CodecConfig) -> bool {
    video_frame_header(codec, true, 0).is_some()
}

/// A complete video sequence header body for `codec`, or `None` if FLV cannot carry it or, for
/// VP8, cannot build it without a keyframe (see [`vp8_sequence_header`]).
pub fn video_sequence_header(codec: &CodecConfig) -> Option<Bytes> {
    let (header, record): (&[u8], &Bytes) = match codec {
        CodecConfig::H264(c) => (&[0x17, 0, 0, 0, 0], &c.record),
        CodecConfig::H265(c) => (&[0x90, b'h', b'v', b'c', b'1'], &c.record),
        CodecConfig::Av1 { av1c } => (&[0x90, b'a', b'v', b'0', b'1'], av1c),
        CodecConfig::Vp9 { vpcc } => (&[0x90, b'v', b'p', b'0', b'9'], vpcc),
        _ => return None,
    };
    Some([header, &record[..]].concat().into())
}

/// The `vp08` sequence start (Enhanced RTMP v2) for a VP8 stream that starts with `keyframe`:
/// its `vpcC` built from the keyframe's header (profile, picture size); `None` when `keyframe`
/// is not a VP8 keyframe.
pub fn vp8_sequence_header(keyframe: &[u8]) -> Option<Bytes> {
    let vpcc = Vp8KeyframeInfo::parse(keyframe)?.vpcc();
    Some(
        [&[0x90, b'v', b'p', b'0', b'8'][..], &vpcc[..]]
            .concat()
            .into(),
    )
}

/// Tag header for an audio frame of `codec`, or `None` if FLV cannot carry it.
pub fn audio_frame_header(codec: &CodecConfig) -> Option<TagHeader> {
    match codec {
        CodecConfig::Aac(_) => Some(([0xaf, 1, 0, 0, 0, 0, 0, 0], 2)),
        CodecConfig::Opus { .. } => Some(([0x91, b'O', b'p', b'u', b's', 0, 0, 0], 5)),
        CodecConfig::G711 { law, channels } => {
            let format = if *law == G711Law::ALaw { 0x70 } else { 0x80 };
            Some((
                [
                    format | 0x02 | u8::from(*channels == 2),
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
                1,
            ))
        }
        _ => None,
    }
}

/// A complete audio sequence header body, for codecs that have one.
pub fn audio_sequence_header(codec: &CodecConfig) -> Option<Bytes> {
    match codec {
        CodecConfig::Aac(c) => Some([&[0xaf, 0][..], &c.bytes[..]].concat().into()),
        CodecConfig::Opus {
            head: Some(head), ..
        } => Some(
            [&[0x90, b'O', b'p', b'u', b's'][..], &head[..]]
                .concat()
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
