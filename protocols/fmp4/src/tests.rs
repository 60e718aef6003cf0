use super::*;
use bytes::Bytes;
use mp4_atom::{Any, Decode};
use switchyard_media::{G711Law, Track, TrackId};

fn opus_track(id: u32) -> Track {
    Track {
        id: TrackId(id),
        codec: CodecConfig::Opus {
            channels: 2,
            head: None,
        },
        clock_rate: 48000,
    }
}

fn audio_sample(dts: i64) -> Sample {
    Sample {
        dts,
        pts: dts,
        duration: 960,
        keyframe: true,
        data: Bytes::from_static(&[0xfc, 0xff, 0xfe]),
    }
}

/// The top-level boxes of `bytes`, decoded by mp4-atom.
fn boxes(bytes: &[u8]) -> Vec<Any> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Any::decode(&mut buf).expect("box"));
    }
    out
}

#[test]
fn g711_is_refused_with_the_track_named() {
    let g711 = Track {
        id: TrackId(3),
        codec: CodecConfig::G711 {
            law: G711Law::MuLaw,
            channels: 1,
        },
        clock_rate: 8000,
    };
    assert!(!supports(&g711.codec));
    assert_eq!(
        init_segment(&[opus_track(1), g711.clone()]),
        Err(Fmp4Error::Unsupported {
            track: TrackId(3),
            codec: "pcm_mulaw"
        })
    );
    // mime_type describes what an init segment of the carried tracks would hold.
    assert_eq!(
        mime_type(&[opus_track(1), g711]),
        "audio/mp4; codecs=\"opus\""
    );
}

#[test]
fn unknown_track_in_a_fragment_is_an_error() {
    let frag = TrackFragment {
        track: TrackId(9),
        samples: vec![audio_sample(0)],
    };
    assert_eq!(
        fragment(1, &[frag], &[opus_track(1)]),
        Err(Fmp4Error::UnknownTrack(TrackId(9)))
    );
}

#[test]
fn empty_fragment_is_an_error() {
    let tracks = [opus_track(1)];
    assert_eq!(fragment(1, &[], &tracks), Err(Fmp4Error::EmptyFragment));
    let empty = TrackFragment {
        track: TrackId(1),
        samples: vec![],
    };
    assert_eq!(
        fragment(1, &[empty], &tracks),
        Err(Fmp4Error::EmptyFragment)
    );
}

#[test]
fn negative_decode_time_is_an_error() {
    let frag = TrackFragment {
        track: TrackId(1),
        samples: vec![audio_sample(-960)],
    };
    assert_eq!(
        fragment(1, &[frag], &[opus_track(1)]),
        Err(Fmp4Error::NegativeDecodeTime {
            track: TrackId(1),
            dts: -960
        })
    );
}

#[test]
fn bad_track_lists_are_errors() {
    assert_eq!(init_segment(&[]), Err(Fmp4Error::NoTracks));
    assert_eq!(
        init_segment(&[opus_track(1), opus_track(1)]),
        Err(Fmp4Error::DuplicateTrack(TrackId(1)))
    );
    assert!(matches!(
        init_segment(&[opus_track(0)]),
        Err(Fmp4Error::InvalidTrack { .. })
    ));
    let frag = TrackFragment {
        track: TrackId(1),
        samples: vec![audio_sample(0)],
    };
    assert_eq!(
        fragment(1, &[frag.clone(), frag], &[opus_track(1)]),
        Err(Fmp4Error::DuplicateTrack(TrackId(1)))
    );
}

#[test]
fn opus_without_head_gets_family_0_and_no_pre_skip() {
    let init = init_segment(&[opus_track(1)]).expect("init");
    let Any::Moov(moov) = &boxes(&init)[1] else {
        panic!("no moov")
    };
    let Some(mp4_atom::Codec::Opus(opus)) = moov.trak[0].mdia.minf.stbl.stsd.codecs.first() else {
        panic!("no Opus sample entry")
    };
    assert_eq!(opus.dops.output_channel_count, 2);
    assert_eq!(opus.dops.pre_skip, 0);
    assert_eq!(opus.dops.input_sample_rate, 48000);
    assert_eq!(opus.dops.channel_mapping, None);
    assert_eq!(opus.audio.sample_rate.integer(), 48000);
}

#[test]
fn moov_children_are_in_the_usual_order() {
    let init = init_segment(&[opus_track(1), opus_track(2)]).expect("init");
    // moov body: skip the 8-byte ftyp... header walk over the children instead of decoding.
    let ftyp_len = u32::from_be_bytes(init[..4].try_into().expect("4 bytes")) as usize;
    let moov = &init[ftyp_len + 8..];
    let mut kinds = Vec::new();
    let mut rest = moov;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        kinds.push(String::from_utf8_lossy(&rest[4..8]).into_owned());
        rest = &rest[len..];
    }
    assert_eq!(kinds, ["mvhd", "trak", "trak", "mvex"]);
}

#[test]
fn vp8_vp9_av1_sample_entries_wait_for_a_keyframe_and_name_their_codecs() {
    let track = |codec| Track {
        id: TrackId(1),
        codec,
        clock_rate: 90000,
    };
    // vpcC of libvpx-vp9 for 426x240 (fixtures/ffmpeg9-vp9-426x240.ivf): profile 0,
    // level 2.0, 8-bit 4:2:0.
    let vp9 = track(CodecConfig::Vp9 {
        vpcc: Bytes::from_static(&[1, 0, 0, 0, 0, 20, 0x82, 2, 2, 2, 0, 0]),
    });
    let vp8 = track(CodecConfig::Vp8);
    // FFmpeg's Enhanced RTMP av1C: no configOBUs, so no size either.
    let av1 = track(CodecConfig::Av1 {
        av1c: Bytes::from_static(&[0x81, 0x00, 0x0c, 0x00]),
    });
    for t in [&vp8, &vp9, &av1] {
        assert!(supports(&t.codec) && needs_keyframe(t));
        assert!(matches!(
            init_segment(std::slice::from_ref(t)),
            Err(Fmp4Error::InvalidTrack { .. })
        ));
    }
    assert_eq!(
        mime_type(&[vp8, opus_track(2)]),
        "video/mp4; codecs=\"vp08.00.41.08,opus\""
    );
    assert_eq!(mime_type(&[vp9]), "video/mp4; codecs=\"vp09.00.20.08\"");
    assert_eq!(mime_type(&[av1]), "video/mp4; codecs=\"av01.0.00M.08\"");
}
