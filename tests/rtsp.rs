//! RTSP pulls end to end: a GStreamer RTSP server plays the IP camera (tests/support/
//! rtsp_server.py), Switchyard pulls it through `/api/v1/pulls` or `[[pulls]]`, and ffmpeg /
//! ffprobe read the result over RTMP and HLS.

mod support;

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
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
