//! Fuzzes the picture-size readers of VP8 (RFC 6386 9.1), VP9 (uncompressed header, VP9 6.2)
//! and AV1 (OBUs and the sequence header, AV1 5.3 and 5.5) and the fMP4 init segment built
//! from them. The first byte picks the codec; the rest is a keyframe (for AV1 also an av1C's
//! configOBUs). Invariants: sizes are within what each header can code and never 0; a size
//! read from the keyframe is the one the sample entry gets; the init segment parses back.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mp4_atom::{Any, Decode};
use switchyard_media::av1::{self, Av1SequenceInfo};
use switchyard_media::vp8::Vp8KeyframeInfo;
use switchyard_media::vp9::Vp9KeyframeInfo;
use switchyard_media::{CodecConfig, Frame, Track, TrackId};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let codec = match pick % 3 {
        0 => {
            if let Some(i) = Vp8KeyframeInfo::parse(rest) {
                assert!((1..=0x3fff).contains(&i.width) && (1..=0x3fff).contains(&i.height));
                assert!(i.profile < 8);
            }
            CodecConfig::Vp8
        }
        1 => {
            let info = Vp9KeyframeInfo::parse(rest);
            if let Some(i) = info {
                assert!((1..=65536).contains(&i.width) && (1..=65536).contains(&i.height));
                assert_eq!(i.vpcc().len(), 12);
            }
            CodecConfig::Vp9 {
                vpcc: info.map_or_else(
                    || Bytes::from_static(&[1, 0, 0, 0, 0, 10, 0x82, 2, 2, 2, 0, 0]),
                    |i| i.vpcc(),
                ),
            }
        }
        _ => {
            if let Some(seq) = av1::sequence_header(rest) {
                if let Some(i) = Av1SequenceInfo::parse(seq) {
                    assert!(i.max_width >= 1 && i.max_height >= 1);
                    assert!(
                        u64::from(i.max_width) <= 1 << 16 && u64::from(i.max_height) <= 1 << 16
                    );
                }
            }
            // Half the time the input is also the av1C's configOBUs.
            let mut av1c = vec![0x81, 0, 0x0c, 0];
            if pick & 0x80 != 0 {
                av1c.extend_from_slice(rest);
            }
            CodecConfig::Av1 {
                av1c: Bytes::from(av1c),
            }
        }
    };
    let track = Track {
        id: TrackId(1),
        codec,
        clock_rate: 90000,
    };
    let keyframe = Frame {
        track: TrackId(1),
        pts: 0,
        dts: 0,
        keyframe: true,
        data: Bytes::copy_from_slice(rest),
    };
    let expected = track.codec.keyframe_resolution(rest);
    match switchyard_fmp4::init_segment_with_keyframes(&[track.clone()], &[&keyframe]) {
        Ok(init) => {
            let mut buf = &init[..];
            let _ftyp = Any::decode(&mut buf).expect("ftyp");
            let Any::Moov(moov) = Any::decode(&mut buf).expect("moov") else {
                panic!("no moov");
            };
            let entry = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0];
            let visual = entry.visual().expect("a visual sample entry");
            let (w, h) = expected.expect("a size when the init segment was built");
            assert_eq!(
                (u32::from(visual.width), u32::from(visual.height)),
                (w.min(65535), h.min(65535))
            );
        }
        // The records given here always parse: only a missing size stops it.
        Err(e) => assert!(expected.is_none(), "{e}"),
    }
});
