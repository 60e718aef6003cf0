//! The file a source plays: an FLV file (Adobe FLV spec v10.1, annex E) with H.264 video, or
//! H.265 as Enhanced RTMP `hvc1` (veovera/enhanced-rtmp v2), and optionally AAC (or Opus)
//! audio, read once into memory and checked, so that a bad file fails before anything connects.

use bytes::Bytes;
use std::path::Path;
use switchyard_flv::{
    audio_frame_header, audio_sequence_header, file::read_tags, parse_audio, parse_video,
    video_frame_header, video_sequence_header, AudioTag, VideoTag,
};
use switchyard_media::probe_stamp::ProbeStamp;
use switchyard_media::{
    h264::AvcConfig, to_four_byte_lengths, validate_length_prefixed, CodecConfig, MediaKind,
};

/// Why a file cannot be played; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    pub path: String,
    pub reason: String,
}

/// One audio or video frame of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFrame {
    pub kind: MediaKind,
    /// Decode time in milliseconds from the file's first frame.
    pub timestamp_ms: u32,
    pub keyframe: bool,
    pub composition_ms: i32,
    /// Video: NAL units with 4-byte lengths; audio: one raw frame.
    pub data: Bytes,
}

/// A file ready to play in a loop.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// H.264 or H.265, with 4-byte NAL lengths.
    pub video: CodecConfig,
    pub audio: Option<CodecConfig>,
    /// In decode order, audio and video interleaved as in the file.
    pub frames: Vec<FileFrame>,
    /// The distance between video frames (the median one), in milliseconds.
    pub frame_interval_ms: u32,
    /// How far each loop is from the previous one: the last video frame's time plus one frame
    /// interval, so that the first frame of a loop follows the last one of the previous loop
    /// as the next frame would.
    pub loop_ms: u32,
}

impl SourceFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<SourceFile, FileError> {
        let error = |reason: String| FileError {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
        SourceFile::parse(Bytes::from(bytes)).map_err(error)
    }

    /// Reads an FLV file's tags into frames; the error says what is wrong with the file.
    pub fn parse(file: Bytes) -> Result<SourceFile, String> {
        let tags = read_tags(&file).map_err(|e| format!("not an FLV file ({e})"))?;
        let mut video: Option<CodecConfig> = None;
        // The file's NAL length size (the configuration played has 4).
        let mut length_size = 4;
        let mut audio: Option<CodecConfig> = None;
        let mut audio_problem: Option<String> = None;
        let mut frames = Vec::new();
        for tag in tags {
            match tag.tag_type {
                9 => {
                    let at = tag.timestamp_ms;
                    let (_, parsed) = parse_video(tag.body)
                        .map_err(|e| format!("no H.264 video: the video at {at} ms: {e}"))?;
                    match parsed {
                        VideoTag::SequenceStart(config) => match (&video, config) {
                            (None, config) => {
                                if let CodecConfig::H264(c) = &config {
                                    length_size = c.source_length_size;
                                }
                                video = Some(playable_video(config)?);
                            }
                            (Some(old), config) if *old == playable_video(config.clone())? => {}
                            _ => {
                                return Err(format!(
                                    "the video configuration changes at {at} ms; a source plays files of one configuration"
                                ))
                            }
                        },
                        VideoTag::Frame {
                            keyframe,
                            composition_ms,
                            data,
                        } => {
                            if video.is_none() {
                                continue;
                            }
                            let data = four_byte_lengths(length_size, data)
                                .map_err(|e| format!("the video frame at {at} ms: {e}"))?;
                            frames.push(FileFrame {
                                kind: MediaKind::Video,
                                timestamp_ms: at,
                                keyframe,
                                composition_ms,
                                data,
                            });
                        }
                        VideoTag::SequenceEnd | VideoTag::Ignored(_) => {}
                    }
                }
                8 if audio_problem.is_none() => match parse_audio(tag.body) {
                    Ok((_, AudioTag::SequenceStart(config))) => {
                        audio.get_or_insert(config);
                    }
                    Ok((_, AudioTag::Frame { data, config })) => {
                        if let Some(config) = config {
                            audio.get_or_insert(config);
                        }
                        if audio.is_some() && !data.is_empty() {
                            frames.push(FileFrame {
                                kind: MediaKind::Audio,
                                timestamp_ms: tag.timestamp_ms,
                                keyframe: true,
                                composition_ms: 0,
                                data,
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => audio_problem = Some(e.to_string()),
                },
                _ => {}
            }
        }
        let video = video.ok_or("no H.264 video (no AVC sequence header)")?;
        if let Some(problem) = audio_problem {
            tracing::warn!("the file's audio is left out: {problem}");
            audio = None;
            frames.retain(|f| f.kind == MediaKind::Video);
        }
        // Start at the first keyframe, on a timeline that starts there.
        let first_key = frames
            .iter()
            .position(|f| f.kind == MediaKind::Video && f.keyframe)
            .ok_or("no video keyframe")?;
        let origin = frames[first_key].timestamp_ms;
        frames.retain(|f| f.timestamp_ms >= origin);
        for f in &mut frames {
            f.timestamp_ms -= origin;
        }
        let video_times: Vec<u32> = frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .map(|f| f.timestamp_ms)
            .collect();
        let mut gaps: Vec<u32> = video_times.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let frame_interval_ms = gaps.get(gaps.len() / 2).copied().unwrap_or(33).max(1);
        let loop_ms = video_times.last().copied().unwrap_or(0) + frame_interval_ms;
        // Audio past the last video frame would overlap the next loop's first audio.
        frames.retain(|f| f.timestamp_ms < loop_ms);
        if audio.is_some() && !frames.iter().any(|f| f.kind == MediaKind::Audio) {
            audio = None;
        }
        Ok(SourceFile {
            video,
            audio,
            frames,
            frame_interval_ms,
            loop_ms,
        })
    }

    /// The video sequence header (AVC sequence header or `hvc1` sequence start).
    pub fn video_sequence_header(&self) -> Bytes {
        video_sequence_header(&self.video).expect("H.264 and H.265 have one")
    }

    pub fn audio_sequence_header(&self) -> Option<Bytes> {
        self.audio.as_ref().and_then(audio_sequence_header)
    }

    /// A video frame's tag body with `stamp` as its first NAL unit (after an access unit
    /// delimiter, if it has one).
    pub fn video_body(&self, frame: &FileFrame, stamp: &ProbeStamp) -> Bytes {
        let (header, n) = video_frame_header(&self.video, frame.keyframe, frame.composition_ms)
            .expect("H.264 and H.265 go in FLV");
        let stamped = match self.video {
            CodecConfig::H265(_) => stamp.insert_h265(&frame.data),
            _ => stamp.insert_h264(&frame.data),
        };
        [&header[..n], &stamped[..]].concat().into()
    }

    /// An audio frame's tag body.
    pub fn audio_body(&self, frame: &FileFrame) -> Option<Bytes> {
        let (header, n) = audio_frame_header(self.audio.as_ref()?)?;
        Some([&header[..n], &frame.data[..]].concat().into())
    }

    /// The picture size, if the configuration says it.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        self.video.resolution()
    }
}

/// The configuration as played: H.264 with 4-byte NAL lengths (the record rebuilt from its
/// parameter sets when the file has shorter ones), or H.265.
fn playable_video(config: CodecConfig) -> Result<CodecConfig, String> {
    match config {
        CodecConfig::H264(c) if c.source_length_size != 4 => {
            AvcConfig::from_parameter_sets(c.sps_nals.clone(), c.pps_nals.clone())
                .map(CodecConfig::H264)
                .map_err(|e| format!("its AVC sequence header: {e}"))
        }
        CodecConfig::H264(_) | CodecConfig::H265(_) => Ok(config),
        other => Err(format!(
            "no H.264 video: the file's video is {} (a source plays H.264, or H.265)",
            other.name()
        )),
    }
}

/// A frame's NAL units with 4-byte lengths, checked.
fn four_byte_lengths(size: u8, data: Bytes) -> Result<Bytes, String> {
    if size == 4 {
        validate_length_prefixed(&data).map_err(|e| e.to_string())?;
        Ok(data)
    } else {
        to_four_byte_lengths(&data, size as usize).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_media::probe_stamp::read_access_unit;

    fn fixture(name: &str) -> Bytes {
        std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .into()
    }

    #[test]
    fn video_bodies_carry_the_stamp_and_parse_back() {
        let stamp = ProbeStamp {
            sent_unix_us: 1_764_755_000_123_456,
            source: *b"rtmp",
        };
        for name in ["probe-640x360.flv", "ffmpeg9-hevc-opus.flv"] {
            let file = SourceFile::parse(fixture(name)).unwrap();
            let frame = file.frames.iter().find(|f| f.kind == MediaKind::Video);
            let body = file.video_body(frame.unwrap(), &stamp);
            let Ok((_, VideoTag::Frame { data, keyframe, .. })) = parse_video(body) else {
                panic!("{name}: a video frame");
            };
            assert!(keyframe, "{name}");
            assert_eq!(read_access_unit(&data), Some(stamp), "{name}");
            assert!(file.audio.is_some() && file.audio_sequence_header().is_some());
        }
    }

    #[test]
    fn files_without_h264_are_refused_with_the_reason() {
        let vp9 = SourceFile::parse(fixture("ffmpeg9-vp9.flv")).unwrap_err();
        assert!(vp9.starts_with("no H.264 video"), "{vp9}");
        let text = SourceFile::parse(Bytes::from_static(b"not a video")).unwrap_err();
        assert!(text.starts_with("not an FLV file"), "{text}");
        let missing = SourceFile::load(Path::new("/nonexistent.flv")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("/nonexistent.flv: cannot read it"),
            "{missing}"
        );
    }
}
