//! Fuzzes the FLV audio/video tag body parsers (RTMP message bodies from publishers).
//!
//! Invariants checked beyond "no panic": a parsed frame's payload is a slice of the input;
//! parsed configurations re-serialize into tag bodies that parse back to the same config (VP8's
//! from a keyframe: a frame whose header reads gives a `vp08` sequence start that parses back);
//! a `vpcC` (VP8, VP9) that reads writes back as the same record; NAL-length validation agrees
//! with the iterator over NAL units.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_flv::{
    audio_sequence_header, parse_audio, parse_video, video_sequence_header, vp8_sequence_header,
    AudioTag, VideoCodec, VideoTag,
};
use switchyard_media::{nal_units, validate_length_prefixed, vpcc::VpccRecord, CodecConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    if selector & 1 == 0 {
        if let Ok(record) = VpccRecord::parse(&body) {
            assert_eq!(VpccRecord::parse(&record.to_box_payload()), Ok(record));
        }
        match parse_video(body.clone()) {
            Ok((VideoCodec::Vp8, VideoTag::SequenceStart(config))) => {
                assert_eq!(config, CodecConfig::Vp8)
            }
            Ok((_, VideoTag::SequenceStart(config))) => {
                let written =
                    video_sequence_header(&config).expect("parsed video configs are writable");
                let (_, again) = parse_video(written).expect("written header parses");
                // Written records always declare 4-byte NAL lengths (frames are converted on input).
                let mut expected = config;
                if let CodecConfig::H264(c) = &mut expected {
                    c.source_length_size = 4;
                }
                assert_eq!(again, VideoTag::SequenceStart(expected));
            }
            Ok((_, VideoTag::Frame { data, .. })) => {
                if let Some(header) = vp8_sequence_header(&data) {
                    let parsed = parse_video(header).expect("a written vp08 sequence start parses");
                    assert_eq!(
                        parsed,
                        (VideoCodec::Vp8, VideoTag::SequenceStart(CodecConfig::Vp8))
                    );
                }
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
                let written =
                    audio_sequence_header(&config).expect("parsed audio configs are writable");
                let (_, again) = parse_audio(written).expect("written header parses");
                assert_eq!(again, AudioTag::SequenceStart(config));
            }
            Ok((_, AudioTag::Frame { data, .. })) => assert!(body.ends_with(&data)),
            _ => {}
        }
    }
});
