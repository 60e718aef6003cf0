//! RTMP pushes to a CDN: nginx with the RTMP module receives them; ffprobe reads them back
//! from nginx.

mod support;

use std::time::Duration;
use support::nginx::Nginx;
use support::*;

fn post(server: &Switchyard, path: &str, body: &str) -> (u16, serde_json::Value) {
    server.request("POST", path, Some(body))
}

/// Waits until push `id` reaches `state`; returns its info.
fn wait_push_state(
    server: &Switchyard,
    id: &str,
    state: &str,
    timeout: Duration,
) -> serde_json::Value {
    server.wait_for_state(&format!("/api/v1/pushes/{id}"), state, timeout)
}

#[test]
fn push_to_nginx_survives_an_nginx_restart() {
    let mut nginx = Nginx::start();
    let server = Switchyard::start_with_config("[pull]\nretry_min_ms = 200\nretry_max_ms = 1000\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/src"), Encoding::HighBFrames, 25, 90);
    server.wait_for_stream("live/src", true);
    let (status, created) = post(
        &server,
        "/api/v1/pushes",
        &format!(r#"{{"stream": "live/src", "url": "{}"}}"#, nginx.url("cdn")),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    wait_push_state(&server, &id, "running", Duration::from_secs(10));
    let streams = probe_until(
        &nginx.url("cdn"),
        &[
            "codec_name=h264|profile=High|width=640|height=360",
            "codec_name=aac",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(streams.len(), 2, "{streams:?}");
    // nginx starts its players at the next keyframe, so up to a second of the 3 is not video.
    let decode = ffmpeg_decode(&nginx.url("cdn"), 4);
    assert!(
        decode.success && decode.errors.is_empty() && decode.video_frames >= 55,
        "{decode:?}"
    );

    nginx.stop();
    let info = wait_push_state(&server, &id, "retrying", Duration::from_secs(10));
    assert!(info["last_error"].is_string(), "{info}");
    nginx.restart();
    let info = wait_push_state(&server, &id, "running", Duration::from_secs(15));
    assert!(info["reconnects"].as_u64().unwrap() >= 1, "{info}");
    probe_until(
        &nginx.url("cdn"),
        &["codec_name=h264", "codec_name=aac"],
        Duration::from_secs(20),
    );
    let decode = ffmpeg_decode(&nginx.url("cdn"), 4);
    assert!(
        decode.success && decode.errors.is_empty() && decode.video_frames >= 55,
        "{decode:?}"
    );
    let (_, info) = server.get_json(&format!("/api/v1/pushes/{id}"));
    assert!(info["bytes_sent"].as_u64().unwrap() > 100_000, "{info}");

    let deleted = ureq::delete(&server.api(&format!("/api/v1/pushes/{id}")))
        .call()
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(server.get_json(&format!("/api/v1/pushes/{id}")).0, 404);
}

#[test]
fn wcs_push_routes_start_list_and_terminate() {
    let nginx = Nginx::start();
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/wcs"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/wcs", true);
    let (status, started) = post(
        &server,
        "/rest-api/push/startup",
        &format!(
            r#"{{"streamName": "live/wcs", "rtmpUrl": "{}"}}"#,
            nginx.url("wcs")
        ),
    );
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["streamName"], "live/wcs");
    let (_, all) = post(&server, "/rest-api/push/find_all", "{}");
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["mediaSessionId"], started["mediaSessionId"]);
    probe_until(
        &nginx.url("wcs"),
        &["codec_name=h264", "codec_name=aac"],
        Duration::from_secs(20),
    );
    let (status, _) = post(
        &server,
        "/rest-api/push/terminate",
        &format!(r#"{{"mediaSessionId": {}}}"#, started["mediaSessionId"]),
    );
    assert_eq!(status, 200);
    let (_, all) = post(&server, "/rest-api/push/find_all", "{}");
    assert_eq!(all.as_array().map(Vec::len), Some(0), "{all}");
    let (status, body) = post(
        &server,
        "/rest-api/push/terminate",
        r#"{"streamName": "live/none"}"#,
    );
    assert_eq!((status, body["error"].is_string()), (404, true));
}

#[test]
fn rules_push_every_matching_stream() {
    let nginx = Nginx::start();
    let config = format!(
        "[[pushes]]\nstream = \"live/*\"\nurl = \"rtmp://127.0.0.1:{}/live/{{name}}\"\n",
        nginx.rtmp_port
    );
    let server = Switchyard::start_with_config(&config);
    let _a = ffmpeg_publish(&server.rtmp_url("live/a"), Encoding::Baseline, 25, 60);
    let _b = ffmpeg_publish(&server.rtmp_url("live/b"), Encoding::Baseline, 25, 60);
    let _other = ffmpeg_publish(&server.rtmp_url("other/c"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/a", true);
    server.wait_for_stream("live/b", true);
    server.wait_for_stream("other/c", true);
    probe_until(
        &nginx.url("live/a"),
        &["codec_name=h264", "codec_name=aac"],
        Duration::from_secs(20),
    );
    probe_until(
        &nginx.url("live/b"),
        &["codec_name=h264", "codec_name=aac"],
        Duration::from_secs(20),
    );
    let (_, pushes) = server.get_json("/api/v1/pushes");
    let streams: Vec<&str> = pushes
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["stream"].as_str().unwrap())
        .collect();
    assert_eq!(streams.len(), 2, "{pushes}");
    assert!(
        streams.contains(&"live/a") && streams.contains(&"live/b") && !streams.contains(&"other/c")
    );
    assert!(pushes
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["origin"] == "rule"));
}

#[test]
fn bad_push_requests_and_refusing_targets_get_clear_errors() {
    let nginx = Nginx::start();
    let server = Switchyard::start();
    for (body, what) in [
        (
            r#"{"stream": "live/x", "url": "http://example.com/a/b"}"#,
            "rtmp://",
        ),
        (
            r#"{"stream": "live/x", "url": "rtmp://127.0.0.1"}"#,
            "rtmp://",
        ),
        (
            r#"{"stream": "bad name", "url": "rtmp://127.0.0.1/a/b"}"#,
            "invalid stream name",
        ),
        (r#"{"stream": "live/x""#, "bad JSON"),
        (
            r#"{"stream": "live/x", "url": "rtmps://127.0.0.1/a"}"#,
            "no stream key",
        ),
    ] {
        let (status, err) = post(&server, "/api/v1/pushes", body);
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["error"].as_str().unwrap().contains(what),
            "{body}: {err}"
        );
    }
    assert!(matches!(
        ureq::delete(&server.api("/api/v1/pushes/999")).call(),
        Err(ureq::Error::Status(404, _))
    ));
    // nginx has no application "nope": it drops the publisher, and the push says so.
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/r"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/r", true);
    let url = format!("rtmp://127.0.0.1:{}/nope/key", nginx.rtmp_port);
    let (status, created) = post(
        &server,
        "/api/v1/pushes",
        &format!(r#"{{"stream": "live/r", "url": "{url}"}}"#),
    );
    assert_eq!(status, 201);
    let info = wait_push_state(
        &server,
        created["id"].as_str().unwrap(),
        "retrying",
        Duration::from_secs(15),
    );
    assert!(
        info["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{info}"
    );
    // A target nobody listens on.
    let (_, created) = post(
        &server,
        "/api/v1/pushes",
        r#"{"stream": "live/r", "url": "rtmp://127.0.0.1:1/live/k"}"#,
    );
    let info = wait_push_state(
        &server,
        created["id"].as_str().unwrap(),
        "retrying",
        Duration::from_secs(15),
    );
    assert!(
        info["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{info}"
    );
    assert_eq!(server.get_json("/healthz").0, 200);
}

/// A CA and a `localhost` certificate it signed, made with openssl; returns (ca, cert, key).
fn make_certificates(dir: &std::path::Path) -> (String, String, String) {
    require("openssl");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Switchyard test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("leaf.pem"),
    ]);
    (p("ca.pem"), p("leaf.pem"), p("leaf.key"))
}

#[test]
fn rtmps_push_goes_through_tls() {
    let nginx = Nginx::start();
    let dir = TempDir::new("tls");
    let (ca, cert, key) = make_certificates(&dir.path);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut proxy = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/tls_proxy.py"
        ))
        .args([tls_port.to_string(), nginx.rtmp_port.to_string(), cert, key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(proxy.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    let _proxy = Proc(proxy);

    let server = Switchyard::start_with_config(&format!("[pull]\ntls_ca_file = \"{ca}\"\n"));
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/tls"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/tls", true);
    let (status, created) = post(
        &server,
        "/api/v1/pushes",
        &format!(r#"{{"stream": "live/tls", "url": "rtmps://localhost:{tls_port}/live/secure"}}"#),
    );
    assert_eq!(status, 201, "{created}");
    wait_push_state(
        &server,
        created["id"].as_str().unwrap(),
        "running",
        Duration::from_secs(15),
    );
    probe_until(
        &nginx.url("secure"),
        &["codec_name=h264", "codec_name=aac"],
        Duration::from_secs(20),
    );

    // Without the CA, the certificate is refused and the push says why.
    let plain = Switchyard::start();
    let _publisher2 = ffmpeg_publish(&plain.rtmp_url("live/tls"), Encoding::Baseline, 25, 60);
    plain.wait_for_stream("live/tls", true);
    let (_, created) = post(
        &plain,
        "/api/v1/pushes",
        &format!(r#"{{"stream": "live/tls", "url": "rtmps://localhost:{tls_port}/live/other"}}"#),
    );
    let info = wait_push_state(
        &plain,
        created["id"].as_str().unwrap(),
        "retrying",
        Duration::from_secs(15),
    );
    assert!(
        info["last_error"].as_str().unwrap().contains("TLS"),
        "{info}"
    );
}
