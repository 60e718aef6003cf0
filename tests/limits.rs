//! Limits (issue 14, item 2) against real clients: every limit of `[limits]` and every
//! timeout that cuts a client off is hit by ffmpeg/ffprobe, curl or a WebSocket client, which
//! get a clear error, while the others are still served; each hit shows in
//! `switchyard_limit_hits_total{limit="..."}`. Slowloris on the HTTP and RTMP ports at once
//! leaves a real publisher and real players unharmed.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::rtmp_client::RtmpClient;
use support::*;

/// curl with `args`; returns the HTTP status and the body.
fn curl(args: &[&str]) -> (u16, String) {
    require("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The `error` of a JSON answer (panics if the answer is not our JSON error).
fn error_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
        .to_string()
}

/// `switchyard_limit_hits_total{limit="..."}` from `/metrics`.
fn limit_hits(server: &Switchyard, limit: &str) -> u64 {
    let (status, text) = until_admitted(|| curl(&[&server.api("/metrics")]));
    assert_eq!(status, 200, "{text}");
    let prefix = format!("switchyard_limit_hits_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

const SDP_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB:CC\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=setup:actpass\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

fn post_sdp(server: &Switchyard, path: &str, sdp: &str) -> (u16, String) {
    curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/sdp",
        "--data-binary",
        sdp,
        &server.api(path),
    ])
}

#[test]
fn max_streams_refuses_a_new_rtmp_publisher_whip_offer_and_pull_with_the_reason() {
    let server = Switchyard::start_with_config("[limits]\nmax_streams = 1\n");
    let _first = ffmpeg_publish(&server.rtmp_url("live/a"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/a", true);

    // A second RTMP publisher (ffmpeg) is refused and gives up.
    let mut second = ffmpeg_publish(&server.rtmp_url("live/b"), Encoding::Baseline, 25, 60);
    let status = second.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "ffmpeg kept publishing: {status:?}"
    );
    let line = server.wait_for_log("RTMP publish refused", Duration::from_secs(5));
    assert!(line.contains("limits.max_streams"), "{line}");

    // WHIP: 503 with the reason.
    let (status, body) = post_sdp(&server, "/whip/live/c", SDP_OFFER);
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("at most 1 streams"), "{body}");

    // A pull: keeps retrying, and says why.
    let (status, pull) = server.request(
        "POST",
        "/api/v1/pulls",
        Some(&format!(
            r#"{{"source": "{}", "name": "copy/a"}}"#,
            server.rtmp_url("live/a")
        )),
    );
    assert_eq!(status, 201, "{pull}");
    let id = pull["id"].as_str().unwrap();
    let state = server.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "retrying",
        Duration::from_secs(15),
    );
    assert!(
        state["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("limits.max_streams"),
        "{state}"
    );
    // The first stream is served all along.
    assert_decodes(&server.rtmp_url("live/a"), 2, 30);
    assert!(limit_hits(&server, "max_streams") >= 3);
}

#[test]
fn max_readers_per_stream_refuses_the_next_rtmp_player_mse_client_and_whep_viewer() {
    let server = Switchyard::start_with_config("[limits]\nmax_readers_per_stream = 1\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/r"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/r", true);
    let url = server.rtmp_url("live/r");
    let first = std::thread::spawn(move || ffmpeg_decode(&url, 10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get_json("/api/v1/streams/live/r").1["readers_total"] != 1 {
        assert!(Instant::now() < deadline, "the first player never came");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A second RTMP player (ffprobe) is refused.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            &server.rtmp_url("live/r"),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "ffprobe played a stream at its limit"
    );
    let line = server.wait_for_log("RTMP play refused", Duration::from_secs(5));
    assert!(line.contains("limits.max_readers_per_stream"), "{line}");

    // MSE: an error message, then close code 4503.
    let (mut socket, _) = tungstenite::connect(format!("ws://{}/mse/live/r", server.http)).unwrap();
    let mut error = String::new();
    let close = loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(t)) => error = t.to_string(),
            Ok(tungstenite::Message::Close(c)) => break c,
            Ok(other) => panic!("MSE sent media past the limit: {other:?}"),
            Err(e) => panic!("MSE socket: {e}"),
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(4503));
    assert!(error.contains("max_readers_per_stream"), "{error}");

    // WHEP: 503.
    let (status, body) = post_sdp(&server, "/whep/live/r", SDP_OFFER);
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("most readers"), "{body}");

    // HLS is not a session: served.
    assert_decodes(&server.api("/hls/live/r/index.m3u8"), 2, 30);
    let first = first.join().unwrap();
    assert!(first.success && first.video_frames > 150, "{first:?}");
    assert!(limit_hits(&server, "max_readers_per_stream") >= 3);

    // The slot comes back when the first player leaves.
    assert_decodes(&server.rtmp_url("live/r"), 2, 30);
}

#[test]
fn max_sessions_per_ip_counts_http_connections_rtmp_connections_and_webrtc_sessions_together() {
    let server = Switchyard::start_with_config(
        "[limits]\nmax_sessions_per_ip = 3\n[webrtc]\nconnect_timeout_secs = 8\n",
    );
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/ip"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/ip", true);
    // The publisher is one; a WHEP session that never connects is another (its POST's own
    // connection is gone once the server sees curl's close: until then it counts too, so a
    // request made at once may be refused, and is made again).
    let (status, body) = until_admitted(|| post_sdp(&server, "/whep/live/ip", SDP_OFFER));
    assert_eq!(status, 201, "{body}");
    // An idle HTTP connection is the third.
    let held = held_connection(server.http);

    let (status, body) = curl(&[&server.api("/api/v1/streams")]);
    assert_eq!(status, 429, "{body}");
    assert!(
        error_of(&body).contains("limits.max_sessions_per_ip"),
        "{body}"
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            &server.rtmp_url("live/ip"),
        ])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "ffprobe got an RTMP session over the limit"
    );

    // The WHEP session never connects: removed after webrtc.connect_timeout_secs (long
    // enough that a busy machine gets through the checks above first), and its place comes
    // back.
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = loop {
        let (status, closed) = curl(&[&server.api("/api/v1/webrtc/sessions?state=closed")]);
        if status == 200 && closed.contains("within 8 s") {
            break closed;
        }
        assert!(Instant::now() < deadline, "{status} {closed}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(closed.contains("within 8 s"), "{closed}");
    assert!(limit_hits(&server, "webrtc_connect_timeout") >= 1);
    let (status, body) = until_admitted(|| curl(&[&server.api("/api/v1/streams")]));
    assert_eq!(status, 200, "{body}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_decodes(&server.rtmp_url("live/ip"), 2, 30);
    assert!(limit_hits(&server, "max_sessions_per_ip") >= 2);
}

/// `request`'s answer once it is not a 429: a connection the client has closed still counts in
/// `limits.max_sessions_per_ip` until the server reads its end, which on a busy machine may
/// come after the next request.
fn until_admitted(mut request: impl FnMut() -> (u16, String)) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = request();
        if status != 429 || Instant::now() > deadline {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An idle HTTP connection the server has counted. One it refused is answered 429 after it
/// has waited a second for a request (`refuse_over_limit`); it is made again until the
/// server keeps one without answering.
fn held_connection(http: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut held = TcpStream::connect(http).unwrap();
        held.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut byte = [0u8; 1];
        match held.read(&mut byte) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return held
            }
            answer => assert!(
                Instant::now() < deadline,
                "every idle connection was refused: {answer:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn request_bodies_over_the_limit_get_413_with_a_json_reason() {
    let server = Switchyard::start_with_config("[limits]\nmax_request_body_bytes = 4096\n");
    let big_json = format!(
        r#"{{"source": "rtsp://cam/{}", "name": "cam/big"}}"#,
        "a".repeat(8000)
    );
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &big_json,
        &server.api("/api/v1/pulls"),
    ]);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("limits.max_request_body_bytes"));
    let big_sdp = format!("{SDP_OFFER}{}", "a=x-pad:0123456789\r\n".repeat(400));
    let (status, body) = post_sdp(&server, "/whip/live/big", &big_sdp);
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("limits.max_request_body_bytes"));
    // Under the limit: on to the usual checks.
    let (status, body) = post_sdp(&server, "/whep/live/none", SDP_OFFER);
    assert_eq!(status, 404, "{body}");
    assert!(limit_hits(&server, "max_request_body_bytes") >= 2);
}

#[test]
fn an_rtmp_publisher_that_stops_sending_media_is_closed_after_the_media_timeout() {
    let server = Switchyard::start_with_config("[rtmp]\nmedia_timeout_secs = 2\n");
    let fixture = std::fs::read(PROBE_FIXTURE).unwrap();
    let tags = flv_tags(&fixture);
    let mut client = RtmpClient::connect(server.rtmp, "live");
    client.publish("stall");
    // One second of video, then nothing (the connection stays open).
    let second: Vec<_> = tags
        .iter()
        .copied()
        .filter(|(_, ts, _)| *ts < 1000)
        .collect();
    assert!(client.send_video_tags_in_real_time(&second));
    let stalled = Instant::now();
    assert!(
        client.closed_by_server(Duration::from_secs(10)),
        "the stalled publisher was kept"
    );
    let after = stalled.elapsed();
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "closed {after:?} after the last media"
    );
    server.wait_for_log("no audio or video", Duration::from_secs(2));
    assert_eq!(server.get_json("/api/v1/streams/live/stall").0, 404);
    assert_eq!(limit_hits(&server, "rtmp_media_timeout"), 1);

    // A live publisher is not touched.
    let _live = ffmpeg_publish(&server.rtmp_url("live/ok"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/ok", true);
    std::thread::sleep(Duration::from_secs(3));
    assert_decodes(&server.rtmp_url("live/ok"), 2, 30);
    assert_eq!(limit_hits(&server, "rtmp_media_timeout"), 1);
}

#[test]
fn a_publisher_over_the_bitrate_limit_is_cut_off_and_one_under_it_is_not() {
    let server = Switchyard::start_with_config(
        "[limits]\nmax_publisher_bitrate_kbps = 1200\nbitrate_window_secs = 2\n",
    );
    // About 900 kbit/s (800k video, 96k audio): stays.
    let _thin = ffmpeg_publish(&server.rtmp_url("live/thin"), Encoding::Baseline, 25, 60);
    // About 4 Mbit/s of noise (which x264 cannot squeeze under its target): cut off.
    let mut fat = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=640x360:rate=25,noise=alls=80:allf=t")
            .args([
                "-t",
                "60",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
            ])
            .args([
                "-b:v", "4M", "-maxrate", "4M", "-bufsize", "1M", "-f", "flv",
            ])
            .arg(server.rtmp_url("live/fat"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    server.wait_for_stream("live/thin", true);
    let line = server.wait_for_log("publisher cut off", Duration::from_secs(15));
    assert!(
        line.contains("live/fat") && line.contains("max_publisher_bitrate_kbps"),
        "{line}"
    );
    let status = fat.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the fat publisher went on: {status:?}"
    );
    assert_eq!(server.get_json("/api/v1/streams/live/fat").0, 404);
    let closed = server.wait_for_log("RTMP publisher disconnected", Duration::from_secs(2));
    assert!(
        closed.contains("over limits.max_publisher_bitrate_kbps"),
        "{closed}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_decodes(&server.rtmp_url("live/thin"), 2, 30);
    assert!(
        !server
            .log_text()
            .lines()
            .any(|l| l.contains("publisher cut off") && l.contains("live/thin")),
        "the publisher under the limit was cut off"
    );
    assert_eq!(limit_hits(&server, "max_publisher_bitrate_kbps"), 1);
}

/// An RTMP client that sends the handshake's first bytes one a second and never finishes;
/// returns how long the server kept it.
fn rtmp_trickler(addr: SocketAddr) -> Duration {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    // C0 (version 3), then C1 byte by byte.
    let mut sent = 0u32;
    while started.elapsed() < Duration::from_secs(30) {
        if socket.write_all(&[if sent == 0 { 3 } else { 0 }]).is_err() {
            break;
        }
        sent += 1;
        match socket.read(&mut [0u8; 4096]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    started.elapsed()
}

/// An RTMP client that completes the handshake and then sends nothing; returns how long the
/// server kept it.
fn rtmp_idler(addr: SocketAddr) -> Duration {
    let mut socket = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let mut c1 = vec![0u8; 1537];
    c1[0] = 3;
    socket.write_all(&c1).unwrap();
    let mut s = vec![0u8; 1 + 1536 + 1536];
    socket.read_exact(&mut s).unwrap();
    // C2 echoes S1.
    socket.write_all(&s[1..1537]).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    while matches!(socket.read(&mut [0u8; 4096]), Ok(n) if n > 0) {}
    started.elapsed()
}

/// An HTTP client that sends a request head a byte a second and never ends it.
fn http_trickler(addr: SocketAddr) -> Duration {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(30) {
        if socket
            .write_all(&[head.get(sent).copied().unwrap_or(b'a')])
            .is_err()
        {
            break;
        }
        sent += 1;
        match socket.read(&mut [0u8; 1024]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    started.elapsed()
}

#[test]
fn slowloris_on_the_http_and_rtmp_ports_leaves_a_publisher_and_players_served() {
    let server = Switchyard::start_with_config(
        "[http]\nheader_timeout_secs = 3\n[rtmp]\nhandshake_timeout_secs = 3\n[hls]\nidle_timeout_secs = 2\n",
    );
    let (tasks_before, fds_before) = (tasks_alive(&server), open_fds(&server));
    const EACH: usize = 60;
    let (http, rtmp) = (server.http, server.rtmp);
    let mut slow = Vec::new();
    for _ in 0..EACH {
        slow.push((
            "rtmp handshake trickle",
            std::thread::spawn(move || rtmp_trickler(rtmp)),
        ));
        slow.push((
            "rtmp idle after handshake",
            std::thread::spawn(move || rtmp_idler(rtmp)),
        ));
        slow.push((
            "http head trickle",
            std::thread::spawn(move || http_trickler(http)),
        ));
    }
    // While they hold their sockets: a real publisher, an RTMP player, an HLS player and curl.
    let started = Instant::now();
    let publisher = ffmpeg_publish(&server.rtmp_url("live/sl"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/sl", true);
    assert_decodes(&server.rtmp_url("live/sl"), 2, 30);
    assert_decodes(&server.api("/hls/live/sl/index.m3u8"), 2, 30);
    let (status, _) = curl(&[&server.api("/api/v1/streams")]);
    assert_eq!(status, 200);
    eprintln!("served during the attack in {:?}", started.elapsed());
    for (kind, handle) in slow {
        let lived = handle.join().unwrap();
        assert!(
            lived >= Duration::from_millis(2500) && lived < Duration::from_secs(8),
            "{kind}: kept {lived:?}, not about 3 s"
        );
    }
    assert!(limit_hits(&server, "rtmp_handshake_timeout") >= 2 * EACH as u64);
    assert!(limit_hits(&server, "http_header_timeout") >= EACH as u64);
    // The publisher was never disturbed.
    assert_decodes(&server.rtmp_url("live/sl"), 2, 30);

    // Once the publisher leaves too, tasks and sockets are back where they were.
    drop(publisher);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (tasks, fds) = (tasks_alive(&server), open_fds(&server));
        if tasks <= tasks_before + 1 && fds <= fds_before + 1 {
            eprintln!("tasks {tasks_before} -> {tasks}, descriptors {fds_before} -> {fds}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks {tasks_before} -> {tasks}, descriptors {fds_before} -> {fds}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tasks_alive(server: &Switchyard) -> u64 {
    let (_, text) = curl(&[&server.api("/metrics")]);
    text.lines()
        .find_map(|l| l.strip_prefix("switchyard_tasks_alive "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("switchyard_tasks_alive in /metrics") as u64
}

/// The server's open file descriptors (sockets, mostly).
fn open_fds(server: &Switchyard) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count()
}
