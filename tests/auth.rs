//! Authentication and authorization end to end, with real clients: ffmpeg publishes and
//! ffprobe plays over RTMP with `?token=` on the key or the application, ffprobe reads HLS
//! with `?token=` on the playlist only (so every child URI must carry it), a WebSocket client
//! opens MSE, `switchyard source` publishes over WHIP and the load generator plays over WHEP.
//! JWTs are made and signed with the `openssl` command line (HS256 and RS256, the RSA key and
//! its JWKS made in the test), and a webhook is a small HTTP server in the test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

const STATIC_RULES: &str = r#"
[[auth.rules]]
streams = "live/*"
action = "publish"
tokens = ["pub-token"]

[[auth.rules]]
streams = "live/*"
action = "play"
tokens = ["play-token"]
"#;

/// Runs ffmpeg publishing to `url` expecting the server to refuse it: its stderr.
fn publish_refused(url: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "10",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-f", "flv", url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{url} was accepted: {stderr}");
    stderr
}

/// Runs ffprobe on `url` (with extra arguments before it) expecting a refusal: its stderr.
fn probe_refused(args: &[&str], url: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "5000000"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{url} was played: {stderr}");
    stderr
}

/// GET with optional headers: status, a header's value, and the body.
fn get(url: &str, headers: &[(&str, &str)], header: &str) -> (u16, Option<String>, String) {
    let mut request = ureq::get(url).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = response.status();
    let value = response.header(header).map(str::to_string);
    let mut body = Vec::new();
    if header != "content-type" || !value.as_deref().unwrap_or("").contains("event-stream") {
        response
            .into_reader()
            .take(1 << 20)
            .read_to_end(&mut body)
            .unwrap();
    }
    (status, value, String::from_utf8_lossy(&body).into_owned())
}

/// POST of an SDP offer to a WHIP/WHEP URL: status and body.
fn post_sdp(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut request = ureq::post(url)
        .timeout(Duration::from_secs(10))
        .set("content-type", "application/sdp");
    if let Some(token) = bearer {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    match request.send_string("v=0\r\n") {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn static_tokens_guard_rtmp_hls_and_mse_and_hide_which_streams_exist() {
    let server = Switchyard::start_with_config(STATIC_RULES);
    let stderr = publish_refused(&server.rtmp_url("live/cam1"));
    assert!(stderr.contains("not allowed (401)"), "{stderr}");
    server.wait_for_log("denied", Duration::from_secs(5));
    assert!(!server.log_text().contains("pub-token"));
    let stderr = publish_refused(&server.rtmp_url("live/cam1?token=play-token"));
    assert!(stderr.contains("not allowed (403)"), "{stderr}");

    let _publisher = ffmpeg_publish(
        &server.rtmp_url("live/cam1?token=pub-token"),
        Encoding::Baseline,
        25,
        90,
    );
    server.wait_for_stream("live/cam1", true);

    // RTMP play: the token on the key, or on the application; never the publish token.
    let rtmp = server.rtmp_url("live/cam1");
    assert!(probe_refused(&[], &rtmp).contains("not allowed (401)"));
    assert!(probe_refused(&[], &format!("{rtmp}?token=pub-token")).contains("not allowed (403)"));
    assert!(probe_refused(&[], &format!("{rtmp}?token=wrong")).contains("not allowed (401)"));
    let streams = ffprobe_streams(&format!("{rtmp}?token=play-token"));
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264")),
        "{streams:?}"
    );
    let app_url = format!("rtmp://{}/live?token=play-token/cam1", server.rtmp);
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "5000000"])
        .args([
            "-rtmp_app",
            "live?token=play-token",
            "-rtmp_playpath",
            "cam1",
        ])
        .args([
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &app_url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("h264"),
        "token on the application: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // HLS: 401 without a token, the same for a stream that does not exist.
    let hls = |name: &str, query: &str| server.api(&format!("/hls/{name}/index.m3u8{query}"));
    let (status, challenge, body) = get(&hls("live/cam1", ""), &[], "www-authenticate");
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"switchyard\""));
    let (missing_status, _, missing_body) = get(&hls("live/nope", ""), &[], "www-authenticate");
    assert_eq!(
        (
            missing_status,
            missing_body.replace("live/nope", "live/cam1")
        ),
        (status, body.clone()),
        "an unauthorized caller learns nothing of which streams exist"
    );
    let (status, challenge, _) = get(&hls("live/nope", "?token=bad"), &[], "www-authenticate");
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let (status, _, body) = get(&hls("live/nope", "?token=pub-token"), &[], "x");
    assert_eq!(
        (status, error_of(&body).contains("does not allow")),
        (403, true)
    );
    // With the token on the playlist only: ffprobe (which resolves child URIs against the
    // playlist's URL, query dropped) reads the init segment and segments.
    let streams = ffprobe_streams(&hls("live/cam1", "?token=play-token"));
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264")),
        "{streams:?}"
    );
    let (status, _, playlist) = get(&hls("live/cam1", "?token=play-token"), &[], "x");
    assert_eq!(status, 200);
    let mut uris = 0;
    for line in playlist.lines() {
        if !line.starts_with('#') && !line.is_empty() || line.contains("URI=\"") {
            assert!(line.contains("token=play-token"), "{line}");
            uris += 1;
        }
    }
    assert!(uris >= 3, "{playlist}");
    let (status, _, _) = get(&server.api("/hls/live/cam1/init.mp4"), &[], "x");
    assert_eq!(status, 401);
    let (status, _, _) = get(
        &server.api("/hls/live/cam1/init.mp4"),
        &[("authorization", "Bearer play-token")],
        "x",
    );
    assert_eq!(status, 200);

    // MSE: the upgrade is refused with the HTTP status; with the token the stream comes.
    let ws = |q: &str| format!("ws://{}/mse/live/cam1{q}", server.http);
    match tungstenite::connect(ws("")) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("MSE without a token: {:?}", other.map(|_| ())),
    }
    let (mut socket, _) = tungstenite::connect(ws("?token=play-token")).unwrap();
    let first = socket.read().unwrap();
    assert!(first.to_text().unwrap().contains("mime"), "{first:?}");
    drop(socket);

    // Every denial is counted.
    let metrics = get(&server.api("/metrics"), &[], "x").2;
    for label in [
        "protocol=\"rtmp\",action=\"publish\"",
        "protocol=\"rtmp\",action=\"play\"",
        "protocol=\"hls\",action=\"play\"",
        "protocol=\"mse\",action=\"play\"",
    ] {
        assert!(
            metrics.contains(&format!("switchyard_auth_denied_total{{{label}}}")),
            "{label}: {metrics}"
        );
    }
}

#[test]
fn whip_publish_and_whep_play_need_tokens() {
    let server = Switchyard::start_with_config(STATIC_RULES);
    let whip = server.api("/whip/live/w1");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["source", PROBE_FIXTURE, "--to", &whip, "--duration", "5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("401"), "{stderr}");
    let _source = probe_source(PROBE_FIXTURE, &format!("{whip}?token=pub-token"), 60);
    server.wait_for_stream("live/w1", false);

    // WHEP: 401 without a token, alike for an existing and a missing stream; 403 with the
    // publish token.
    let (status, body) = post_sdp(&server.api("/whep/live/w1"), None);
    let (missing, missing_body) = post_sdp(&server.api("/whep/live/nope"), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        (missing, missing_body.replace("nope", "w1")),
        (status, body)
    );
    assert_eq!(
        post_sdp(&server.api("/whep/live/w1"), Some("pub-token")).0,
        403
    );
    // A valid bearer gets past authorization to the SDP (which is garbage here).
    assert_eq!(
        post_sdp(&server.api("/whep/live/w1"), Some("play-token")).0,
        400
    );
    let (report, sessions) = run_whep(&server.api("/whep/live/w1?token=play-token"));
    assert_eq!(report.playing, 1, "{report:?} {sessions:?}");
    assert!(sessions[0].frames > 20, "{sessions:?}");
}

/// One WHEP session of the load generator for 4 s.
fn run_whep(
    url: &str,
) -> (
    switchyard::loadtest::LoadTestReport,
    Vec<switchyard::loadtest::SessionReport>,
) {
    use switchyard::loadtest::{LoadSpec, LoadTest};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let test = LoadTest::start(LoadSpec::new(url, 1, Duration::from_secs(4))).unwrap();
        test.finished().await;
        let mut report = test.report(true);
        let sessions = report.per_session.take().unwrap();
        (report, sessions)
    })
}

fn b64url(data: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `openssl dgst -sha256 -binary ARGS` over `data`.
fn openssl_sign(args: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A JWT (RFC 7519 compact JWS) of `header` and `claims`, signed by `openssl dgst ARGS`.
fn jwt(header: serde_json::Value, claims: serde_json::Value, sign_args: &[&str]) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = openssl_sign(sign_args, input.as_bytes());
    format!("{input}.{}", b64url(&signature))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn jwts_signed_with_hs256_and_rs256_from_a_jwks_file() {
    require("openssl");
    let dir = TempDir::new("auth-jwt");
    let key = dir.path.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let modulus = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    let hex = String::from_utf8(modulus.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": b64url(&n), "e": "AQAB"}
    ]});
    let jwks_file = dir.path.join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let server = Switchyard::start_with_config(&format!(
        "[auth.jwt]\nhs256_secret = \"hs-secret\"\njwks_file = \"{}\"\n\n[[auth.rules]]\nstreams = \"live/*\"\njwt = true\n",
        jwks_file.display()
    ));
    let hs = |claims| {
        jwt(
            serde_json::json!({"alg": "HS256", "typ": "JWT"}),
            claims,
            &["-hmac", "hs-secret"],
        )
    };
    let key_path = key.to_str().unwrap();
    let rs = |kid: &str, claims| {
        jwt(
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            claims,
            &["-sign", key_path],
        )
    };
    let exp = now() + 600;

    let publish = hs(serde_json::json!({"exp": exp, "action": "publish", "stream": "live/*"}));
    let _publisher = ffmpeg_publish(
        &server.rtmp_url(&format!("live/j1?token={publish}")),
        Encoding::Baseline,
        25,
        90,
    );
    server.wait_for_stream("live/j1", true);
    assert!(!server.log_text().contains(&publish));

    let play = rs(
        "k1",
        serde_json::json!({"exp": exp, "action": ["play"], "stream": "live/j1"}),
    );
    let hls = |token: &str| server.api(&format!("/hls/live/j1/index.m3u8?token={token}"));
    let streams = ffprobe_streams(&hls(&play));
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264")),
        "{streams:?}"
    );
    let streams = ffprobe_streams(&server.rtmp_url(&format!("live/j1?token={play}")));
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264")),
        "{streams:?}"
    );

    let denied = |token: &str| {
        let (status, _, body) = get(&hls(token), &[], "x");
        (status, error_of(&body))
    };
    let expired = rs(
        "k1",
        serde_json::json!({"exp": now() - 3600, "action": "play", "stream": "live/*"}),
    );
    assert_eq!(denied(&expired), (401, "token expired".to_string()));
    let other = rs(
        "k1",
        serde_json::json!({"exp": exp, "action": "play", "stream": "live/other"}),
    );
    let (status, reason) = denied(&other);
    assert_eq!(status, 403);
    assert!(reason.contains("not for stream"), "{reason}");
    let (status, reason) = denied(&publish);
    assert_eq!(status, 403);
    assert!(reason.contains("does not allow to play"), "{reason}");
    let unknown_kid = rs(
        "k2",
        serde_json::json!({"exp": exp, "action": "play", "stream": "live/*"}),
    );
    assert_eq!(denied(&unknown_kid).0, 401);
    let forged = jwt(
        serde_json::json!({"alg": "HS256", "typ": "JWT"}),
        serde_json::json!({"exp": exp, "action": "*", "stream": "**"}),
        &["-hmac", "not-the-secret"],
    );
    assert_eq!(denied(&forged).0, 401);
    let stderr = publish_refused(&server.rtmp_url(&format!("live/j2?token={expired}")));
    assert!(stderr.contains("token expired"), "{stderr}");
}

/// A webhook in the test: allows the token `good`, denies others with a reason; keeps the
/// requests it got.
fn start_webhook() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let allow = request["token"] == "good";
            sink.lock().unwrap().push(request);
            let answer = if allow {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string()
            } else {
                let body = r#"{"reason": "banned by the test hook"}"#;
                format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = reader.get_mut().write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn webhook_allows_and_denies_and_no_answer_denies() {
    let (port, seen) = start_webhook();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = Switchyard::start_with_config(&format!(
        "[[auth.rules]]\nstreams = \"hook/*\"\nwebhook = \"http://127.0.0.1:{port}/auth\"\n\n[[auth.rules]]\nstreams = \"down/*\"\nwebhook = \"http://127.0.0.1:{closed_port}/auth\"\n"
    ));
    let _publisher = ffmpeg_publish(
        &server.rtmp_url("hook/a?token=good"),
        Encoding::Baseline,
        25,
        60,
    );
    server.wait_for_stream("hook/a", true);
    {
        let seen = seen.lock().unwrap();
        let first = &seen[0];
        assert_eq!(
            (
                &first["action"],
                &first["stream"],
                &first["protocol"],
                &first["token"]
            ),
            (
                &serde_json::json!("publish"),
                &serde_json::json!("hook/a"),
                &serde_json::json!("rtmp"),
                &serde_json::json!("good")
            )
        );
        assert!(first["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
    }
    let stderr = publish_refused(&server.rtmp_url("hook/b?token=bad"));
    assert!(stderr.contains("banned by the test hook"), "{stderr}");
    let streams = ffprobe_streams(&server.api("/hls/hook/a/index.m3u8?token=good"));
    assert!(
        streams.iter().any(|s| s.contains("codec_name=h264")),
        "{streams:?}"
    );
    let (status, _, body) = get(&server.api("/hls/hook/a/index.m3u8?token=bad"), &[], "x");
    assert_eq!(
        (status, error_of(&body)),
        (403, "banned by the test hook".to_string())
    );
    let (status, _, body) = get(&server.api("/hls/down/x/index.m3u8?token=good"), &[], "x");
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("unreachable"), "{body}");
}

#[test]
fn api_needs_a_bearer_token_when_configured() {
    let server = Switchyard::start_with_config("[auth]\napi_tokens = [\"admin-token\"]\n");
    let api = |path: &str| server.api(path);
    let (status, challenge, body) = get(&api("/api/v1/streams"), &[], "www-authenticate");
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"switchyard\""));
    assert!(error_of(&body).contains("bearer token"));
    let (status, challenge, _) = get(
        &api("/api/v1/streams"),
        &[("authorization", "Bearer wrong")],
        "www-authenticate",
    );
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let bearer = [("authorization", "Bearer admin-token")];
    let (status, _, body) = get(&api("/api/v1/streams"), &bearer, "x");
    assert_eq!((status, body.as_str()), (200, "[]"));
    // Unknown resources and other API families are guarded alike.
    assert_eq!(get(&api("/api/v1/streams/live/nope"), &[], "x").0, 401);
    assert_eq!(get(&api("/api/v1/webrtc"), &[], "x").0, 401);
    assert_eq!(
        server
            .request("POST", "/rest-api/pull/find_all", Some("{}"))
            .0,
        401
    );
    // EventSource cannot set headers: the console's event stream takes ?token=.
    let (status, content_type, _) = get(
        &api("/api/v1/events?token=admin-token"),
        &[],
        "content-type",
    );
    assert_eq!(status, 200);
    assert!(content_type.unwrap().contains("text/event-stream"));
    assert_eq!(get(&api("/metrics"), &[], "x").0, 401);
    let (status, _, metrics) = get(&api("/metrics"), &bearer, "x");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("switchyard_auth_denied_total{protocol=\"http\",action=\"api\"}"),
        "{metrics}"
    );
    // Health and the pages stay open (the console asks for the token itself).
    assert_eq!(get(&api("/healthz"), &[], "x").0, 200);
    assert_eq!(get(&api("/"), &[], "x").0, 200);
    // A CORS preflight is answered without a token.
    let preflight = ureq::request("OPTIONS", &api("/api/v1/streams"))
        .set("origin", "http://example.test")
        .set("access-control-request-method", "GET")
        .set("access-control-request-headers", "authorization")
        .call()
        .unwrap();
    assert_eq!(preflight.status(), 200);
}

#[test]
fn chromium_pages_pass_their_token_to_whip_whep_and_hls() {
    let server = Switchyard::start_with_config(STATIC_RULES);
    let publishing =
        support::browser::Publishing::start(&server.api("/publish/live/page?token=pub-token"), 40);
    server.wait_for_stream("live/page", false);
    let webrtc = support::browser::play(
        &server.api("/play/live/page?mode=webrtc&token=play-token"),
        8,
    );
    support::browser::assert_webrtc_video(&webrtc, "video/H264");
    let hls = support::browser::play(&server.api("/play/live/page?mode=hls&token=play-token"), 12);
    // (The browser's fake camera runs at a low frame rate under load: time advancing and
    // frames decoding without errors is what shows the token reached every child URI.)
    assert!(
        hls["advanced"] == true
            && hls["state"] == "playing"
            && hls["totalVideoFrames"].as_u64().unwrap_or(0) > 20
            && hls["errors"].as_array().is_some_and(Vec::is_empty),
        "hls.js with a token: {hls}"
    );
    let denied = support::browser::play(&server.api("/play/live/page?mode=mse"), 3);
    assert!(
        denied["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "MSE without a token fails: {denied}"
    );
    drop(publishing);
}

#[test]
fn load_generator_plays_protected_streams_on_every_protocol() {
    use switchyard::loadtest::{LoadSpec, LoadTest};
    let server = Switchyard::start_with_config(STATIC_RULES);
    let _publisher = ffmpeg_publish(
        &server.rtmp_url("live/load?token=pub-token"),
        Encoding::Baseline,
        25,
        90,
    );
    server.wait_for_stream("live/load", true);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (url, token) in [
        (server.rtmp_url("live/load"), "play-token"),
        (server.api("/hls/live/load/index.m3u8"), "play-token"),
        (format!("ws://{}/mse/live/load", server.http), "play-token"),
        (server.rtmp_url("live/load"), "wrong"),
        (server.api("/hls/live/load/index.m3u8"), "wrong"),
    ] {
        let report = runtime.block_on(async {
            let spec = LoadSpec::new(&format!("{url}?token={token}"), 1, Duration::from_secs(4));
            let test = LoadTest::start(spec).unwrap();
            test.finished().await;
            test.report(true)
        });
        let playing = if token == "wrong" { 0 } else { 1 };
        assert_eq!(report.playing, playing, "{url} with {token}: {report:?}");
    }
}

#[test]
fn console_asks_for_the_api_token_and_uses_it() {
    require("node");
    require("chromium");
    let server = Switchyard::start_with_config("[auth]\napi_tokens = [\"admin-token\"]\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/seen"), Encoding::Baseline, 25, 60);
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/console_token.mjs"
        ))
        .arg(server.api("/"))
        .arg("20")
        .env("SWITCHYARD_API_TOKEN", "admin-token")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["prompts"], 1, "asked once: {report}");
    assert_eq!(report["stored"], "admin-token", "{report}");
    assert!(
        report["conn"].as_str().unwrap().contains("server events"),
        "{report}"
    );
    assert!(
        report["streams"].as_str().unwrap().contains("live/seen"),
        "{report}"
    );
}

#[test]
fn edges_pull_from_a_protected_origin_with_their_origin_token() {
    let origin = Switchyard::start_with_config(STATIC_RULES);
    let _publisher = ffmpeg_publish(
        &origin.rtmp_url("live/far?token=pub-token"),
        Encoding::Baseline,
        25,
        60,
    );
    origin.wait_for_stream("live/far", true);
    let edge = |token: &str| {
        Switchyard::start_with_config(&format!(
            "origins = [\"{}\"]\n\n[pull]\norigin_token = \"{token}\"\nconnect_timeout_secs = 5\n",
            origin.api("")
        ))
    };
    let with_token = edge("play-token");
    assert_decodes(&with_token.api("/hls/live/far/index.m3u8"), 3, 45);
    let without = edge("");
    let (status, _, _) = get(&without.api("/hls/live/far/index.m3u8"), &[], "x");
    assert_eq!(status, 404, "the origin refused the pull");
    origin.wait_for_log(
        "protocol=\"webrtc\" action=\"play\"",
        Duration::from_secs(5),
    );
}
