//! Our fragments parsed back with mp4-atom: the offsets and sizes a demuxer follows
//! (ISO/IEC 14496-12 8.8) point exactly at the samples we put in.

mod support;

use mp4_atom::{Any, Atom, Codec, Decode, Header};
use support::{fragments, load, AUDIO, VIDEO};
use switchyard_fmp4::{fragment, init_segment, mime_type, Sample};
use switchyard_media::CodecConfig;

#[test]
fn trun_offsets_and_sizes_point_at_the_samples_in_the_mdat() {
    for name in ["ffmpeg-h264-high-bf2-aac.flv", "ffmpeg9-hevc-opus.flv"] {
        let capture = load(name);
        for (i, frags) in fragments(&capture, 200).iter().enumerate() {
            let seq = i as u32 + 1;
            let bytes = fragment(seq, frags, &capture.tracks).expect("fragment");

            let mut buf = &bytes[..];
            let Any::Moof(moof) = Any::decode(&mut buf).expect("moof") else {
                panic!("fragment does not start with a moof")
            };
            let moof_len = bytes.len() - buf.len();
            let header = Header::decode(&mut buf).expect("mdat header");
            assert_eq!(header.kind, mp4_atom::Mdat::KIND);
            let payload_start = bytes.len() - buf.len();
            assert_eq!(header.size, Some(buf.len()), "mdat runs to the end");

            assert_eq!(moof.mfhd.sequence_number, seq);
            let carried: Vec<_> = frags.iter().filter(|f| !f.samples.is_empty()).collect();
            assert_eq!(moof.traf.len(), carried.len());
            let mut expected_offset = payload_start;
            let mut total = 0usize;
            for (traf, frag) in moof.traf.iter().zip(carried) {
                assert_eq!(traf.tfhd.track_id, frag.track.0);
                assert!(traf.tfhd.default_base_is_moof);
                assert_eq!(traf.tfhd.base_data_offset, None);
                let tfdt = traf.tfdt.as_ref().expect("tfdt");
                assert_eq!(tfdt.base_media_decode_time as i64, frag.samples[0].dts);
                let [trun] = &traf.trun[..] else {
                    panic!("one trun per traf")
                };
                // default-base-is-moof: the offset counts from the moof's first byte.
                let offset = trun.data_offset.expect("data offset") as usize;
                assert_eq!(offset, expected_offset);
                assert!(offset >= moof_len + 8);

                let entries: Vec<_> = trun.samples.iter().collect();
                assert_eq!(entries.len(), frag.samples.len());
                let mut pos = offset;
                let mut decode_time = frag.samples[0].dts;
                for (e, s) in entries.iter().zip(&frag.samples) {
                    let size = e.size.expect("sample size") as usize;
                    assert_eq!(&bytes[pos..pos + size], &s.data[..]);
                    assert_eq!(e.duration, Some(s.duration));
                    let cts = e.cts.unwrap_or(0);
                    assert_eq!(decode_time + cts, s.pts, "presentation time");
                    let flags = e.flags.expect("flags");
                    let sync = flags & 0x0001_0000 == 0;
                    let audio = frag.track == AUDIO;
                    assert_eq!(sync, audio || s.keyframe);
                    pos += size;
                    decode_time += s.duration as i64;
                }
                total += pos - offset;
                expected_offset = pos;
            }
            assert_eq!(
                total,
                bytes.len() - payload_start,
                "trun sizes = mdat payload"
            );
        }
    }
}

#[test]
fn b_frames_get_signed_composition_offsets_in_trun_version_1() {
    let capture = load("ffmpeg-h264-high-bf2-aac.flv");
    let video: Vec<Sample> = capture.video[..8].to_vec();
    let frags = [switchyard_fmp4::TrackFragment {
        track: VIDEO,
        samples: video,
    }];
    let bytes = fragment(7, &frags, &capture.tracks).expect("fragment");
    let trun = bytes
        .windows(4)
        .position(|w| w == b"trun")
        .expect("trun box");
    assert_eq!(bytes[trun + 4], 1, "trun version");
    let flags = u32::from_be_bytes([0, bytes[trun + 5], bytes[trun + 6], bytes[trun + 7]]);
    // data-offset, sample duration, size, flags and composition time offset present.
    assert_eq!(flags, 0x000f01);
}

#[test]
fn init_segment_keeps_the_decoder_configs() {
    let h264 = load("ffmpeg-h264-high-bf2-aac.flv");
    let init = init_segment(&h264.tracks).expect("init");
    let mut buf = &init[..];
    let Any::Ftyp(ftyp) = Any::decode(&mut buf).expect("ftyp") else {
        panic!("no ftyp")
    };
    assert_eq!(ftyp.major_brand, b"iso6".into());
    let Any::Moov(moov) = Any::decode(&mut buf).expect("moov") else {
        panic!("no moov")
    };
    assert!(buf.is_empty());
    let mvex = moov.mvex.as_ref().expect("mvex");
    assert_eq!(
        mvex.trex.iter().map(|t| t.track_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(mvex
        .trex
        .iter()
        .all(|t| t.default_sample_description_index == 1));

    let [video, audio] = &moov.trak[..] else {
        panic!("two traks")
    };
    assert_eq!(video.mdia.mdhd.timescale, 90000);
    assert_eq!(audio.mdia.mdhd.timescale, 44100);
    let Some(Codec::Avc1(avc1)) = video.mdia.minf.stbl.stsd.codecs.first() else {
        panic!("no avc1")
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
    assert_eq!(video.tkhd.width.integer(), 640);
    let CodecConfig::H264(avc) = &h264.tracks[0].codec else {
        panic!("H.264 track")
    };
    let mut avcc = Vec::new();
    mp4_atom::Encode::encode(&avc1.avcc, &mut avcc).expect("avcC");
    assert_eq!(
        &avcc[8..],
        &avc.record[..],
        "avcC is the record as received"
    );

    let Some(Codec::Mp4a(mp4a)) = audio.mdia.minf.stbl.stsd.codecs.first() else {
        panic!("no mp4a")
    };
    let CodecConfig::Aac(asc) = &h264.tracks[1].codec else {
        panic!("AAC track")
    };
    let dsi = mp4a
        .esds
        .es_desc
        .dec_config
        .dec_specific
        .as_ref()
        .expect("ASC");
    assert_eq!(dsi.raw, asc.bytes.to_vec());
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_rate.integer(), 44100);
    assert_eq!(
        mime_type(&h264.tracks),
        "video/mp4; codecs=\"avc1.64001E,mp4a.40.2\""
    );

    // HEVC from Enhanced RTMP has no size in its config: it comes from the SPS.
    let hevc = load("ffmpeg9-hevc-opus.flv");
    let init = init_segment(&hevc.tracks).expect("init");
    let mut buf = &init[..];
    Any::decode(&mut buf).expect("ftyp");
    let Any::Moov(moov) = Any::decode(&mut buf).expect("moov") else {
        panic!("no moov")
    };
    let Some(Codec::Hvc1(hvc1)) = moov.trak[0].mdia.minf.stbl.stsd.codecs.first() else {
        panic!("no hvc1")
    };
    assert_eq!((hvc1.visual.width, hvc1.visual.height), (320, 240));
    assert_eq!(hvc1.hvcc.length_size_minus_one, 3);
    let Some(Codec::Opus(opus)) = moov.trak[1].mdia.minf.stbl.stsd.codecs.first() else {
        panic!("no Opus")
    };
    assert_eq!(opus.dops.output_channel_count, 2);
    assert_eq!(opus.dops.pre_skip, 312, "pre-skip from libopus's OpusHead");
    assert_eq!(opus.dops.channel_mapping, None);
}
