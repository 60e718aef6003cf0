//! `switchyard source`: the latency probe's live source publishes a fixture in a loop to the
//! server over RTMP and over WHIP; ffmpeg reads it back (RTMP, HLS) and decodes it, and its
//! `showinfo` filter prints the SEI user data unregistered (H.264 D.1.7) of every frame: our
//! UUID, the send time and the source protocol.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

const UUID: &str = "5f9c2e1a-7b3d-4c8e-9a61-2d4f8b0c3e77";

/// Runs `switchyard source` expecting it to fail: its exit status and stderr.
fn source_fails(file: &str, url: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["source", file, "--to", url, "--duration", "5"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run switchyard source");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What ffmpeg's `showinfo` said about the frames it decoded.
#[derive(Debug, Default)]
struct Shown {
    /// Each decoded frame's pts_time, in order.
    pts: Vec<f64>,
    /// Probe stamps seen: send time (us since the epoch) and source protocol.
    stamps: Vec<(u64, String)>,
    errors: String,
    /// When ffmpeg started and ended (us since the epoch).
    started_us: u64,
    ended_us: u64,
}

/// Decodes `seconds` of `url` with ffmpeg 5.1 through `showinfo`.
fn showinfo(url: &str, seconds: u32) -> Shown {
    require("ffmpeg");
    let started_us = now_us();
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-rw_timeout",
            "5000000",
            "-i",
            url,
        ])
        .args(["-t", &seconds.to_string(), "-map", "0:v", "-vf", "showinfo"])
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut shown = Shown {
        started_us,
        ended_us: now_us(),
        ..Shown::default()
    };
    let mut uuid_is_ours = false;
    for line in stderr.lines() {
        if let Some(rest) = line.split(" pts_time:").nth(1) {
            shown
                .pts
                .push(rest.split_whitespace().next().unwrap().parse().unwrap());
        } else if let Some(uuid) = line.split("UUID=").nth(1) {
            uuid_is_ours = uuid.trim() == UUID;
        } else if let Some(data) = line.split("User Data=").nth(1) {
            let data = data.trim();
            if uuid_is_ours && data.len() == 24 {
                let sent = u64::from_str_radix(&data[..16], 16).unwrap();
                let source = (0..4)
                    .map(|i| u8::from_str_radix(&data[16 + 2 * i..18 + 2 * i], 16).unwrap() as char)
                    .collect();
                shown.stamps.push((sent, source));
            }
            uuid_is_ours = false;
        } else if line.contains("error") || line.contains("corrupt") || line.contains("concealing")
        {
            shown.errors.push_str(line);
            shown.errors.push('\n');
        }
    }
    if !out.status.success() {
        shown
            .errors
            .push_str(&format!("ffmpeg exited with {}", out.status));
    }
    shown
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Every decoded frame carried a stamp of `protocol`, sent while ffmpeg ran or at most
/// `before` earlier (a player starts with the server's cached GOP; HLS lags by segments).
fn assert_stamped(shown: &Shown, protocol: &str, min_frames: usize, before: Duration) {
    assert!(
        shown.errors.is_empty() && shown.pts.len() >= min_frames,
        "decoded {} frames: {}",
        shown.pts.len(),
        shown.errors
    );
    assert_eq!(
        shown.stamps.len(),
        shown.pts.len(),
        "a stamp in every frame"
    );
    let earliest = shown.started_us - before.as_micros() as u64;
    for (sent, source) in &shown.stamps {
        assert_eq!(source, protocol);
        assert!(
            (earliest..=shown.ended_us).contains(sent),
            "stamp {sent} is {} ms before ffmpeg started",
            (shown.started_us as i64 - *sent as i64) / 1000
        );
    }
}

/// Waits until `url` plays, then decodes it through `showinfo`.
fn showinfo_when_playing(url: &str, seconds: u32) -> Shown {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = showinfo(url, seconds);
        if !shown.pts.is_empty() || Instant::now() > deadline {
            return shown;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn rtmp_source_is_decoded_over_rtmp_and_hls_with_a_stamp_in_every_frame() {
    let server = Switchyard::start();
    let mut src = probe_source(PROBE_FIXTURE, &server.rtmp_url("live/probe"), 30);
    let info = server.wait_for_stream("live/probe", true);
    assert_eq!(info["tracks"][0]["width"], 640, "{info}");
    let shown = showinfo_when_playing(&server.rtmp_url("live/probe"), 4);
    assert_stamped(&shown, "rtmp", 100, Duration::from_secs(2));
    let hls = server.api("/hls/live/probe/index.m3u8");
    let shown = showinfo_when_playing(&hls, 4);
    // HLS lags by a segment or more.
    assert_stamped(&shown, "rtmp", 100, Duration::from_secs(10));
    assert!(src.is_running(), "the source runs until --duration");
    // SIGTERM stops it cleanly.
    Command::new("kill")
        .args(["-TERM", &src.0.id().to_string()])
        .status()
        .unwrap();
    let status = src
        .wait_exit(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn whip_source_appears_and_plays_over_rtmp_with_whip_stamps() {
    let server = Switchyard::start();
    let mut src = probe_source(PROBE_FIXTURE, &server.api("/whip/live/wprobe"), 30);
    let info = server.wait_for_stream("live/wprobe", false);
    assert_eq!(info["publisher"]["protocol"], "webrtc", "{info}");
    let shown = showinfo_when_playing(&server.rtmp_url("live/wprobe"), 4);
    assert_stamped(&shown, "whip", 100, Duration::from_secs(2));
    assert!(src.is_running());
    drop(src);
}

/// A 2 s copy of the fixture, played for longer: timestamps keep growing across the loop
/// points and nothing fails to decode there.
#[test]
fn a_short_file_loops_with_growing_timestamps_and_no_decode_error() {
    require("ffmpeg");
    let dir = TempDir::new("source-loop");
    let short = dir.path.join("short.flv");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-nostdin",
            "-i",
            PROBE_FIXTURE,
            "-t",
            "2",
            "-c",
            "copy",
        ])
        .arg(&short)
        .status()
        .unwrap();
    assert!(made.success());
    let server = Switchyard::start();
    let _src = probe_source(short.to_str().unwrap(), &server.rtmp_url("live/loop"), 30);
    server.wait_for_stream("live/loop", true);
    let shown = showinfo_when_playing(&server.rtmp_url("live/loop"), 7);
    assert_stamped(&shown, "rtmp", 190, Duration::from_secs(2));
    for pair in shown.pts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap > 0.0 && gap < 0.1, "pts {} then {}", pair[0], pair[1]);
    }
    let span = shown.pts.last().unwrap() - shown.pts[0];
    assert!(
        span > 6.0,
        "7 s decoded across at least 3 loop points: {span}"
    );
}

/// The server restarts on the same ports: the source reconnects and goes on.
#[test]
fn rtmp_source_reconnects_after_a_server_restart() {
    survives_a_server_restart("rtmp");
}

/// The same over WHIP: the old session fails (no answers to consent checks) and a new one is
/// opened with a new POST.
#[test]
fn whip_source_reconnects_after_a_server_restart() {
    survives_a_server_restart("whip");
}

fn survives_a_server_restart(protocol: &str) {
    let ports: Vec<String> = (0..3)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        })
        .collect();
    let mut server = Switchyard::start_at("", &ports[0], &ports[1], &ports[2]);
    let to = match protocol {
        "rtmp" => server.rtmp_url("live/again"),
        _ => server.api("/whip/live/again"),
    };
    let mut src = probe_source(PROBE_FIXTURE, &to, 90);
    server.wait_for_stream("live/again", false);
    server
        .terminate(Duration::from_secs(5))
        .expect("server stops");
    std::thread::sleep(Duration::from_secs(1));
    assert!(src.is_running(), "the source outlives the server");
    let server = Switchyard::start_at("", &ports[0], &ports[1], &ports[2]);
    let deadline = Instant::now() + Duration::from_secs(40);
    while server.get_json("/api/v1/streams/live/again").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the source came back within 40 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let shown = showinfo_when_playing(&server.rtmp_url("live/again"), 3);
    assert_stamped(&shown, protocol, 60, Duration::from_secs(2));
}

#[test]
fn bad_input_fails_with_one_clear_line() {
    let server = Switchyard::start();
    let dir = TempDir::new("source-bad");
    let text = dir.path.join("notes.flv");
    std::fs::write(&text, "not a video").unwrap();
    let audio_only = dir.path.join("audio.flv");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-nostdin",
            "-i",
            PROBE_FIXTURE,
            "-vn",
            "-c",
            "copy",
        ])
        .arg(&audio_only)
        .status()
        .unwrap();
    assert!(made.success());
    let rtmp = server.rtmp_url("live/bad");
    // A name in use: ffmpeg publishes it first.
    let _busy = ffmpeg_publish(&server.rtmp_url("live/busy"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/busy", true);
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "/nonexistent/probe.flv",
            &rtmp,
            &["/nonexistent/probe.flv", "cannot read"],
        ),
        (text.to_str().unwrap(), &rtmp, &["not an FLV file"]),
        (audio_only.to_str().unwrap(), &rtmp, &["no H.264 video"]),
        (
            PROBE_FIXTURE,
            "ftp://127.0.0.1/live/x",
            &["unsupported URL"],
        ),
        (
            PROBE_FIXTURE,
            &server.rtmp_url("live/busy"),
            &["refused the publish", "NetStream.Publish.BadName"],
        ),
        (
            PROBE_FIXTURE,
            &server.api("/whip/live/busy"),
            &["refused the publish", "409"],
        ),
    ];
    for (file, url, words) in cases {
        let (success, stderr) = source_fails(file, url);
        assert!(!success, "{file} to {url} fails");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{word:?} in {stderr:?}");
        }
    }
}
