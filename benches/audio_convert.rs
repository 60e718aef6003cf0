//! CPU of one audio conversion, in each direction, as a share of one core for real-time audio.
//!
//!   cargo bench --features transcode --bench audio_convert
//!
//! The source is what real publishers send: ffmpeg encodes 60 s of stereo 48 kHz audio (pink
//! noise under a sine, full band) to AAC-LC at 128 kb/s in an FLV file, as an RTMP publisher
//! would (OBS, ffmpeg). AAC -> Opus is what a WebRTC viewer of that stream costs; the Opus it
//! gives (libopus 64 kb/s, 20 ms packets, as browsers send) is then the source of Opus -> AAC,
//! what an RTMP reader or push of a WebRTC publisher costs. Also 44.1 kHz AAC -> Opus (with
//! resampling). Each direction converts the minute three times; the best pass is reported as
//! converter CPU time / media time (thread CPU time, so other load on the machine does not
//! count). Aim (issue 7): under 2 % of one core per stereo stream in each direction.

use bytes::Bytes;
use std::process::Command;
use std::time::Duration;
use switchyard::audio::{AudioCodec, AudioSettings, Converter};
use switchyard_flv::{parse_audio, AudioTag};
use switchyard_media::{CodecConfig, Frame, Track, TrackId};

const SECONDS: u32 = 60;

/// The AAC track and frames of an FLV file ffmpeg makes at `rate`.
fn aac_source(rate: u32) -> (Track, Vec<Frame>) {
    let path = std::env::temp_dir().join(format!("switchyard-bench-aac-{rate}.flv"));
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "anoisesrc=color=pink:amplitude=0.2:sample_rate={rate}:duration={SECONDS}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate={rate}:duration={SECONDS}"
        ))
        .args([
            "-filter_complex",
            "[0][1]amix=inputs=2,aformat=channel_layouts=stereo",
        ])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "flv"])
        .arg(&path)
        .status()
        .expect("ffmpeg (scripts/test installs it)");
    assert!(status.success(), "ffmpeg failed");
    let file = Bytes::from(std::fs::read(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    let mut track = None;
    let mut frames = Vec::new();
    for tag in switchyard_flv::file::read_tags(&file).unwrap() {
        if tag.tag_type != 8 {
            continue;
        }
        match parse_audio(tag.body).unwrap().1 {
            AudioTag::SequenceStart(codec @ CodecConfig::Aac(_)) => {
                track = Some(Track {
                    id: TrackId(2),
                    codec,
                    clock_rate: rate,
                })
            }
            AudioTag::Frame { data, .. } => {
                let pts = tag.timestamp_ms as i64 * rate as i64 / 1000;
                frames.push(Frame {
                    track: TrackId(2),
                    pts,
                    dts: pts,
                    keyframe: true,
                    data,
                });
            }
            _ => {}
        }
    }
    (track.expect("an AAC sequence header"), frames)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Converts `frames` three times; returns the output of the last pass and the best CPU time.
fn convert(source: &Track, frames: &[Frame], to: AudioCodec) -> (Track, Vec<Frame>, Duration) {
    let mut best = Duration::MAX;
    let mut last = (None, Vec::new());
    for _ in 0..3 {
        let start = thread_cpu();
        let mut c = Converter::new(source, to, &AudioSettings::default()).unwrap();
        let mut out = Vec::new();
        for f in frames {
            assert!(!c.push(f, &mut out).corrupt);
        }
        best = best.min(thread_cpu() - start);
        last = (Some(c.output_track()), out);
    }
    (last.0.unwrap(), last.1, best)
}

fn report(what: &str, frames_in: usize, frames_out: usize, cpu: Duration) {
    let share = cpu.as_secs_f64() / SECONDS as f64 * 100.0;
    println!(
        "{what:<34} {frames_in:>6} -> {frames_out:>6} frames  {:>7.1} ms CPU per {SECONDS} s  {share:>5.2} % of one core",
        cpu.as_secs_f64() * 1000.0
    );
}

fn main() {
    println!("audio conversion, stereo, {SECONDS} s of audio per pass, best of 3:");
    let (aac, aac_frames) = aac_source(48_000);
    let (opus, opus_frames, cpu) = convert(&aac, &aac_frames, AudioCodec::Opus);
    report(
        "AAC 48 kHz -> Opus 64 kb/s",
        aac_frames.len(),
        opus_frames.len(),
        cpu,
    );
    let (_, aac_out, cpu) = convert(&opus, &opus_frames, AudioCodec::Aac);
    report(
        "Opus -> AAC-LC 48 kHz 128 kb/s",
        opus_frames.len(),
        aac_out.len(),
        cpu,
    );
    let (aac44, aac44_frames) = aac_source(44_100);
    let (_, out, cpu) = convert(&aac44, &aac44_frames, AudioCodec::Opus);
    report(
        "AAC 44.1 kHz -> Opus (resampled)",
        aac44_frames.len(),
        out.len(),
        cpu,
    );
}
