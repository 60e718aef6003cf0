//! Headless Chromium pages driven by `tests/browser/*.mjs` (playwright-core with Debian's
//! Chromium): the player (`play.mjs`), the camera publisher (`publish.mjs`) and the console
//! (`console.mjs`).

use super::require;
use std::process::{Child, Command, Stdio};

fn script(name: &str) -> String {
    format!("{}/tests/browser/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn report(out: std::process::Output, what: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

/// Opens the player page `url` for `seconds` and returns what it reported.
pub fn play(url: &str, seconds: u32) -> serde_json::Value {
    play_with(url, seconds, false)
}

/// Like [`play`] with the `<video>` unmuted, so that Chromium plays the audio out and reports
/// its level (`webrtc.audioLevel`, `audioLevelAtHalf`).
pub fn play_unmuted(url: &str, seconds: u32) -> serde_json::Value {
    play_with(url, seconds, true)
}

fn play_with(url: &str, seconds: u32, unmuted: bool) -> serde_json::Value {
    require("node");
    require("chromium");
    let mut cmd = Command::new("node");
    if unmuted {
        cmd.env("SWITCHYARD_PLAY_UNMUTED", "1");
    }
    let out = cmd
        .arg(script("play.mjs"))
        .arg(url)
        .arg(seconds.to_string())
        .output()
        .unwrap();
    report(out, "play.mjs")
}

/// The console at `url` driven as an operator would (`console.mjs`: the streams table, a pull
/// of `pull_source` as `live/copy` started and terminated with the page's form and button, a
/// bad pull, the load-test form, charts while polling), waiting up to `seconds` for each step;
/// returns its report.
pub fn console(url: &str, seconds: u32, pull_source: &str) -> serde_json::Value {
    require("node");
    require("chromium");
    let out = Command::new("node")
        .arg(script("console.mjs"))
        .arg(url)
        .arg(seconds.to_string())
        .arg(pull_source)
        .output()
        .unwrap();
    report(out, "console.mjs")
}

/// A publish page running in Chromium (fake camera and microphone) for a while.
pub struct Publishing(Option<Child>);

impl Publishing {
    /// Opens the publish page `url` for `seconds` in the background.
    pub fn start(url: &str, seconds: u32) -> Self {
        Self::spawn(url, seconds, None)
    }

    /// Like [`Publishing::start`], with a fake microphone that plays `wav` (looped) instead of
    /// Chromium's beeps.
    pub fn start_with_fake_audio(url: &str, seconds: u32, wav: &std::path::Path) -> Self {
        Self::spawn(url, seconds, Some(wav))
    }

    /// Like [`Publishing::start`], with the video sent in the SVC `mode` (`scalabilityMode`
    /// of the video sender's encoding, e.g. `L2T1`); the report has `scalabilityMode` and
    /// `spatialLayers`.
    pub fn start_with_scalability_mode(url: &str, seconds: u32, mode: &str) -> Self {
        Self::spawn_with(
            url,
            seconds,
            &[("SWITCHYARD_SCALABILITY_MODE", mode.as_ref())],
        )
    }

    fn spawn(url: &str, seconds: u32, wav: Option<&std::path::Path>) -> Self {
        match wav {
            Some(wav) => {
                Self::spawn_with(url, seconds, &[("SWITCHYARD_FAKE_AUDIO", wav.as_os_str())])
            }
            None => Self::spawn_with(url, seconds, &[]),
        }
    }

    fn spawn_with(url: &str, seconds: u32, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        require("node");
        require("chromium");
        let mut cmd = Command::new("node");
        cmd.envs(env.iter().copied());
        let child = cmd
            .arg(script("publish.mjs"))
            .arg(url)
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Publishing(Some(child))
    }

    /// Waits for the page to finish and returns its report.
    pub fn finish(mut self) -> serde_json::Value {
        let child = self.0.take().unwrap();
        report(child.wait_with_output().unwrap(), "publish.mjs")
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The player page (`play.mjs`) played over WebRTC: connected, a growing number of `mime`
/// video frames decoded (e.g. `video/H264`), no errors.
pub fn assert_webrtc_video(report: &serde_json::Value, mime: &str) {
    let webrtc = &report["webrtc"];
    assert_eq!(webrtc["connectionState"], "connected", "{report}");
    assert_eq!(webrtc["codec"], mime, "{report}");
    let decoded = webrtc["framesDecoded"].as_u64().unwrap_or(0);
    let at_half = report["framesDecodedAtHalf"].as_u64().unwrap_or(0);
    assert!(
        decoded > 40 && decoded > at_half,
        "video frames decoded and growing: {report}"
    );
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}

/// The player page (`play.mjs`) played fMP4 (`what`: MSE or HLS): time advanced, more than 50
/// frames decoded at a picture size, no errors.
pub fn assert_plays_fmp4(report: &serde_json::Value, what: &str) {
    assert_eq!(
        report["advanced"], true,
        "{what}: currentTime advances: {report}"
    );
    assert!(
        report["totalVideoFrames"].as_u64().unwrap_or(0) > 50,
        "{what}: frames decoded: {report}"
    );
    assert!(
        report["videoWidth"].as_u64().unwrap_or(0) > 0,
        "{what}: {report}"
    );
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{what}: {report}"
    );
}

/// A player page running in Chromium (`play.mjs`) in the background, for a test that changes
/// the stream while it plays.
pub struct Playing {
    child: Option<Child>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Playing {
    /// Opens the player page `url` for `seconds` in the background.
    pub fn start(url: &str, seconds: u32) -> Self {
        require("node");
        require("chromium");
        let mut child = Command::new("node")
            .arg(script("play.mjs"))
            .arg(url)
            .arg(seconds.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Playing {
            child: Some(child),
            stderr: rx,
        }
    }

    /// Waits until the page says its video plays (`play.mjs: playing after N ms`); false if
    /// it did not within `timeout`.
    pub fn wait_until_playing(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains("playing after") => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits for the page to finish and returns its report.
    pub fn finish(mut self) -> serde_json::Value {
        let child = self.child.take().unwrap();
        report(child.wait_with_output().unwrap(), "play.mjs")
    }
}

impl Drop for Playing {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A WHEP viewer in Chromium (`tests/interop/chromium_whep.mjs`) on `url` for `seconds`, with
/// the script's `options` (`--family 4`, `--join-at N --gop G`, `--until-closed`); returns its
/// report: every rendered frame with its RTP timestamp and latency to the live edge, getStats().
pub fn whep_viewer(url: &str, seconds: u32, options: &[&str]) -> serde_json::Value {
    require("node");
    require("chromium");
    let out = Command::new("node")
        .arg(format!(
            "{}/tests/interop/chromium_whep.mjs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(url)
        .arg(seconds.to_string())
        .args(options)
        .output()
        .unwrap();
    report(out, "chromium_whep.mjs")
}
