//! Tracks and samples from the FLV captures in `fixtures/`, cut into fragments the way the HLS
//! and MSE outputs will: both tracks interleaved, one fragment per time window.

#![allow(dead_code)]

use bytes::Bytes;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use switchyard_flv::{file::read_tags, parse_audio, parse_video, AudioTag, VideoTag};
use switchyard_fmp4::{Sample, TrackFragment};
use switchyard_media::{rescale, to_four_byte_lengths, CodecConfig, Track, TrackId};

pub const VIDEO: TrackId = TrackId(1);
pub const AUDIO: TrackId = TrackId(2);

/// A capture as tracks (video id 1 at 90 kHz, audio id 2 at its sample rate) and the samples
/// of each, in decode order.
pub struct Capture {
    pub tracks: Vec<Track>,
    pub video: Vec<Sample>,
    pub audio: Vec<Sample>,
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// Reads an FLV capture. FLV times are milliseconds: video dts = ms * 90, pts = dts + cts * 90;
/// audio is rescaled to its sample rate. A sample lasts until the next one's dts; the last
/// lasts as long as the one before it.
pub fn load(name: &str) -> Capture {
    let file = Bytes::from(std::fs::read(fixture(name)).expect("read fixture"));
    let mut video_cfg = None;
    let mut audio_cfg: Option<CodecConfig> = None;
    let mut video = Vec::new();
    let mut audio = Vec::new();
    for tag in read_tags(&file).expect("FLV tags") {
        match tag.tag_type {
            9 => match parse_video(tag.body).expect("video tag").1 {
                VideoTag::SequenceStart(cfg) => video_cfg = Some(cfg),
                VideoTag::Frame {
                    keyframe,
                    composition_ms,
                    data,
                } => {
                    let data = match &video_cfg {
                        Some(CodecConfig::H264(c)) => {
                            to_four_byte_lengths(&data, c.source_length_size as usize)
                                .expect("NAL units")
                        }
                        _ => data,
                    };
                    let dts = tag.timestamp_ms as i64 * 90;
                    video.push(Sample {
                        dts,
                        pts: dts + composition_ms as i64 * 90,
                        duration: 0,
                        keyframe,
                        data,
                    });
                }
                _ => {}
            },
            8 => match parse_audio(tag.body).expect("audio tag").1 {
                AudioTag::SequenceStart(cfg) => audio_cfg = Some(cfg),
                AudioTag::Frame { data, .. } => {
                    let rate = audio_rate(audio_cfg.as_ref().expect("audio config first"));
                    let dts = rescale(tag.timestamp_ms as i64, 1000, rate);
                    audio.push(Sample {
                        dts,
                        pts: dts,
                        duration: 0,
                        keyframe: true,
                        data,
                    });
                }
                _ => {}
            },
            _ => {}
        }
    }
    set_durations(&mut video);
    set_durations(&mut audio);
    let audio_cfg = audio_cfg.expect("audio config");
    let tracks = vec![
        Track {
            id: VIDEO,
            codec: video_cfg.expect("video config"),
            clock_rate: 90000,
        },
        Track {
            id: AUDIO,
            clock_rate: audio_rate(&audio_cfg),
            codec: audio_cfg,
        },
    ];
    Capture {
        tracks,
        video,
        audio,
    }
}

fn audio_rate(cfg: &CodecConfig) -> u32 {
    match cfg {
        CodecConfig::Aac(asc) => asc.sample_rate,
        _ => 48000,
    }
}

fn set_durations(samples: &mut [Sample]) {
    for i in 0..samples.len() {
        let duration = match samples.get(i + 1) {
            Some(next) => next.dts - samples[i].dts,
            None if i > 0 => samples[i].dts - samples[i - 1].dts,
            None => 0,
        };
        samples[i].duration = u32::try_from(duration).expect("monotonic dts");
    }
}

/// Cuts both tracks into fragments of `window_ms`, each holding the video and then the audio
/// samples whose dts falls in the window.
pub fn fragments(capture: &Capture, window_ms: i64) -> Vec<Vec<TrackFragment>> {
    let window = |s: &Sample, rate: u32| rescale(s.dts, rate, 1000).div_euclid(window_ms);
    let audio_rate = capture.tracks[1].clock_rate;
    let last = capture
        .video
        .iter()
        .map(|s| window(s, 90000))
        .chain(capture.audio.iter().map(|s| window(s, audio_rate)))
        .max()
        .unwrap_or(0);
    (0..=last)
        .map(|w| {
            let pick = |samples: &[Sample], rate: u32| -> Vec<Sample> {
                samples
                    .iter()
                    .filter(|s| window(s, rate) == w)
                    .cloned()
                    .collect()
            };
            vec![
                TrackFragment {
                    track: VIDEO,
                    samples: pick(&capture.video, 90000),
                },
                TrackFragment {
                    track: AUDIO,
                    samples: pick(&capture.audio, audio_rate),
                },
            ]
        })
        .filter(|f| f.iter().any(|t| !t.samples.is_empty()))
        .collect()
}

/// init segment + all fragments of a capture, as one fMP4 file's bytes.
pub fn fmp4_file(capture: &Capture, window_ms: i64) -> Vec<u8> {
    let mut out = switchyard_fmp4::init_segment(&capture.tracks)
        .expect("init segment")
        .to_vec();
    for (i, frags) in fragments(capture, window_ms).iter().enumerate() {
        let seq = u32::try_from(i + 1).expect("sequence number");
        out.extend_from_slice(
            &switchyard_fmp4::fragment(seq, frags, &capture.tracks).expect("fragment"),
        );
    }
    out
}

pub fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success());
    assert!(
        found.unwrap_or(false),
        "{tool} is not installed (apt-get install ffmpeg); these tests check our output with it"
    );
}

/// Runs a tool and returns its stdout, failing the test with its stderr if it fails.
pub fn run(tool: &str, args: &[&str]) -> (String, String) {
    require(tool);
    let out = Command::new(tool).args(args).output().expect("run tool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{tool} {args:?} failed: {stderr}");
    (stdout, stderr)
}
