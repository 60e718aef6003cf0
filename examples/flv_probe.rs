//! Reads an FLV file (as recorded by `ffmpeg -f flv`, or any RTMP capture saved as FLV) with
//! Switchyard's protocol crates and prints its tracks and a summary of its frames: what the
//! RTMP input sees when the same bytes arrive from a publisher.
//!
//! ```sh
//! cargo run --example flv_probe -- fixtures/ffmpeg-h264-high-bf2-aac.flv
//! ```

use bytes::Bytes;
use switchyard_flv::{file::read_tags, parse_audio, parse_video, AudioTag, VideoTag};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: flv_probe FILE.flv")?;
    let file = Bytes::from(std::fs::read(&path)?);
    let (mut video, mut keyframes, mut b_frames, mut audio) = (0, 0, 0, 0);
    for tag in read_tags(&file)? {
        match tag.tag_type {
            9 => match parse_video(tag.body)?.1 {
                VideoTag::SequenceStart(config) => {
                    let size = config
                        .resolution()
                        .map(|(w, h)| format!(" {w}x{h}"))
                        .unwrap_or_default();
                    println!(
                        "video: {} ({}){size}",
                        config.name(),
                        config.rfc6381_codec()
                    );
                }
                VideoTag::Frame {
                    keyframe,
                    composition_ms,
                    ..
                } => {
                    video += 1;
                    keyframes += usize::from(keyframe);
                    b_frames += usize::from(composition_ms != 0);
                }
                _ => {}
            },
            8 => match parse_audio(tag.body)?.1 {
                AudioTag::SequenceStart(config) => {
                    println!("audio: {} ({})", config.name(), config.rfc6381_codec())
                }
                AudioTag::Frame { .. } => audio += 1,
                _ => {}
            },
            _ => {}
        }
    }
    println!("{video} video frames ({keyframes} keyframes, {b_frames} with composition offsets), {audio} audio frames");
    Ok(())
}
