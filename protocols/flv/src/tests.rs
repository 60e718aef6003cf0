use super::*;
use crate::file::read_tags;
use switchyard_media::{h264, validate_length_prefixed};

fn fixture(name: &str) -> Bytes {
    let path = format!("{}/../../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn ffmpeg_high_profile_with_b_frames_parses() {
    let tags = read_tags(&fixture("ffmpeg-h264-high-bf2-aac.flv")).unwrap();
    let mut config = None;
    let mut frames = 0;
    let mut negative_or_positive_cts = 0;
    let mut audio_frames = 0;
    let mut asc = None;
    for tag in tags {
        match tag.tag_type {
            9 => match parse_video(tag.body).unwrap() {
                (VideoCodec::H264, VideoTag::SequenceStart(CodecConfig::H264(c))) => {
                    config = Some(c)
                }
                (
                    VideoCodec::H264,
                    VideoTag::Frame {
                        keyframe,
                        composition_ms,
                        data,
                    },
                ) => {
                    validate_length_prefixed(&data).unwrap();
                    assert_eq!(keyframe, h264::is_keyframe(&data));
                    if frames == 0 {
                        assert!(keyframe, "first frame is an IDR");
                    }
                    if composition_ms != 0 {
                        negative_or_positive_cts += 1;
                    }
                    frames += 1;
                }
                (_, VideoTag::SequenceEnd) => {}
                other => panic!("unexpected {other:?}"),
            },
            8 => match parse_audio(tag.body).unwrap() {
                (AudioCodec::Aac, AudioTag::SequenceStart(CodecConfig::Aac(c))) => asc = Some(c),
                (AudioCodec::Aac, AudioTag::Frame { data, .. }) => {
                    assert!(!data.is_empty());
                    audio_frames += 1;
                }
                other => panic!("unexpected {other:?}"),
            },
            _ => {}
        }
    }
    let config = config.expect("AVC sequence header");
    assert_eq!((config.sps.width, config.sps.height), (640, 360));
    assert_eq!(config.rfc6381_codec(), "avc1.64001E");
    assert_eq!(config.source_length_size, 4);
    assert_eq!(frames, 25);
    assert!(
        negative_or_positive_cts > 0,
        "B-frames give composition offsets"
    );
    let asc = asc.expect("AAC sequence header");
    assert_eq!((asc.sample_rate, asc.channels), (44100, 2));
    assert!(audio_frames >= 40);
}

#[test]
fn multi_slice_frames_keep_every_slice() {
    let tags = read_tags(&fixture("ffmpeg-h264-baseline-4slices.flv")).unwrap();
    let mut checked = 0;
    for tag in tags.into_iter().filter(|t| t.tag_type == 9) {
        if let (_, VideoTag::Frame { data, .. }) = parse_video(tag.body).unwrap() {
            let slices = switchyard_media::nal_units(&data)
                .filter(|n| {
                    matches!(
                        h264::nal_type(n.as_ref().unwrap()),
                        h264::NAL_IDR | h264::NAL_SLICE
                    )
                })
                .count();
            assert!(
                slices > 1,
                "every frame of this capture has several slices, got {slices}"
            );
            checked += 1;
        }
    }
    assert!(checked > 5);
}

#[test]
fn written_headers_parse_back() {
    let tags = read_tags(&fixture("ffmpeg-h264-high-bf2-aac.flv")).unwrap();
    let seq = tags.iter().find(|t| t.tag_type == 9).unwrap();
    let (_, VideoTag::SequenceStart(cfg)) = parse_video(seq.body.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(
        parse_video(video_sequence_header(&cfg).unwrap()).unwrap().1,
        VideoTag::SequenceStart(cfg.clone())
    );
    let (h, n) = video_frame_header(&cfg, true, -40).unwrap();
    let body: Bytes = [&h[..n], &[0, 0, 0, 1, 0x65][..]].concat().into();
    assert_eq!(
        parse_video(body).unwrap().1,
        VideoTag::Frame {
            keyframe: true,
            composition_ms: -40,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65])
        }
    );
    let aac = tags.iter().find(|t| t.tag_type == 8).unwrap();
    let (_, AudioTag::SequenceStart(acfg)) = parse_audio(aac.body.clone()).unwrap() else {
        panic!()
    };
    assert_eq!(
        parse_audio(audio_sequence_header(&acfg).unwrap())
            .unwrap()
            .1,
        AudioTag::SequenceStart(acfg)
    );
}

#[test]
fn enhanced_rtmp_hevc_and_opus() {
    let mut hvcc = vec![
        0x90, b'h', b'v', b'c', b'1', 1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93,
    ];
    hvcc.resize(5 + 23, 0);
    let (codec, tag) = parse_video(Bytes::from(hvcc)).unwrap();
    assert_eq!(codec, VideoCodec::H265);
    let VideoTag::SequenceStart(cfg) = tag else {
        panic!()
    };
    assert_eq!(cfg.rfc6381_codec(), "hvc1.1.6.L93.90");
    let frame = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 33, 0, 0, 0, 1, 0x26]);
    assert_eq!(
        parse_video(frame).unwrap().1,
        VideoTag::Frame {
            keyframe: true,
            composition_ms: 33,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x26])
        }
    );
    let x = Bytes::from_static(&[0xa3, b'a', b'v', b'0', b'1', 0x12, 0]);
    assert_eq!(
        parse_video(x).unwrap(),
        (
            VideoCodec::Av1,
            VideoTag::Frame {
                keyframe: false,
                composition_ms: 0,
                data: Bytes::from_static(&[0x12, 0])
            }
        )
    );
    let mut head = vec![0x90, b'O', b'p', b'u', b's'];
    head.extend_from_slice(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00");
    let (codec, tag) = parse_audio(Bytes::from(head)).unwrap();
    assert_eq!(codec, AudioCodec::Opus);
    assert!(matches!(
        tag,
        AudioTag::SequenceStart(CodecConfig::Opus { channels: 2, .. })
    ));
}

#[test]
fn malformed_bodies_are_errors() {
    assert!(parse_video(Bytes::new()).is_err());
    assert!(parse_video(Bytes::from_static(&[0x17, 0])).is_err());
    assert!(
        parse_video(Bytes::from_static(&[0x12, 0, 0, 0, 0])).is_err(),
        "Sorenson H.263"
    );
    assert!(parse_video(Bytes::from_static(&[0x90, b'x', b'y'])).is_err());
    assert!(parse_video(Bytes::from_static(&[0x90, b'w', b'h', b'a', b't'])).is_err());
    // AVC sequence header whose SPS is garbage.
    assert!(matches!(
        parse_video(Bytes::from_static(&[
            0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0xff, 0xff, 0xff, 1, 0, 1,
            0x68
        ])),
        Err(FlvError::Codec(_))
    ));
    assert!(parse_audio(Bytes::from_static(&[0xaf])).is_err());
    assert!(parse_audio(Bytes::from_static(&[0xaf, 0, 0xf8, 0])).is_err());
    assert!(
        parse_audio(Bytes::from_static(&[0x2f, 1, 2])).is_err(),
        "MP3 is not carried"
    );
    assert!(parse_audio(Bytes::from_static(&[0x90, b'O', b'p', b'u', b's', 1, 2])).is_err());
}

#[test]
fn ffmpeg9_enhanced_rtmp_hevc_and_opus_parse() {
    let tags = read_tags(&fixture("ffmpeg9-hevc-opus.flv")).unwrap();
    let (mut video, mut audio, mut configs) = (0, 0, Vec::new());
    for tag in tags {
        match tag.tag_type {
            9 => match parse_video(tag.body).unwrap() {
                (VideoCodec::H265, VideoTag::SequenceStart(c)) => configs.push(c.rfc6381_codec()),
                (VideoCodec::H265, VideoTag::Frame { data, .. }) => {
                    validate_length_prefixed(&data).unwrap();
                    video += 1;
                }
                (_, VideoTag::SequenceEnd | VideoTag::Ignored(_)) => {}
                other => panic!("unexpected {other:?}"),
            },
            8 => match parse_audio(tag.body).unwrap() {
                (AudioCodec::Opus, AudioTag::SequenceStart(c)) => {
                    assert!(matches!(c, CodecConfig::Opus { channels: 2, .. }));
                    configs.push(c.rfc6381_codec());
                }
                (AudioCodec::Opus, AudioTag::Frame { data, .. }) => {
                    assert!(!data.is_empty());
                    audio += 1;
                }
                (_, AudioTag::SequenceEnd | AudioTag::Ignored(_)) => {}
                other => panic!("unexpected {other:?}"),
            },
            _ => {}
        }
    }
    assert_eq!(configs, vec!["hvc1.1.6.L60.90", "opus"]);
    assert_eq!(video, 10);
    assert!(audio >= 19);
}

#[test]
fn ffmpeg9_enhanced_rtmp_av1_parses() {
    let tags = read_tags(&fixture("ffmpeg9-av1.flv")).unwrap();
    let mut frames = Vec::new();
    let mut config = None;
    for tag in tags.into_iter().filter(|t| t.tag_type == 9) {
        match parse_video(tag.body).unwrap() {
            (VideoCodec::Av1, VideoTag::SequenceStart(c)) => config = Some(c),
            (VideoCodec::Av1, VideoTag::Frame { keyframe, data, .. }) => {
                frames.push((keyframe, data.len()))
            }
            (_, VideoTag::SequenceEnd | VideoTag::Ignored(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(config.unwrap().rfc6381_codec(), "av01.0.00M.08");
    assert_eq!(frames.len(), 10);
    assert!(frames[0].0, "starts with a keyframe");
}

#[test]
fn ffmpeg9_enhanced_rtmp_vp9_parses_with_its_vpcc() {
    let tags = read_tags(&fixture("ffmpeg9-vp9.flv")).unwrap();
    let (mut frames, mut config, mut ignored) = (Vec::new(), None, 0);
    for tag in tags.into_iter().filter(|t| t.tag_type == 9) {
        match parse_video(tag.body).unwrap() {
            (VideoCodec::Vp9, VideoTag::SequenceStart(c)) => config = Some(c),
            (VideoCodec::Vp9, VideoTag::Frame { keyframe, data, .. }) => {
                frames.push((keyframe, data))
            }
            (_, VideoTag::Ignored(_)) => ignored += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let config = config.expect("vp09 sequence start");
    assert_eq!(config.rfc6381_codec(), "vp09.00.20.08");
    let CodecConfig::Vp9 { vpcc } = &config else {
        panic!("{config:?}")
    };
    assert_eq!(&vpcc[..], &[1, 0, 0, 0, 0, 20, 0x82, 2, 2, 2, 0, 0]);
    assert_eq!(ignored, 1, "the colorInfo metadata packet");
    assert_eq!(frames.len(), 5);
    assert!(frames[0].0 && !frames[1].0);
    assert_eq!(
        config.keyframe_resolution(&frames[0].1),
        Some((320, 240)),
        "frames are the bare VP9 bitstream"
    );
    // Our writer gives the same sequence start back.
    assert_eq!(
        parse_video(video_sequence_header(&config).unwrap())
            .unwrap()
            .1,
        VideoTag::SequenceStart(config)
    );
}

/// FFmpeg 9.0.2 + libvpx, 426x240 (fixtures/README.md): a keyframe and an inter frame.
fn vp8_fixture_frames() -> Vec<Bytes> {
    let ivf = fixture("ffmpeg9-vp8-426x240.ivf");
    let mut rest = ivf.slice(32..);
    let mut frames = Vec::new();
    while rest.len() >= 12 {
        let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push(rest.slice(12..12 + n));
        rest = rest.slice(12 + n..);
    }
    frames
}

#[test]
fn enhanced_rtmp_vp8_round_trips() {
    let frames = vp8_fixture_frames();
    let header = vp8_sequence_header(&frames[0]).expect("a keyframe");
    assert_eq!(
        &header[..],
        &[0x90, b'v', b'p', b'0', b'8', 1, 0, 0, 0, 0, 20, 0x82, 2, 2, 6, 0, 0]
    );
    assert_eq!(vp8_sequence_header(&frames[1]), None, "an inter frame");
    assert_eq!(
        parse_video(header).unwrap(),
        (VideoCodec::Vp8, VideoTag::SequenceStart(CodecConfig::Vp8))
    );
    assert_eq!(video_sequence_header(&CodecConfig::Vp8), None);
    assert!(carries_video(&CodecConfig::Vp8));
    for (i, frame) in frames.iter().enumerate() {
        let keyframe = i == 0;
        let (h, n) = video_frame_header(&CodecConfig::Vp8, keyframe, 0).unwrap();
        assert_eq!(
            &h[..n],
            &[if keyframe { 0x91 } else { 0xa1 }, b'v', b'p', b'0', b'8']
        );
        let body: Bytes = [&h[..n], &frame[..]].concat().into();
        assert_eq!(
            parse_video(body).unwrap(),
            (
                VideoCodec::Vp8,
                VideoTag::Frame {
                    keyframe,
                    composition_ms: 0,
                    data: frame.clone()
                }
            )
        );
    }
    // CodedFramesX (packet type 3) is the same without a composition time.
    let x: Bytes = [&[0xa3, b'v', b'p', b'0', b'8'][..], &frames[1][..]]
        .concat()
        .into();
    assert!(matches!(
        parse_video(x).unwrap(),
        (
            VideoCodec::Vp8,
            VideoTag::Frame {
                keyframe: false,
                ..
            }
        )
    ));
}

#[test]
fn vp8_and_vp9_sequence_starts_take_bare_records_and_refuse_bad_ones() {
    let bare = [0x90, b'v', b'p', b'0', b'8', 0, 20, 0x82, 2, 2, 6, 0, 0];
    assert_eq!(
        parse_video(Bytes::copy_from_slice(&bare)).unwrap().1,
        VideoTag::SequenceStart(CodecConfig::Vp8)
    );
    let mut bare9 = bare;
    bare9[4] = b'9';
    assert_eq!(
        parse_video(Bytes::copy_from_slice(&bare9)).unwrap().1,
        VideoTag::SequenceStart(CodecConfig::Vp9 {
            vpcc: Bytes::from_static(&[1, 0, 0, 0, 0, 20, 0x82, 2, 2, 6, 0, 0])
        }),
        "stored as the box payload"
    );
    for bad in [
        &[0x90, b'v', b'p', b'0', b'8'][..],
        &[0x90, b'v', b'p', b'0', b'8', 1, 0, 0, 0, 0, 20],
        &[
            0x90, b'v', b'p', b'0', b'8', 1, 0, 0, 0, 0, 20, 0xa2, 2, 2, 6, 0, 0,
        ],
        &[
            0x90, b'v', b'p', b'0', b'9', 1, 0, 0, 0, 7, 20, 0x82, 2, 2, 6, 0, 0,
        ],
        &[
            0x90, b'v', b'p', b'0', b'9', 1, 0, 0, 0, 0, 20, 0x82, 2, 2, 6, 0, 9,
        ],
    ] {
        assert!(
            matches!(
                parse_video(Bytes::copy_from_slice(bad)),
                Err(FlvError::Codec(_)) | Err(FlvError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
}
