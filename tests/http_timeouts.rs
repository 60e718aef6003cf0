//! HTTP connection timeouts (issue 17) against real clients: a slow-headers ("slowloris")
//! client over raw TCP is cut off after `http.header_timeout_secs` while curl and ffprobe are
//! served; an idle keep-alive connection of Python's `http.client` is closed after
//! `http.idle_timeout_secs`; an LL-HLS blocking playlist request (curl, HTTP/1.1 and HTTP/2
//! with prior knowledge) and an MSE WebSocket (Chromium's player, and tungstenite) outlive the
//! idle timeout, since a request in progress and an upgraded connection are not idle.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A slowloris client: sends a request head one byte every `every`, never ending it, and
/// returns how long the server kept the connection open.
fn slowloris(addr: SocketAddr, every: Duration) -> Duration {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut sent = 0usize;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server never cut the slow client"
        );
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if socket.write_all(&[byte]).is_err() {
            return started.elapsed();
        }
        sent += 1;
        let mut buf = [0u8; 1024];
        match socket.read(&mut buf) {
            // Closed (whatever came before the close).
            Ok(0) => return started.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return started.elapsed(),
        }
    }
}

/// A client that connects and sends nothing: how long until the server closes.
fn silent(addr: SocketAddr) -> Duration {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let started = Instant::now();
    let _ = socket.read(&mut [0u8; 64]);
    started.elapsed()
}

fn curl(args: &[&str]) -> String {
    require("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_slowloris_client_is_cut_after_the_header_timeout_while_curl_and_ffprobe_are_served() {
    let server =
        Switchyard::start_with_config("[http]\nheader_timeout_secs = 3\nidle_timeout_secs = 30\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/slow"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/slow", true);
    let addr = server.http;
    // Twenty slow clients, a byte a second each (so the bytes must not reset the clock),
    // and one that sends nothing.
    let slow: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || slowloris(addr, Duration::from_secs(1))))
        .collect();
    let quiet = std::thread::spawn(move || silent(addr));
    std::thread::sleep(Duration::from_millis(500));

    // Meanwhile real clients are served.
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &server.api("/healthz"),
    ]);
    assert_eq!(status, "200");
    assert_streams(
        &server.api("/hls/live/slow/index.m3u8"),
        &["codec_name=h264"],
    );

    for (i, handle) in slow.into_iter().enumerate() {
        let lived = handle.join().unwrap();
        eprintln!("slow client {i}: cut after {lived:?}");
        assert!(
            lived >= Duration::from_millis(2500) && lived < Duration::from_secs(7),
            "slow client {i} cut after {lived:?}, not after about 3 s"
        );
    }
    let lived = quiet.join().unwrap();
    eprintln!("silent client: cut after {lived:?}");
    assert!(
        lived >= Duration::from_millis(2500) && lived < Duration::from_secs(7),
        "a silent connection is cut after the header timeout too: {lived:?}"
    );
    // And the server still serves.
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &server.api("/healthz"),
    ]);
    assert_eq!(status, "200");
}

/// Python's `http.client`: two requests on one keep-alive connection, a second apart, then
/// waits for the server to close it. Prints JSON.
const PY_KEEP_ALIVE: &str = r#"
import http.client, json, sys, time
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
c.request("GET", "/healthz")
r1 = c.getresponse(); r1.read()
local = c.sock.getsockname()
time.sleep(1.0)
c.request("GET", "/api/v1/streams")
r2 = c.getresponse(); r2.read()
reused = c.sock.getsockname() == local
t = time.monotonic()
try:
    data = c.sock.recv(1)
except ConnectionResetError:
    data = b""
print(json.dumps({"status": [r1.status, r2.status], "version": r2.version, "reused": reused,
                  "closed_after": time.monotonic() - t, "data": len(data)}))
"#;

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    require("python3");
    let server =
        Switchyard::start_with_config("[http]\nidle_timeout_secs = 2\nheader_timeout_secs = 10\n");
    let out = Command::new("python3")
        .args(["-c", PY_KEEP_ALIVE])
        .arg(server.http.ip().to_string())
        .arg(server.http.port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
        });
    eprintln!("http.client: {report}");
    assert_eq!(report["status"], serde_json::json!([200, 200]), "{report}");
    assert_eq!(report["version"], 11, "{report}");
    assert_eq!(
        report["reused"], true,
        "kept alive for a request 1 s later: {report}"
    );
    assert_eq!(report["data"], 0, "closed without a byte: {report}");
    let after = report["closed_after"].as_f64().unwrap();
    assert!(
        (1.5..4.0).contains(&after),
        "closed about 2 s after the last response: {report}"
    );
}

/// The media sequence number of the segment being made, from a live LL-HLS playlist.
fn next_segment(server: &Switchyard, name: &str) -> u64 {
    let text = curl(&[&server.api(&format!("/hls/{name}/index.m3u8"))]);
    let playlist = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    };
    playlist.media_sequence + playlist.segments.len() as u64
}

#[test]
fn ll_hls_blocking_requests_over_http1_and_http2_outlive_the_idle_timeout() {
    let server = Switchyard::start_with_config(
        "[http]\nidle_timeout_secs = 1\nheader_timeout_secs = 1\n\n[hls]\nsegment_target_ms = 3000\npart_target_ms = 500\n",
    );
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/block"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/block", true);
    // Segments of about 3 s: the one after the segment being made takes more than the idle
    // second to come.
    let plain = server.api("/hls/live/block/index.m3u8");
    let format = "%{http_code} %{http_version} %{num_connects} %{time_total}\n";
    let blocking = || {
        format!(
            "{plain}?_HLS_msn={}",
            next_segment(&server, "live/block") + 1
        )
    };
    // HTTP/1.1: a plain request, then the blocking one on the same connection.
    let out = curl(&[
        "--http1.1",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        format,
        &plain,
        &blocking(),
    ]);
    eprintln!("curl HTTP/1.1 (code version connects seconds):\n{out}");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines.iter().all(|l| l[0] == "200" && l[1] == "1.1"),
        "{out}"
    );
    assert_eq!(lines[1][2], "0", "one connection: {out}");
    let waited: f64 = lines[1][3].parse().unwrap();
    assert!(waited > 1.5, "waited longer than the idle timeout: {out}");
    // HTTP/2 with prior knowledge (h2c). One request per curl: curl 7.88.1 fails to reuse an
    // h2c connection ("Error in the HTTP2 framing layer", nginx's too).
    let out = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        format,
        &blocking(),
    ]);
    eprintln!("curl h2c: {out}");
    let line: Vec<&str> = out.trim().split(' ').collect();
    assert_eq!((line[0], line[1]), ("200", "2"), "{out}");
    let waited: f64 = line[3].parse().unwrap();
    assert!(waited > 1.5, "waited longer than the idle timeout: {out}");
}

#[test]
fn an_mse_websocket_outlives_the_idle_timeout_and_keeps_receiving_media() {
    let server =
        Switchyard::start_with_config("[http]\nidle_timeout_secs = 1\nheader_timeout_secs = 1\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/ws"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/ws", true);

    // A raw WebSocket client: media keeps coming after several idle timeouts.
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/mse/live/ws", server.http)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let started = Instant::now();
    let mut late_bytes = 0usize;
    while started.elapsed() < Duration::from_secs(5) {
        match socket.read().expect("the WebSocket stays open") {
            tungstenite::Message::Binary(b) if started.elapsed() > Duration::from_secs(4) => {
                late_bytes += b.len()
            }
            tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
    eprintln!("WebSocket: {late_bytes} bytes of media in its fifth second");
    assert!(late_bytes > 10_000, "media after 4 s: {late_bytes} bytes");
    drop(socket);

    // Chromium's MSE player for 8 s: plays through without an error.
    let report = support::browser::play(&server.api("/play/live/ws?mode=mse"), 8);
    support::browser::assert_plays_fmp4(&report, "MSE");
}
