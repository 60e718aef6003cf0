//! Tests of the H.264 depacketizer and packetizer against captures of real senders
//! (GStreamer, OBS, ffmpeg, Chromium) and hand-built packets.

use super::*;
use crate::reorder::ReorderBuffer;
use crate::test_rng::xorshift;
use crate::testutil::{read_rfc4571, Captured};
use switchyard_media::h264::AvcConfig;
use switchyard_media::{annexb_nal_units, nal_units, validate_length_prefixed};

const SPS: &[u8] = &[
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

const GST_STAP_A: &[u8] = include_bytes!("../../testdata/gst-stap-a.rtp");
const GST_SINGLE_NAL: &[u8] = include_bytes!("../../testdata/gst-single-nal.rtp");
const GST_ES: &[u8] = include_bytes!("../../testdata/gst.h264");

fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> PacketRef<'_> {
    PacketRef {
        sequence,
        timestamp,
        marker,
        payload,
    }
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x78];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn fu_a(nal: &[u8], start: bool, end: bool, body: &[u8]) -> Vec<u8> {
    let mut p = vec![
        (nal[0] & 0xe0) | 28,
        (nal[0] & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
    ];
    p.extend_from_slice(body);
    p
}

/// 4-byte length-prefixed form of `nals`.
fn avcc(nals: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    Bytes::from(out)
}

/// A NAL unit of type `header` with `len` bytes in all, none of them a start code.
fn nal_of(header: u8, len: usize) -> Vec<u8> {
    std::iter::once(header)
        .chain((1..len).map(|i| (i % 251) as u8 | 1))
        .collect()
}

fn depacketize(packets: &[Captured]) -> Vec<H264AccessUnit> {
    let mut d = H264Depacketizer::default();
    crate::testutil::depacketize_all(packets, 64, |p, lost, out| d.push(p, lost, out))
}

/// Checks access units against the encoder's elementary stream: the same NAL units in the
/// same order (without SPS, PPS, AUD), 12 frames with IDRs at 0 and 6.
fn assert_matches_elementary_stream(aus: &[H264AccessUnit]) {
    let expected: Vec<&[u8]> = annexb_nal_units(GST_ES)
        .into_iter()
        .filter(|n| !matches!(nal_type(n), NAL_SPS | NAL_PPS | NAL_AUD))
        .collect();
    let got: Vec<&[u8]> = aus
        .iter()
        .flat_map(|au| nal_units(&au.data).map(Result::unwrap))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "NAL units differ from the elementary stream"
    );
    let keyframes: Vec<usize> = (0..aus.len()).filter(|&i| aus[i].keyframe).collect();
    assert_eq!((aus.len(), keyframes), (12, vec![0, 6]));
    // 25 fps at 90 kHz.
    for pair in aus.windows(2) {
        assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 3600);
    }
    let (sps, pps) = aus[0].parameter_sets.clone().expect("parameter sets first");
    assert!(aus[1..].iter().all(|au| au.parameter_sets.is_none()));
    let es_sps = annexb_nal_units(GST_ES)
        .into_iter()
        .find(|n| nal_type(n) == NAL_SPS);
    assert_eq!(Some(&sps[..]), es_sps);
    let config = AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap();
    assert_eq!((config.sps.width, config.sps.height), (320, 240));
}

#[test]
fn gstreamer_stap_a_capture_gives_the_encoded_stream() {
    assert_matches_elementary_stream(&depacketize(&read_rfc4571(GST_STAP_A)));
}

#[test]
fn gstreamer_single_nal_capture_gives_the_encoded_stream() {
    // SPS, PPS and AUD each in their own packet, as OBS and ffmpeg send them.
    assert_matches_elementary_stream(&depacketize(&read_rfc4571(GST_SINGLE_NAL)));
}

#[test]
fn sequence_numbers_and_timestamps_wrap_around() {
    let mut packets = read_rfc4571(GST_STAP_A);
    // Both counters wrap in the middle of the capture (packet 40 / frame 5).
    let (seq0, ts0) = (packets[40].sequence, packets[40].timestamp);
    for p in &mut packets {
        p.sequence = p.sequence.wrapping_sub(seq0);
        p.timestamp = p.timestamp.wrapping_sub(ts0);
    }
    assert!(packets[0].timestamp > u32::MAX - 20 * 3600);
    let aus = depacketize(&packets);
    assert_matches_elementary_stream(&aus);
    assert!(aus.iter().any(|au| au.timestamp == 0));
}

#[test]
fn reordered_packets_give_the_same_access_units() {
    let in_order = depacketize(&read_rfc4571(GST_SINGLE_NAL));
    let mut packets = read_rfc4571(GST_SINGLE_NAL);
    let mut rng = 7u64;
    // Shuffle runs of 8 packets, as a network with several paths does (the first packet
    // stays first: it sets where the sequence starts).
    for run in packets[1..].chunks_mut(8) {
        for i in (1..run.len()).rev() {
            run.swap(i, (xorshift(&mut rng) % (i as u64 + 1)) as usize);
        }
    }
    assert!(packets.windows(2).any(|w| w[1].sequence < w[0].sequence));
    let reordered = depacketize(&packets);
    assert!(reordered == in_order, "access units differ");
}

#[test]
fn loss_inside_a_fragmented_idr_resumes_at_the_next_idr() {
    let mut packets = read_rfc4571(GST_STAP_A);
    // Packet 5 is one of the first IDR's FU-A fragments.
    assert_eq!(packets[5].payload[0] & 0x1f, FU_A);
    assert_eq!(packets[5].payload[1] & 0x1f, NAL_IDR);
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    let mut waiting = Vec::new();
    let lost = packets.remove(5);
    for p in &packets {
        let gap = p.sequence.wrapping_sub(lost.sequence) == 1;
        d.push(p.packet(), u16::from(gap), &mut out).unwrap();
        waiting.push(d.waiting_for_keyframe());
    }
    // Frames 0-5 are gone (the damaged IDR and the P frames that refer to it).
    assert_eq!(out.len(), 6);
    assert!(out[0].keyframe);
    assert_eq!(
        out[0].timestamp,
        packets.last().unwrap().timestamp - 5 * 3600
    );
    assert!(waiting[5..].iter().take(10).all(|&w| w));
    assert!(!waiting.last().unwrap());
    // The parameter sets came before the loss; they still go with the first frame out.
    assert!(out[0].parameter_sets.is_some());
}

#[test]
fn stap_a_and_fu_a_make_one_access_unit_with_parameters_out_of_band() {
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    assert!(d.waiting_for_keyframe());
    d.push(packet(1, 0, false, &stap_a(&[SPS, PPS])), 0, &mut out)
        .unwrap();
    // IDR slice split in three FU-A fragments.
    let idr = nal_of(0x65, 201);
    d.push(
        packet(2, 0, false, &fu_a(&idr, true, false, &idr[1..80])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(
        packet(3, 0, false, &fu_a(&idr, false, false, &idr[80..150])),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    d.push(
        packet(4, 0, true, &fu_a(&idr, false, true, &idr[150..])),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert!(!d.waiting_for_keyframe());
    let au = &out[0];
    assert!(au.keyframe);
    assert_eq!(au.data, avcc(&[&idr]));
    let (sps, pps) = au.parameter_sets.clone().unwrap();
    assert_eq!((&sps[..], &pps[..]), (SPS, PPS));

    // A P slice without marker ends when the timestamp changes; repeated SPS/PPS are no
    // change.
    out.clear();
    d.push(packet(5, 3000, false, &stap_a(&[SPS, PPS])), 0, &mut out)
        .unwrap();
    d.push(packet(6, 3000, false, &[0x41, 0x9a, 0x02]), 0, &mut out)
        .unwrap();
    assert!(out.is_empty());
    d.push(packet(7, 6000, true, &[0x41, 0x9a, 0x04]), 0, &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].timestamp, 3000);
    assert_eq!(out[0].data, avcc(&[&[0x41, 0x9a, 0x02]]));
    assert!(!out[0].keyframe && out[0].parameter_sets.is_none());
    assert_eq!(out[1].timestamp, 6000);

    // New parameter sets go with the next access unit.
    let mut sps2 = SPS.to_vec();
    sps2[3] = 0x1f;
    out.clear();
    d.push(packet(8, 9000, false, &sps2), 0, &mut out).unwrap();
    d.push(packet(9, 9000, false, PPS), 0, &mut out).unwrap();
    d.push(packet(10, 9000, true, &[0x65, 0x88, 0x84]), 0, &mut out)
        .unwrap();
    assert_eq!(out[0].parameter_sets.as_ref().unwrap().0, sps2);
}

#[test]
fn after_a_loss_frames_resume_at_the_next_idr() {
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    // Before the first IDR nothing is decodable.
    d.push(packet(1, 0, true, &[0x41, 0x9a, 0x00]), 0, &mut out)
        .unwrap();
    assert!(out.is_empty() && d.waiting_for_keyframe());
    d.push(packet(2, 3000, true, &[0x65, 0x88, 0x80]), 0, &mut out)
        .unwrap();
    assert!(!d.waiting_for_keyframe());
    d.push(packet(4, 6000, true, &[0x41, 0x9a, 0x02]), 1, &mut out)
        .unwrap();
    assert!(d.waiting_for_keyframe());
    d.push(packet(5, 9000, true, &[0x41, 0x9a, 0x04]), 0, &mut out)
        .unwrap();
    assert!(d.waiting_for_keyframe());
    d.push(packet(6, 12000, true, &[0x65, 0x88, 0x84]), 0, &mut out)
        .unwrap();
    assert!(!d.waiting_for_keyframe());
    d.push(packet(7, 15000, true, &[0x41, 0x9a, 0x06]), 0, &mut out)
        .unwrap();
    let times: Vec<u32> = out.iter().map(|a| a.timestamp).collect();
    assert_eq!(times, [3000, 12000, 15000]);
}

#[test]
fn a_loss_between_unmarked_access_units_drops_both_neighbours() {
    // Without marker bits the lost packets may be the end of one access unit or the start
    // of the next: neither is trusted.
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    d.push(packet(1, 0, false, &[0x65, 0x88, 0x80]), 0, &mut out)
        .unwrap();
    d.push(packet(3, 3000, false, &[0x65, 0x88, 0x81]), 1, &mut out)
        .unwrap();
    d.push(packet(4, 6000, false, &[0x65, 0x88, 0x82]), 0, &mut out)
        .unwrap();
    d.push(packet(5, 9000, false, &[0x41, 0x9a, 0x00]), 0, &mut out)
        .unwrap();
    let times: Vec<u32> = out.iter().map(|a| a.timestamp).collect();
    assert_eq!(times, [6000]);
}

#[test]
fn broken_fragmentation_drops_the_access_unit() {
    let idr = nal_of(0x65, 50);
    let p_slice = nal_of(0x41, 50);
    let cases: [&[Vec<u8>]; 4] = [
        // Start, then the end of another NAL unit type.
        &[
            fu_a(&idr, true, false, &idr[1..20]),
            fu_a(&p_slice, false, true, &p_slice[20..]),
        ],
        // Middle and end without a start.
        &[
            fu_a(&idr, false, false, &idr[1..20]),
            fu_a(&idr, false, true, &idr[20..]),
        ],
        // A start, then another start.
        &[
            fu_a(&idr, true, false, &idr[1..20]),
            fu_a(&idr, true, true, &idr[1..]),
        ],
        // A start, then a single NAL unit packet in the same access unit.
        &[fu_a(&idr, true, false, &idr[1..20]), idr.clone()],
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut d = H264Depacketizer::default();
        let mut out = Vec::new();
        d.push(packet(0, 0, true, &[0x65, 0x88, 0x80]), 0, &mut out)
            .unwrap();
        for (n, p) in case.iter().enumerate() {
            let last = n == case.len() - 1;
            d.push(packet(1 + n as u16, 3000, last, p), 0, &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 1, "case {i}");
        assert!(d.waiting_for_keyframe(), "case {i}");
    }
    // Start and end in one FU-A (forbidden, unambiguous) is a whole NAL unit.
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    d.push(
        packet(0, 0, true, &fu_a(&idr, true, true, &idr[1..])),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].data, avcc(&[&idr]));
    // A marker on a fragment that is not the end leaves the NAL unit incomplete.
    let mut out = Vec::new();
    d.push(
        packet(1, 3000, true, &fu_a(&idr, true, false, &idr[1..])),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty() && d.waiting_for_keyframe());
}

#[test]
fn malformed_packets_are_errors_and_the_depacketizer_recovers() {
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    let err = d
        .push(packet(9, 90, true, &[0x78, 0, 9, 0x41]), 0, &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "RTP packet seq=9 ts=90: STAP-A: NAL unit size 9 at offset 1 overruns the packet (1 bytes left)"
    );
    let err = d
        .push(packet(10, 91, true, &[0x78, 0, 1, 0x41, 0]), 0, &mut out)
        .unwrap_err();
    assert!(
        err.to_string().contains("too short for a NAL unit size"),
        "{err}"
    );
    let err = d
        .push(packet(11, 92, true, &[0x7c]), 0, &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("FU-A: no FU header"), "{err}");
    for (kind, name) in [(25, "STAP-B"), (26, "MTAP16"), (27, "MTAP24"), (29, "FU-B")] {
        let err = d
            .push(packet(12, 93, true, &[0x60 | kind, 0, 0]), 0, &mut out)
            .unwrap_err();
        assert!(matches!(err, RtpError::Unsupported { .. }));
        assert!(err.to_string().contains(name), "{err}");
    }
    // A good IDR after all that comes out.
    d.push(packet(13, 94, true, &[0x65, 0x88, 0x80]), 0, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    // An error in the middle of an access unit drops it.
    d.push(packet(14, 95, false, &[0x41, 0x9a, 0x00]), 0, &mut out)
        .unwrap();
    assert!(d
        .push(packet(15, 95, true, &[0x78, 0xff]), 0, &mut out)
        .is_err());
    d.push(packet(16, 96, true, &[0x41, 0x9a, 0x01]), 0, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn padding_and_reserved_types_are_ignored() {
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    d.push(packet(1, 0, false, &[0x65, 0x88, 0x80]), 0, &mut out)
        .unwrap();
    // A padding-only packet with another timestamp (and a marker) ends nothing.
    d.push(packet(2, 1234, true, &[]), 0, &mut out).unwrap();
    // Reserved types 0, 30, 31 are skipped; so are delimiters and filler data.
    for (s, p) in [
        [0x00u8, 1],
        [0x1e, 1],
        [0x1f, 1],
        [0x09, 0xf0],
        [0x0c, 0xff],
    ]
    .iter()
    .enumerate()
    {
        d.push(packet(3 + s as u16, 0, false, p), 0, &mut out)
            .unwrap();
    }
    // Inside a STAP-A, unspecified NAL unit types are dropped too.
    d.push(
        packet(9, 0, false, &stap_a(&[&[0x1c, 1], &[0x00, 1], &[0x18, 2]])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(packet(10, 0, true, &[0x65, 0x88, 0x81]), 0, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].data,
        avcc(&[&[0x65, 0x88, 0x80], &[0x65, 0x88, 0x81]])
    );
}

#[test]
fn an_access_unit_that_never_ends_is_bounded() {
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    let slice = nal_of(0x41, 60_000);
    let mut result = Ok(());
    let mut seq = 0u16;
    for _ in 0..MAX_ACCESS_UNIT_BYTES / slice.len() + 2 {
        seq = seq.wrapping_add(1);
        result = d.push(packet(seq, 0, false, &slice), 0, &mut out);
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(RtpError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(d.au.len() <= MAX_ACCESS_UNIT_BYTES);
    // The next IDR comes out.
    d.push(
        packet(seq + 1, 3000, true, &[0x65, 0x88, 0x80]),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn packetizer_and_depacketizer_round_trip_multi_slice_idrs() {
    let packetizer = H264Packetizer::new(1200);
    let sei = nal_of(0x06, 40);
    let slices = [nal_of(0x65, 5000), nal_of(0x65, 1200), nal_of(0x65, 1201)];
    let aud: &[u8] = &[0x09, 0xf0];
    let idr = avcc(&[aud, &sei, &slices[0], &slices[1], &slices[2]]);
    let p_frame = avcc(&[&nal_of(0x41, 3000)]);
    let (sps, pps) = (Bytes::from_static(SPS), Bytes::from_static(PPS));
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    let (mut seq, mut ts) = (65530u16, u32::MAX - 3000);
    for (frame, keyframe) in [(&idr, true), (&p_frame, false), (&idr, true)] {
        let mut payloads = Vec::new();
        packetizer
            .packetize(
                frame,
                keyframe,
                std::slice::from_ref(&sps),
                std::slice::from_ref(&pps),
                &mut payloads,
            )
            .unwrap();
        assert!(payloads.iter().all(|p| p.data.len() <= 1200));
        let markers: Vec<bool> = payloads.iter().map(|p| p.marker).collect();
        assert_eq!(markers.iter().filter(|&&m| m).count(), 1);
        assert!(markers.last().unwrap());
        if keyframe {
            // STAP-A(SPS, PPS), SEI, 5 FU-A, 1 single, 2 FU-A; no AUD.
            assert_eq!(payloads[0].data, stap_a(&[SPS, PPS]));
            assert_eq!(payloads.len(), 1 + 1 + 5 + 1 + 2);
            // Fragments are of equal size (5000 - 1 bytes over 5 packets).
            let sizes: Vec<usize> = payloads[2..7].iter().map(|p| p.data.len()).collect();
            assert_eq!(sizes, [1002, 1002, 1002, 1002, 1001]);
        }
        for p in &payloads {
            d.push(packet(seq, ts, p.marker, &p.data), 0, &mut out)
                .unwrap();
            seq = seq.wrapping_add(1);
        }
        ts = ts.wrapping_add(3000);
    }
    let without_aud = avcc(&[&sei, &slices[0], &slices[1], &slices[2]]);
    assert_eq!(out.len(), 3);
    assert_eq!((&out[0].data, out[0].keyframe), (&without_aud, true));
    assert_eq!((&out[1].data, out[1].keyframe), (&p_frame, false));
    assert_eq!((&out[2].data, out[2].keyframe), (&without_aud, true));
    assert_eq!(out[0].parameter_sets, Some((sps, pps)));
    assert!(out[1].parameter_sets.is_none() && out[2].parameter_sets.is_none());
    assert_eq!(out[2].timestamp, 2999);
}

#[test]
fn single_nal_unit_packets_share_the_frame() {
    let frame = avcc(&[&nal_of(0x41, 100), &nal_of(0x41, 200)]);
    let mut payloads = Vec::new();
    H264Packetizer::new(1200)
        .packetize(&frame, false, &[], &[], &mut payloads)
        .unwrap();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[0].data.as_ptr(), frame[4..].as_ptr());
    assert_eq!(payloads[1].data.as_ptr(), frame[108..].as_ptr());
    assert!(!payloads[0].marker && payloads[1].marker);
}

#[test]
fn parameter_sets_are_inserted_before_idrs_that_lack_them() {
    let packetizer = H264Packetizer::new(1200);
    let (sps, pps) = (Bytes::from_static(SPS), Bytes::from_static(PPS));
    let idr: &[u8] = &[0x65, 0x88, 0x80];
    let count = |frame: &Bytes, keyframe: bool| {
        let mut payloads = Vec::new();
        packetizer
            .packetize(
                frame,
                keyframe,
                std::slice::from_ref(&sps),
                std::slice::from_ref(&pps),
                &mut payloads,
            )
            .unwrap();
        payloads
    };
    // An IDR flagged or not, without parameter sets: STAP-A first.
    assert_eq!(count(&avcc(&[idr]), true)[0].data, stap_a(&[SPS, PPS]));
    assert_eq!(count(&avcc(&[idr]), false).len(), 2);
    // An IDR carrying its own: sent as they are, nothing added.
    let own = count(&avcc(&[SPS, PPS, idr]), true);
    assert_eq!(own.len(), 3);
    assert_eq!(&own[0].data[..], SPS);
    // Not before other frames.
    assert_eq!(count(&avcc(&[&[0x41, 0x9a]]), false).len(), 1);
    // Parameter sets that do not fit one STAP-A go one by one (FU-A if they must).
    let mut payloads = Vec::new();
    H264Packetizer::new(20)
        .packetize(
            &avcc(&[idr]),
            true,
            std::slice::from_ref(&sps),
            std::slice::from_ref(&pps),
            &mut payloads,
        )
        .unwrap();
    let mut d = H264Depacketizer::default();
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        d.push(packet(i as u16, 0, p.marker, &p.data), 0, &mut out)
            .unwrap();
    }
    assert_eq!(out[0].parameter_sets, Some((sps, pps)));
}

#[test]
fn packetizer_rejects_malformed_length_prefixes() {
    let packetizer = H264Packetizer::new(1200);
    let mut payloads = Vec::new();
    for (frame, message) in [
        (
            &[0, 0, 0, 3, 0x41, 0x9a][..],
            "frame to packetize, byte 0: NAL unit length 3 overruns the frame (2 bytes left)",
        ),
        (
            &[0, 0, 0, 1, 0x41, 0, 0][..],
            "frame to packetize, byte 5: 2 byte(s) left, too short for a 4-byte NAL unit length",
        ),
        (
            &[0xff, 0xff, 0xff, 0xff, 0x65][..],
            "frame to packetize, byte 0: NAL unit length 4294967295 overruns the frame (1 bytes left)",
        ),
    ] {
        let err = packetizer
            .packetize(&Bytes::copy_from_slice(frame), true, &[], &[], &mut payloads)
            .unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    assert!(payloads.is_empty(), "nothing appended on error");
    // Zero-length NAL units, delimiters and unspecified types alone produce nothing, without
    // error.
    packetizer
        .packetize(
            &avcc(&[&[], &[0x09, 0xf0], &[0x1c, 0x85], &[0x00]]),
            false,
            &[],
            &[],
            &mut payloads,
        )
        .unwrap();
    assert!(payloads.is_empty());
}

#[test]
#[should_panic(expected = "at least 3 bytes")]
fn packetizer_needs_room_for_an_fu_a() {
    H264Packetizer::new(2);
}

#[test]
fn random_packets_never_panic_and_output_stays_well_formed() {
    let mut rng = 0x5eed_u64;
    let mut d = H264Depacketizer::default();
    let mut reorder = ReorderBuffer::new(16);
    let mut out = Vec::new();
    let mut ts = 0u32;
    for i in 0..200_000u32 {
        let r = xorshift(&mut rng);
        let len = (r % 40) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
        // Bias the first bytes towards valid structures so deep paths are reached.
        if let Some(first) = payload.first_mut() {
            *first = match r >> 56 {
                0..=63 => (*first & 0xe0) | 28,
                64..=95 => (*first & 0xe0) | 24,
                96..=127 => (*first & 0xe0) | 5,
                _ => *first,
            };
        }
        if r & (1 << 20) != 0 {
            ts = ts.wrapping_add(3000);
        }
        let sequence = (i as u16).wrapping_add((r >> 32) as u16 % 4);
        reorder.push(sequence, (ts, r & (1 << 21) != 0, payload));
        if r & (1 << 22) != 0 {
            reorder.skip_gap();
        }
        while let Some(((ts, marker, payload), lost)) = reorder.pop() {
            let waiting = d.waiting_for_keyframe();
            let before = out.len();
            let _ = d.push(packet(sequence, ts, marker, &payload), lost, &mut out);
            if waiting && out.len() > before {
                assert!(out[before].keyframe, "resumed at a non-IDR");
            }
        }
    }
    assert!(!out.is_empty());
    for au in &out {
        assert!(validate_length_prefixed(&au.data).is_ok());
        assert_eq!(au.keyframe, is_keyframe(&au.data));
        assert!(nal_units(&au.data).all(|n| !matches!(
            nal_type(n.unwrap()),
            NAL_SPS | NAL_PPS | NAL_AUD | NAL_FILLER | 0 | 24..=31
        )));
    }
}

#[test]
fn random_frames_never_panic_the_packetizer() {
    let mut rng = 0xfeed_u64;
    let packetizer = H264Packetizer::new(MIN_PAYLOAD);
    for _ in 0..20_000 {
        let len = (xorshift(&mut rng) % 24) as usize;
        let frame: Bytes = (0..len).map(|_| (xorshift(&mut rng) % 8) as u8).collect();
        let mut payloads = Vec::new();
        if packetizer
            .packetize(&frame, true, &[Bytes::from_static(SPS)], &[], &mut payloads)
            .is_ok()
        {
            assert!(payloads.iter().all(|p| p.data.len() <= MIN_PAYLOAD));
        }
    }
}
