//! A second recorder check (issue 17, item 9): every output recorded for 60 s by a client that
//! would record it in the field decodes with no error, and holds as many frames as the source
//! sent in that time, within one GOP (a late joiner starts at the latest keyframe, so it may get
//! up to one GOP of cached frames more; a recorder that lost frames would have fewer).
//!
//! One ffmpeg publishes 25 fps H.264 + AAC over RTMP with a keyframe every 2 s; at once:
//! - ffmpeg records RTMP play (`-c copy`, 60 s of media);
//! - ffmpeg records the HLS playlist (LL-HLS served, read as plain HLS; 60 s of media);
//! - a WebSocket client stores what `/mse/{name}` sends for 60 s (the bytes an MSE player
//!   appends to its SourceBuffer);
//! - aiortc (Python's WebRTC stack) records a WHEP session for 60 s with its MediaRecorder.
//!
//! Each recording is then decoded by ffmpeg, which counts the frames and reports any error.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use tungstenite::Message;

const FPS: u64 = 25;
const GOP_FRAMES: u64 = 50;
const RECORD_SECS: u64 = 60;
/// What the source sends in the recording time.
const SOURCE_FRAMES: u64 = FPS * RECORD_SECS;

/// ffmpeg records `seconds` of media from `url` into `out` without re-encoding.
fn ffmpeg_record(url: &str, out: &Path) -> Result<(), String> {
    let run = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            "10000000",
            "-i",
            url,
        ])
        .args([
            "-t",
            &RECORD_SECS.to_string(),
            "-map",
            "0:v",
            "-map",
            "0:a?",
        ])
        .args(["-c", "copy", "-y"])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let errors = String::from_utf8_lossy(&run.stderr).to_string();
    if run.status.success() && errors.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("ffmpeg recording {url}: {errors}"))
    }
}

/// The bytes `/mse/{name}` sends in `RECORD_SECS` (init segment, then fragments), as a file.
fn mse_record(http: &str, name: &str, out: &Path) -> Result<(), String> {
    let (mut ws, _) = tungstenite::connect(format!("ws://{http}/mse/{name}"))
        .map_err(|e| format!("MSE connect: {e}"))?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let mut file = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(RECORD_SECS) {
        match ws.read().map_err(|e| format!("MSE read: {e}"))? {
            Message::Binary(b) => file.extend_from_slice(&b),
            Message::Text(t) if t.as_str().contains("\"mime\"") => {}
            other => return Err(format!("MSE: unexpected {other:?}")),
        }
    }
    std::fs::write(out, file).map_err(|e| e.to_string())
}

/// aiortc plays the WHEP endpoint for `RECORD_SECS` and records it into `out`.
fn whep_record(url: &str, out: &Path) -> Result<(), String> {
    let run = Command::new(aiortc_python())
        .arg(interop_script("aiortc_whep.py"))
        .args([url, &RECORD_SECS.to_string(), "--record"])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("aiortc printed no report: {stdout}"))?;
    let clean = report["errors"].as_array().is_some_and(Vec::is_empty)
        && report["warnings"].as_array().is_some_and(Vec::is_empty);
    if report["connected"] == true && clean {
        Ok(())
    } else {
        Err(format!("aiortc: {report}"))
    }
}

/// Decodes a recording to the end: the video frames, or what went wrong.
fn decoded_frames(path: &Path) -> Result<u64, String> {
    let d = ffmpeg_decode(path.to_str().unwrap(), 10 * RECORD_SECS as u32);
    if d.success && d.errors.trim().is_empty() {
        Ok(d.video_frames)
    } else {
        Err(format!("{}: {d:?}", path.display()))
    }
}

#[test]
fn every_output_recorded_for_a_minute_decodes_and_keeps_every_frame() {
    let server = Switchyard::start();
    let name = "live/rec";
    let _publisher = ffmpeg_publish(
        &server.rtmp_url(name),
        Encoding::Baseline,
        GOP_FRAMES as u32,
        RECORD_SECS as u32 + 30,
    );
    server.wait_for_stream(name, true);
    let dir = TempDir::new("recorders");
    let file = |f: &str| -> PathBuf { dir.path.join(f) };
    let (rtmp, hls, mse, whep) = (
        file("rtmp.mkv"),
        file("hls.mkv"),
        file("mse.mp4"),
        file("whep.mp4"),
    );
    let rtmp_url = server.rtmp_url(name);
    let hls_url = format!("http://{}/hls/{name}/index.m3u8", server.http);
    let whep_url = server.api(&format!("/whep/{name}"));
    let http = server.http.to_string();
    let results = std::thread::scope(|s| {
        let jobs = [
            (
                "RTMP (ffmpeg)",
                &rtmp,
                s.spawn(|| ffmpeg_record(&rtmp_url, &rtmp)),
            ),
            (
                "HLS (ffmpeg)",
                &hls,
                s.spawn(|| ffmpeg_record(&hls_url, &hls)),
            ),
            (
                "MSE (WebSocket)",
                &mse,
                s.spawn(|| mse_record(&http, name, &mse)),
            ),
            (
                "WHEP (aiortc)",
                &whep,
                s.spawn(|| whep_record(&whep_url, &whep)),
            ),
        ];
        jobs.map(|(what, path, job)| (what, path, job.join().unwrap()))
    });
    let mut report = Vec::new();
    let mut ok = true;
    for (what, path, recorded) in results {
        let outcome = recorded.and_then(|()| decoded_frames(path));
        let line = match &outcome {
            Ok(frames) if frames.abs_diff(SOURCE_FRAMES) <= GOP_FRAMES => {
                format!("{what}: {frames} frames")
            }
            Ok(frames) => {
                ok = false;
                format!("{what}: {frames} frames, not {SOURCE_FRAMES} +- {GOP_FRAMES}")
            }
            Err(e) => {
                ok = false;
                format!("{what}: {e}")
            }
        };
        report.push(line);
    }
    eprintln!("recordings of {RECORD_SECS} s:\n  {}", report.join("\n  "));
    assert!(ok, "{}", report.join("\n"));
    // Nothing else broke meanwhile: the server still answers and the stream is live.
    let (status, info) = server.get_json(&format!("/api/v1/streams/{name}"));
    assert_eq!(status, 200, "{info}");
    let _ = TcpStream::connect(server.http).expect("the HTTP port still accepts");
}
