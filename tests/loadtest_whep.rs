//! The load generator's WHEP client measures what it receives: ffmpeg publishes H.264 at 25 fps
//! over RTMP to the real binary, and `switchyard::loadtest::LoadTest` plays it over
//! WHEP with several sessions, each decrypting SRTP, tracking loss and frames, and sending
//! NACKs when the server drops packets on purpose.

mod support;

use std::time::Duration;
use support::*;

/// ffmpeg publishing testsrc2 H.264 (baseline, 25 fps, a keyframe a second) in real time.
fn publish(url: &str) -> Proc {
    ffmpeg_publish_video(url, "640x360", 25, "1M", 90)
}

/// Runs `sessions` WHEP sessions of `url` for `seconds` in this process: the run's report and
/// each session's figures.
fn run_load(
    url: &str,
    sessions: usize,
    seconds: u64,
) -> (
    switchyard::loadtest::LoadTestReport,
    Vec<switchyard::loadtest::SessionReport>,
) {
    use switchyard::loadtest::{LoadSpec, LoadTest};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let test = LoadTest::start(LoadSpec::new(url, sessions, Duration::from_secs(seconds)))
            .expect("load run");
        test.finished().await;
        let mut report = test.report(true);
        let sessions = report.per_session.take().unwrap();
        (report, sessions)
    })
}

#[test]
fn whep_sessions_measure_frames_loss_and_bytes() {
    let server = Switchyard::start();
    let _publisher = publish(&server.rtmp_url("live/measured"));
    server.wait_for_stream("live/measured", false);
    let (_, before) = server.get_json("/api/v1/streams/live/measured");
    let (report, sessions) = run_load(&server.api("/whep/live/measured"), 5, 6);
    let (_, after) = server.get_json("/api/v1/streams/live/measured");
    assert_eq!(report.playing, 5, "{report:?}\n{sessions:#?}");
    assert_eq!(sessions.len(), 5);
    let mut bytes = 0;
    for s in &sessions {
        eprintln!("{s:?}");
        let connect = s.connect_ms.expect("connected");
        let first = s.first_frame_ms.expect("a keyframe");
        // The first packets may share the connecting datagram batch: stamped a little earlier.
        assert!(connect < 3000.0 && first + 5.0 >= connect, "{s:?}");
        assert!(
            first - connect < 1500.0,
            "first keyframe soon after connecting: {s:?}"
        );
        let playing = s.seconds - first / 1000.0;
        let fps = s.frames as f64 / playing;
        // 25 fps, plus the GOP catch-up at the start (up to a second's frames, sent faster).
        assert!((20.0..=36.0).contains(&fps), "{fps:.1} fps: {s:?}");
        assert!(s.keyframes >= 4, "a keyframe a second: {s:?}");
        assert_eq!(s.packets_lost, 0, "{s:?}");
        assert!(s.jitter_ms < 30.0, "{s:?}");
        assert!(s.bitrate_bps > 500_000, "{s:?}");
        assert!(s.error.is_none(), "{s:?}");
        bytes += s.bytes;
    }
    let sent = after["bytes_out"].as_u64().unwrap() - before["bytes_out"].as_u64().unwrap();
    let ratio = bytes as f64 / sent as f64;
    assert!(
        (0.95..=1.01).contains(&ratio),
        "received {bytes} bytes, the server sent {sent} ({ratio:.3})"
    );
}

#[test]
fn whep_sessions_recover_lost_packets_with_nacks() {
    let server = Switchyard::start_with_config("[webrtc]\nsimulate_loss_one_in = 50\n");
    let _publisher = publish(&server.rtmp_url("live/lossy"));
    server.wait_for_stream("live/lossy", false);
    let (report, sessions) = run_load(&server.api("/whep/live/lossy"), 3, 6);
    assert_eq!(report.playing, 3, "{report:?}\n{sessions:#?}");
    let (_, engine) = server.get_json("/api/v1/webrtc");
    assert!(engine["simulated_losses"].as_u64().unwrap() > 0, "{engine}");
    assert!(engine["retransmitted"].as_u64().unwrap() > 0, "{engine}");
    eprintln!("{engine}");
    for s in &sessions {
        eprintln!("{s:?}");
        assert!(s.nacks_sent > 0, "{s:?}");
        // Only a loss in the last moments before the end may be still outstanding.
        assert!(s.packets_lost <= 2, "recovered: {s:?}");
        assert!(s.first_frame_ms.is_some() && s.frames > 100, "{s:?}");
    }
}
