//! Enhanced RTMP (veovera/enhanced-rtmp v2) end to end with FFmpeg 9: HEVC, AV1 and Opus
//! published over RTMP, carried on the bus, and played back over RTMP with the same FourCCs.

mod support;

use std::process::{Command, Stdio};
use support::*;

fn ff9_publish(url: &str, codec_args: &[&str], audio: bool) -> Proc {
    let mut cmd = Command::new(ffmpeg9());
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
    ]);
    if audio {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-c:a",
            "libopus",
            "-ar",
            "48000",
            "-ac",
            "2",
        ]);
    } else {
        cmd.arg("-an");
    }
    cmd.args(["-t", "30"])
        .args(codec_args)
        .args(["-f", "flv", url]);
    Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ffmpeg 9"),
    )
}

/// Decodes 3 s of `url` with FFmpeg 9; returns (success, video frames, stderr).
fn ff9_decode(url: &str) -> (bool, u64, String) {
    let d = ffmpeg_decode_with(&ffmpeg9(), url, 3);
    (d.success, d.video_frames, d.errors)
}

#[test]
fn hevc_and_opus_round_trip_over_enhanced_rtmp() {
    let server = Switchyard::start();
    let args = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error:keyint=25",
    ];
    let _publisher = ff9_publish(&server.rtmp_url("live/hevc"), &args, true);
    let info = server.wait_for_stream("live/hevc", true);
    let tracks = info["tracks"].as_array().unwrap();
    assert_eq!(tracks[0]["codec"], "hevc");
    assert!(
        tracks[0]["codec_string"]
            .as_str()
            .unwrap()
            .starts_with("hvc1.1.6.L"),
        "{info}"
    );
    assert_eq!(
        (tracks[0]["width"].as_u64(), tracks[0]["height"].as_u64()),
        (Some(640), Some(360)),
        "size from onMetaData"
    );
    assert_eq!(
        (tracks[1]["codec"].as_str(), tracks[1]["channels"].as_u64()),
        (Some("opus"), Some(2))
    );
    let (ok, frames, errors) = ff9_decode(&server.rtmp_url("live/hevc"));
    assert!(
        ok && errors.is_empty() && frames >= 60,
        "{frames} frames, {errors}"
    );
}

#[test]
fn av1_round_trips_over_enhanced_rtmp() {
    let server = Switchyard::start();
    let _publisher = ff9_publish(
        &server.rtmp_url("live/av1"),
        &["-c:v", "libsvtav1", "-preset", "12", "-g", "25"],
        false,
    );
    let info = server.wait_for_stream("live/av1", false);
    assert!(
        info["tracks"][0]["codec_string"]
            .as_str()
            .unwrap()
            .starts_with("av01.0."),
        "{info}"
    );
    let (ok, frames, errors) = ff9_decode(&server.rtmp_url("live/av1"));
    assert!(
        ok && errors.is_empty() && frames >= 60,
        "{frames} frames, {errors}"
    );
    // FFmpeg's av1C has no configOBUs: the `av01` sample entry takes its picture size from
    // the first keyframe's sequence header. Debian's ffprobe/ffmpeg 5.1 (dav1d) read the HLS.
    let hls = server.api("/hls/live/av1/index.m3u8");
    let streams = ffprobe_streams(&hls);
    assert!(
        streams
            .iter()
            .any(|s| s.starts_with("codec_name=av1|profile=Main|width=640|height=360")),
        "{streams:?}"
    );
    assert_decodes(&hls, 3, 40);
}

/// H.264 + Opus (Enhanced RTMP audio) comes out of HLS and MSE with an fMP4 `Opus` track
/// (`dOps`), which ffmpeg decodes.
#[test]
fn opus_from_enhanced_rtmp_is_muxed_into_hls_and_mse() {
    let server = Switchyard::start();
    let args = [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-g",
        "25",
        "-x264-params",
        "sliced-threads=0",
    ];
    let _publisher = ff9_publish(&server.rtmp_url("live/opus"), &args, true);
    server.wait_for_stream("live/opus", true);
    let url = server.api("/hls/live/opus/index.m3u8");
    let streams = ffprobe_streams(&url);
    assert!(
        streams.iter().any(|s| s.starts_with("codec_name=opus")),
        "{streams:?}"
    );
    let decode = ffmpeg_decode(&url, 4);
    assert!(
        decode.success && decode.errors.is_empty() && decode.video_frames >= 75,
        "{decode:?}"
    );

    let (mut ws, _) = tungstenite::connect(format!("ws://{}/mse/live/opus", server.http)).unwrap();
    let tungstenite::Message::Text(first) = ws.read().unwrap() else {
        panic!("mime first")
    };
    assert!(first.as_str().contains(r#"avc1.42C01E,opus"#), "{first}");
}

/// Players that know only legacy RTMP (here GStreamer's rtmp2src and flvdemux, which take no
/// Enhanced RTMP audio) get an Opus stream's audio as AAC and decode it.
#[cfg(feature = "transcode")]
#[test]
fn legacy_rtmp_players_decode_an_opus_streams_audio_as_aac() {
    let server = Switchyard::start();
    let args = ["-c:v", "libx264", "-profile:v", "baseline", "-g", "25"];
    let _publisher = ff9_publish(&server.rtmp_url("live/legacy"), &args, true);
    server.wait_for_stream("live/legacy", true);
    // 200 decoded AAC frames (about 4 s; the publisher sends 30 s) and 100 video frames: the
    // pipeline ends when both branches have had theirs.
    let pipeline = format!(
        "rtmp2src location={} ! flvdemux name=d d.audio ! queue ! aacparse ! avdec_aac ! identity eos-after=200 ! fakesink d.video ! queue ! identity eos-after=100 ! fakesink",
        server.rtmp_url("live/legacy")
    );
    let started = std::time::Instant::now();
    assert_gst_pipeline_ends(&pipeline, 20);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "ended by the decoded frames, not by the stream's end"
    );
}
