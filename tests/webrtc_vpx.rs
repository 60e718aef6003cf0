//! VP8, VP9 and AV1 passed through WebRTC: published over WHIP by headless Chromium (the
//! publish page with `?codec=vp8` / `av1`) and by GStreamer's webrtcbin
//! (`tests/interop/gst_whip.py --codec vp9`), played over WHEP by Chromium and, for VP9 and AV1,
//! over Enhanced RTMP by FFmpeg 9; and the plain 422 a viewer gets when its offer cannot
//! receive the stream's codec (there is no transcoding of video).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::browser::{play, Publishing};
use support::*;

/// `tests/interop/gst_whip.py URL SECONDS --codec CODEC` in the background (Debian's Python
/// with GStreamer's introspection data; `scripts/test` installs them).
fn gst_whip(url: &str, seconds: u32, codec: &str) -> Proc {
    require("gst-launch-1.0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/gst_whip.py");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .args(["--codec", codec])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start gst_whip.py: {e}"));
    Proc(child)
}

/// The stream's video track as the API shows it.
fn video_track(info: &serde_json::Value) -> serde_json::Value {
    info["tracks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["kind"] == "video"))
        .cloned()
        .unwrap_or_else(|| panic!("no video track: {info}"))
}

/// Chromium's WHEP player decoded a growing number of frames of `mime` video.
fn assert_chromium_decodes(report: &serde_json::Value, mime: &str) {
    let webrtc = &report["webrtc"];
    assert_eq!(webrtc["connectionState"], "connected", "{report}");
    assert_eq!(webrtc["codec"], mime, "{report}");
    let decoded = webrtc["framesDecoded"].as_u64().unwrap_or(0);
    let at_half = report["framesDecodedAtHalf"].as_u64().unwrap_or(0);
    assert!(
        decoded > 40 && decoded > at_half,
        "video frames decoded and growing: {report}"
    );
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}

/// Chromium publishes `codec` through the publish page (`?codec=`) and a second Chromium
/// plays it over WHEP; with `rtmp`, FFmpeg 9 decodes it over Enhanced RTMP too.
fn chromium_publishes_and_plays(codec: &str, mime: &str, rtmp: bool) {
    let server = Switchyard::start();
    let name = format!("live/{codec}");
    let publishing = Publishing::start(&server.api(&format!("/publish/{name}?codec={codec}")), 30);
    let info = server.wait_for_stream(&name, true);
    let video = video_track(&info);
    assert_eq!(video["codec"], codec, "{info}");
    assert_eq!(info["webrtc"]["video"], format!("sent ({codec})"), "{info}");

    let report = play(&server.api(&format!("/play/{name}?mode=webrtc")), 10);
    assert_chromium_decodes(&report, mime);
    if rtmp {
        let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url(&name), 3);
        assert!(decoded.success && decoded.video_frames > 20, "{decoded:?}");
    }

    let published = publishing.finish();
    assert_eq!(
        published["errors"].as_array().map(Vec::len),
        Some(0),
        "{published}"
    );
    assert!(
        published["videoCodec"]
            .as_str()
            .is_some_and(|c| c.starts_with(mime)),
        "the page published {mime}: {published}"
    );
}

#[test]
fn chromium_publishes_vp8_and_chromium_plays_it_over_whep() {
    // FLV has no VP8: not over RTMP.
    chromium_publishes_and_plays("vp8", "video/VP8", false);
}

/// libwebrtc's VP9 descriptors (non-flexible mode, SS on keyframes) in, ours out.
#[test]
fn chromium_publishes_vp9_and_chromium_ffmpeg_play_it() {
    chromium_publishes_and_plays("vp9", "video/VP9", true);
}

/// AV1 both ways (Chromium encodes it with libaom in real-time mode), and over Enhanced RTMP
/// with the av1C built from the sequence header.
#[test]
fn chromium_publishes_av1_and_chromium_ffmpeg_play_it() {
    chromium_publishes_and_plays("av1", "video/AV1", true);
}

#[test]
fn gstreamer_publishes_vp9_over_whip_and_chromium_plays_it() {
    let server = Switchyard::start();
    let _publisher = gst_whip(&server.api("/whip/live/vp9"), 30, "vp9");
    let info = server.wait_for_stream("live/vp9", true);
    let video = video_track(&info);
    assert_eq!(video["codec"], "vp9", "{info}");
    assert_eq!(info["webrtc"]["video"], "sent (vp9)", "{info}");

    // Our VP9 packetizer (flexible mode, PictureID, SS with the size on keyframes), not
    // GStreamer's, is what Chromium decodes.
    let report = play(&server.api("/play/live/vp9?mode=webrtc"), 10);
    assert_chromium_decodes(&report, "video/VP9");
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(640), Some(360)),
        "{report}"
    );

    // Enhanced RTMP carries VP9 (FourCC vp09) with the vpcC built from a keyframe's header:
    // FFmpeg 9 decodes it.
    let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url("live/vp9"), 3);
    assert!(decoded.success && decoded.video_frames > 20, "{decoded:?}");
    // fMP4 (HLS, MSE) does not carry VP9 yet: HLS has the Opus audio alone, and says so.
    let hls = ffprobe_streams(&server.api("/hls/live/vp9/index.m3u8"));
    assert!(
        hls.iter()
            .all(|s| s.is_empty() || s.starts_with("codec_name=opus")),
        "{hls:?}"
    );
    assert!(
        server
            .log_text()
            .contains("vp9 video is not carried in HLS"),
        "{}",
        server.log_text()
    );
}

/// A WHEP offer that can only receive H.264, for a VP8 stream.
const H264_ONLY_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB:CC\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=setup:actpass\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

#[test]
fn a_whep_offer_without_the_streams_codec_gets_422_saying_so() {
    let server = Switchyard::start();
    let _publisher = gst_whip(&server.api("/whip/live/vp8"), 20, "vp8");
    let info = server.wait_for_stream("live/vp8", true);
    assert_eq!(video_track(&info)["codec"], "vp8", "{info}");

    let response = ureq::post(&server.api("/whep/live/vp8"))
        .timeout(Duration::from_secs(10))
        .set("content-type", "application/sdp")
        .send_string(H264_ONLY_OFFER);
    let Err(ureq::Error::Status(status, response)) = response else {
        panic!("the offer was accepted: {response:?}");
    };
    assert_eq!(status, 422);
    let body: serde_json::Value = response.into_json().unwrap_or_default();
    let text = body["error"].as_str().unwrap_or_default();
    assert!(
        text.contains("this stream is VP8; your offer has only H.264"),
        "{body}"
    );
}
