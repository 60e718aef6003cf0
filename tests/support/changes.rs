//! Publishers that change what they send under one name: pre-encoded FLV files (so the
//! publisher's CPU does not count) published in real time by ffmpeg, back to back or with a
//! new sequence header in the middle of one connection, and an ffmpeg reader that reports the
//! picture sizes it decoded.

use super::{require, Decode, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Encodes `seconds` of testsrc2 at `size` (e.g. `1280x720`) with a 440 Hz AAC tone to an FLV
/// file in `dir` with `ffmpeg` and the video options `video` (after `-c:v`), as fast as it can.
/// Keyframes every second (25 frames).
pub fn encode_flv(ffmpeg: &Path, dir: &Path, size: &str, seconds: u32, video: &[&str]) -> PathBuf {
    let path = dir.join(format!("{size}-{}.flv", video[0]));
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            &seconds.to_string(),
            "-c:v",
        ])
        .args(video)
        .args(["-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "encoding {size}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// H.264 options for [`encode_flv`]: constrained baseline, a keyframe every second, one slice.
pub const H264: &[&str] = &[
    "libx264",
    "-preset",
    "ultrafast",
    "-profile:v",
    "baseline",
    "-bf",
    "0",
    "-g",
    "25",
    "-keyint_min",
    "25",
    "-sc_threshold",
    "0",
    "-x264-params",
    "sliced-threads=0",
    "-b:v",
    "800k",
];

/// H.265 options for [`encode_flv`] with FFmpeg 9 (Enhanced RTMP `hvc1` in FLV).
pub const H265: &[&str] = &[
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=error:keyint=25:min-keyint=25:scenecut=0",
];

/// `ffmpeg -re -i FILE -c copy -f flv URL`: a real-time publisher of a file.
pub fn publish_file(ffmpeg: &Path, url: &str, file: &Path) -> Proc {
    require("ffmpeg");
    let child = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ffmpeg");
    Proc(child)
}

/// Writes to `out` the FLV file `a` followed by the tags of `b` (its script data left out),
/// `b`'s timestamps moved to follow `a`'s: one stream whose second half comes with new
/// sequence headers, as a publisher that changes resolution without reconnecting sends it
/// (ffmpeg's FLV demuxer hands the new AVCDecoderConfigurationRecord on as new extradata, and
/// its FLV muxer sends it as a new sequence header).
pub fn splice_flv(a: &Path, b: &Path, out: &Path) {
    let a = std::fs::read(a).unwrap();
    let b = std::fs::read(b).unwrap();
    let mut spliced = a.clone();
    let last = flv_tags(&a).map(|t| t.1).max().unwrap_or(0);
    let offset = last + 40;
    for (tag_type, ts, tag) in flv_tags(&b) {
        if tag_type == 18 {
            continue;
        }
        let mut tag = tag.to_vec();
        let ts = ts + offset;
        tag[4..7].copy_from_slice(&ts.to_be_bytes()[1..4]);
        tag[7] = (ts >> 24) as u8;
        spliced.extend_from_slice(&tag);
        spliced.extend_from_slice(&(tag.len() as u32).to_be_bytes());
    }
    std::fs::write(out, spliced).unwrap();
}

/// The tags of an FLV file (Adobe FLV spec E.4.1): (type, timestamp ms, header + body).
fn flv_tags(file: &[u8]) -> impl Iterator<Item = (u8, u32, &[u8])> {
    assert_eq!(&file[..3], b"FLV");
    let header = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize;
    let mut at = header + 4; // PreviousTagSize0
    std::iter::from_fn(move || {
        if at + 11 > file.len() {
            return None;
        }
        let t = &file[at..];
        let size = u32::from_be_bytes([0, t[1], t[2], t[3]]) as usize;
        let ts = u32::from_be_bytes([t[7], t[4], t[5], t[6]]);
        let tag = &file[at..at + 11 + size];
        at += 11 + size + 4;
        Some((t[0] & 0x1f, ts, tag))
    })
}

/// What an ffmpeg decoding `url` showed: the decode (errors, frames) and the picture sizes of
/// the decoded video frames in order, with how many frames each (`[("1280x720", 250), ...]`).
#[derive(Debug)]
pub struct SizedDecode {
    pub decode: Decode,
    pub sizes: Vec<(String, u64)>,
}

/// Decodes `seconds` of `url` (video and audio) with `ffmpeg`, noting each video frame's size.
pub fn decode_with_sizes(ffmpeg: &Path, url: &str, seconds: u32) -> SizedDecode {
    let out = Command::new(ffmpeg)
        .args([
            "-nostdin",
            "-v",
            "info",
            "-rw_timeout",
            "5000000",
            "-i",
            url,
        ])
        .args(["-t", &seconds.to_string()])
        .args(["-map", "0:v", "-map", "0:a?", "-vf", "showinfo"])
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut sizes: Vec<(String, u64)> = Vec::new();
    let mut errors = String::new();
    for line in stderr.lines() {
        if line.contains("Parsed_showinfo") && line.contains(" n:") {
            if let Some(size) = line.split_whitespace().find_map(|w| w.strip_prefix("s:")) {
                match sizes.last_mut() {
                    Some((s, n)) if s == size => *n += 1,
                    _ => sizes.push((size.to_string(), 1)),
                }
            }
        } else if is_decode_error(line) {
            errors.push_str(line);
            errors.push('\n');
        }
    }
    SizedDecode {
        decode: Decode {
            success: out.status.success(),
            video_frames: sizes.iter().map(|s| s.1).sum(),
            errors,
        },
        sizes,
    }
}

/// Lines of an ffmpeg log at `-v info` that say something went wrong with the media.
fn is_decode_error(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "error",
        "invalid",
        "corrupt",
        "concealing",
        "missing",
        "non-existing",
    ]
    .iter()
    .any(|w| l.contains(w))
        && !l.contains("non monotonically increasing dts")
}

/// An ffmpeg publisher reading FLV from a pipe (`ffmpeg -re -f flv -i pipe:0 -c copy -f flv
/// URL`) that a thread of the test feeds: file `first` in a loop, then, from the keyframe
/// after [`FlvFeed::switch`], file `then` in a loop, timestamps continuing. ffmpeg passes the
/// second file's sequence headers on (new extradata) as new sequence headers on the same
/// connection: a publisher that changes resolution without reconnecting, when the test says.
pub struct FlvFeed {
    proc: Proc,
    switch: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl FlvFeed {
    pub fn start(ffmpeg: &Path, url: &str, first: &Path, then: Option<&Path>) -> FlvFeed {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let mut child = Command::new(ffmpeg)
            .args([
                "-nostdin", "-v", "error", "-re", "-f", "flv", "-i", "pipe:0",
            ])
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        let mut stdin = child.stdin.take().unwrap();
        let first = std::fs::read(first).unwrap();
        let then = then.map(|t| std::fs::read(t).unwrap());
        let (switch, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (switch_w, stop_w) = (switch.clone(), stop.clone());
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let header = u32::from_be_bytes(first[5..9].try_into().unwrap()) as usize;
            if stdin.write_all(&first[..header + 4]).is_err() {
                return;
            }
            let mut file = &first;
            let mut switched = false;
            let mut next_ts = 0u32;
            let mut metadata_sent = false;
            'files: loop {
                let offset = next_ts;
                for (tag_type, ts, tag) in flv_tags(file) {
                    if stop_w.load(Ordering::Relaxed) {
                        break 'files;
                    }
                    let video_keyframe = tag_type == 9 && (tag[11] >> 4) & 7 == 1;
                    if !switched && video_keyframe && switch_w.load(Ordering::Relaxed) {
                        if let Some(then) = &then {
                            switched = true;
                            file = then;
                            continue 'files;
                        }
                    }
                    if tag_type == 18 {
                        if metadata_sent {
                            continue;
                        }
                        metadata_sent = true;
                    }
                    let mut tag = tag.to_vec();
                    let ts = ts + offset;
                    tag[4..7].copy_from_slice(&ts.to_be_bytes()[1..4]);
                    tag[7] = (ts >> 24) as u8;
                    next_ts = next_ts.max(ts + 40);
                    if stdin.write_all(&tag).is_err()
                        || stdin.write_all(&(tag.len() as u32).to_be_bytes()).is_err()
                    {
                        break 'files;
                    }
                }
            }
            // Dropping stdin ends ffmpeg's input: it finishes and closes the connection.
        });
        FlvFeed {
            proc: Proc(child),
            switch,
            stop,
            writer: Some(writer),
        }
    }

    /// Goes on with the second file from the next keyframe.
    pub fn switch(&self) {
        self.switch
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends the input: ffmpeg publishes what it has and disconnects, as a publisher that stops.
    pub fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.proc.wait_exit(std::time::Duration::from_secs(10));
    }
}

impl Drop for FlvFeed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
