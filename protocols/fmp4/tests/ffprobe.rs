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
