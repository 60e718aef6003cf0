//! HTTPS (with HTTP/2 by ALPN), WSS and RTMPS, checked with real clients: curl and ffmpeg
//! verifying the self-signed certificate, ffmpeg publishing over RTMPS, headless Chromium
//! playing over WHEP and MSE (wss) and publishing from the camera page on a non-loopback
//! address, where only HTTPS makes the page a secure context.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// A server with HTTPS and RTMPS on a self-signed certificate.
struct TlsServer {
    server: Switchyard,
    https: SocketAddr,
    rtmps: SocketAddr,
    /// The self-signed certificate (PEM), what clients trust.
    cert: PathBuf,
    _dir: TempDir,
}

impl TlsServer {
    /// `https_bind`: the HTTPS address (e.g. `127.0.0.1:0`); `http_extra`/`rtmp_extra`: more
    /// keys of those sections.
    fn start(https_bind: &str, http_extra: &str, rtmp_extra: &str) -> TlsServer {
        let dir = TempDir::new("tls");
        let config = format!(
            "[http]\nhttps_listen = \"{https_bind}\"\n{http_extra}\n[rtmp]\nrtmps_listen = \"127.0.0.1:0\"\n{rtmp_extra}\n[tls]\nself_signed = true\nself_signed_dir = \"{}\"\n",
            dir.path.display()
        );
        let server = Switchyard::start_with_config(&config);
        let https = logged_addr(&server, "https");
        let rtmps = logged_addr(&server, "rtmps");
        let cert = dir.path.join("cert.pem");
        server.wait_for_log("TLS certificate", Duration::from_secs(5));
        TlsServer {
            server,
            https,
            rtmps,
            cert,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }

    fn rtmps_url(&self, name: &str) -> String {
        format!("rtmps://{}/{name}", self.rtmps)
    }
}

fn logged_addr(server: &Switchyard, service: &str) -> SocketAddr {
    let needle = format!("service=\"{service}\" addr=");
    let line = server.wait_for_log(&needle, Duration::from_secs(20));
    let rest = &line[line.find(&needle).unwrap() + needle.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// curl with `args`; returns (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    require("curl");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `status http_version` of a GET that trusts `cert`.
fn curl_status(cert: &std::path::Path, version: &str, url: &str) -> String {
    let (code, out) = curl(&[
        version,
        "--cacert",
        cert.to_str().unwrap(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        url,
    ]);
    assert_eq!(code, 0, "curl {url}: {out}");
    out
}

#[test]
fn https_serves_api_and_hls_over_http2_and_http1_to_clients_that_verify_the_certificate() {
    let tls = TlsServer::start("127.0.0.1:0", "", "");
    let streams = tls.url("/api/v1/streams");
    // ALPN: h2 when the client offers it, HTTP/1.1 otherwise.
    assert_eq!(curl_status(&tls.cert, "--http2", &streams), "200 2");
    assert_eq!(curl_status(&tls.cert, "--http1.1", &streams), "200 1.1");
    // The certificate is really checked: without it curl refuses (60: peer certificate cannot
    // be authenticated with known CA certificates).
    let (code, _) = curl(&[&streams]);
    assert_eq!(code, 60, "curl trusts an unknown certificate");
    // It is made for localhost too.
    let localhost = format!("localhost:{}:127.0.0.1", tls.https.port());
    let (code, out) = curl(&[
        "--resolve",
        &localhost,
        "--cacert",
        tls.cert.to_str().unwrap(),
        &format!("https://localhost:{}/healthz", tls.https.port()),
    ]);
    assert_eq!((code, out.contains("ok")), (0, true), "{out}");

    // HLS over HTTPS: the playlist and its children (relative URLs keep the scheme).
    let _publisher = ffmpeg_publish(&tls.server.rtmp_url("live/hls"), Encoding::Baseline, 25, 60);
    tls.server.wait_for_stream("live/hls", true);
    let playlist = tls.url("/hls/live/hls/index.m3u8");
    let (code, text) = curl(&["--cacert", tls.cert.to_str().unwrap(), &playlist]);
    assert_eq!(code, 0);
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert!(!text.contains("http://"), "child URLs are relative: {text}");

    // ffprobe (Debian's ffmpeg, GnuTLS) reads it verifying the certificate with -ca_file...
    let probe = |extra: &[&str]| {
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "5000000", "-tls_verify", "1"])
            .args(extra)
            .args([
                "-show_entries",
                "stream=codec_name",
                "-of",
                "compact=p=0",
                &playlist,
            ])
            .output()
            .unwrap()
    };
    let out = probe(&["-ca_file", tls.cert.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("codec_name=h264") && text.contains("codec_name=aac"),
        "ffprobe over https: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and refuses it without.
    assert!(
        !probe(&[]).status.success(),
        "ffprobe -tls_verify 1 accepted an unknown certificate"
    );
}

#[test]
fn rtmps_publish_plays_back_over_rtmp_and_rtmps() {
    let tls = TlsServer::start("127.0.0.1:0", "", "");
    let _publisher = ffmpeg_publish(&tls.rtmps_url("live/secure"), Encoding::HighBFrames, 25, 60);
    let stream = tls.server.wait_for_stream("live/secure", true);
    assert_eq!(stream["publisher"]["protocol"], "rtmp", "{stream}");
    for url in [
        tls.server.rtmp_url("live/secure"),
        tls.rtmps_url("live/secure"),
    ] {
        let streams = ffprobe_streams(&url).join("\n");
        assert!(
            streams.contains("codec_name=h264") && streams.contains("codec_name=aac"),
            "{url}: {streams}"
        );
    }
    // Media keeps flowing to an RTMPS player (TLS records are flushed as they are written).
    assert_decodes(&tls.rtmps_url("live/secure"), 4, 60);
}

#[test]
fn plain_http_and_garbage_on_the_tls_ports_close_only_those_connections() {
    let tls = TlsServer::start("127.0.0.1:0", "", "");
    let _publisher = ffmpeg_publish(&tls.rtmps_url("live/steady"), Encoding::Baseline, 25, 60);
    let before = tls.server.wait_for_stream("live/steady", true)["frames_in"]
        .as_u64()
        .unwrap();

    // Plain HTTP to the HTTPS port: a 400 that says so, as JSON.
    let (code, body) = curl(&[
        "-w",
        " %{http_code}",
        &format!("http://{}/api/v1/streams", tls.https),
    ]);
    assert_eq!(code, 0, "{body}");
    assert!(
        body.ends_with(" 400") && body.contains("plain HTTP request sent to the HTTPS port"),
        "{body}"
    );
    tls.server.wait_for_log(
        "plain HTTP request on the HTTPS port",
        Duration::from_secs(5),
    );
    // Bytes that are not TLS, and a broken TLS record.
    assert!(send_garbage(tls.https, b"\x00\x01\x02 not TLS"));
    tls.server
        .wait_for_log("not TLS on the HTTPS port", Duration::from_secs(5));
    assert!(send_garbage(
        tls.https,
        b"\x16\x03\x01\x00\x05garbage that is no ClientHello"
    ));
    tls.server
        .wait_for_log("TLS handshake failed", Duration::from_secs(5));
    // RTMPS: plain RTMP's first byte (version 3) and an HTTP request.
    assert!(send_garbage(tls.rtmps, &[3u8; 1537]));
    assert!(send_garbage(tls.rtmps, b"GET / HTTP/1.1\r\n\r\n"));
    let line = tls
        .server
        .wait_for_log("RTMPS connection closed", Duration::from_secs(5));
    assert!(line.contains("TLS handshake"), "{line}");

    // Everyone else is still served.
    assert_eq!(
        curl_status(&tls.cert, "--http2", &tls.url("/healthz")),
        "200 2"
    );
    std::thread::sleep(Duration::from_secs(1));
    let (_, stream) = tls.server.get_json("/api/v1/streams/live/steady");
    assert!(
        stream["frames_in"].as_u64().unwrap() > before,
        "the RTMPS publisher kept publishing: {stream}"
    );
}

/// Opens a TCP connection to `addr`, writes `bytes`, and returns how long the server took to
/// close it (None: not within `wait`).
fn time_to_close(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn stalled_tls_handshakes_are_cut_off_and_others_are_served_meanwhile() {
    let tls = TlsServer::start(
        "127.0.0.1:0",
        "header_timeout_secs = 2",
        "handshake_timeout_secs = 2",
    );
    // Slowloris on both TLS ports: connections that send nothing, or the first bytes of a
    // handshake, and stall.
    let stallers: Vec<_> = [
        (tls.https, &b""[..]),
        (tls.https, &b"\x16\x03\x01"[..]),
        (tls.rtmps, &b""[..]),
        (tls.rtmps, &b"\x16\x03\x01"[..]),
    ]
    .into_iter()
    .flat_map(|(addr, bytes)| std::iter::repeat_n((addr, bytes), 5))
    .map(|(addr, bytes)| {
        std::thread::spawn(move || time_to_close(addr, bytes, Duration::from_secs(10)))
    })
    .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Served meanwhile, at once.
    let started = Instant::now();
    assert_eq!(
        curl_status(&tls.cert, "--http2", &tls.url("/healthz")),
        "200 2"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let _publisher = ffmpeg_publish(&tls.rtmps_url("live/during"), Encoding::Baseline, 25, 30);
    tls.server.wait_for_stream("live/during", false);

    for staller in stallers {
        let closed = staller.join().unwrap();
        let after = closed.expect("a stalled TLS connection was never closed");
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
            "closed after {after:?}, with a 2 s timeout"
        );
    }
    let line = tls
        .server
        .wait_for_log("timed out during TLS handshake", Duration::from_secs(2));
    assert!(line.contains("RTMPS"), "{line}");
    tls.server
        .wait_for_log("request head not complete", Duration::from_secs(2));
}

/// Runs `switchyard serve` with `config` and returns its exit status and stderr.
fn serve_fails(config: &str) -> String {
    let dir = TempDir::new("tls-boot");
    let path = dir.path.join("switchyard.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--rtmp",
            "127.0.0.1:0",
            "--webrtc-udp",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchyard kept running with {config:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// An EC key and a self-signed certificate made by openssl in `dir` as `{tag}.key`/`.crt`.
fn openssl_cert(dir: &std::path::Path, tag: &str) -> (String, String) {
    require("openssl");
    let (key, crt) = (
        dir.join(format!("{tag}.key")).display().to_string(),
        dir.join(format!("{tag}.crt")).display().to_string(),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
            "-keyout",
            &key,
            "-out",
            &crt,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, crt)
}

#[test]
fn boot_fails_with_a_clear_message_without_a_usable_certificate() {
    let err = serve_fails(
        "[http]\nhttps_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    );
    assert!(
        err.contains("tls.cert_file /nonexistent/cert.pem: no such file"),
        "{err}"
    );
    let err = serve_fails("[rtmp]\nrtmps_listen = \"127.0.0.1:0\"\n");
    assert!(
        err.contains("rtmp.rtmps_listen needs a certificate: set tls.cert_file and tls.key_file, or tls.self_signed = true"),
        "{err}"
    );
    let err = serve_fails("[http]\nhttps_listen = \"8443\"\n");
    assert!(err.contains("\"8443\" is not an IP:port address"), "{err}");

    let dir = TempDir::new("tls-keys");
    let (key_a, cert_a) = openssl_cert(&dir.path, "a");
    let (key_b, _) = openssl_cert(&dir.path, "b");
    let err = serve_fails(&format!(
        "[http]\nhttps_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"{cert_a}\"\nkey_file = \"{key_b}\"\n"
    ));
    assert!(
        err.contains(&format!(
            "tls.key_file {key_b} does not go with tls.cert_file {cert_a}"
        )),
        "{err}"
    );
    // The key where the certificate should be.
    let err = serve_fails(&format!(
        "[http]\nhttps_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"{key_a}\"\nkey_file = \"{key_a}\"\n"
    ));
    assert!(
        err.contains(&format!("tls.cert_file {key_a}: no CERTIFICATE in it")),
        "{err}"
    );
}

#[test]
fn a_certificate_from_files_is_served() {
    let dir = TempDir::new("tls-files");
    let (key, cert) = openssl_cert(&dir.path, "server");
    let server = Switchyard::start_with_config(&format!(
        "[http]\nhttps_listen = \"127.0.0.1:0\"\n[tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n"
    ));
    let https = logged_addr(&server, "https");
    let localhost = format!("localhost:{}:127.0.0.1", https.port());
    let (code, out) = curl(&[
        "--resolve",
        &localhost,
        "--cacert",
        &cert,
        &format!("https://localhost:{}/healthz", https.port()),
    ]);
    assert_eq!((code, out.contains("ok")), (0, true), "{out}");
}

/// Base64 of the SHA-256 of the certificate's public key (what Chromium's SPKI list takes).
fn spki_sha256(cert: &std::path::Path) -> String {
    require("openssl");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn chromium_plays_over_whep_and_wss_and_publishes_from_the_camera_page_on_a_lan_address() {
    let tls = TlsServer::start("0.0.0.0:0", "", "");
    // Chromium trusts this certificate as a user who accepted it would.
    std::env::set_var("SWITCHYARD_CHROMIUM_SPKI", spki_sha256(&tls.cert));
    // A non-loopback address of this host, from the https URLs the server logged: there, only
    // HTTPS makes the pages a secure context (camera access needs one).
    let log = tls.server.log_text();
    let base = log
        .lines()
        .filter(|l| l.contains("console over HTTPS"))
        .filter_map(|l| l.split("url=").nth(1))
        .map(|u| u.split_whitespace().next().unwrap().trim_end_matches('/'))
        .find(|u| !u.contains("//127.") && !u.contains("[::1]"))
        .unwrap_or_else(|| panic!("no LAN address logged:\n{log}"))
        .to_string();

    // ffmpeg publishes over RTMPS; Chromium plays it over WHEP (https) and MSE (wss).
    let _ffmpeg = ffmpeg_publish(&tls.rtmps_url("live/ff"), Encoding::Baseline, 25, 90);
    tls.server.wait_for_stream("live/ff", true);
    let report = browser::play(&format!("{base}/play/live/ff?mode=webrtc"), 8);
    browser::assert_webrtc_video(&report, "video/H264");
    let report = browser::play(&format!("{base}/play/live/ff?mode=mse"), 8);
    browser::assert_plays_fmp4(&report, "MSE over wss");

    // The camera page publishes over WHIP from the LAN address.
    let publishing = browser::Publishing::start(&format!("{base}/publish/live/cam"), 20);
    tls.server.wait_for_stream("live/cam", true);
    let report = publishing.finish();
    assert_eq!(report["state"], "publishing", "{report}");
    assert_eq!(report["advanced"], true, "{report}");
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}
