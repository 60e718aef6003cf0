//! Fuzzes the H.265 RTP depacketizer behind the reorder buffer (RTP from RTSP cameras).
//!
//! Input: records of `[flags][length: u16 big-endian][payload]`, as in `rtp_h264`. Flags: bit 0
//! marker; bits 1-3 the step of the sequence number (+1, +1, +1, +2, duplicate, -1, -3, half
//! the sequence space); bits 4-5 the step of the timestamp (same, +3000, -3000, half the
//! 32-bit space); bit 6 `skip_gap` after the packet. Sequence numbers and timestamps start
//! just before they wrap.
//!
//! Invariants checked beyond "no panic": released sequence numbers account for every lost
//! one; access units are well-formed 4-byte length-prefixed NAL units of at least a NAL unit
//! header each, without parameter sets, delimiters, filler or RTP packet types (48-63);
//! `keyframe` is true exactly when an IRAP slice is present; after a loss or at the start the
//! first access unit out is a keyframe; parameter sets handed out are a VPS, an SPS and a PPS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_media::h265::{is_keyframe, nal_type, NAL_AUD, NAL_FD, NAL_PPS, NAL_SPS, NAL_VPS};
use switchyard_media::{nal_units, validate_length_prefixed};
use switchyard_rtp::h265::{H265AccessUnit, H265Depacketizer};
use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::PacketRef;

const SEQ_STEPS: [u16; 8] = [1, 1, 1, 2, 0, 0xffff, 0xfffd, 0x8000];
const TS_STEPS: [u32; 4] = [0, 3000, 3000u32.wrapping_neg(), 0x8000_0000];

fuzz_target!(|data: &[u8]| {
    let mut reorder = ReorderBuffer::new(8);
    let mut depacketizer = H265Depacketizer::default();
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
                    "resumed at a non-IRAP picture"
                );
            }
            for au in &out {
                check(au);
            }
        }
    }
});

fn check(au: &H265AccessUnit) {
    assert!(validate_length_prefixed(&au.data).is_ok());
    assert_eq!(au.keyframe, is_keyframe(&au.data));
    for nal in nal_units(&au.data) {
        let nal = nal.unwrap();
        assert!(nal.len() >= 2, "a NAL unit without its 2-byte header");
        assert!(!matches!(
            nal_type(nal),
            NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD | NAL_FD | 48..=63
        ));
    }
    if let Some(sets) = &au.parameter_sets {
        assert_eq!(
            (
                nal_type(&sets.vps),
                nal_type(&sets.sps),
                nal_type(&sets.pps)
            ),
            (NAL_VPS, NAL_SPS, NAL_PPS)
        );
    }
}
