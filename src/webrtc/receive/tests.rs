//! The receive side's sequence, loss, jitter and frame tracking, and its feedback packets read
//! back with `rtc`'s RTCP parser.

use super::*;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use switchyard_media::probe_stamp::ProbeStamp;

fn rtp(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Rtp<'_> {
    Rtp {
        sequence,
        timestamp,
        marker,
        payload,
    }
}

/// Feeds `packets` (sequence, timestamp, marker, payload) at 1 ms apart; returns the frames.
fn feed(
    stream: &mut VideoStream,
    start: Instant,
    packets: &[(u16, u32, bool, &[u8])],
) -> Vec<ReceivedFrame> {
    let mut frames = Vec::new();
    for (i, (sequence, timestamp, marker, payload)) in packets.iter().enumerate() {
        let now = start + Duration::from_millis(i as u64);
        stream.packet(
            &rtp(*sequence, *timestamp, *marker, payload),
            VideoCodec::H264,
            now,
            |f| frames.push(f),
        );
    }
    frames
}

const P_SLICE: &[u8] = &[0x41, 0x9a, 0x00];
const IDR_FU_START: &[u8] = &[0x7c, 0x85, 0x88];
const FU_MIDDLE: &[u8] = &[0x7c, 0x05, 0x00];

#[test]
fn loss_is_expected_minus_received_with_reordering_duplicates_and_wraps() {
    let start = Instant::now();
    let mut s = VideoStream::new(1, start);
    // 65533, 65534, (65535 missing), 0, 2, 1 late, 1 again (duplicate), 3
    feed(
        &mut s,
        start,
        &[
            (65_533, 0, false, P_SLICE),
            (65_534, 0, false, P_SLICE),
            (0, 0, false, P_SLICE),
            (2, 0, false, P_SLICE),
            (1, 0, false, P_SLICE),
            (1, 0, false, P_SLICE),
            (3, 0, false, P_SLICE),
        ],
    );
    assert_eq!(s.lost(), 1, "65535 only");
    assert_eq!(s.highest - s.base, 6);
    assert_eq!(s.missing.len(), 1);
    assert_eq!(s.missing[0].sequence as u16, 65_535);
    // The late one comes after all (a retransmission): nothing lost.
    feed(&mut s, start, &[(65_535, 0, false, P_SLICE)]);
    assert_eq!(s.lost(), 0);
    assert!(s.missing.is_empty());
}

#[test]
fn nacks_go_once_after_the_reorder_wait_and_are_given_up_later() {
    let start = Instant::now();
    let mut s = VideoStream::new(1, start);
    feed(
        &mut s,
        start,
        &[(10, 0, false, P_SLICE), (13, 0, false, P_SLICE)],
    );
    let mut items = Vec::new();
    assert!(!s.due_nacks(start + Duration::from_millis(2), &mut items));
    assert!(items.is_empty(), "within the reorder wait");
    let later = start + REORDER_WAIT + Duration::from_millis(2);
    assert!(!s.due_nacks(later, &mut items));
    assert_eq!(items, vec![11, 12]);
    items.clear();
    s.due_nacks(later + Duration::from_millis(5), &mut items);
    assert!(items.is_empty(), "once");
    // 11 recovered; 12 given up.
    feed(&mut s, later, &[(11, 0, false, P_SLICE)]);
    assert!(s.due_nacks(later + GIVE_UP_AFTER, &mut items));
    assert!(items.is_empty());
    assert_eq!(s.lost(), 1);
    assert_eq!(s.given_up, 1);
}

#[test]
fn a_long_gap_keeps_the_missing_list_bounded() {
    let start = Instant::now();
    let mut s = VideoStream::new(1, start);
    feed(
        &mut s,
        start,
        &[(0, 0, false, P_SLICE), (5000, 0, false, P_SLICE)],
    );
    assert_eq!(s.lost(), 4999);
    assert!(s.missing.len() <= MAX_MISSING);
    assert!(s.given_up > 0);
    let mut items = Vec::new();
    s.due_nacks(start + REORDER_WAIT * 2, &mut items);
    assert_eq!(items.len(), MAX_NACK_ITEMS);
}

#[test]
fn jitter_follows_rfc_3550_a8() {
    let start = Instant::now();
    let mut s = VideoStream::new(1, start);
    // Frames every 40 ms of media time (3600 ticks) that arrive 40, then 50 ms apart.
    let mut frames = Vec::new();
    let arrivals = [0u64, 40, 90, 130, 180];
    for (i, at) in arrivals.iter().enumerate() {
        s.packet(
            &rtp(i as u16, 3600 * i as u32, true, P_SLICE),
            VideoCodec::H264,
            start + Duration::from_millis(*at),
            |f| frames.push(f),
        );
    }
    // D = 0, 900, 0, 900 ticks: J = 0 -> 56.25 -> 52.73 -> 105.7
    let expected = {
        let mut j = 0.0f64;
        for d in [0.0, 900.0, 0.0, 900.0] {
            j += (d - j) / 16.0;
        }
        j
    };
    assert!(
        (s.jitter - expected).abs() < 0.5,
        "{} vs {expected}",
        s.jitter
    );
    assert_eq!(frames.len(), 5);
}

#[test]
fn frames_close_on_the_marker_or_a_newer_timestamp_and_find_keyframes_and_stamps() {
    let start = Instant::now();
    let mut s = VideoStream::new(1, start);
    let stamp = ProbeStamp {
        sent_unix_us: 1_700_000_000_123_456,
        source: *b"rtmp",
    };
    let sei = stamp.h264_nal();
    // STAP-A: SPS, PPS, SEI.
    let mut stap = vec![24u8];
    for nal in [
        &[0x67u8, 0x42, 0x00, 0x1f][..],
        &[0x68, 0xce, 0x3c, 0x80],
        &sei,
    ] {
        stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        stap.extend_from_slice(nal);
    }
    let frames = feed(
        &mut s,
        start,
        &[
            // keyframe: STAP-A, FU-A start (IDR), middle, end with the marker
            (1, 3000, false, &stap),
            (2, 3000, false, IDR_FU_START),
            (3, 3000, true, FU_MIDDLE),
            // a frame without a marker, closed by the next timestamp
            (4, 6000, false, P_SLICE),
            (5, 9000, true, P_SLICE),
            // a retransmitted packet of a closed frame: no new frame
            (3, 3000, true, FU_MIDDLE),
            // a single-packet frame with the marker
            (6, 12_000, true, P_SLICE),
        ],
    );
    let summary: Vec<(u64, bool, bool)> = frames
        .iter()
        .map(|f| (f.rtp_time, f.keyframe, f.stamp.is_some()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (3000, true, true),
            (6000, false, false),
            (9000, false, false),
            (12_000, false, false)
        ]
    );
    assert_eq!(frames[0].stamp, Some(stamp));
    // A single NAL unit IDR and SEI.
    let mut s = VideoStream::new(1, start);
    let mut sei_frame = Vec::new();
    s.packet(&rtp(1, 0, false, &sei), VideoCodec::H264, start, |f| {
        sei_frame.push(f)
    });
    s.packet(
        &rtp(2, 0, true, &[0x65, 0x88]),
        VideoCodec::H264,
        start,
        |f| sei_frame.push(f),
    );
    assert!(sei_frame[0].keyframe && sei_frame[0].stamp == Some(stamp));
}

#[test]
fn timestamps_and_sequence_numbers_unwrap() {
    assert_eq!(extend(0x1_fff0, 5), 0x2_0005);
    assert_eq!(extend(0x2_0005, 0xfff0), 0x1_fff0);
    assert_eq!(extend(0x2_0005, 7), 0x2_0007);
    assert_eq!(extend32(0x1_ffff_ff00, 0x100), 0x2_0000_0100);
    assert_eq!(extend32(0x2_0000_0100, 0xffff_ff00), 0x1_ffff_ff00);
}

#[test]
fn feedback_packets_parse_with_rtc() {
    let start = Instant::now();
    let mut s = VideoStream::new(0xabcd_0001, start);
    feed(
        &mut s,
        start,
        &[(100, 0, false, P_SLICE), (104, 0, false, P_SLICE)],
    );
    let mut out = Vec::new();
    s.receiver_report(0x1111_2222, &mut out);
    // 101-103 and 120 (outside the first mask), 65535 -> 0 wrap in another
    write_nack(
        0x1111_2222,
        0xabcd_0001,
        &[101, 102, 103, 120, 65_535, 0],
        &mut out,
    );
    write_pli(0x1111_2222, 0xabcd_0001, &mut out);
    let packets = rtc::rtcp::packet::unmarshal(&mut &out[..]).expect("valid RTCP");
    assert_eq!(packets.len(), 3);
    let rr = packets[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .expect("RR");
    assert_eq!(rr.ssrc, 0x1111_2222);
    assert_eq!(rr.reports[0].ssrc, 0xabcd_0001);
    assert_eq!(rr.reports[0].total_lost, 3);
    assert_eq!(rr.reports[0].fraction_lost, (3 * 256 / 5) as u8);
    let nack = packets[1]
        .as_any()
        .downcast_ref::<TransportLayerNack>()
        .expect("NACK");
    assert_eq!(nack.media_ssrc, 0xabcd_0001);
    let asked: Vec<u16> = nack.nacks.iter().flat_map(|p| p.into_iter()).collect();
    assert_eq!(asked, vec![101, 102, 103, 120, 65_535, 0]);
    let pli = packets[2]
        .as_any()
        .downcast_ref::<PictureLossIndication>()
        .expect("PLI");
    assert_eq!(
        (pli.sender_ssrc, pli.media_ssrc),
        (0x1111_2222, 0xabcd_0001)
    );
}

#[test]
fn vp8_vp9_and_h265_keyframes() {
    assert!(vp8_keyframe(&[0x10, 0x00]));
    assert!(!vp8_keyframe(&[0x10, 0x01]));
    assert!(!vp8_keyframe(&[0x00, 0x00]), "not the start of partition 0");
    // X, I with a 15-bit picture id, then the frame tag.
    assert!(vp8_keyframe(&[0x90, 0x80, 0x81, 0x02, 0x00]));
    let mut frame = OpenFrame {
        timestamp: 0,
        keyframe: false,
        stamp: None,
    };
    inspect(VideoCodec::Vp9 { profile: 0 }, &[0x08], &mut frame);
    assert!(frame.keyframe);
    frame.keyframe = false;
    inspect(VideoCodec::Vp9 { profile: 0 }, &[0x48], &mut frame);
    assert!(!frame.keyframe);
    // H.265 FU start of an IDR_W_RADL (19).
    inspect(VideoCodec::H265, &[49 << 1, 1, 0x80 | 19], &mut frame);
    assert!(frame.keyframe);
}
