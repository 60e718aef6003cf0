//! Tests of the H.265 depacketizer against captures of GStreamer's `rtph265pay` (see
//! testdata/README.md) and hand-built packets.

use super::*;
use crate::test_rng::xorshift;
use crate::testutil::{read_rfc4571, Captured};
use switchyard_media::h265::{HevcConfig, NAL_PREFIX_SEI};
use switchyard_media::{annexb_nal_units, nal_units, validate_length_prefixed};

const GST_AP: &[u8] = include_bytes!("../../testdata/gst-h265-ap.rtp");
const GST_SINGLE_NAL: &[u8] = include_bytes!("../../testdata/gst-h265-single-nal.rtp");
const GST_ES: &[u8] = include_bytes!("../../testdata/gst.h265");

const VPS: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00];
const SPS: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03];
const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x42, 0x40];
/// Slice segments: IDR_W_RADL, CRA, TRAIL_R (2-byte headers, layer 0, temporal id 1).
const IDR: &[u8] = &[0x26, 0x01, 0xaf, 0x06, 0xb8];
const CRA: &[u8] = &[0x2a, 0x01, 0xaf, 0x09];
const TRAIL: &[u8] = &[0x02, 0x01, 0xd0, 0x11];

fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> PacketRef<'_> {
    PacketRef {
        sequence,
        timestamp,
        marker,
        payload,
    }
}

fn ap(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![AP << 1, 0x01];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn fu(nal: &[u8], start: bool, end: bool, body: &[u8]) -> Vec<u8> {
    let mut p = vec![
        (nal[0] & 0x81) | (FU << 1),
        nal[1],
        nal_type(nal) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
    ];
    p.extend_from_slice(body);
    p
}

/// 4-byte length-prefixed form of `nals`.
fn hvcc(nals: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    Bytes::from(out)
}

fn depacketize(packets: &[Captured]) -> Vec<H265AccessUnit> {
    let mut d = H265Depacketizer::default();
    crate::testutil::depacketize_all(packets, 64, |p, lost, out| d.push(p, lost, out))
}

/// Checks access units against the encoder's elementary stream: the same NAL units in the
/// same order (without VPS, SPS, PPS, AUD), 12 frames with IRAP pictures (IDR, then CRA) at 0
/// and 6.
fn assert_matches_elementary_stream(aus: &[H265AccessUnit]) {
    let expected: Vec<&[u8]> = annexb_nal_units(GST_ES)
        .into_iter()
        .filter(|n| !matches!(nal_type(n), NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD))
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
    // Three slice segments per picture; x265's SEI before the first.
    assert_eq!(nal_units(&aus[0].data).count(), 4);
    assert_eq!(
        nal_type(nal_units(&aus[0].data).next().unwrap().unwrap()),
        NAL_PREFIX_SEI
    );
    assert_eq!(nal_units(&aus[1].data).count(), 3);
    // 25 fps at 90 kHz.
    for pair in aus.windows(2) {
        assert_eq!(pair[1].timestamp.wrapping_sub(pair[0].timestamp), 3600);
    }
    let sets = aus[0].parameter_sets.clone().expect("parameter sets first");
    assert!(aus[1..].iter().all(|au| au.parameter_sets.is_none()));
    let es_sps = annexb_nal_units(GST_ES)
        .into_iter()
        .find(|n| nal_type(n) == NAL_SPS);
    assert_eq!(Some(&sets.sps[..]), es_sps);
    let config = HevcConfig::from_parameter_sets(&[sets.vps], &[sets.sps], &[sets.pps]).unwrap();
    assert_eq!(config.resolution, Some((320, 240)));
    assert_eq!(config.rfc6381_codec(), "hvc1.1.6.L60.90");
}

#[test]
fn gstreamer_ap_capture_gives_the_encoded_stream() {
    let packets = read_rfc4571(GST_AP);
    // The capture has what it says: VPS, SPS and PPS in an AP, FUs.
    assert!(packets.iter().any(|p| nal_type(&p.payload) == AP));
    assert!(packets.iter().any(|p| nal_type(&p.payload) == FU));
    assert_matches_elementary_stream(&depacketize(&packets));
}

#[test]
fn gstreamer_single_nal_capture_gives_the_encoded_stream() {
    // VPS, SPS and PPS each in their own packet, as ffmpeg sends them.
    let packets = read_rfc4571(GST_SINGLE_NAL);
    assert!(!packets.iter().any(|p| nal_type(&p.payload) == AP));
    assert_matches_elementary_stream(&depacketize(&packets));
}

#[test]
fn sequence_numbers_and_timestamps_wrap_around() {
    let mut packets = read_rfc4571(GST_AP);
    // Both counters wrap in the middle of the capture.
    let middle = packets.len() / 2;
    let (seq0, ts0) = (packets[middle].sequence, packets[middle].timestamp);
    for p in &mut packets {
        p.sequence = p.sequence.wrapping_sub(seq0);
        p.timestamp = p.timestamp.wrapping_sub(ts0);
    }
    let aus = depacketize(&packets);
    assert_matches_elementary_stream(&aus);
    assert!(aus.iter().any(|au| au.timestamp == 0));
}

#[test]
fn reordered_packets_give_the_same_access_units() {
    let in_order = depacketize(&read_rfc4571(GST_SINGLE_NAL));
    let mut packets = read_rfc4571(GST_SINGLE_NAL);
    let mut rng = 11u64;
    // Shuffle runs of 8 packets (the first packet stays first: it sets where the sequence
    // starts).
    for run in packets[1..].chunks_mut(8) {
        for i in (1..run.len()).rev() {
            run.swap(i, (xorshift(&mut rng) % (i as u64 + 1)) as usize);
        }
    }
    assert!(packets.windows(2).any(|w| w[1].sequence < w[0].sequence));
    assert_eq!(depacketize(&packets), in_order);
}

#[test]
fn loss_inside_a_fragmented_irap_resumes_at_the_next_irap() {
    let mut packets = read_rfc4571(GST_AP);
    // One of the IDR's FU fragments (the first picture's third slice is the largest).
    let lost = packets
        .iter()
        .position(|p| {
            nal_type(&p.payload) == FU && p.payload[2] & 0x3f == 20 && p.payload[2] & 0xc0 == 0
        })
        .unwrap();
    packets.remove(lost);
    let aus = depacketize(&packets);
    // The damaged IDR and the P frames that refer to it are gone; the CRA starts again.
    assert_eq!(aus.len(), 6);
    assert!(aus[0].keyframe);
    assert_eq!(
        nal_type(nal_units(&aus[0].data).next().unwrap().unwrap()),
        21
    );
    // The parameter sets came before the loss; they still go with the first frame out.
    assert!(aus[0].parameter_sets.is_some());
}

#[test]
fn ap_fu_and_single_packets_make_one_access_unit_with_parameters_out_of_band() {
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    let big: Vec<u8> = IDR
        .iter()
        .copied()
        .chain((0..40).map(|i| i as u8 | 1))
        .collect();
    let ap = ap(&[VPS, SPS, PPS, &[0x46, 0x01, 0x50]]); // with an AUD
    d.push(packet(1, 1000, false, &ap), 0, &mut out).unwrap();
    d.push(
        packet(2, 1000, false, &fu(&big, true, false, &big[2..20])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(
        packet(3, 1000, false, &fu(&big, false, false, &big[20..30])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(
        packet(4, 1000, false, &fu(&big, false, true, &big[30..])),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    d.push(packet(5, 1000, true, IDR), 0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, hvcc(&[&big, IDR]));
    assert!(out[0].keyframe);
    assert_eq!(
        out[0].parameter_sets,
        Some(H265ParameterSets {
            vps: Bytes::from_static(VPS),
            sps: Bytes::from_static(SPS),
            pps: Bytes::from_static(PPS),
        })
    );
    assert!(!d.waiting_for_keyframe());
    // A picture without marker ends when the timestamp changes; repeated parameter sets are
    // no change.
    d.push(packet(6, 4000, false, &ap), 0, &mut out).unwrap();
    d.push(packet(7, 4000, false, TRAIL), 0, &mut out).unwrap();
    d.push(packet(8, 7000, true, TRAIL), 0, &mut out).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!((out[1].timestamp, out[1].keyframe), (4000, false));
    assert!(out[1].parameter_sets.is_none() && out[2].parameter_sets.is_none());
    // A new PPS goes with the next access unit.
    let pps2 = [0x44, 0x01, 0xc0, 0xf7];
    d.push(packet(9, 10000, false, &pps2), 0, &mut out).unwrap();
    d.push(packet(10, 10000, true, CRA), 0, &mut out).unwrap();
    assert_eq!(out[3].parameter_sets.as_ref().unwrap().pps[..], pps2[..]);
    assert!(out[3].keyframe);
}

#[test]
fn after_a_loss_frames_resume_at_the_next_irap() {
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    // Before the first IRAP nothing is decodable.
    d.push(packet(1, 0, true, TRAIL), 0, &mut out).unwrap();
    assert!(out.is_empty() && d.waiting_for_keyframe());
    d.push(packet(2, 3000, true, CRA), 0, &mut out).unwrap();
    d.push(packet(3, 6000, true, TRAIL), 0, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    d.push(packet(5, 9000, true, TRAIL), 1, &mut out).unwrap();
    d.push(packet(6, 12000, true, TRAIL), 0, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert!(d.waiting_for_keyframe());
    d.push(packet(7, 15000, true, IDR), 0, &mut out).unwrap();
    assert_eq!(out.len(), 3);
    assert!(out[2].keyframe && !d.waiting_for_keyframe());
}

#[test]
fn broken_fragmentation_drops_the_access_unit() {
    let big: Vec<u8> = IDR.iter().copied().chain(0..30).collect();
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    // A middle fragment without its start.
    d.push(
        packet(1, 0, false, &fu(&big, false, false, &big[2..10])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(
        packet(2, 0, true, &fu(&big, false, true, &big[10..])),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    // A start, then a single NAL unit packet: the fragment never ended.
    d.push(
        packet(3, 3000, false, &fu(&big, true, false, &big[2..10])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(packet(4, 3000, true, IDR), 0, &mut out).unwrap();
    assert!(out.is_empty());
    // Fragments of two different NAL units.
    d.push(
        packet(5, 6000, false, &fu(&big, true, false, &big[2..10])),
        0,
        &mut out,
    )
    .unwrap();
    d.push(
        packet(6, 6000, true, &fu(CRA, false, true, &big[10..])),
        0,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    // Start and end in one FU (forbidden, unambiguous) is a whole NAL unit.
    d.push(
        packet(7, 9000, true, &fu(&big, true, true, &big[2..])),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, hvcc(&[&big]));
    // A marker on a fragment that is not the end leaves the NAL unit incomplete.
    d.push(
        packet(8, 12000, true, &fu(&big, true, false, &big[2..])),
        0,
        &mut out,
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert!(d.waiting_for_keyframe());
}

#[test]
fn malformed_and_unsupported_packets_are_errors_and_the_depacketizer_recovers() {
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    let errors = [
        vec![0x26],                              // a 1-byte header
        vec![AP << 1, 1, 0, 9, 0x26, 0x01],      // AP size overruns
        vec![AP << 1, 1, 0, 2, 0x26, 0x01, 0x7], // 1 byte left after a unit
        vec![FU << 1, 1],                        // FU without FU header
        vec![PACI << 1, 1, 0x26, 0x00, 0x00],    // PACI
    ];
    for (i, payload) in errors.iter().enumerate() {
        let e = d
            .push(
                packet(i as u16, i as u32 * 3000, true, payload),
                0,
                &mut out,
            )
            .unwrap_err();
        if i == 4 {
            assert!(matches!(
                e,
                RtpError::Unsupported {
                    what: "H.265 PACI packet",
                    ..
                }
            ));
        } else {
            assert!(matches!(e, RtpError::Malformed { .. }), "{e}");
        }
    }
    assert!(out.is_empty());
    // A good IRAP after all that comes out.
    d.push(packet(10, 30000, true, IDR), 0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    // An error in the middle of an access unit drops it.
    d.push(packet(11, 33000, false, CRA), 0, &mut out).unwrap();
    assert!(d
        .push(packet(12, 33000, true, &[AP << 1, 1, 0, 9]), 0, &mut out)
        .is_err());
    d.push(packet(13, 36000, true, CRA), 0, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].timestamp, 36000);
}

#[test]
fn padding_delimiters_and_unspecified_types_are_ignored() {
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    d.push(packet(1, 0, false, IDR), 0, &mut out).unwrap();
    // A padding-only packet with another timestamp (and a marker) ends nothing.
    d.push(packet(2, 9999, true, &[]), 0, &mut out).unwrap();
    assert!(out.is_empty());
    // Unspecified types (51-63), delimiters and filler data are skipped, alone or in an AP.
    d.push(packet(3, 0, false, &[51 << 1, 1, 9]), 0, &mut out)
        .unwrap();
    d.push(packet(4, 0, false, &[NAL_AUD << 1, 1, 0x50]), 0, &mut out)
        .unwrap();
    d.push(packet(5, 0, false, &[NAL_FD << 1, 1, 0xff]), 0, &mut out)
        .unwrap();
    let ap = ap(&[&[63 << 1, 1, 9], &[NAL_FD << 1, 1, 0xff], TRAIL, &[0x26]]);
    d.push(packet(6, 0, true, &ap), 0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].data, hvcc(&[IDR, TRAIL]));
}

#[test]
fn an_access_unit_that_never_ends_is_bounded() {
    let mut d = H265Depacketizer::default();
    let mut out = Vec::new();
    let chunk = vec![0x55u8; 60_000];
    let mut payload = IDR[..2].to_vec();
    payload.extend_from_slice(&chunk);
    let mut errors = 0;
    for seq in 0..400u16 {
        if d.push(packet(seq, 0, false, &payload), 0, &mut out)
            .is_err()
        {
            errors += 1;
        }
    }
    assert!(errors > 0 && out.is_empty());
    assert!(d.au.len() <= MAX_ACCESS_UNIT_BYTES);
    // The next IRAP comes out.
    d.push(packet(400, 3000, true, CRA), 0, &mut out).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn random_packets_never_panic_and_output_stays_well_formed() {
    let captured = read_rfc4571(GST_AP);
    let mut rng = 0x5eed_0265u64;
    for round in 0..300 {
        let mut d = H265Depacketizer::default();
        let mut out = Vec::new();
        for (i, p) in captured.iter().enumerate() {
            let mut payload = p.payload.clone();
            let r = xorshift(&mut rng);
            match r % 8 {
                0 if !payload.is_empty() => {
                    let at = (r >> 8) as usize % payload.len();
                    payload[at] ^= (r >> 40) as u8 | 1;
                }
                1 => payload.truncate((r >> 8) as usize % (payload.len() + 1)),
                2 => continue, // lost
                _ => {}
            }
            let lost = u16::from(r % 8 == 2);
            let _ = d.push(
                packet(
                    p.sequence,
                    p.timestamp,
                    p.marker && round % 3 != 0,
                    &payload,
                ),
                lost,
                &mut out,
            );
            if i % 50 == 49 {
                for au in out.drain(..) {
                    validate_length_prefixed(&au.data).unwrap();
                    assert!(!au.data.is_empty());
                }
            }
        }
    }
}

/// Our packets of `aus` (with `sets` before each IRAP), numbered and stamped like a sender.
fn packetize(aus: &[H265AccessUnit], sets: &[Bytes], max_payload: usize) -> Vec<Captured> {
    let packetizer = H265Packetizer::new(max_payload);
    let mut packets = Vec::new();
    for au in aus {
        let mut payloads = Vec::new();
        packetizer
            .packetize(&au.data, au.keyframe, sets, &mut payloads)
            .unwrap();
        assert!(payloads.iter().all(|p| p.data.len() <= max_payload));
        assert!(payloads.last().unwrap().marker);
        assert_eq!(payloads.iter().filter(|p| p.marker).count(), 1);
        for p in payloads {
            packets.push(Captured {
                sequence: 65_000u16.wrapping_add(packets.len() as u16),
                timestamp: au.timestamp,
                marker: p.marker,
                payload: p.data.to_vec(),
            });
        }
    }
    packets
}

#[test]
fn packetizer_and_depacketizer_round_trip_the_gstreamer_stream() {
    let aus = depacketize(&read_rfc4571(GST_AP));
    let sets = aus[0].parameter_sets.clone().unwrap();
    let sets = [sets.vps, sets.sps, sets.pps];
    // Small payloads: every slice fragmented, the parameter sets too big for one AP.
    for max_payload in [MIN_PAYLOAD, 30, 100, 1150] {
        let packets = packetize(&aus, &sets, max_payload);
        if max_payload >= 100 {
            assert_eq!(
                packets
                    .iter()
                    .filter(|p| nal_type(&p.payload) == AP)
                    .count(),
                2
            );
        }
        let again = depacketize(&packets);
        assert_eq!(again, aus, "max_payload {max_payload}");
    }
}

#[test]
fn packetizer_sends_what_rtph265pay_sends() {
    // GStreamer's packets (VPS, SPS, PPS each alone, before each IRAP), and ours of the
    // access units they carry, with GStreamer's largest payload as our limit.
    let gst = read_rfc4571(GST_SINGLE_NAL);
    let aus = depacketize(&gst);
    let sets = aus[0].parameter_sets.clone().unwrap();
    let sets = [sets.vps, sets.sps, sets.pps];
    let max_payload = gst.iter().map(|p| p.payload.len()).max().unwrap();
    let ours = packetize(&aus, &sets, max_payload);
    // The same payloads, but that the parameter sets go in one AP and fragments are even.
    let singles = |packets: &[Captured]| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = packets
            .iter()
            .filter(|p| !matches!(nal_type(&p.payload), AP | FU | NAL_VPS | NAL_SPS | NAL_PPS))
            .map(|p| p.payload.clone())
            .collect();
        v.sort();
        v
    };
    assert!(!singles(&gst).is_empty());
    assert_eq!(singles(&ours), singles(&gst));
    let count =
        |packets: &[Captured], t: u8| packets.iter().filter(|p| nal_type(&p.payload) == t).count();
    assert_eq!(count(&ours, FU), count(&gst, FU));
    assert_eq!(count(&ours, AP), count(&gst, NAL_SPS));
    // Marker bits on the last packet of each access unit, as GStreamer sets them.
    let markers = |packets: &[Captured]| -> Vec<u32> {
        packets
            .iter()
            .filter(|p| p.marker)
            .map(|p| p.timestamp)
            .collect()
    };
    assert_eq!(markers(&ours), markers(&gst));
    assert_eq!(depacketize(&ours), aus);
}

#[test]
fn packetizer_keeps_in_band_parameter_sets_and_drops_what_cannot_be_sent() {
    let p = H265Packetizer::new(1150);
    let sets = [
        Bytes::from_static(VPS),
        Bytes::from_static(SPS),
        Bytes::from_static(PPS),
    ];
    let mut out = Vec::new();
    // The access unit has its own: none added. AUD and a type-48 unit are dropped.
    let aud: &[u8] = &[NAL_AUD << 1, 0x01, 0x50];
    let bad: &[u8] = &[AP << 1, 0x01, 0];
    p.packetize(
        &hvcc(&[aud, VPS, SPS, PPS, IDR, bad]),
        true,
        &sets,
        &mut out,
    )
    .unwrap();
    let got: Vec<&[u8]> = out.iter().map(|p| &p.data[..]).collect();
    assert_eq!(got, [VPS, SPS, PPS, IDR]);
    // A CRA not flagged as keyframe still gets the parameter sets, in one AP.
    out.clear();
    p.packetize(&hvcc(&[CRA]), false, &sets, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0].data[..], &ap(&[VPS, SPS, PPS])[..]);
    // Not before other pictures.
    out.clear();
    p.packetize(&hvcc(&[TRAIL]), false, &sets, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    // Malformed length prefixes append nothing.
    out.clear();
    let mut broken = hvcc(&[TRAIL]).to_vec();
    broken[3] += 1;
    assert!(p
        .packetize(&Bytes::from(broken), false, &sets, &mut out)
        .is_err());
    assert!(out.is_empty());
}

#[test]
fn random_frames_never_panic_the_packetizer() {
    let mut rng = 7u64;
    let p = H265Packetizer::new(MIN_PAYLOAD);
    for _ in 0..2000 {
        let len = (xorshift(&mut rng) % 40) as usize;
        let frame: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
        let mut out = Vec::new();
        let keyframe = xorshift(&mut rng).is_multiple_of(2);
        let _ = p.packetize(&Bytes::from(frame), keyframe, &[], &mut out);
    }
}
