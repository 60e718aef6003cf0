//! Test support: runs the real `switchyard` binary on loopback ports and drives real clients
//! (ffmpeg, ffprobe) against it. `scripts/test` installs the clients.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod browser;
pub mod nginx;
pub mod rtmp_client;

/// A running server; killed (SIGKILL) on drop unless stopped first.
pub struct Switchyard {
    child: Child,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    /// The WebRTC UDP socket.
    pub webrtc: SocketAddr,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
    _config_dir: Option<TempDir>,
}

impl Switchyard {
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts the binary with `config` as its TOML file and ports picked by the OS.
    pub fn start_with_config(config: &str) -> Self {
        Self::start_at(config, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0")
    }

    /// Like [`Switchyard::start_with_config`] on given addresses (a restarted node keeps
    /// its ports).
    pub fn start_at(config: &str, http: &str, rtmp: &str, webrtc_udp: &str) -> Self {
        require("ffmpeg");
        let dir = TempDir::new("config");
        let path = dir.path.join("switchyard.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "serve",
                "--http",
                http,
                "--rtmp",
                rtmp,
                "--webrtc-udp",
                webrtc_udp,
                "--config",
            ])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("SWITCHYARD_TEST_LOG").is_some() {
                    eprintln!("[switchyard] {line}");
                }
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        let mut server = Switchyard {
            child,
            http: ([0, 0, 0, 0], 0).into(),
            rtmp: ([0, 0, 0, 0], 0).into(),
            webrtc: ([0, 0, 0, 0], 0).into(),
            log,
            _config_dir: Some(dir),
        };
        server.http = server.listening_addr("http");
        server.rtmp = server.listening_addr("rtmp");
        server.webrtc = server.listening_addr("webrtc");
        server
    }

    /// Reads the address the server logged for `service` (it binds port 0).
    fn listening_addr(&self, service: &str) -> SocketAddr {
        let needle = format!("service=\"{service}\" addr=");
        let line = self.wait_for_log(&needle, Duration::from_secs(20));
        let rest = &line[line.find(&needle).unwrap() + needle.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no log line with {needle:?} within {timeout:?}; log:\n{}",
                guard.join("\n")
            );
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    pub fn rtmp_url(&self, name: &str) -> String {
        format!("rtmp://{}/{name}", self.rtmp)
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// GET returning (status, JSON body).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        match ureq::get(&self.api(path))
            .timeout(Duration::from_secs(5))
            .call()
        {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Any request with an optional JSON body (sent as is, so malformed JSON can be tested);
    /// returns the status and the JSON answer (`null` if the answer is not JSON).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let req = ureq::request(method, &self.api(path))
            .timeout(Duration::from_secs(5))
            .set("content-type", "application/json");
        let result = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let read = |r: ureq::Response| {
            let status = r.status();
            let text = r.into_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
            )
        };
        match result {
            Ok(r) => read(r),
            Err(ureq::Error::Status(_, r)) => read(r),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// Waits until the JSON resource at `path` (a pull, a push) has `"state": state`, checking
    /// that the API answers quickly meanwhile; returns the resource.
    pub fn wait_for_state(&self, path: &str, state: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let started = Instant::now();
            let (status, body) = self.get_json(path);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "the API took {:?}",
                started.elapsed()
            );
            assert_eq!(status, 200, "{path}: {body}");
            if body["state"] == state {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} not {state} within {timeout:?}: {body}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the stream exists with a video track (and audio if `audio`).
    pub fn wait_for_stream(&self, name: &str, audio: bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get_json(&format!("/api/v1/streams/{name}"));
            if status == 200 {
                let tracks = body["tracks"].as_array().unwrap();
                let has = |k: &str| tracks.iter().any(|t| t["kind"] == k);
                if has("video")
                    && (!audio || has("audio"))
                    && body["frames_in"].as_u64().unwrap_or(0) > 30
                {
                    return body;
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {name} did not appear: {status} {body}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status (or None if it did not exit within `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Tasks alive in the server's async runtime (`switchyard_tasks_alive` in `/metrics`).
    pub fn tasks_alive(&self) -> u64 {
        let text = ureq::get(&self.api("/metrics"))
            .timeout(Duration::from_secs(5))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("switchyard_tasks_alive "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("switchyard_tasks_alive in /metrics") as u64
    }

    /// Open file descriptors of the server process: (all, sockets).
    pub fn open_fds(&self) -> (usize, usize) {
        let links: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect();
        let sockets = links
            .iter()
            .filter(|l| l.to_string_lossy().starts_with("socket:"))
            .count();
        (links.len(), sockets)
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panics with a clear message when a test peer is missing.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success());
    assert!(
        found.unwrap_or(false),
        "{tool} is not installed; run scripts/test, which installs the test peers"
    );
}

/// FFmpeg 9, which speaks Enhanced RTMP: `$FFMPEG9`, or what `scripts/test` installed.
pub fn ffmpeg9() -> std::path::PathBuf {
    let path = std::env::var_os("FFMPEG9")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-peers/bin/ffmpeg9")
        });
    assert!(
        path.exists(),
        "FFmpeg 9 not found at {}; run scripts/test, which installs it",
        path.display()
    );
    path
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Waits up to `timeout` for exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The latency probe's fixture (H.264 + AAC, 640x360, 30 fps, 10 s).
pub const PROBE_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/probe-640x360.flv");

/// `switchyard source FILE --to URL --duration SECS`: the latency probe's stamped live source,
/// its stderr kept.
pub fn probe_source(file: &str, url: &str, seconds: u32) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "source",
                file,
                "--to",
                url,
                "--duration",
                &seconds.to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard source"),
    )
}

/// Video encodings the tests publish.
#[derive(Clone, Copy, Debug)]
pub enum Encoding {
    /// High profile with 2 B-frames.
    HighBFrames,
    /// Baseline, no B-frames.
    Baseline,
    /// Baseline with several slices per frame (x264 sliced threads).
    MultiSlice,
}

/// ffmpeg publishing testsrc2 H.264 + AAC (440 Hz) in real time to `url` for `seconds`.
pub fn ffmpeg_publish(url: &str, encoding: Encoding, gop: u32, seconds: u32) -> Proc {
    ffmpeg_publish_with(url, encoding, gop, seconds, true, "800k")
}

/// Like [`ffmpeg_publish`], but as fast as ffmpeg can encode (`realtime` false) and at
/// `bitrate`: a publisher that outruns real time fills slow readers' queues quickly.
pub fn ffmpeg_publish_with(
    url: &str,
    encoding: Encoding,
    gop: u32,
    seconds: u32,
    realtime: bool,
    bitrate: &str,
) -> Proc {
    require("ffmpeg");
    let video: &[&str] = match encoding {
        Encoding::HighBFrames => &[
            "-profile:v",
            "high",
            "-bf",
            "2",
            "-x264-params",
            "sliced-threads=0",
        ],
        Encoding::Baseline => &[
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-x264-params",
            "sliced-threads=0",
        ],
        Encoding::MultiSlice => &[
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-tune",
            "zerolatency",
            "-threads",
            "4",
            "-x264-params",
            "sliced-threads=1",
        ],
    };
    let gop = gop.to_string();
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(if realtime { &["-re"][..] } else { &[][..] })
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-b:v",
            bitrate,
        ])
        .args(video)
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    Proc(child)
}

/// ffprobe's view of the streams at `url`: one `(codec_name, profile, width, height, has_b_frames)`
/// line per stream.
pub fn ffprobe_streams(url: &str) -> Vec<String> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            "-show_entries",
            "stream=codec_name,profile,width,height,has_b_frames",
            "-of",
            "compact=p=0",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Result of decoding a URL with ffmpeg to a null sink.
#[derive(Debug)]
pub struct Decode {
    pub success: bool,
    pub video_frames: u64,
    /// Everything ffmpeg reported at `-v error`: decode errors, corrupt frames.
    pub errors: String,
}

/// `ffmpeg` reading `url` as a player does (no stdin, errors only, a 5 s read timeout), for the
/// caller to add what it does with the input.
pub fn ffmpeg_reading(ffmpeg: &std::path::Path, url: &str) -> Command {
    let mut command = Command::new(ffmpeg);
    command.args([
        "-nostdin",
        "-v",
        "error",
        "-rw_timeout",
        "5000000",
        "-i",
        url,
    ]);
    command
}

/// Decodes `seconds` of `url` with ffmpeg, counting decoded video frames.
pub fn ffmpeg_decode(url: &str, seconds: u32) -> Decode {
    require("ffmpeg");
    ffmpeg_decode_with(std::path::Path::new("ffmpeg"), url, seconds)
}

/// Like [`ffmpeg_decode`] with another ffmpeg binary (FFmpeg 9 for Enhanced RTMP); the audio
/// stream is optional.
pub fn ffmpeg_decode_with(ffmpeg: &std::path::Path, url: &str, seconds: u32) -> Decode {
    let out = ffmpeg_reading(ffmpeg, url)
        .args(["-t", &seconds.to_string()])
        // Keep the input timestamps: frame-rate conversion of a jittery live source makes the
        // null muxer report duplicate timestamps that are not in the stream.
        .args([
            "-map",
            "0:v",
            "-map",
            "0:a?",
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let video_frames = stdout
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("frame="))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Decode {
        success: out.status.success(),
        video_frames,
        errors: decode_errors(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// Asserts that ffmpeg decodes `seconds` of `url` without an error, and at least `min_frames`
/// video frames.
pub fn assert_decodes(url: &str, seconds: u32, min_frames: u64) {
    let d = ffmpeg_decode(url, seconds);
    assert!(
        d.success && d.errors.trim().is_empty() && d.video_frames >= min_frames,
        "{url}: {d:?}"
    );
}

/// ffmpeg takes `rtmp://h/live/a/b` as application `live/a`: name the application and the key
/// (nothing for other URLs).
pub fn rtmp_app_args(url: &str) -> Vec<String> {
    if !url.starts_with("rtmp") {
        return Vec::new();
    }
    let app = url.split('/').nth(3).unwrap();
    let key = url.splitn(5, '/').nth(4).unwrap();
    ["-rtmp_app", app, "-rtmp_playpath", key]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// ffprobe's streams (codec, profile, sample rate, channels, size) at `url` (RTMP: application and key named as in the URL), retried until every
/// line of `want` starts one of them.
pub fn probe_until(url: &str, want: &[&str], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "3000000"])
            .args(rtmp_app_args(url))
            .args([
                "-show_entries",
                "stream=codec_name,profile,sample_rate,channels,width,height",
                "-of",
                "compact=p=0",
                url,
            ])
            .output()
            .unwrap();
        let streams: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        if want
            .iter()
            .all(|w| streams.iter().any(|s| s.starts_with(w)))
        {
            return streams;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never had {want:?}: {streams:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Decodes `seconds` of the audio of `url` (RTMP or HLS) with ffmpeg's `volumedetect`; returns
/// the mean volume (dB) and how many seconds of audio were decoded.
pub fn audio_volume(url: &str, seconds: u32) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-nostats", "-rw_timeout", "5000000"])
        .args(rtmp_app_args(url))
        .args(["-i", url, "-t", &seconds.to_string()])
        .args(["-map", "0:a:0", "-af", "volumedetect", "-f", "null"])
        .args(["-progress", "pipe:1", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mean = stderr
        .lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("dB").trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no mean_volume from ffmpeg for {url}: {stderr}"));
    let decoded_us = stdout
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .find_map(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    (mean, decoded_us as f64 / 1e6)
}

/// Asserts that ffprobe sees, at `url`, a stream starting with each of `wanted` (e.g.
/// `codec_name=h264|profile=High|width=640|height=360`).
pub fn assert_streams(url: &str, wanted: &[&str]) {
    let streams = ffprobe_streams(url);
    for w in wanted {
        assert!(
            streams.iter().any(|s| s.starts_with(w)),
            "{url}: no {w} in {streams:?}"
        );
    }
}

/// Writes `bytes` (an fMP4 byte stream: init, then fragments) to a file and checks that ffmpeg
/// decodes all of it without a message; returns the file (kept until `dir` is dropped).
pub fn assert_mp4_decodes(dir: &TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// What ffmpeg reported at `-v error`, minus the null muxer's complaints about equal output
/// timestamps: with a live source whose frame times jitter (GStreamer's test sources under
/// load), ffmpeg's rescaling to the output frame rate produces them even when the stream's own
/// timestamps increase strictly. Decoder errors (corrupt frames, concealment) all remain.
fn decode_errors(stderr: &str) -> String {
    let mut kept = String::new();
    let mut dropping = false;
    for line in stderr.lines() {
        if line.contains("non monotonically increasing dts to muxer") {
            dropping = true;
            continue;
        }
        if dropping && line.trim_start().starts_with("Last message repeated") {
            continue;
        }
        dropping = false;
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// A temporary directory removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("switchyard-test-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `bytes` to a new TCP connection to `addr` and reports whether the server closed it.
pub fn send_garbage(addr: SocketAddr, bytes: &[u8]) -> bool {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Publishes `frames` (video access units of track 1, with their keyframe flags) on `source`
/// at 25 fps, looping 40 times, in a task of the current runtime.
pub fn feed_in_real_time(
    source: switchyard::bus::Publisher,
    frames: Vec<(bytes::Bytes, bool)>,
) -> tokio::task::JoinHandle<()> {
    use switchyard_media::{Frame, TrackId};
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        for i in 0..(frames.len() * 40) {
            tick.tick().await;
            let (data, keyframe) = frames[i % frames.len()].clone();
            let pts = i as i64 * 3600;
            source.push(Frame {
                track: TrackId(1),
                pts,
                dts: pts,
                keyframe,
                data,
            });
        }
    })
}

/// A GStreamer RTSP server serving H.264 + `audio` at rtsp://127.0.0.1:PORT/cam.
pub struct RtspCamera {
    _proc: Proc,
    pub port: u16,
}

impl RtspCamera {
    /// Serves H.264 + `audio` (aac, opus, pcma, none) on `port` (0: any), with `auth`
    /// (`user:pass`) if given.
    pub fn start(port: u16, audio: &str, auth: Option<&str>) -> RtspCamera {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rtsp_server.py");
        assert!(
            std::path::Path::new("/usr/bin/python3").exists(),
            "/usr/bin/python3 missing; run scripts/test, which installs the test peers"
        );
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--audio", audio]);
        if let Some(auth) = auth {
            cmd.args(["--auth", auth]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the GStreamer RTSP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("RTSP server did not start ({line:?}); run scripts/test, which installs gst-rtsp-server")
            });
        RtspCamera {
            _proc: Proc(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

/// Runs `gst-launch-1.0 PIPELINE` until it ends by itself (EOS) within `timeout_secs`, and
/// asserts that it did, without an error.
pub fn assert_gst_pipeline_ends(pipeline: &str, timeout_secs: u32) {
    require("gst-launch-1.0");
    let out = Command::new("timeout")
        .arg(timeout_secs.to_string())
        .arg("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Got EOS from element"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("ERROR"), "{stdout}");
}

/// A peer script of tests/interop.
pub fn interop_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// The Python of aiortc's virtualenv: `$AIORTC_PYTHON`, or what `scripts/test` installed.
pub fn aiortc_python() -> std::path::PathBuf {
    let python = std::env::var_os("AIORTC_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-peers/aiortc/bin/python")
        });
    let imports = Command::new(&python)
        .args(["-c", "import aiortc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        imports,
        "aiortc is not installed at {}; run scripts/test, which installs the test peers",
        python.display()
    );
    python
}

/// Publishers that change codec or picture size under one name, and a reader of sizes.
pub mod changes;

/// ffmpeg publishing testsrc2 video only (H.264 baseline, no B-frames, 25 fps, a keyframe every
/// `gop` frames) of `size` at `bitrate` in real time to `url` for `seconds`: with no audio, the
/// stream's `frames_in` counts video frames, so a test knows where in the GOP it is.
pub fn ffmpeg_publish_video(url: &str, size: &str, gop: u32, bitrate: &str, seconds: u32) -> Proc {
    require("ffmpeg");
    let gop = gop.to_string();
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "baseline",
        ])
        .args([
            "-bf",
            "0",
            "-x264-params",
            "sliced-threads=0",
            "-sc_threshold",
            "0",
        ])
        .args([
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-b:v",
            bitrate,
            "-f",
            "flv",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    Proc(child)
}

/// The tags of an FLV file: (type, timestamp in ms, body); 8 audio, 9 video, 18 script.
pub fn flv_tags(file: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut tags = Vec::new();
    let mut pos = 13;
    while pos + 11 <= file.len() {
        let size = u32::from_be_bytes([0, file[pos + 1], file[pos + 2], file[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([file[pos + 7], file[pos + 4], file[pos + 5], file[pos + 6]]);
        let Some(body) = file.get(pos + 11..pos + 11 + size) else {
            break;
        };
        tags.push((file[pos], ts, body));
        pos += 11 + size + 4;
    }
    tags
}

/// One FLV file made of `first` then `second` (whose header and script tags are left out, and
/// whose timestamps follow on 40 ms after the last of `first`): played with `ffmpeg -re -i ...
/// -c copy -f flv`, the second file's sequence header goes out mid-stream, as from an encoder
/// that changes resolution.
pub fn splice_flv(first: &[u8], second: &[u8]) -> Vec<u8> {
    let first_tags = flv_tags(first);
    let offset = first_tags.iter().map(|t| t.1).max().unwrap_or(0) + 40;
    let mut out = first[..13].to_vec();
    let mut write = |kind: u8, ts: u32, body: &[u8]| {
        out.push(kind);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    };
    for (kind, ts, body) in first_tags {
        write(kind, ts, body);
    }
    for (kind, ts, body) in flv_tags(second) {
        if kind != 18 {
            write(kind, ts + offset, body);
        }
    }
    out
}

/// Encodes `seconds` of testsrc2 video (25 fps, a keyframe every second) with `ffmpeg` and
/// `codec_args` into an FLV file at `path`, as fast as it can.
pub fn encode_flv(
    ffmpeg: &std::path::Path,
    size: &str,
    seconds: u32,
    codec_args: &[&str],
    path: &std::path::Path,
) {
    let status = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-t", &seconds.to_string()])
        .args(codec_args)
        .args(["-g", "25", "-f", "flv"])
        .arg(path)
        .status()
        .expect("run ffmpeg");
    assert!(
        status.success(),
        "ffmpeg could not encode {}",
        path.display()
    );
}

impl RtspCamera {
    /// A camera with more of rtsp_server.py's options than [`RtspCamera::start`]: `args` are
    /// passed as they are (`--video h265`, `--beep`, `--audio-delay-ms 300`, ...), on any port.
    pub fn start_args(args: &[&str]) -> RtspCamera {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rtsp_server.py");
        assert!(
            std::path::Path::new("/usr/bin/python3").exists(),
            "/usr/bin/python3 missing; run scripts/test, which installs the test peers"
        );
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the GStreamer RTSP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("RTSP server did not start ({line:?}); run scripts/test, which installs gst-rtsp-server and x265enc (gstreamer1.0-plugins-bad)")
            });
        RtspCamera {
            _proc: Proc(child),
            port,
        }
    }
}

/// True if the server closes `tcp` within `timeout` (bytes it sends are drained).
pub fn closed_by_server(tcp: &mut std::net::TcpStream, timeout: Duration) -> bool {
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        match std::io::Read::read(tcp, &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}
