//! Fuzzes the H.264 RTP depacketizer behind the reorder buffer (RTP from WHIP publishers and
//! RTSP cameras).
//!
//! Input: records of `[flags][length: u16 big-endian][payload]`. Flags: bit 0 marker; bits 1-3 the step of
//! the sequence number (+1, +1, +1, +2, duplicate, -1, -3, half the sequence space); bits 4-5
//! the step of the timestamp (same, +3000, -3000, half the 32-bit space); bit 6 `skip_gap`
//! after the packet. Sequence numbers and timestamps start just before they wrap.
//!
//! Invariants checked beyond "no panic": released sequence numbers account for every lost
//! one; access units are well-formed 4-byte length-prefixed NAL units without parameter sets,
//! delimiters or filler; `keyframe` is true exactly when an IDR slice is present; after a
//! loss or at the start the first access unit out is a keyframe; and every access unit
//! re-packetized by `H264Packetizer` depacketizes to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_media::h264::{is_keyframe, nal_type, NAL_AUD, NAL_PPS, NAL_SPS};
use switchyard_media::{nal_units, validate_length_prefixed};
use switchyard_rtp::h264::{H264AccessUnit, H264Depacketizer, H264Packetizer};
use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::PacketRef;

const SEQ_STEPS: [u16; 8] = [1, 1, 1, 2, 0, 0xffff, 0xfffd, 0x8000];
const TS_STEPS: [u32; 4] = [0, 3000, 3000u32.wrapping_neg(), 0x8000_0000];

fuzz_target!(|data: &[u8]| {
    let mut reorder = ReorderBuffer::new(8);
    let mut depacketizer = H264Depacketizer::default();
    // Receives every access unit out of `depacketizer`, re-packetized.
    let mut mirror = H264Depacketizer::default();
    let packetizer = H264Packetizer::new(if data.first().is_some_and(|b| b & 0x80 != 0) {
        1200
    } else {
        7
    });
    let mut parameter_sets: Option<(Bytes, Bytes)> = None;
    let (mut sequence, mut timestamp) = (65530u16, u32::MAX - 10_000);
    let mut last_released: Option<u16> = None;
    let mut out = Vec::new();
    let mut rest = data;
    while let [flags, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        sequence = sequence.wrapping_add(SEQ_STEPS[usize::from(flags >> 1 & 7)]);
        timestamp = timestamp.wrapping_add(TS_STEPS[usize::from(flags >> 4 & 3)]);
        reorder.push(sequence, (timestamp, flags & 1 != 0, payload));
        if flags & 0x40 != 0 {
            reorder.skip_gap();
        }
        while let Some(((timestamp, marker, payload), lost)) = reorder.pop() {
            // Recover the released packet's sequence number from the accounting itself.
            let released = last_released.map_or(0, |s| s.wrapping_add(1).wrapping_add(lost));
            last_released = Some(released);
            let waiting = depacketizer.waiting_for_keyframe();
            out.clear();
            let packet = PacketRef {
                sequence: released,
                timestamp,
                marker,
                payload,
            };
            let _ = depacketizer.push(packet, lost, &mut out);
            if waiting {
                assert!(
                    out.first().is_none_or(|au| au.keyframe),
                    "resumed at a non-IDR"
                );
            }
            for au in &out {
                check(au);
                if let Some(sets) = &au.parameter_sets {
                    parameter_sets = Some(sets.clone());
                }
                round_trip(&packetizer, &mut mirror, au, parameter_sets.as_ref());
            }
        }
    }
});

fn check(au: &H264AccessUnit) {
    assert!(validate_length_prefixed(&au.data).is_ok());
    assert_eq!(au.keyframe, is_keyframe(&au.data));
    for nal in nal_units(&au.data) {
        assert!(!matches!(
            nal_type(nal.unwrap()),
            NAL_SPS | NAL_PPS | NAL_AUD | 12
        ));
    }
    if let Some((sps, pps)) = &au.parameter_sets {
        assert_eq!((nal_type(sps), nal_type(pps)), (NAL_SPS, NAL_PPS));
    }
}

fn round_trip(
    packetizer: &H264Packetizer,
    mirror: &mut H264Depacketizer,
    au: &H264AccessUnit,
    parameter_sets: Option<&(Bytes, Bytes)>,
) {
    let (sps, pps) = match parameter_sets {
        Some((sps, pps)) => (std::slice::from_ref(sps), std::slice::from_ref(pps)),
        None => (&[][..], &[][..]),
    };
    let mut payloads = Vec::new();
    packetizer
        .packetize(&au.data, au.keyframe, sps, pps, &mut payloads)
        .expect("depacketized access units are well-formed");
    let mut again = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let packet = PacketRef {
            sequence: i as u16,
            timestamp: au.timestamp,
            marker: p.marker,
            payload: &p.data,
        };
        mirror
            .push(packet, 0, &mut again)
            .expect("packetized access units depacketize");
    }
    // The mirror saw every access unit since the first keyframe, in order, without loss.
    assert_eq!(again.len(), 1);
    assert_eq!((&again[0].data, again[0].keyframe), (&au.data, au.keyframe));
}
