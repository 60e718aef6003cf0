//! RTMP interop with GStreamer's two RTMP stacks: `rtmpsink` is librtmp, the library OBS's RTMP
//! output descends from; `rtmp2sink`/`rtmp2src` are GStreamer's own implementation.

mod support;

use std::process::{Command, Stdio};
use support::*;

/// A GStreamer publisher of H.264 (x264, High) + AAC test signals to `url` through `sink`.
fn gst_publish(sink: &str, url: &str, seconds: u32) -> Proc {
    require("gst-launch-1.0");
    let location = format!("location={url}");
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={frames} ! video/x-raw,width=640,height=360,framerate=25/1,format=I420 \
         ! x264enc tune=zerolatency key-int-max=25 bitrate=800 ! h264parse ! flvmux name=m streamable=true \
         ! {sink} {location} audiotestsrc is-live=true ! avenc_aac ! aacparse ! m.",
        frames = seconds * 25
    );
    let child = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gst-launch-1.0");
    Proc(child)
}

#[test]
fn librtmp_publisher_like_obs_plays_back_in_ffmpeg_and_gstreamer() {
    let server = Switchyard::start();
    let _publisher = gst_publish("rtmpsink", &server.rtmp_url("live/obs"), 30);
    let info = server.wait_for_stream("live/obs", true);
    assert_eq!(info["tracks"][0]["codec_string"], "avc1.64001E", "{info}");

    assert_decodes(&server.rtmp_url("live/obs"), 3, 60);

    // GStreamer's own RTMP client plays and decodes 100 frames.
    let pipeline = format!(
        "rtmp2src location={} ! flvdemux name=d d.video ! queue ! h264parse ! avdec_h264 ! identity eos-after=100 ! fakesink",
        server.rtmp_url("live/obs")
    );
    assert_gst_pipeline_ends(&pipeline, 20);
}

#[test]
fn gstreamer_rtmp2_publisher_plays_back_in_ffmpeg() {
    let server = Switchyard::start();
    let _publisher = gst_publish("rtmp2sink", &server.rtmp_url("live/gst"), 30);
    server.wait_for_stream("live/gst", true);
    assert_streams(
        &server.rtmp_url("live/gst"),
        &[
            "codec_name=h264|profile=High|width=640|height=360",
            "codec_name=aac",
        ],
    );
    assert_decodes(&server.rtmp_url("live/gst"), 3, 60);
}
