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
