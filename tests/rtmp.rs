//! RTMP publish and play end to end, with ffmpeg/ffprobe as the real peers.

mod support;

use std::time::Duration;
use support::rtmp_client::RtmpClient;
use support::*;

/// Publishes `encoding`, then checks ffprobe's view and a full decode over RTMP.
fn round_trip(encoding: Encoding, expect_profile: &str, expect_b_frames: &str) {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/test"), encoding, 25, 30);
    server.wait_for_stream("live/test", true);

    let streams = ffprobe_streams(&server.rtmp_url("live/test"));
    let video = streams
        .iter()
        .find(|s| s.starts_with("codec_name=h264"))
        .unwrap_or_else(|| panic!("{streams:?}"));
    assert!(
        video.contains(&format!("profile={expect_profile}|")),
        "{video}"
    );
    assert!(video.contains("width=640|height=360"), "{video}");
    assert!(
        video.contains(&format!("has_b_frames={expect_b_frames}")),
        "{video}"
    );
    assert!(
        streams
            .iter()
            .any(|s| s.starts_with("codec_name=aac|profile=LC")),
        "{streams:?}"
    );
    assert_eq!(
        streams.len(),
        2,
        "only the audio and video streams: {streams:?}"
    );

    let decode = ffmpeg_decode(&server.rtmp_url("live/test"), 5);
    assert!(decode.success && decode.errors.is_empty(), "{decode:?}");
    assert!(decode.video_frames >= 100, "5 s at 25 fps, got {decode:?}");

    let (_, info) = server.get_json("/api/v1/streams/live/test");
    assert_eq!(info["publisher"]["protocol"], "rtmp");
    assert!(info["publisher"]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let tracks = info["tracks"].as_array().unwrap();
    assert_eq!(tracks[0]["codec"], "h264");
    assert_eq!(tracks[0]["profile"], expect_profile);
    assert_eq!(
        (tracks[0]["width"].as_u64(), tracks[0]["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(tracks[1]["codec_string"], "mp4a.40.2");
}

#[test]
fn ffmpeg_round_trip_high_profile_with_b_frames() {
    round_trip(Encoding::HighBFrames, "High", "2");
}

#[test]
fn ffmpeg_round_trip_baseline_without_b_frames() {
    round_trip(Encoding::Baseline, "Constrained Baseline", "0");
}

#[test]
fn ffmpeg_round_trip_multi_slice_frames() {
    round_trip(Encoding::MultiSlice, "Constrained Baseline", "0");
}

#[test]
fn late_joiner_starts_at_the_cached_keyframe_without_waiting_for_the_next() {
    let server = Switchyard::start();
    // One keyframe every 12 s: a reader joining ~3 s in must get the first one from the cache.
    let _publisher = ffmpeg_publish(
        &server.rtmp_url("live/late"),
        Encoding::HighBFrames,
        300,
        30,
    );
    server.wait_for_stream("live/late", true);
    std::thread::sleep(Duration::from_secs(2));
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            "-select_streams",
            "v",
            "-show_frames",
            "-read_intervals",
            "%+#3",
        ])
        .args([
            "-show_entries",
            "frame=key_frame,pict_type,pkt_dts_time",
            "-of",
            "compact=p=0",
        ])
        .arg(server.rtmp_url("live/late"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no frames: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        first.contains("key_frame=1") && first.contains("pict_type=I"),
        "{first}"
    );
    let dts: f64 = first
        .split("pkt_dts_time=")
        .nth(1)
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        dts < 1.0,
        "first frame is the keyframe from t=0 (cached), not a later one: {first}"
    );
}

#[test]
fn stalled_readers_are_dropped_to_a_keyframe_or_closed_and_others_get_every_frame() {
    let server = Switchyard::start_with_config(
        "[rtmp]\nwrite_timeout_secs = 8\n[bus]\nreader_queue_frames = 64\n",
    );
    // Faster than real time, so stalled readers fall behind within seconds.
    let _publisher = ffmpeg_publish_with(
        &server.rtmp_url("live/s"),
        Encoding::Baseline,
        25,
        600,
        false,
        "3M",
    );
    server.wait_for_stream("live/s", true);
    let rss_before = server.rss_kib();
    let mut pausing = RtmpClient::connect(server.rtmp, "live");
    pausing.play("s");
    let mut stalled = RtmpClient::connect(server.rtmp, "live");
    stalled.play("s");
    let healthy = std::thread::spawn({
        let url = server.rtmp_url("live/s");
        move || ffmpeg_decode(&url, 60)
    });
    // `pausing` reads nothing for 5 s, then reads again; `stalled` never reads. All three are
    // counted once attached (the healthy one may be done before 5 s: the publisher runs many
    // times faster than real time on an idle machine).
    let paused_at = std::time::Instant::now();
    let deadline = paused_at + Duration::from_secs(5);
    loop {
        let (_, info) = server.get_json("/api/v1/streams/live/s");
        if info["readers"]["rtmp"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5).saturating_sub(paused_at.elapsed()));
    assert!(
        pausing.received_bytes(Duration::from_secs(4)) > 1_000_000,
        "the paused reader resumes"
    );
    let (_, info) = server.get_json("/api/v1/streams/live/s");
    assert!(
        info["frames_dropped"].as_u64().unwrap() > 0,
        "the paused reader lost frames: {info}"
    );

    let decode = healthy.join().unwrap();
    assert!(decode.success && decode.errors.is_empty(), "{decode:?}");
    assert!(
        decode.video_frames >= 60 * 25 - 25,
        "every frame of 60 s at 25 fps: {decode:?}"
    );

    server.wait_for_log("player stopped reading", Duration::from_secs(20));
    assert!(
        stalled.closed_by_server(Duration::from_secs(5)),
        "the stalled reader is closed"
    );
    let growth = server.rss_kib().saturating_sub(rss_before);
    assert!(growth < 48 * 1024, "RSS grew by {growth} KiB");
    let metrics = ureq::get(&server.api("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_frames_dropped_total"))
        .unwrap();
    assert!(!dropped.ends_with(" 0"), "{dropped}");
}

#[test]
fn second_publisher_is_rejected_and_the_first_keeps_streaming() {
    let server = Switchyard::start();
    let mut first = ffmpeg_publish(&server.rtmp_url("live/dup"), Encoding::Baseline, 25, 30);
    let info = server.wait_for_stream("live/dup", true);
    let mut second = ffmpeg_publish(&server.rtmp_url("live/dup"), Encoding::Baseline, 25, 30);
    let status = second
        .wait_exit(Duration::from_secs(15))
        .expect("second publisher is turned away");
    assert!(!status.success());
    server.wait_for_log("RTMP publish refused", Duration::from_secs(5));
    assert!(first.is_running());
    let decode = ffmpeg_decode(&server.rtmp_url("live/dup"), 2);
    assert!(decode.success && decode.video_frames >= 40, "{decode:?}");
    let (_, now) = server.get_json("/api/v1/streams/live/dup");
    assert_eq!(now["publisher"]["remote"], info["publisher"]["remote"]);
}

#[test]
fn api_delete_kicks_the_publisher_and_removes_the_stream() {
    let server = Switchyard::start();
    let mut publisher = ffmpeg_publish(&server.rtmp_url("live/kick"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/kick", false);
    let response = ureq::delete(&server.api("/api/v1/streams/live/kick"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        publisher.wait_exit(Duration::from_secs(10)).is_some(),
        "ffmpeg noticed the kick"
    );
    let (status, body) = server.get_json("/api/v1/streams/live/kick");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("not found"));
}

#[test]
fn api_errors_are_json_with_the_right_status() {
    let server = Switchyard::start();
    let (status, body) = server.get_json("/api/v1/streams/live/nothing");
    assert_eq!((status, body["error"].is_string()), (404, true));
    let (status, body) = server.get_json("/api/v1/streams/bad%20name");
    assert_eq!((status, body["error"].is_string()), (400, true), "{body}");
    let (status, body) = server.get_json("/api/v1/nope");
    assert_eq!((status, body["error"].is_string()), (404, true));
    let err = ureq::delete(&server.api("/api/v1/streams/live/nothing"))
        .call()
        .unwrap_err();
    assert!(matches!(err, ureq::Error::Status(404, _)));
    let (status, body) = server.get_json("/healthz");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, list) = server.get_json("/api/v1/streams");
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(0)));
}

#[test]
fn playing_a_missing_stream_fails_fast() {
    let server = Switchyard::start();
    let started = std::time::Instant::now();
    let decode = ffmpeg_decode(&server.rtmp_url("live/missing"), 1);
    assert!(!decode.success);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused, not left hanging to the 5 s read timeout"
    );
}

#[test]
fn malformed_input_closes_only_that_session() {
    let server = Switchyard::start();
    let _good = ffmpeg_publish(&server.rtmp_url("live/good"), Encoding::Baseline, 25, 40);
    server.wait_for_stream("live/good", true);

    // Garbage instead of a handshake.
    assert!(
        send_garbage(server.rtmp, &[0xde; 5000]),
        "server closes a garbage handshake"
    );
    // A valid handshake and connect, then garbage chunks.
    let mut client = RtmpClient::connect(server.rtmp, "live");
    use std::io::Write;
    client
        .socket
        .write_all(&[
            0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x99, 1, 2, 3, 4, 0xc7, 0xc7, 0x3f,
        ])
        .unwrap();
    client
        .socket
        .write_all(&(0..4000u32).map(|i| (i * 7919) as u8).collect::<Vec<_>>())
        .unwrap();
    assert!(
        client.closed_by_server(Duration::from_secs(15)),
        "server closes on garbage chunks"
    );

    // An AVC sequence header whose SPS is garbage.
    let mut bad_sps = RtmpClient::connect(server.rtmp, "live");
    bad_sps.publish("badsps");
    bad_sps.send_video(
        &[
            0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0xff, 0xff, 0xff, 1, 0, 1,
            0x68,
        ],
        0,
    );
    assert!(bad_sps.closed_by_server(Duration::from_secs(10)));
    server.wait_for_log("H.264 SPS", Duration::from_secs(5));

    // A valid sequence header, then a frame whose NAL length points far past its end.
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ffmpeg-h264-high-bf2-aac.flv"
    ))
    .unwrap();
    let seq = first_video_tag(&file);
    let mut absurd = RtmpClient::connect(server.rtmp, "live");
    absurd.publish("absurd");
    absurd.send_video(seq, 0);
    absurd.send_video(
        &[0x17, 1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0x65, 0x88, 0x84],
        40,
    );
    assert!(absurd.closed_by_server(Duration::from_secs(10)));
    server.wait_for_log("NAL unit: truncated", Duration::from_secs(5));
    assert_eq!(
        server.get_json("/api/v1/streams/live/absurd").0,
        404,
        "the bad publisher's stream is gone"
    );

    // The good stream went on untouched.
    let decode = ffmpeg_decode(&server.rtmp_url("live/good"), 2);
    assert!(
        decode.success && decode.errors.is_empty() && decode.video_frames >= 40,
        "{decode:?}"
    );
    assert_eq!(server.get_json("/healthz").0, 200);
}

/// The body of the first video tag of an FLV file (its AVC sequence header).
fn first_video_tag(file: &[u8]) -> &[u8] {
    let mut pos = 13;
    loop {
        let size =
            (file[pos + 1] as usize) << 16 | (file[pos + 2] as usize) << 8 | file[pos + 3] as usize;
        if file[pos] == 9 {
            return &file[pos + 11..pos + 11 + size];
        }
        pos += 11 + size + 4;
    }
}

#[test]
fn sigterm_closes_sessions_and_exits_zero() {
    let mut server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/term"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/term", false);
    let mut player = RtmpClient::connect(server.rtmp, "live");
    player.play("term");
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(player.closed_by_server(Duration::from_secs(2)));
}
