//! Audio bridging (issue #7): Opus from WebRTC publishers reaches RTMP readers and pushes as
//! AAC, AAC from RTMP publishers reaches WebRTC viewers as Opus. End to end with real peers:
//! headless Chromium publishing and playing, FFmpeg 9 publishing over WHIP, ffmpeg/ffprobe over
//! RTMP, nginx-rtmp as the CDN a push reaches, and a second node pulling over WHEP.
//!
//! `cargo test --features transcode --test audio_bridging -- --test-threads=2`

#![cfg(feature = "transcode")]

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::browser::{play_unmuted, Publishing};
use support::nginx::Nginx;
use support::*;

/// H.264 for WebRTC (baseline, no B-frames) at 30 fps with a keyframe every 2.000 s exactly.
const X264_KEYFRAME_EVERY_2S: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-profile:v",
    "baseline",
    "-bf",
    "0",
    "-g",
    "60",
    "-keyint_min",
    "60",
    "-sc_threshold",
    "0",
];

/// The stream's info from the API (`Value::Null` if it is not there).
fn stream_info(server: &Switchyard, stream: &str) -> Value {
    let (status, info) = server.get_json(&format!("/api/v1/streams/{stream}"));
    if status == 200 {
        info
    } else {
        Value::Null
    }
}

/// The stream's `audio_conversions` entry for `codec` ("aac" or "opus"), if listed.
fn conversion(info: &Value, codec: &str) -> Option<Value> {
    info["audio_conversions"]
        .as_array()?
        .iter()
        .find(|c| c["codec"] == codec)
        .cloned()
}

fn counter(conversion: &Value, key: &str) -> u64 {
    conversion[key].as_u64().unwrap_or(0)
}

/// Waits until the stream's `codec` conversion satisfies `ok` (described by `what`); returns it.
fn wait_conversion(
    server: &Switchyard,
    stream: &str,
    codec: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let info = stream_info(server, stream);
        if let Some(c) = conversion(&info, codec) {
            if ok(&c) {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{stream}: no {codec} conversion {what} within {timeout:?}; stream info: {info}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn running_with_output(c: &Value) -> bool {
    c["state"] == "running" && counter(c, "frames_out") > 0
}

/// FFmpeg 9 publishing testsrc2 (320x180, 30 fps, H.264 baseline, a keyframe every 2 s) and the
/// lavfi audio source `audio` as 48 kHz stereo Opus over WHIP to `url`, for `seconds` of media
/// at `readrate` times real time.
fn whip_publish(url: &str, audio: &str, seconds: u32, readrate: u32) -> Proc {
    let child = Command::new(ffmpeg9())
        .args([
            "-nostdin",
            "-v",
            "error",
            "-readrate",
            &readrate.to_string(),
        ])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", audio, "-t", &seconds.to_string()])
        .args(X264_KEYFRAME_EVERY_2S)
        .args([
            "-b:v", "300k", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        ])
        .args(["-f", "whip", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

/// A 440 Hz sine (lavfi's default amplitude, 1/8 of full scale).
const SINE: &str = "sine=frequency=440:sample_rate=48000";

/// Runs a short ffmpeg command that makes a test file; panics with its messages if it fails.
fn ffmpeg_make(args: &[&str], out: &Path) {
    let result = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Chromium's fake microphone plays a WAV file (looped) in place of its beeps; a WebRTC
/// publish page then sends a continuous 440 Hz tone at half full scale over WHIP (Opus). A
/// `[[pushes]]` rule sends the stream to nginx-rtmp, where ffprobe must find AAC-LC at the
/// source's 48 kHz, and the decoded tone must be loud (a silent or broken conversion is not).
/// A second push, made through the API, shares the conversion.
#[test]
fn chromium_whip_opus_reaches_nginx_as_aac() {
    let nginx = Nginx::start();
    let server = Switchyard::start_with_config(&format!(
        "[[pushes]]\nstream = \"live/*\"\nurl = \"rtmp://127.0.0.1:{}/live/{{name}}\"\n",
        nginx.rtmp_port
    ));
    let dir = TempDir::new("tone");
    let wav = dir.path.join("tone.wav");
    ffmpeg_make(
        &[
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=0.5*sin(2*PI*440*t):s=48000",
            "-t",
            "10",
            "-ac",
            "1",
        ],
        &wav,
    );
    let _publishing =
        Publishing::start_with_fake_audio(&server.api("/publish/live/tone"), 60, &wav);
    let info = server.wait_for_stream("live/tone", true);
    let audio_codec = info["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "audio")
        .map(|t| t["codec"].clone());
    assert_eq!(
        audio_codec,
        Some("opus".into()),
        "the source is Opus: {info}"
    );

    let at_nginx = nginx.url("live/tone");
    probe_until(
        &at_nginx,
        &[
            "codec_name=h264",
            "codec_name=aac|profile=LC|sample_rate=48000",
        ],
        Duration::from_secs(30),
    );
    let (mean_volume, decoded) = audio_volume(&at_nginx, 10);
    assert!(
        decoded >= 9.0,
        "10 s of audio decoded from nginx, got {decoded} s"
    );
    assert!(
        mean_volume > -40.0,
        "the tone is audible after Opus -> AAC: mean_volume {mean_volume} dB"
    );

    let aac = wait_conversion(
        &server,
        "live/tone",
        "aac",
        "running with frames out",
        Duration::from_secs(5),
        running_with_output,
    );
    assert!(counter(&aac, "frames_in") > 0, "{aac}");
    let (_, pushes) = server.get_json("/api/v1/pushes");
    assert!(
        pushes.as_array().is_some_and(|p| p
            .iter()
            .any(|p| p["stream"] == "live/tone" && p["state"] == "running")),
        "{pushes}"
    );

    // A push made through the API gets AAC too, from the same conversion.
    let body = serde_json::json!({ "stream": "live/tone", "url": nginx.url("api") });
    let (status, created) = server.request("POST", "/api/v1/pushes", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    probe_until(
        &nginx.url("api"),
        &["codec_name=h264", "codec_name=aac|profile=LC"],
        Duration::from_secs(30),
    );
    let info = stream_info(&server, "live/tone");
    let aac_conversions = info["audio_conversions"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["codec"] == "aac").count());
    assert_eq!(
        aac_conversions,
        Some(1),
        "one AAC conversion for both pushes: {info}"
    );
}

/// ffmpeg publishes H.264 + AAC (a 440 Hz sine) over RTMP; Chromium plays it over WHEP and must
/// receive Opus audio that keeps coming and is not silent.
#[test]
fn rtmp_aac_sine_plays_as_opus_in_chromium() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/sine"), Encoding::Baseline, 25, 90);
    server.wait_for_stream("live/sine", true);
    let url = server.api("/play/live/sine?mode=webrtc");
    let player = std::thread::spawn(move || play_unmuted(&url, 12));
    // While the browser plays, the stream has an Opus conversion producing frames.
    let mut during = None;
    let mut info = Value::Null;
    while !player.is_finished() {
        info = stream_info(&server, "live/sine");
        if let Some(c) = conversion(&info, "opus").filter(running_with_output) {
            during = Some(c);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let report = player.join().unwrap();
    let during = during.unwrap_or_else(|| {
        panic!(
            "no opus conversion running with frames out while Chromium played; stream info \
             near the end: {info}\nplayer: {report}"
        )
    });
    support::browser::assert_webrtc_video(&report, "video/H264");
    let webrtc = &report["webrtc"];
    assert_eq!(
        webrtc["audioCodec"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("audio/opus"),
        "{report}"
    );
    let samples = webrtc["audioSamplesReceived"].as_u64().unwrap_or(0);
    let at_half = report["audioSamplesAtHalf"].as_u64().unwrap_or(0);
    assert!(
        samples > at_half + 48_000,
        "audio samples keep coming (over 1 s of them in the last 6 s): {at_half} -> {samples}: {report}"
    );
    // The sine is at 1/8 of full scale: an audioLevel (linear, 0..1) of about 0.09.
    let level = webrtc["audioLevel"].as_f64().unwrap_or(0.0);
    let level_at_half = report["audioLevelAtHalf"].as_f64().unwrap_or(0.0);
    assert!(
        level > 0.01 && level_at_half > 0.01,
        "the sine is not silent: audioLevel {level_at_half} then {level}: {report}"
    );
    assert_eq!(counter(&during, "corrupt_frames"), 0, "{during}");
}

/// Where the payload of an FLV audio tag whose data is `data` starts, if it carries a coded
/// frame of the codec this returns for: AAC (SoundFormat 10, AACPacketType 1: after 2 bytes).
fn aac_frame(data: &[u8]) -> Option<usize> {
    (data.len() > 2 && data[0] >> 4 == 10 && data[1] == 1).then_some(2)
}

/// Opus in Enhanced RTMP (SoundFormat 9 = ExHeader, AudioPacketType 1 = CodedFrames, FourCC
/// `Opus`): after 5 bytes.
fn opus_frame(data: &[u8]) -> Option<usize> {
    (data.len() > 7 && data[0] == 0x91 && &data[1..5] == b"Opus").then_some(5)
}

/// Overwrites the payload of every `every`-th coded audio frame (found by `frame`) of the FLV
/// file at `path`: `start` first, then pseudo-random bytes. Returns how many frames it changed.
fn corrupt_audio_tags(
    path: &Path,
    every: usize,
    frame: fn(&[u8]) -> Option<usize>,
    start: &[u8],
) -> usize {
    let mut flv = std::fs::read(path).unwrap();
    assert_eq!(&flv[..3], b"FLV", "not an FLV file");
    let header = u32::from_be_bytes(flv[5..9].try_into().unwrap()) as usize;
    // The header, then PreviousTagSize0; then tags: 11-byte header, data, previous tag size.
    let mut pos = header + 4;
    let (mut frames, mut corrupted) = (0, 0);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    while pos + 11 <= flv.len() {
        let kind = flv[pos] & 0x1f;
        let size =
            (flv[pos + 1] as usize) << 16 | (flv[pos + 2] as usize) << 8 | flv[pos + 3] as usize;
        let data = pos + 11;
        assert!(data + size + 4 <= flv.len(), "truncated FLV tag at {pos}");
        let payload = if kind == 8 {
            frame(&flv[data..data + size])
        } else {
            None
        };
        if let Some(offset) = payload.filter(|o| size >= o + start.len()) {
            frames += 1;
            if frames % every == 0 {
                let payload = &mut flv[data + offset..data + size];
                payload[..start.len()].copy_from_slice(start);
                for byte in &mut payload[start.len()..] {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *byte = (seed >> 32) as u8;
                }
                corrupted += 1;
            }
        }
        pos = data + size + 4;
    }
    std::fs::write(path, flv).unwrap();
    corrupted
}

/// An RTMP publisher sends AAC whose every 10th frame is garbage; a second node pulls the stream
/// over WHEP, so the origin converts it to Opus. The garbage frames are counted and skipped, the
/// conversion keeps producing, the pulled stream has Opus audio, and the node and its other
/// streams carry on.
#[test]
fn corrupt_aac_packets_are_counted_and_skipped() {
    let dir = TempDir::new("corrupt");
    let flv = dir.path.join("corrupt.flv");
    ffmpeg_make(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "45",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
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
            "-b:v",
            "300k",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-ac",
            "2",
            "-f",
            "flv",
        ],
        &flv,
    );
    let corrupted = corrupt_audio_tags(&flv, 10, aac_frame, &[]);
    assert!(corrupted > 150, "only {corrupted} AAC frames corrupted");

    let origin = Switchyard::start();
    let edge = Switchyard::start();
    let _good = ffmpeg_publish(&origin.rtmp_url("live/good"), Encoding::Baseline, 25, 90);
    let mut bad = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&flv)
            .args(["-c", "copy", "-f", "flv", &origin.rtmp_url("live/bad")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    origin.wait_for_stream("live/bad", true);
    origin.wait_for_stream("live/good", true);

    // The edge pulls over WHEP: a WebRTC reader of the origin, so the origin makes Opus.
    let body = serde_json::json!({
        "source": origin.api("/whep/live/bad"),
        "name": "edge/bad",
    });
    let (status, created) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let pull = format!("/api/v1/pulls/{}", created["id"].as_str().unwrap());
    edge.wait_for_state(&pull, "running", Duration::from_secs(30));

    let first = wait_conversion(
        &origin,
        "live/bad",
        "opus",
        "with corrupt frames counted",
        Duration::from_secs(30),
        |c| counter(c, "corrupt_frames") > 0,
    );
    std::thread::sleep(Duration::from_secs(4));
    let later = conversion(&stream_info(&origin, "live/bad"), "opus")
        .unwrap_or_else(|| panic!("the opus conversion went away: {}", origin.log_text()));
    assert_eq!(later["state"], "running", "{later}");
    assert!(
        counter(&later, "frames_out") > counter(&first, "frames_out") + 100,
        "the conversion keeps producing after corrupt input (about 50 Opus frames a second): \
         {first} -> {later}"
    );
    assert!(
        counter(&later, "corrupt_frames") > counter(&first, "corrupt_frames"),
        "later garbage frames are counted too: {first} -> {later}"
    );
    // Garbage is about one frame in ten, not everything.
    assert!(
        counter(&later, "corrupt_frames") * 4 < counter(&later, "frames_in"),
        "{later}"
    );

    // /metrics counts them for the whole process.
    let metrics = ureq::get(&origin.api("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let corrupt_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_audio_corrupt_frames_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        corrupt_total >= Some(counter(&later, "corrupt_frames") as f64),
        "switchyard_audio_corrupt_frames_total {corrupt_total:?} after {later}"
    );

    // The pulled stream has the converted audio.
    let pulled = edge.wait_for_stream("edge/bad", true);
    assert!(
        pulled["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "audio" && t["codec"] == "opus"),
        "{pulled}"
    );

    // The origin, the publisher of the garbage and the other stream carry on.
    let (status, _) = origin.get_json("/healthz");
    assert_eq!(status, 200);
    assert!(bad.is_running(), "the corrupt publisher was not cut off");
    let good = |s: &Switchyard| {
        stream_info(s, "live/good")["frames_in"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = good(&origin);
    assert_decodes(&origin.rtmp_url("live/good"), 3, 40);
    assert!(good(&origin) > before, "live/good goes on");
    let mut origin = origin;
    assert!(origin.is_running());
}

/// One beep per keyframe: testsrc2 at 30 fps with a keyframe every 60 frames (2.000 s), and a
/// 50 ms 1 kHz beep at the start of every even second.
const BEEP: &str = "aevalsrc=if(lt(mod(t\\,2)\\,0.05)\\,0.5*sin(2*PI*1000*t)\\,0):s=48000";

/// Keyframe presentation times of the first video stream of `file`, on the file's timeline.
fn keyframe_times(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pts, flags) = l.split_once(',')?;
            flags.contains('K').then(|| pts.parse().ok())?
        })
        .collect()
}

/// Times at which the audio of `file` rises from silence (below -20 dBFS for at least 20 ms) to
/// a beep, on the file's timeline (`-copyts`: decoded frames keep the packets' timestamps).
/// Only rises followed by silence again within half a second count: the end of the file also
/// ends a silence.
fn beep_onsets(file: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-nostats", "-v", "info", "-copyts", "-i"])
        .arg(file)
        .args(["-map", "0:a:0", "-af", "silencedetect=noise=-20dB:d=0.02"])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value = |line: &str, key: &str| -> Option<f64> {
        let rest = line.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    // (is_end, time) in order.
    let events: Vec<(bool, f64)> = stderr
        .lines()
        .filter_map(|l| {
            value(l, "silence_end: ")
                .map(|t| (true, t))
                .or_else(|| value(l, "silence_start: ").map(|t| (false, t)))
        })
        .collect();
    events
        .windows(2)
        .filter_map(|w| match (w[0], w[1]) {
            ((true, rise), (false, fall)) if fall - rise < 0.5 => Some(rise),
            _ => None,
        })
        .collect()
}

/// Checks that `file` has a beep on every keyframe, within 40 ms, over at least `span` seconds
/// after a warm-up of 5 s; returns a summary.
fn assert_beeps_on_keyframes(file: &Path, span: f64) -> String {
    let keyframes = keyframe_times(file);
    let onsets = beep_onsets(file);
    assert!(
        keyframes.len() > 10,
        "keyframes: {keyframes:?}, beeps: {onsets:?}"
    );
    let start = keyframes[0] + 5.0;
    let end = *keyframes.last().unwrap();
    assert!(
        end - keyframes[0] >= span,
        "the recording covers {:.1} s of stream time, not {span} s; keyframes {keyframes:?}",
        end - keyframes[0]
    );
    let nearest = |t: f64| {
        keyframes
            .iter()
            .map(|k| t - k)
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap()
    };
    let checked: Vec<(f64, f64)> = onsets
        .iter()
        .filter(|&&t| t >= start && t <= end)
        .map(|&t| (t, nearest(t)))
        .collect();
    let off: Vec<String> = checked
        .iter()
        .filter(|(_, d)| d.abs() > 0.040)
        .map(|(t, d)| format!("{t:.3} ({:+.0} ms)", d * 1000.0))
        .collect();
    let expected = keyframes
        .iter()
        .filter(|&&k| k >= start && k <= end)
        .count();
    let worst = checked.iter().map(|(_, d)| d.abs()).fold(0.0, f64::max);
    let summary = format!(
        "{} keyframes {:.3}..{:.3} s, {} beeps checked, {expected} expected, worst {:.1} ms, \
         offsets (ms) {:?}",
        keyframes.len(),
        keyframes[0],
        end,
        checked.len(),
        worst * 1000.0,
        checked
            .iter()
            .map(|(_, d)| (d * 1000.0).round() as i64)
            .collect::<Vec<_>>()
    );
    assert!(
        off.is_empty(),
        "beeps more than 40 ms from the nearest keyframe: {off:?}\n{summary}"
    );
    assert!(
        checked.len() + 2 >= expected,
        "beeps missing (one per keyframe): {summary}"
    );
    assert!(
        checked
            .last()
            .is_some_and(|(t, _)| t - keyframes[0] >= span - 4.0),
        "no beeps checked near the end: {summary}"
    );
    summary
}

/// FFmpeg 9 publishes H.264 + Opus over WHIP, four times faster than real time, with a beep on
/// every keyframe; ffmpeg records the RTMP output (AAC) with `-c copy`; in the recording every
/// beep starts within 40 ms of a keyframe, over more than three minutes of stream time.
#[test]
fn converted_audio_keeps_beeps_on_keyframes() {
    let server = Switchyard::start();
    let dir = TempDir::new("sync");
    let _publisher = whip_publish(&server.api("/whip/live/sync"), BEEP, 200, 4);
    server.wait_for_stream("live/sync", true);
    let file = dir.path.join("rtmp.flv");
    let recorder_log = dir.path.join("recorder.log");
    let mut recorder = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "5000000", "-i"])
            .arg(server.rtmp_url("live/sync"))
            .args(["-map", "0", "-c", "copy", "-f", "flv", "-y"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&recorder_log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_conversion(
        &server,
        "live/sync",
        "aac",
        "running with frames out",
        Duration::from_secs(20),
        running_with_output,
    );
    // The recording ends when the publisher does (200 s of media at 4x).
    let exited = recorder.wait_exit(Duration::from_secs(100));
    assert!(exited.is_some(), "the RTMP recording did not end");
    let streams = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,profile"])
        .args(["-of", "compact=p=0"])
        .arg(&file)
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&streams.stdout);
    assert!(
        streams.contains("codec_name=aac|profile=LC"),
        "the recording has AAC-LC: {streams}; recorder: {}",
        std::fs::read_to_string(&recorder_log).unwrap_or_default()
    );
    let summary = assert_beeps_on_keyframes(&file, 180.0);
    eprintln!("A/V sync Opus -> AAC: {summary}");
}

/// Records the WebSocket MSE output of `name` until the socket closes or `until`: the last init
/// segment (a new `{"mime"}` message starts the file again) and the fragments after it.
fn record_mse(server: &Switchyard, name: &str, until: Instant) -> (Vec<u8>, Vec<String>) {
    use tungstenite::Message;
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/mse/{name}", server.http)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut file = Vec::new();
    let mut mimes = Vec::new();
    while Instant::now() < until {
        match ws.read() {
            Ok(Message::Binary(b)) => file.extend_from_slice(&b),
            Ok(Message::Text(t)) => {
                mimes.push(t.to_string());
                file.clear();
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (file, mimes)
}

/// `edge` pulls `name` from `origin` over WHEP (as `edge/...` with the same last segment),
/// then `edge`'s MSE output is recorded for `seconds`: the recording (its last init segment
/// on) in a file in `dir`, which must carry Opus.
fn pull_and_record_mse(
    origin: &Switchyard,
    edge: &Switchyard,
    name: &str,
    seconds: u64,
    dir: &TempDir,
) -> std::path::PathBuf {
    origin.wait_for_stream(name, true);
    let local = format!("edge/{}", name.rsplit('/').next().unwrap());
    let body = serde_json::json!({ "source": origin.api(&format!("/whep/{name}")), "name": local });
    let (status, created) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    edge.wait_for_stream(&local, true);
    let (mp4, mimes) = record_mse(edge, &local, Instant::now() + Duration::from_secs(seconds));
    assert!(
        mimes.last().is_some_and(|m| m.contains("opus")),
        "the MSE output carries Opus: {mimes:?}"
    );
    let file = dir.path.join("mse.mp4");
    std::fs::write(&file, mp4).unwrap();
    file
}

/// The other direction: ffmpeg publishes H.264 + AAC over RTMP, twice as fast as real time,
/// with a beep on every keyframe; a second node pulls the stream over WHEP (the origin converts
/// the audio to Opus); the fMP4 of the second node's MSE output carries Opus, and every beep
/// in it starts within 40 ms of a keyframe. (While sender reports mapped each track by its
/// last send time, the beeps came 13 to 39 ms late here, different from run to run; since they
/// map every track to one instant of the stream's timeline, within 1 ms.)
#[test]
fn aac_converted_to_opus_for_a_whep_pull_keeps_beeps_on_keyframes() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config("[pull]\nhold_secs = 1\n");
    let _publisher = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-readrate", "2"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
            .args(["-f", "lavfi", "-i", BEEP, "-t", "100"])
            .args(X264_KEYFRAME_EVERY_2S)
            .args(["-b:v", "300k", "-c:a", "aac", "-b:a", "128k", "-ac", "2"])
            .args(["-f", "flv", &origin.rtmp_url("live/sync")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("sync-opus");
    let file = pull_and_record_mse(&origin, &edge, "live/sync", 80, &dir);
    let summary = assert_beeps_on_keyframes(&file, 80.0);
    eprintln!("A/V sync AAC -> Opus: {summary}");
}

/// Audio packets of the first audio stream of `file`: their total size in bytes and the time
/// from the first to the last.
fn audio_bytes_and_span(file: &Path) -> (u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args(["-show_entries", "packet=pts_time,size", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let packets: Vec<(f64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (pts, size) = l.split_once(',')?;
            Some((pts.parse().ok()?, size.trim().parse().ok()?))
        })
        .collect();
    let bytes = packets.iter().map(|p| p.1).sum();
    let span = match (packets.first(), packets.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    (bytes, span)
}

/// Two RTMP players of a WHIP (Opus) stream share one AAC conversion, started when they come
/// and stopped after they leave; `[audio] aac_bitrate` sets the AAC bitrate.
#[test]
fn one_aac_conversion_is_shared_on_demand_at_the_configured_bitrate() {
    let server = Switchyard::start_with_config("[audio]\naac_bitrate = 64000\n");
    let _publisher = whip_publish(&server.api("/whip/live/shared"), SINE, 60, 1);
    server.wait_for_stream("live/shared", true);
    std::thread::sleep(Duration::from_secs(1));
    let idle = stream_info(&server, "live/shared");
    assert!(
        conversion(&idle, "aac").is_none_or(|c| c["state"] != "running"),
        "no reader needs AAC yet: {idle}"
    );

    let dir = TempDir::new("shared");
    let record = |i: usize| {
        let file = dir.path.join(format!("player{i}.flv"));
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-rw_timeout", "5000000", "-i"])
            .arg(server.rtmp_url("live/shared"))
            .args(["-t", "10", "-map", "0:a:0", "-c", "copy", "-f", "flv", "-y"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (Proc(child), file)
    };
    let mut players = vec![record(0), record(1)];
    wait_conversion(
        &server,
        "live/shared",
        "aac",
        "running with frames out",
        Duration::from_secs(15),
        running_with_output,
    );
    let busy = stream_info(&server, "live/shared");
    let conversions = busy["audio_conversions"].as_array().unwrap();
    assert_eq!(
        conversions.iter().filter(|c| c["codec"] == "aac").count(),
        1,
        "one AAC conversion for both players: {busy}"
    );
    for (player, file) in &mut players {
        assert!(
            player.wait_exit(Duration::from_secs(30)).is_some(),
            "the player of {} did not end",
            file.display()
        );
        let streams = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args(["stream=codec_name,profile,sample_rate,channels"])
            .args(["-of", "compact=p=0"])
            .arg(&*file)
            .output()
            .unwrap();
        let streams = String::from_utf8_lossy(&streams.stdout);
        assert!(
            streams.starts_with("codec_name=aac|profile=LC|sample_rate=48000|channels=2"),
            "{}: {streams}",
            file.display()
        );
        let (bytes, span) = audio_bytes_and_span(file);
        assert!(span > 8.0, "{}: {span} s of audio", file.display());
        let bitrate = bytes as f64 * 8.0 / span;
        assert!(
            (40_000.0..90_000.0).contains(&bitrate),
            "aac_bitrate = 64000 gives about 64 kb/s, got {bitrate:.0} b/s"
        );
    }

    // Both players left: the conversion stops some seconds later.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let info = stream_info(&server, "live/shared");
        if conversion(&info, "aac").is_none_or(|c| c["state"] != "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the AAC conversion still runs 40 s after its last reader left: {info}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// With `[hls] audio_codec = "aac"` the HLS of a WHIP (Opus) stream carries AAC, and the tone
/// is audible in it.
#[test]
fn hls_audio_codec_aac_converts_opus_for_hls() {
    let server = Switchyard::start_with_config("[hls]\naudio_codec = \"aac\"\n");
    let _publisher = whip_publish(&server.api("/whip/live/hlsaac"), SINE, 60, 1);
    server.wait_for_stream("live/hlsaac", true);
    let playlist = server.api("/hls/live/hlsaac/index.m3u8");
    assert_streams(&playlist, &["codec_name=h264", "codec_name=aac|profile=LC"]);
    let (mean_volume, decoded) = audio_volume(&playlist, 4);
    assert!(decoded >= 3.5, "{decoded} s of audio decoded from HLS");
    assert!(mean_volume > -40.0, "mean_volume {mean_volume} dB");
    wait_conversion(
        &server,
        "live/hlsaac",
        "aac",
        "running with frames out",
        Duration::from_secs(5),
        running_with_output,
    );
    // MSE players take Opus: they keep it.
    let (mut ws, _) =
        tungstenite::connect(format!("ws://{}/mse/live/hlsaac", server.http)).unwrap();
    let tungstenite::Message::Text(mime) = ws.read().unwrap() else {
        panic!("the MIME type first")
    };
    assert!(mime.as_str().contains(",opus"), "{mime}");
}

/// A G.711 (A-law, 8 kHz mono) camera pulled over RTSP: RTMP players, HLS and MSE get AAC-LC
/// (48 kHz mono over RTMP), and a node pulling it over WHEP gets Opus.
#[test]
fn g711_camera_is_aac_for_rtmp_and_hls_and_opus_over_whep() {
    let camera = RtspCamera::start(0, "pcma", None);
    let camera_url = camera.url();
    let server = Switchyard::start();
    let body = serde_json::json!({ "source": camera_url, "name": "cam/g711" });
    let (status, created) = server.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let info = server.wait_for_stream("cam/g711", true);
    assert!(
        info["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "audio" && t["sample_rate"] == 8000),
        "the camera's audio is 8 kHz G.711: {info}"
    );

    let rtmp = server.rtmp_url("cam/g711");
    probe_until(
        &rtmp,
        &[
            "codec_name=h264",
            "codec_name=aac|profile=LC|sample_rate=48000|channels=1",
        ],
        Duration::from_secs(20),
    );
    let (mean_volume, decoded) = audio_volume(&rtmp, 5);
    assert!(decoded >= 4.5, "{decoded} s of audio decoded over RTMP");
    assert!(mean_volume > -40.0, "mean_volume {mean_volume} dB");
    assert_streams(
        &server.api("/hls/cam/g711/index.m3u8"),
        &["codec_name=h264", "codec_name=aac|profile=LC"],
    );
    let (mp4, mimes) = record_mse(&server, "cam/g711", Instant::now() + Duration::from_secs(3));
    assert!(
        mimes.last().is_some_and(|m| m.contains("mp4a.40.2")),
        "MSE gets AAC-LC: {mimes:?}"
    );
    let dir = TempDir::new("g711");
    assert_mp4_decodes(&dir, "mse.mp4", &mp4);

    let edge = Switchyard::start();
    let body = serde_json::json!({ "source": server.api("/whep/cam/g711"), "name": "edge/g711" });
    let (status, created) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let pulled = edge.wait_for_stream("edge/g711", true);
    assert!(
        pulled["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "audio" && t["codec"] == "opus"),
        "{pulled}"
    );
    let info = stream_info(&server, "cam/g711");
    for codec in ["aac", "opus"] {
        let c = conversion(&info, codec);
        assert!(
            c.as_ref().is_some_and(running_with_output),
            "{codec}: {info}"
        );
    }
}

/// An RTMP publisher's AAC (white noise, which takes every bit it is given) reaches a node
/// pulling over WHEP as 48 kHz Opus at `[audio] opus_bitrate`; the pulled stream's MSE output
/// carries it.
#[test]
fn opus_for_whep_pulls_is_48khz_at_the_configured_bitrate() {
    let origin = Switchyard::start_with_config("[audio]\nopus_bitrate = 32000\n");
    let edge = Switchyard::start();
    let _publisher = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "anoisesrc=color=white:amplitude=0.2:r=44100",
            ])
            .args(["-t", "60", "-c:v", "libx264", "-preset", "ultrafast"])
            .args([
                "-profile:v",
                "baseline",
                "-bf",
                "0",
                "-g",
                "25",
                "-b:v",
                "300k",
            ])
            .args(["-c:a", "aac", "-b:a", "128k", "-ac", "2"])
            .args(["-f", "flv", &origin.rtmp_url("live/noise")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("noise");
    let file = pull_and_record_mse(&origin, &edge, "live/noise", 8, &dir);
    let streams = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args([
            "-show_entries",
            "stream=codec_name,sample_rate",
            "-of",
            "compact=p=0",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&streams.stdout);
    assert!(
        streams.starts_with("codec_name=opus|sample_rate=48000"),
        "{streams}"
    );
    let (bytes, span) = audio_bytes_and_span(&file);
    assert!(span > 5.0, "{span} s of audio in {bytes} bytes");
    let bitrate = bytes as f64 * 8.0 / span;
    assert!(
        (20_000.0..45_000.0).contains(&bitrate),
        "opus_bitrate = 32000 gives about 32 kb/s, got {bitrate:.0} b/s"
    );
    let opus = wait_conversion(
        &origin,
        "live/noise",
        "opus",
        "running with frames out",
        Duration::from_secs(5),
        running_with_output,
    );
    assert_eq!(counter(&opus, "corrupt_frames"), 0, "{opus}");
}

/// An Enhanced RTMP publisher (FFmpeg 9) sends Opus whose every 10th packet is invalid (TOC
/// code 3 with a frame count of 0, then garbage); an RTMP player makes the AAC conversion run.
/// The bad packets are counted and skipped, the player decodes the tone, and the conversion
/// keeps producing.
#[test]
fn corrupt_opus_packets_are_counted_and_skipped() {
    let dir = TempDir::new("corrupt-opus");
    let flv = dir.path.join("corrupt.flv");
    let made = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", SINE, "-t", "45"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            "baseline",
        ])
        .args(["-bf", "0", "-g", "25", "-b:v", "300k"])
        .args(["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-f", "flv"])
        .arg(&flv)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let corrupted = corrupt_audio_tags(&flv, 10, opus_frame, &[0x03, 0x00]);
    assert!(corrupted > 150, "only {corrupted} Opus packets corrupted");

    let server = Switchyard::start();
    let _publisher = Proc(
        Command::new(ffmpeg9())
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&flv)
            .args(["-c", "copy", "-f", "flv", &server.rtmp_url("live/badopus")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let info = server.wait_for_stream("live/badopus", true);
    assert!(
        info["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "audio" && t["codec"] == "opus"),
        "{info}"
    );
    let url = server.rtmp_url("live/badopus");
    let player = std::thread::spawn(move || audio_volume(&url, 10));
    let first = wait_conversion(
        &server,
        "live/badopus",
        "aac",
        "with corrupt frames counted",
        Duration::from_secs(20),
        |c| counter(c, "corrupt_frames") > 0,
    );
    let (mean_volume, decoded) = player.join().unwrap();
    let later = conversion(&stream_info(&server, "live/badopus"), "aac")
        .unwrap_or_else(|| panic!("the aac conversion went away: {}", server.log_text()));
    assert_eq!(later["state"], "running", "{later}");
    assert!(
        counter(&later, "frames_out") > counter(&first, "frames_out") + 100,
        "the conversion keeps producing after corrupt input: {first} -> {later}"
    );
    assert!(
        counter(&later, "corrupt_frames") * 4 < counter(&later, "frames_in"),
        "{later}"
    );
    assert!(decoded >= 9.0, "{decoded} s of audio decoded over RTMP");
    assert!(mean_volume > -40.0, "mean_volume {mean_volume} dB");
    let mut server = server;
    assert!(server.is_running());
}
