//! RTSP pulls end to end: a GStreamer RTSP server plays the IP camera (tests/support/
//! rtsp_server.py), Switchyard pulls it through `/api/v1/pulls` or `[[pulls]]`, and ffmpeg /
//! ffprobe read the result over RTMP and HLS.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

fn create_pull(server: &Switchyard, source: &str, name: &str) -> String {
    let (status, body) = server.request(
        "POST",
        "/api/v1/pulls",
        Some(&json!({ "source": source, "name": name }).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Waits until the pull is in `state` and returns its JSON.
fn wait_for_state(server: &Switchyard, id: &str, state: &str, timeout: Duration) -> Value {
    server.wait_for_state(&format!("/api/v1/pulls/{id}"), state, timeout)
}

#[test]
fn h264_aac_camera_over_tcp_plays_over_rtmp_and_hls() {
    let camera = RtspCamera::start(0, "aac", None);
    let server = Switchyard::start();
    let source = format!("rtsp://viewer:s3cret@127.0.0.1:{}/cam", camera.port);
    let id = create_pull(&server, &source, "cam/tcp");
    let info = wait_for_state(&server, &id, "running", Duration::from_secs(20));
    assert_eq!(
        info["source"],
        format!("rtsp://***@127.0.0.1:{}/cam", camera.port)
    );
    assert_eq!(info["name"], "cam/tcp");
    let stream = server.wait_for_stream("cam/tcp", true);
    assert_eq!(stream["publisher"]["protocol"], "rtsp");
    assert_eq!(stream["tracks"][0]["codec"], "h264");
    assert_eq!(stream["tracks"][0]["width"], 640);
    assert_eq!(stream["tracks"][1]["codec"], "aac");

    let probe = ffprobe_streams(&server.rtmp_url("cam/tcp"));
    assert!(
        probe.iter().any(|l| l.starts_with("codec_name=h264")),
        "{probe:?}"
    );
    assert!(
        probe.iter().any(|l| l.starts_with("codec_name=aac")),
        "{probe:?}"
    );
    assert_decodes(&server.rtmp_url("cam/tcp"), 4, 60);
    assert_decodes(&server.api("/hls/cam/tcp/index.m3u8"), 4, 60);

    let (_, list) = server.get_json("/api/v1/pulls");
    assert!(!list.to_string().contains("s3cret"));
    assert!(!server.log_text().contains("s3cret"));

    let (status, _) = server.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
    assert_eq!(status, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_json("/api/v1/streams/cam/tcp").0 != 404 {
        assert!(Instant::now() < deadline, "stream still there after DELETE");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.get_json(&format!("/api/v1/pulls/{id}")).0, 404);
}

#[test]
fn configured_pull_over_udp_starts_at_boot() {
    let camera = RtspCamera::start(0, "aac", None);
    let server = Switchyard::start_with_config(&format!(
        "[pull]\nrtsp_transport = \"udp\"\n\n[[pulls]]\nsource = \"{}\"\nname = \"cam/udp\"\n",
        camera.url()
    ));
    let stream = server.wait_for_stream("cam/udp", true);
    assert_eq!(stream["tracks"][1]["codec"], "aac");
    server.wait_for_log("transport=Udp", Duration::from_secs(5));
    assert_decodes(&server.rtmp_url("cam/udp"), 4, 60);
    // The same camera over UDP chosen by the URL, beside it.
    let id = create_pull(
        &server,
        &format!("{}?transport=udp", camera.url()),
        "cam/udp2",
    );
    let info = wait_for_state(&server, &id, "running", Duration::from_secs(20));
    assert_eq!(info["source"], camera.url(), "transport parameter stripped");
}

#[test]
fn h264_opus_camera_plays_over_hls() {
    let camera = RtspCamera::start(0, "opus", None);
    let server = Switchyard::start();
    let id = create_pull(&server, &camera.url(), "cam/opus");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    let stream = server.wait_for_stream("cam/opus", true);
    assert_eq!(stream["tracks"][1]["codec"], "opus");
    assert_eq!(stream["tracks"][1]["clock_rate"], 48000);
    let url = server.api("/hls/cam/opus/index.m3u8");
    assert_decodes(&url, 4, 60);
    let probe = ffprobe_streams(&url);
    assert!(
        probe.iter().any(|l| l.starts_with("codec_name=opus")),
        "{probe:?}"
    );
}

#[test]
fn pull_recovers_when_the_camera_restarts() {
    let camera = RtspCamera::start(0, "aac", None);
    let port = camera.port;
    let server = Switchyard::start_with_config("[pull]\nretry_min_ms = 200\nretry_max_ms = 1000\n");
    let id = create_pull(&server, &camera.url(), "cam/flaky");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/flaky", true);

    drop(camera);
    let info = wait_for_state(&server, &id, "retrying", Duration::from_secs(15));
    assert!(info["retries"].as_u64().unwrap() >= 1);
    assert!(info["last_error"].is_string(), "{info}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get_json("/api/v1/streams/cam/flaky").0 != 404 {
        assert!(
            Instant::now() < deadline,
            "stream stayed while the camera was away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));

    let _camera = RtspCamera::start(port, "aac", None);
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/flaky", true);
    assert_decodes(&server.rtmp_url("cam/flaky"), 3, 45);
}

/// A TCP listener that answers every connection with `reply` (or nothing, if empty) and keeps
/// it open.
fn fake_server(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut held = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if !reply.is_empty() && conn.write_all(reply).is_err() {
                        break;
                    }
                    held.push(n);
                }
            });
        }
    });
    port
}

#[test]
fn bad_sources_show_clear_states_and_the_api_stays_responsive() {
    let server = Switchyard::start_with_config(
        "[pull]\nretry_min_ms = 200\nretry_max_ms = 2000\nconnect_timeout_secs = 2\n",
    );
    // Refused requests: 400 with a message, 409 for a name in use, 404 for unknown ids.
    for (body, want) in [
        (json!({ "source": "rtsp://cam/x", "name": "bad name" }), 400),
        (json!({ "source": "rtsp:// nope", "name": "a" }), 400),
        (json!({ "source": "cam/x", "name": "a" }), 400),
        (
            json!({ "source": "rtsp://u:hunter2@[::1/x", "name": "a" }),
            400,
        ),
        (json!({ "source": "rtsps://peer/x", "name": "a" }), 400),
        (
            json!({ "source": "http://u:hunter2@peer/whep/x", "name": "a" }),
            400,
        ),
        (json!({ "source": "gopher://peer/x", "name": "a" }), 400),
        (json!({ "name": "a" }), 400),
    ] {
        let (status, reply) =
            server.request("POST", "/api/v1/pulls", Some(&body.clone().to_string()));
        assert_eq!(status, want, "{body} -> {reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{body} -> {reply}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    let resp = ureq::post(&server.api("/api/v1/pulls"))
        .set("content-type", "application/json")
        .send_string("{not json");
    assert!(matches!(resp, Err(ureq::Error::Status(400, _))));
    assert_eq!(server.request("DELETE", "/api/v1/pulls/nope", None).0, 404);
    assert_eq!(server.get_json("/api/v1/pulls/nope").0, 404);

    // A camera that answers garbage.
    let junk = fake_server(b"\x00\xffHELLO garbage garbage\r\n\r\n\x17\x03");
    let junk_id = create_pull(&server, &format!("rtsp://127.0.0.1:{junk}/cam"), "bad/junk");
    // A camera that accepts the connection and never answers.
    let silent = fake_server(b"");
    let silent_id = create_pull(
        &server,
        &format!("rtsp://127.0.0.1:{silent}/cam"),
        "bad/silent",
    );
    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed_id = create_pull(
        &server,
        &format!("rtsp://127.0.0.1:{closed}/cam"),
        "bad/closed",
    );
    // Wrong credentials.
    let camera = RtspCamera::start(0, "aac", Some("admin:right"));
    let auth_id = create_pull(
        &server,
        &format!("rtsp://admin:wrong@127.0.0.1:{}/cam", camera.port),
        "bad/auth",
    );
    // A name already taken.
    let (status, reply) = server.request(
        "POST",
        "/api/v1/pulls",
        Some(&json!({ "source": camera.url(), "name": "bad/auth" }).to_string()),
    );
    assert_eq!(status, 409, "{reply}");

    let junk_info = wait_for_state(&server, &junk_id, "retrying", Duration::from_secs(10));
    assert!(junk_info["last_error"].is_string(), "{junk_info}");
    let closed_info = wait_for_state(&server, &closed_id, "retrying", Duration::from_secs(10));
    assert!(
        closed_info["last_error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{closed_info}"
    );
    let silent_info = wait_for_state(&server, &silent_id, "retrying", Duration::from_secs(10));
    assert!(
        silent_info["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 2 s"),
        "{silent_info}"
    );
    let auth_info = wait_for_state(&server, &auth_id, "failed", Duration::from_secs(10));
    assert!(
        auth_info["last_error"].as_str().unwrap().contains("401"),
        "{auth_info}"
    );
    assert!(!auth_info.to_string().contains("wrong"), "{auth_info}");
    assert!(!server.log_text().contains("admin:wrong"));

    // None of them published anything, and they all go away on DELETE.
    let (_, streams) = server.get_json("/api/v1/streams");
    assert_eq!(streams.as_array().unwrap().len(), 0, "{streams}");
    for id in [&junk_id, &silent_id, &closed_id, &auth_id] {
        assert_eq!(
            server
                .request("DELETE", &format!("/api/v1/pulls/{id}"), None)
                .0,
            204
        );
    }
    let (_, list) = server.get_json("/api/v1/pulls");
    assert_eq!(list, json!([]));
}

/// Decodes `seconds` of `url` with `ffmpeg` (video only); returns (video stream line as
/// ffmpeg prints it, e.g. "Video: hevc (Main), yuv420p(tv), 640x360", frames decoded, errors).
fn decode_video(ffmpeg: &std::path::Path, url: &str, seconds: u32) -> (String, u64, String) {
    let out = std::process::Command::new(ffmpeg)
        .args([
            "-nostdin",
            "-v",
            "info",
            "-rw_timeout",
            "5000000",
            "-i",
            url,
        ])
        .args([
            "-t",
            &seconds.to_string(),
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
        ])
        .args(["-f", "null", "-progress", "pipe:1", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let video = stderr
        .lines()
        .find(|l| l.contains("Stream #0:") && l.contains("Video:"))
        .unwrap_or_default()
        .to_string();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("frame="))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("corrupt") || l.contains("concealing")
        })
        .collect();
    assert!(out.status.success(), "{url}: {stderr}");
    (video, frames, errors.join("\n"))
}

/// A GStreamer camera sending H.265 (x265enc, rtph265pay; VPS/SPS/PPS in the SDP and before
/// every IDR) and AAC is pulled over TCP (retina's interleaved RTP) and over UDP (our client);
/// both read back over HLS (ffprobe/ffmpeg 5.1) and over Enhanced RTMP (FFmpeg 9) with the
/// camera's resolution and frame rate: 25 fps, within a GOP (25 frames) of what the time
/// decoded holds. One pull at a time, so that nothing is lost: gst-rtsp-server restarts a
/// shared pipeline at every other client's PLAY (see
/// `a_second_client_restarting_the_cameras_pipeline_does_not_interrupt_a_pull`).
#[test]
fn h265_camera_over_tcp_and_udp_plays_over_hls_and_enhanced_rtmp() {
    let camera = RtspCamera::start_args(&["--video", "h265", "--audio", "aac"]);
    let server = Switchyard::start();
    for transport in ["tcp", "udp"] {
        let name = format!("cam/h265{transport}");
        let id = create_pull(
            &server,
            &format!("{}?transport={transport}", camera.url()),
            &name,
        );
        wait_for_state(&server, &id, "running", Duration::from_secs(20));
        let stream = server.wait_for_stream(&name, true);
        let video = &stream["tracks"][0];
        assert_eq!(video["codec"], "hevc", "{stream}");
        assert!(
            video["codec_string"]
                .as_str()
                .unwrap()
                .starts_with("hvc1.1.6.L"),
            "{stream}"
        );
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(640), Some(360))
        );
        assert_eq!(stream["tracks"][1]["codec"], "aac");

        let hls = server.api(&format!("/hls/{name}/index.m3u8"));
        let probe = probe_until(
            &hls,
            &["codec_name=hevc|profile=Main", "codec_name=aac"],
            Duration::from_secs(20),
        );
        assert!(
            probe.iter().any(|l| l.contains("width=640|height=360")),
            "{probe:?}"
        );
        let (line, frames, errors) = decode_video(std::path::Path::new("ffmpeg"), &hls, 6);
        assert!(line.contains("hevc") && line.contains("640x360"), "{line}");
        assert!(errors.is_empty(), "{transport} HLS: {errors}");
        assert!(
            (125..=175).contains(&frames),
            "{transport} HLS: {frames} frames in 6 s"
        );

        let rtmp = server.rtmp_url(&name);
        let (line, frames, errors) = decode_video(&ffmpeg9(), &rtmp, 4);
        assert!(line.contains("hevc") && line.contains("640x360"), "{line}");
        assert!(errors.is_empty(), "{transport} RTMP: {errors}");
        assert!(
            (75..=125).contains(&frames),
            "{transport} RTMP: {frames} frames in 4 s"
        );
        eprintln!("H.265 over {transport}: {line}; RTMP {frames} frames in 4 s");

        let (_, info) = server.get_json(&format!("/api/v1/pulls/{id}"));
        assert_eq!(info["packets_lost"], 0, "loopback loses nothing: {info}");
        let (status, _) = server.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
        assert_eq!(status, 204);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.get_json(&format!("/api/v1/streams/{name}")).0 != 404 {
            assert!(Instant::now() < deadline, "{name} still there after DELETE");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Keyframe presentation times of the first video stream of `file`.
fn keyframe_times(file: &std::path::Path) -> Vec<f64> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pts, flags) = l.split_once(',')?;
            flags.contains('K').then(|| pts.parse().ok())?
        })
        .collect()
}

/// Times at which the audio of `file` rises from silence (below -20 dBFS for 20 ms) to a beep,
/// on the file's timeline; only rises that fall silent again within half a second.
fn beep_onsets(file: &std::path::Path) -> Vec<f64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-nostats", "-v", "info", "-copyts", "-i"])
        .arg(file)
        .args(["-map", "0:a:0", "-af", "silencedetect=noise=-20dB:d=0.02"])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let value = |line: &str, key: &str| -> Option<f64> {
        line.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let events: Vec<(bool, f64)> = stderr
        .lines()
        .filter_map(|l| {
            value(l, "silence_end: ")
                .map(|t| (true, t))
                .or_else(|| value(l, "silence_start: ").map(|t| (false, t)))
        })
        .collect();
    events
        .windows(2)
        .filter_map(|w| match (w[0], w[1]) {
            ((true, rise), (false, fall)) if fall - rise < 0.5 => Some(rise),
            _ => None,
        })
        .collect()
}

/// Each beep's distance to the nearest keyframe, in ms, from `skip` seconds into `file`.
fn beep_offsets_ms(file: &std::path::Path, skip: f64) -> (Vec<i64>, usize) {
    let keyframes = keyframe_times(file);
    let onsets = beep_onsets(file);
    assert!(
        keyframes.len() > 5,
        "keyframes {keyframes:?}, beeps {onsets:?}"
    );
    let start = keyframes[0] + skip;
    let end = *keyframes.last().unwrap();
    let offsets = onsets
        .iter()
        .filter(|&&t| t >= start && t <= end)
        .map(|&t| {
            let d = keyframes
                .iter()
                .map(|k| t - k)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap();
            (d * 1000.0).round() as i64
        })
        .collect();
    let expected = keyframes
        .iter()
        .filter(|&&k| k >= start && k <= end)
        .count();
    (offsets, expected)
}

/// Records `seconds` of `url` (all streams, as they are) into `file`.
fn record(url: &str, seconds: u32, file: &std::path::Path) {
    let out = ffmpeg_reading(std::path::Path::new("ffmpeg"), url)
        .args(["-map", "0", "-c", "copy", "-t", &seconds.to_string(), "-y"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What [`UdpRelay`] does to the RTP it forwards from the camera.
#[derive(Debug, Clone, Copy, Default)]
struct RelayMode {
    /// Swap every pair of adjacent packets of a stream (1 2 3 4 -> 2 1 4 3).
    swap: bool,
    /// Drop every Nth packet of a stream (0: none).
    drop_every: u64,
    /// Hold the second stream's (the audio's) RTP back this long; RTCP is not delayed.
    delay_second: Duration,
}

/// What a relay did, summed over its streams.
#[derive(Default)]
struct RelayCounts {
    forwarded: AtomicU64,
    swapped: AtomicU64,
    dropped: AtomicU64,
}

/// A network between a UDP RTSP client and a camera: an RTSP proxy that rewrites the ports of
/// each SETUP (`client_port` towards the camera, `server_port` towards the client) to its own
/// UDP sockets, and relays RTP and RTCP between them, reordering, dropping or delaying RTP as
/// `mode` says. The camera and the client see a plain RTSP server and client.
struct UdpRelay {
    port: u16,
    counts: Arc<RelayCounts>,
    stop: Arc<AtomicBool>,
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One RTSP message (head and body) from `buf`, if complete.
fn take_message(buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    if buf.len() < end + length {
        return None;
    }
    let body = buf[end..end + length].to_vec();
    buf.drain(..end + length);
    Some((head, body))
}

/// Replaces `key=A-B` in a Transport header line of `head` by `key=new`.
fn replace_ports(head: &str, key: &str, new: &str) -> (String, Option<(u16, u16)>) {
    let mut old = None;
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|line| {
            if !line.to_ascii_lowercase().starts_with("transport:") {
                return line.to_string();
            }
            line.split(';')
                .map(|p| match p.trim().strip_prefix(&format!("{key}=")) {
                    Some(ports) => {
                        let mut it = ports.split('-').map(|x| x.parse::<u16>().unwrap());
                        let a = it.next().unwrap();
                        old = Some((a, it.next().unwrap_or(a + 1)));
                        format!("{key}={new}")
                    }
                    None => p.to_string(),
                })
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect();
    (lines.join("\r\n"), old)
}

fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Two UDP sockets on consecutive ports of 127.0.0.1, the first even.
fn udp_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port.is_multiple_of(2) {
            if let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                return (a, b);
            }
        }
    }
}

/// One SETUP's sockets: `inner` faces the camera, `outer` the client.
struct RelayStream {
    inner: (UdpSocket, UdpSocket),
    outer: (UdpSocket, UdpSocket),
    client: (u16, u16),
    second: bool,
}

impl UdpRelay {
    fn start(camera_port: u16, mode: RelayMode) -> UdpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(RelayCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (c, s) = (c.clone(), s.clone());
                std::thread::spawn(move || Self::connection(client, camera_port, mode, c, s));
            }
        });
        UdpRelay { port, counts, stop }
    }

    fn connection(
        client: TcpStream,
        camera_port: u16,
        mode: RelayMode,
        counts: Arc<RelayCounts>,
        stop: Arc<AtomicBool>,
    ) {
        let camera = TcpStream::connect(("127.0.0.1", camera_port)).unwrap();
        // SETUPs waiting for their answer, by CSeq.
        let pending: Arc<Mutex<HashMap<String, RelayStream>>> = Arc::default();
        let setups = Arc::new(AtomicU64::new(0));
        let (mut from_client, mut to_camera) =
            (client.try_clone().unwrap(), camera.try_clone().unwrap());
        let p = pending.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = from_client.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some((mut head, body)) = take_message(&mut buf) {
                    if head.starts_with("SETUP ") {
                        let second = setups.fetch_add(1, Ordering::Relaxed) == 1;
                        let (inner, outer) = (udp_pair(), udp_pair());
                        let ports = format!(
                            "{}-{}",
                            inner.0.local_addr().unwrap().port(),
                            inner.1.local_addr().unwrap().port()
                        );
                        let (rewritten, client_ports) = replace_ports(&head, "client_port", &ports);
                        head = rewritten;
                        let cseq = header_value(&head, "CSeq").unwrap();
                        p.lock().unwrap().insert(
                            cseq,
                            RelayStream {
                                inner,
                                outer,
                                client: client_ports.expect("a UDP SETUP"),
                                second,
                            },
                        );
                    }
                    if to_camera.write_all(head.as_bytes()).is_err()
                        || to_camera.write_all(&body).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let (mut from_camera, mut to_client) = (camera, client);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from_camera.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((mut head, body)) = take_message(&mut buf) {
                let cseq = header_value(&head, "CSeq").unwrap_or_default();
                if let Some(stream) = pending.lock().unwrap().remove(&cseq) {
                    let ports = format!(
                        "{}-{}",
                        stream.outer.0.local_addr().unwrap().port(),
                        stream.outer.1.local_addr().unwrap().port()
                    );
                    let (rewritten, server_ports) = replace_ports(&head, "server_port", &ports);
                    head = rewritten;
                    if let Some(server) = server_ports {
                        Self::relay(stream, server, mode, counts.clone(), stop.clone());
                    }
                }
                if to_client.write_all(head.as_bytes()).is_err()
                    || to_client.write_all(&body).is_err()
                {
                    return;
                }
            }
        }
    }

    /// Runs one stream's relay threads until `stop`.
    fn relay(
        stream: RelayStream,
        server: (u16, u16),
        mode: RelayMode,
        counts: Arc<RelayCounts>,
        stop: Arc<AtomicBool>,
    ) {
        let tick = Some(Duration::from_millis(20));
        let RelayStream {
            inner,
            outer,
            client,
            second,
        } = stream;
        let client_rtp = SocketAddr::from(([127, 0, 0, 1], client.0));
        let client_rtcp = SocketAddr::from(([127, 0, 0, 1], client.1));
        let server_rtcp = SocketAddr::from(([127, 0, 0, 1], server.1));
        for s in [&inner.0, &inner.1, &outer.0, &outer.1] {
            s.set_read_timeout(tick).unwrap();
        }
        let delay = if second {
            mode.delay_second
        } else {
            Duration::ZERO
        };
        // RTP, camera -> client: drop, swap, then hold back `delay` (a sender thread keeps
        // the order and the timing).
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        let out_rtp = outer.0.try_clone().unwrap();
        let st = stop.clone();
        std::thread::spawn(move || {
            while let Ok((due, packet)) = rx.recv() {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let _ = out_rtp.send_to(&packet, client_rtp);
                if st.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
        let in_rtp = inner.0.try_clone().unwrap();
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            let mut held: Option<Vec<u8>> = None;
            let mut n_packets = 0u64;
            while !st.load(Ordering::Relaxed) {
                let send = |p: Vec<u8>| {
                    counts.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send((Instant::now() + delay, p));
                };
                match in_rtp.recv(&mut buf) {
                    Ok(n) => {
                        n_packets += 1;
                        if mode.drop_every > 0 && n_packets.is_multiple_of(mode.drop_every) {
                            counts.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let packet = buf[..n].to_vec();
                        if !mode.swap {
                            send(packet);
                        } else if let Some(first) = held.take() {
                            send(packet);
                            send(first);
                            counts.swapped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            held = Some(packet);
                        }
                    }
                    // Nothing for a while: what is held goes alone.
                    Err(_) => {
                        if let Some(p) = held.take() {
                            send(p);
                        }
                    }
                }
            }
        });
        // RTCP both ways, as it comes (sender reports must not be delayed: they tell when).
        let pairs = [
            (
                inner.1.try_clone().unwrap(),
                outer.1.try_clone().unwrap(),
                client_rtcp,
            ),
            (outer.1, inner.1, server_rtcp),
        ];
        for (from, to, dest) in pairs {
            let st = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !st.load(Ordering::Relaxed) {
                    if let Ok(n) = from.recv(&mut buf) {
                        let _ = to.send_to(&buf[..n], dest);
                    }
                }
            });
        }
    }
}

/// A camera over UDP through a network that swaps every pair of adjacent RTP packets: the
/// pull reorders them, counts nothing lost and decodes cleanly; DELETE tears the session down
/// (the camera stops sending). Through one that also drops every 300th packet, exactly the
/// dropped packets count as lost.
#[test]
fn udp_reordering_is_not_loss() {
    let camera = RtspCamera::start(0, "aac", None);
    let server = Switchyard::start();
    let swapping = UdpRelay::start(
        camera.port,
        RelayMode {
            swap: true,
            ..Default::default()
        },
    );
    let source = format!("rtsp://127.0.0.1:{}/cam?transport=udp", swapping.port);
    let id = create_pull(&server, &source, "cam/swapped");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/swapped", true);
    assert_decodes(&server.rtmp_url("cam/swapped"), 5, 100);
    assert_decodes(&server.api("/hls/cam/swapped/index.m3u8"), 4, 75);
    let (_, info) = server.get_json(&format!("/api/v1/pulls/{id}"));
    let swapped = swapping.counts.swapped.load(Ordering::Relaxed);
    assert!(swapped > 500, "the relay swapped {swapped} pairs");
    assert_eq!(info["packets_lost"], 0, "{swapped} pairs swapped: {info}");
    assert_eq!(info["state"], "running", "{info}");
    eprintln!(
        "{swapped} pairs swapped of {} packets: packets_lost {}",
        swapping.counts.forwarded.load(Ordering::Relaxed),
        info["packets_lost"]
    );
    let (status, _) = server.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
    assert_eq!(status, 204);
    // The pull sent TEARDOWN: the camera stops sending (it would go on for its 60 s session
    // timeout otherwise).
    std::thread::sleep(Duration::from_millis(1000));
    let after = swapping.counts.forwarded.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        swapping.counts.forwarded.load(Ordering::Relaxed),
        after,
        "the camera still sends after DELETE"
    );

    let lossy = UdpRelay::start(
        camera.port,
        RelayMode {
            swap: true,
            drop_every: 300,
            ..Default::default()
        },
    );
    let source = format!("rtsp://127.0.0.1:{}/cam?transport=udp", lossy.port);
    let id = create_pull(&server, &source, "cam/lossy");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while lossy.counts.dropped.load(Ordering::Relaxed) < 4 {
        assert!(Instant::now() < deadline, "the relay dropped too little");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A gap is given up 100 ms after it is seen.
    std::thread::sleep(Duration::from_millis(500));
    let dropped = lossy.counts.dropped.load(Ordering::Relaxed);
    let (_, info) = server.get_json(&format!("/api/v1/pulls/{id}"));
    let lost = info["packets_lost"].as_u64().unwrap();
    assert!(
        lost + 1 >= dropped && lost <= dropped,
        "{dropped} dropped, {lost} lost: {info}"
    );
}

/// A GStreamer camera (H.264 + AAC) beeps at every keyframe, once a second; its RTP timestamps
/// start at random offsets (GStreamer's default) and its audio reaches us 300 ms after the
/// video sampled with it (a network path, or a camera that buffers audio). Pulled over UDP,
/// the tracks are aligned by the RTCP sender reports (RFC 3550 6.4.1), not by arrival: in the
/// RTMP and HLS outputs every beep starts within 40 ms of a keyframe, where ffmpeg reading the
/// camera directly puts it (21 ms after: AAC's 1024 priming samples, which RTP does not
/// signal).
#[test]
fn sender_reports_keep_delayed_audio_in_sync_over_udp() {
    let camera = RtspCamera::start_args(&["--video", "h264", "--audio", "aac", "--beep"]);
    let relay = UdpRelay::start(
        camera.port,
        RelayMode {
            delay_second: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let server = Switchyard::start();
    let source = format!("rtsp://127.0.0.1:{}/cam?transport=udp", relay.port);
    let id = create_pull(&server, &source, "cam/sync");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/sync", true);
    let aligned = server.wait_for_log(
        "aligned by RTCP sender reports stream=cam/sync",
        Duration::from_secs(20),
    );
    eprintln!("{aligned}");
    let dir = TempDir::new("rtsp-sync");
    for (what, url, file) in [
        (
            "RTMP",
            server.rtmp_url("cam/sync"),
            dir.path.join("rtmp.flv"),
        ),
        (
            "HLS",
            server.api("/hls/cam/sync/index.m3u8"),
            dir.path.join("hls.mkv"),
        ),
    ] {
        record(&url, 14, &file);
        // The first seconds may come from the GOP cache, from before the alignment.
        let (offsets, expected) = beep_offsets_ms(&file, 3.0);
        eprintln!("{what}: beep - keyframe (ms): {offsets:?}");
        assert!(
            offsets.len() + 1 >= expected && expected >= 8,
            "{what}: {} beeps for {expected} keyframes: {offsets:?}",
            offsets.len()
        );
        assert!(
            offsets.iter().all(|d| d.abs() <= 40),
            "{what}: beeps more than 40 ms from their keyframe: {offsets:?}"
        );
    }
}

/// Chromium (the real WHEP viewer here; its offers have VP8, VP9, H.264 and AV1, no H.265)
/// asks the player page for an H.265 RTSP camera over WebRTC: the answer is a 422 that says
/// why, and the page shows it. HLS of the same stream stays available to ffmpeg.
#[test]
fn a_webrtc_viewer_of_an_h265_camera_is_told_why_not() {
    let camera = RtspCamera::start_args(&["--video", "h265", "--audio", "aac"]);
    let server = Switchyard::start();
    let id = create_pull(&server, &camera.url(), "cam/hevc");
    wait_for_state(&server, &id, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/hevc", true);
    let report = support::browser::play(&server.api("/play/cam/hevc?mode=webrtc"), 4);
    let shown = format!("{} {}", report["errors"], report["bodyText"]);
    assert!(
        shown.contains("this stream is H.265; your offer has only")
            && shown.contains("there is no transcoding of video"),
        "{report}"
    );
    assert!(
        !shown.contains("H.265, "),
        "Chromium offered H.265 after all: {shown}"
    );
    assert_eq!(report["totalVideoFrames"], 0, "{report}");
    eprintln!("Chromium was told: {}", report["errors"]);
}

/// Our UDP client authenticates (the camera asks for Basic credentials) and, with wrong ones,
/// stops as `failed` with the camera's 401, without showing them.
#[test]
fn udp_pull_authenticates_and_fails_on_wrong_credentials() {
    let camera = RtspCamera::start(0, "aac", Some("admin:right"));
    let server = Switchyard::start();
    let good = create_pull(
        &server,
        &format!(
            "rtsp://admin:right@127.0.0.1:{}/cam?transport=udp",
            camera.port
        ),
        "cam/auth",
    );
    wait_for_state(&server, &good, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/auth", true);
    let (status, _) = server.request("DELETE", &format!("/api/v1/pulls/{good}"), None);
    assert_eq!(status, 204);
    let bad = create_pull(
        &server,
        &format!(
            "rtsp://admin:wrong@127.0.0.1:{}/cam?transport=udp",
            camera.port
        ),
        "cam/noauth",
    );
    let info = wait_for_state(&server, &bad, "failed", Duration::from_secs(10));
    assert!(
        info["last_error"].as_str().unwrap().contains("401"),
        "{info}"
    );
    assert!(!info.to_string().contains("wrong") && !info.to_string().contains("right"));
    let log = server.log_text();
    assert!(
        !log.contains(":wrong") && !log.contains(":right"),
        "credentials in the log"
    );
}

/// gst-rtsp-server restarts a shared stream's pipeline when another client PLAYs it (every
/// client asks for `Range: npt=0.000-`): the RTP timestamps of the first client's streams jump
/// back by the time played. The first pull (TCP, retina) takes that as a restarted track and
/// goes on, without reconnecting; it still decodes.
#[test]
fn a_second_client_restarting_the_cameras_pipeline_does_not_interrupt_a_pull() {
    let camera = RtspCamera::start(0, "aac", None);
    let server = Switchyard::start();
    let first = create_pull(&server, &camera.url(), "cam/first");
    wait_for_state(&server, &first, "running", Duration::from_secs(20));
    server.wait_for_stream("cam/first", true);
    std::thread::sleep(Duration::from_secs(6));
    let second = create_pull(
        &server,
        &format!("{}?transport=udp", camera.url()),
        "cam/second",
    );
    wait_for_state(&server, &second, "running", Duration::from_secs(20));
    let jumped = server.wait_for_log(
        "RTP timestamps jumped (encoder or server restarted)",
        Duration::from_secs(10),
    );
    assert!(jumped.contains("stream=cam/first"), "{jumped}");
    assert_decodes(&server.rtmp_url("cam/first"), 4, 75);
    let (_, info) = server.get_json(&format!("/api/v1/pulls/{first}"));
    assert_eq!(
        (info["state"].as_str(), info["retries"].as_u64()),
        (Some("running"), Some(0)),
        "{info}"
    );
}
