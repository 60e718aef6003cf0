//! Init segment + fragments built from real captures, read back by an independent reader:
//! Debian's ffprobe/ffmpeg 5.1 (codecs, sizes, frame counts, timestamps, a clean full decode).

mod support;

use std::path::PathBuf;
use support::{fmp4_file, load, run, Capture};

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("write fMP4 file");
    path
}

/// One compact line per stream: codec_name, profile, width, height, nb_read_frames.
fn streams(path: &str) -> Vec<String> {
    let (out, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
            "-of",
            "compact",
            path,
        ],
    );
    out.lines().map(str::to_owned).collect()
}

/// Packet (pts, dts) of one stream in decode order, in the stream's timescale.
fn packet_times(path: &str, stream: &str) -> Vec<(i64, i64)> {
    let (out, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts,dts",
            "-of",
            "csv=p=0",
            path,
        ],
    );
    out.lines()
        .map(|l| {
            let mut it = l
                .split(',')
                .map(|v| v.trim().parse::<i64>().expect("timestamp"));
            (it.next().expect("pts"), it.next().expect("dts"))
        })
        .collect()
}

fn decodes_cleanly(path: &str) {
    let (_, stderr) = run("ffmpeg", &["-v", "error", "-i", path, "-f", "null", "-"]);
    assert!(stderr.trim().is_empty(), "ffmpeg decode errors: {stderr}");
}

/// The packets ffprobe reads carry exactly the timestamps we put in.
fn timestamps_survive(path: &str, capture: &Capture) {
    let video: Vec<(i64, i64)> = capture.video.iter().map(|s| (s.pts, s.dts)).collect();
    assert_eq!(packet_times(path, "v:0"), video);
    let audio: Vec<(i64, i64)> = capture.audio.iter().map(|s| (s.pts, s.dts)).collect();
    assert_eq!(packet_times(path, "a:0"), audio);
}

#[test]
fn h264_high_with_b_frames_and_aac_play_in_ffmpeg() {
    let capture = load("ffmpeg-h264-high-bf2-aac.flv");
    assert_eq!(capture.video.len(), 25);
    let path = write("h264-aac.mp4", &fmp4_file(&capture, 200));
    let path = path.to_str().expect("utf-8 path");

    assert_eq!(
        streams(path),
        vec![
            "stream|codec_name=h264|profile=High|width=640|height=360|nb_read_frames=25"
                .to_string(),
            format!(
                "stream|codec_name=aac|profile=LC|nb_read_frames={}",
                capture.audio.len()
            ),
        ]
    );
    decodes_cleanly(path);
    timestamps_survive(path, &capture);

    // B-frames: presentation order differs from decode order, so the signed composition
    // offsets of trun version 1 made it through.
    let pts: Vec<i64> = packet_times(path, "v:0").iter().map(|p| p.0).collect();
    assert!(
        pts.windows(2).any(|w| w[1] < w[0]),
        "no reordering in {pts:?}"
    );
    let (has_b, _) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=has_b_frames",
            "-of",
            "csv=p=0",
            path,
        ],
    );
    assert_eq!(has_b.trim(), "2");
}

#[test]
fn hevc_and_opus_play_in_ffmpeg() {
    let capture = load("ffmpeg9-hevc-opus.flv");
    let path = write("hevc-opus.mp4", &fmp4_file(&capture, 200));
    let path = path.to_str().expect("utf-8 path");

    assert_eq!(
        streams(path),
        vec![
            format!(
                "stream|codec_name=hevc|profile=Main|width=320|height=240|nb_read_frames={}",
                capture.video.len()
            ),
            format!(
                "stream|codec_name=opus|profile=unknown|nb_read_frames={}",
                capture.audio.len()
            ),
        ]
    );
    decodes_cleanly(path);
    timestamps_survive(path, &capture);
}

/// VP8, VP9 and AV1 encodes from FFmpeg 9 (fixtures/README.md) as bus frames: the encoder's
/// frames, 40 ms apart, the first a keyframe.
mod vpx_av1 {
    use bytes::Bytes;
    use switchyard_fmp4::{fragment, init_segment, init_segment_with_keyframes, needs_keyframe};
    use switchyard_fmp4::{Sample, TrackFragment};
    use switchyard_media::av1::{Av1SequenceInfo, Obu, OBU_SEQUENCE_HEADER};
    use switchyard_media::vp9::Vp9KeyframeInfo;
    use switchyard_media::{CodecConfig, Frame, Track, TrackId};

    const VP8: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-vp8-426x240.ivf");
    const VP9: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-vp9-426x240.ivf");
    const AV1: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-av1-426x240.obu");

    fn ivf_frames(data: &[u8]) -> Vec<Bytes> {
        let mut frames = Vec::new();
        let mut rest = &data[32..];
        while rest.len() >= 12 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            frames.push(Bytes::copy_from_slice(&rest[12..12 + len]));
            rest = &rest[12 + len..];
        }
        frames
    }

    /// Temporal units without their temporal delimiters (MP4 `av01` samples).
    fn temporal_units(data: &[u8]) -> Vec<Bytes> {
        switchyard_media::av1::temporal_units(data)
            .unwrap()
            .into_iter()
            .map(Bytes::from)
            .collect()
    }

    /// An av1C as the WebRTC ingest writes it: the sequence header OBU among the configOBUs
    /// when `with_sequence_header`, else the bare 4 bytes FFmpeg's Enhanced RTMP sends.
    fn av1c(tu: &[u8], with_sequence_header: bool) -> Bytes {
        let (obu, used) = Obu::parse_sized(tu).unwrap();
        assert_eq!(obu.kind, OBU_SEQUENCE_HEADER);
        let info = Av1SequenceInfo::parse(obu.payload).unwrap();
        let mut out = vec![0x81, info.profile << 5 | info.level, 0x0c, 0];
        if with_sequence_header {
            out.extend_from_slice(&tu[..used]);
        }
        Bytes::from(out)
    }

    fn frames(data: &[Bytes]) -> Vec<Frame> {
        data.iter()
            .enumerate()
            .map(|(i, d)| Frame {
                track: TrackId(1),
                pts: i as i64 * 3600,
                dts: i as i64 * 3600,
                keyframe: i == 0,
                data: d.clone(),
            })
            .collect()
    }

    /// The init segment (from the first keyframe when the config lacks the size) and one
    /// fragment of every frame, as one file.
    fn fmp4(codec: CodecConfig, frames: &[Frame]) -> Vec<u8> {
        let track = Track {
            id: TrackId(1),
            codec,
            clock_rate: 90000,
        };
        let tracks = [track.clone()];
        let init = if needs_keyframe(&track) {
            assert!(init_segment(&tracks).is_err(), "needs the keyframe's size");
            init_segment_with_keyframes(&tracks, &[&frames[0]]).expect("init")
        } else {
            init_segment(&tracks).expect("init")
        };
        let samples = frames.iter().map(|f| Sample::from_frame(f, 3600)).collect();
        let part = TrackFragment {
            track: TrackId(1),
            samples,
        };
        [init, fragment(1, &[part], &tracks).expect("fragment")].concat()
    }

    fn check(name: &str, codec: CodecConfig, data: &[Bytes], expected: &str) {
        let path = super::write(name, &fmp4(codec, &frames(data)));
        let path = path.to_str().expect("utf-8 path");
        assert_eq!(super::streams(path), vec![expected.to_string()]);
        super::decodes_cleanly(path);
    }

    #[test]
    fn vp8_plays_in_ffmpeg_with_the_keyframes_size() {
        let data = ivf_frames(VP8);
        check(
            "vp8.mp4",
            CodecConfig::Vp8,
            &data,
            "stream|codec_name=vp8|profile=0|width=426|height=240|nb_read_frames=2",
        );
    }

    #[test]
    fn vp9_plays_in_ffmpeg_with_the_keyframes_size() {
        let data = ivf_frames(VP9);
        let vpcc = Vp9KeyframeInfo::parse(&data[0]).unwrap().vpcc();
        check(
            "vp9.mp4",
            CodecConfig::Vp9 { vpcc },
            &data,
            "stream|codec_name=vp9|profile=Profile 0|width=426|height=240|nb_read_frames=2",
        );
    }

    #[test]
    fn av1_plays_in_ffmpeg_with_or_without_config_obus() {
        let data = temporal_units(AV1);
        for with_sequence_header in [true, false] {
            let av1c = av1c(&data[0], with_sequence_header);
            check(
                &format!("av1-{with_sequence_header}.mp4"),
                CodecConfig::Av1 { av1c },
                &data,
                "stream|codec_name=av1|profile=Main|width=426|height=240|nb_read_frames=2",
            );
        }
    }
}
