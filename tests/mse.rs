//! WebSocket MSE end to end: the fMP4 a client receives decodes in ffmpeg; errors are clean.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;
use tungstenite::Message;

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn connect(server: &Switchyard, name: &str) -> Socket {
    let (socket, _) = tungstenite::connect(format!("ws://{}/mse/{name}", server.http)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    socket
}

#[test]
fn mse_stream_decodes_in_ffmpeg() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/m"), Encoding::HighBFrames, 25, 40);
    server.wait_for_stream("live/m", true);
    let mut ws = connect(&server, "live/m");
    let Message::Text(first) = ws.read().unwrap() else {
        panic!("first message is text")
    };
    let json: serde_json::Value = serde_json::from_str(first.as_str()).unwrap();
    let mime = json["mime"].as_str().unwrap();
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.64001E,mp4a.40.2\""),
        "{mime}"
    );
    let mut file = Vec::new();
    let mut messages = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        match ws.read().unwrap() {
            Message::Binary(b) => {
                file.extend_from_slice(&b);
                messages += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(messages > 150, "about one message per frame: {messages}");
    let dir = TempDir::new("mse");
    let path = assert_mp4_decodes(&dir, "mse.mp4", &file);
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_frames,has_b_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: u64 = text
        .trim()
        .split(',')
        .find_map(|v| v.parse().ok().filter(|n| *n > 2))
        .unwrap_or(0);
    assert!(frames >= 90, "decoded {frames} frames ({text})");
    let (_, info) = server.get_json("/api/v1/streams/live/m");
    assert_eq!(info["readers"]["mse"], 1);
}

#[test]
fn unknown_stream_gets_an_error_message_and_a_close() {
    let server = Switchyard::start();
    let mut ws = connect(&server, "live/none");
    let Message::Text(t) = ws.read().unwrap() else {
        panic!("an error text first")
    };
    assert!(
        t.as_str().contains("\"error\"") && t.as_str().contains("not found"),
        "{t}"
    );
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 4404),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn malformed_client_frames_close_only_that_client() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/g"), Encoding::Baseline, 25, 40);
    server.wait_for_stream("live/g", true);
    let mut good = connect(&server, "live/g");
    // A raw client: a valid upgrade, then bytes that are not a WebSocket frame (unmasked,
    // reserved opcode).
    let mut raw = TcpStream::connect(server.http).unwrap();
    write!(
        raw,
        "GET /mse/live/g HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    raw.write_all(&[
        0x8b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
    ])
    .unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let closed = loop {
        match raw.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "the server closes a client that sends garbage");
    // The well-behaved client still gets media.
    let mut binary = 0;
    for _ in 0..50 {
        if let Message::Binary(_) = good.read().unwrap() {
            binary += 1;
        }
    }
    assert!(binary > 40);
}

use std::path::Path;
use support::changes::{self, decode_with_sizes, encode_flv, FlvFeed};

/// 720p then, from `switch` on, 480p H.264 on one RTMP connection: ffmpeg sends the new
/// parameter sets as a new sequence header.
fn resolution_change(dir: &TempDir, server: &Switchyard, name: &str) -> FlvFeed {
    let ffmpeg = Path::new("ffmpeg");
    let hd = encode_flv(ffmpeg, &dir.path, "1280x720", 4, changes::H264);
    let sd = encode_flv(ffmpeg, &dir.path, "854x480", 4, changes::H264);
    let feed = FlvFeed::start(ffmpeg, &server.rtmp_url(name), &hd, Some(&sd));
    server.wait_for_stream(name, true);
    feed
}

#[test]
fn mse_sends_a_new_mime_and_init_segment_when_the_resolution_changes() {
    let dir = TempDir::new("mse-res");
    let server = Switchyard::start();
    let feed = resolution_change(&dir, &server, "live/res");
    let mut ws = connect(&server, "live/res");
    // (mime, init + fragments, fragments) per configuration.
    let mut parts: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let started = Instant::now();
    let mut switched = false;
    while parts.len() < 2 || parts[1].2 < 75 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            parts.iter().map(|p| (&p.0, p.2)).collect::<Vec<_>>()
        );
        if !switched && started.elapsed() > Duration::from_secs(3) {
            feed.switch();
            switched = true;
        }
        match ws.read().unwrap() {
            Message::Text(t) => {
                let json: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                let mime = json["mime"].as_str().expect("a mime message").to_string();
                parts.push((mime, Vec::new(), 0));
            }
            Message::Binary(b) => {
                let part = parts.last_mut().expect("mime first");
                part.1.extend_from_slice(&b);
                part.2 += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(parts.len(), 2);
    // Level 3.1 for 720p, 3.0 for 480p (x264 picks them): the mime says which.
    assert!(parts[0].0.contains("avc1.42C01F"), "{}", parts[0].0);
    assert!(parts[1].0.contains("avc1.42C01E"), "{}", parts[1].0);
    assert!(parts[0].2 > 50, "{} messages before the change", parts[0].2);
    for ((_, bytes, _), (name, size)) in parts
        .iter()
        .zip([("720p.mp4", "1280x720"), ("480p.mp4", "854x480")])
    {
        let path = assert_mp4_decodes(&dir, name, bytes);
        let decoded = decode_with_sizes(Path::new("ffmpeg"), path.to_str().unwrap(), 30);
        assert!(decoded.decode.errors.is_empty(), "{name}: {decoded:?}");
        assert_eq!(decoded.sizes.len(), 1, "{name}: {decoded:?}");
        assert_eq!(decoded.sizes[0].0, size, "{name}: {decoded:?}");
    }
    feed.finish();
}

#[test]
fn chromium_mse_keeps_playing_across_a_change_of_resolution() {
    let dir = TempDir::new("mse-chromium");
    let server = Switchyard::start();
    let feed = resolution_change(&dir, &server, "live/msejs");
    let player = support::browser::Playing::start(&server.api("/play/live/msejs?mode=mse"), 20);
    assert!(
        player.wait_until_playing(Duration::from_secs(25)),
        "the MSE player did not start"
    );
    std::thread::sleep(Duration::from_secs(3));
    feed.switch();
    let report = player.finish();
    support::browser::assert_plays_fmp4(&report, "MSE across the change");
    assert_eq!(
        report["videoSizesSeen"],
        serde_json::json!(["1280x720", "854x480"]),
        "{report}"
    );
    let (at_half, end) = (
        report["currentTimeAtHalf"].as_f64().unwrap_or(0.0),
        report["currentTime"].as_f64().unwrap_or(0.0),
    );
    assert!(end > at_half + 5.0, "time kept growing: {report}");
    feed.finish();
}
