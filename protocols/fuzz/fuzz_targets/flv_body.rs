//! Fuzzes the FLV audio/video tag body parsers (RTMP message bodies from publishers).
//!
//! Invariants checked beyond "no panic": a parsed frame's payload is a slice of the input;
//! parsed configurations re-serialize into tag bodies that parse back to the same config;
//! NAL-length validation agrees with the iterator over NAL units.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_flv::{audio_sequence_header, parse_audio, parse_video, video_sequence_header, AudioTag, VideoTag};
use switchyard_media::{nal_units, validate_length_prefixed, CodecConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    if selector & 1 == 0 {
        match parse_video(body.clone()) {
            Ok((_, VideoTag::SequenceStart(config))) => {
                let written = video_sequence_header(&config).expect("parsed video configs are writable");
                let (_, again) = parse_video(written).expect("written header parses");
                // Written records always declare 4-byte NAL lengths (frames are converted on input).
                let mut expected = config;
                if let CodecConfig::H264(c) = &mut expected {
                    c.source_length_size = 4;
                }
                assert_eq!(again, VideoTag::SequenceStart(expected));
            }
            Ok((_, VideoTag::Frame { data, .. })) => {
                assert!(data.len() < body.len());
                assert!(body.ends_with(&data));
                let iter_ok = nal_units(&data).all(|n| n.is_ok_and(|n| !n.is_empty()));
                assert_eq!(iter_ok, validate_length_prefixed(&data).is_ok());
            }
            _ => {}
        }
    } else {
        match parse_audio(body.clone()) {
            Ok((_, AudioTag::SequenceStart(config))) => {
                let written = audio_sequence_header(&config).expect("parsed audio configs are writable");
                let (_, again) = parse_audio(written).expect("written header parses");
                assert_eq!(again, AudioTag::SequenceStart(config));
            }
            Ok((_, AudioTag::Frame { data, .. })) => assert!(body.ends_with(&data)),
            _ => {}
        }
    }
});
