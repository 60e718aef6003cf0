//! Shared by the VP8, VP9 and AV1 RTP fuzz targets: drives a depacketizer behind the reorder
//! buffer with packets described by the input, and checks what comes out.
//!
//! Input: records of `[flags][length: u16 big-endian][payload]`, as in `rtp_h264`. Flags: bit 0
//! marker; bits 1-3 the step of the sequence number (+1, +1, +1, +2, duplicate, -1, -3, half
//! the sequence space); bits 4-5 the step of the timestamp (same, +3000, -3000, half the
//! 32-bit space); bit 6 `skip_gap` after the packet. Sequence numbers and timestamps start
//! just before they wrap.
//!
//! Invariants: released sequence numbers account for every lost one; frames are not empty;
//! after a loss or at the start the first frame out is a keyframe; `check` (per codec) holds
//! for every frame.

use switchyard_rtp::reorder::ReorderBuffer;
use switchyard_rtp::{CodedFrame, PacketRef, RtpError};

const SEQ_STEPS: [u16; 8] = [1, 1, 1, 2, 0, 0xffff, 0xfffd, 0x8000];
const TS_STEPS: [u32; 4] = [0, 3000, 3000u32.wrapping_neg(), 0x8000_0000];

pub trait Depacketize {
    fn push(
        &mut self,
        packet: PacketRef<'_>,
        lost: u16,
        out: &mut Vec<CodedFrame>,
    ) -> Result<(), RtpError>;
    fn waiting_for_keyframe(&self) -> bool;
}

pub fn run<D: Depacketize>(data: &[u8], depacketizer: &mut D, mut check: impl FnMut(&CodedFrame)) {
    let mut reorder = ReorderBuffer::new(8);
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
                    out.first().is_none_or(|f| f.keyframe),
                    "resumed at a non-keyframe"
                );
            }
            for frame in &out {
                assert!(!frame.data.is_empty());
                check(frame);
            }
        }
    }
}

/// Sends one frame's payloads through `mirror` and returns what comes out.
pub fn mirror<D: Depacketize>(
    mirror: &mut D,
    frame: &CodedFrame,
    payloads: &[switchyard_rtp::Payload],
) -> Vec<CodedFrame> {
    let mut again = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let packet = PacketRef {
            sequence: i as u16,
            timestamp: frame.timestamp,
            marker: p.marker,
            payload: &p.data,
        };
        mirror
            .push(packet, 0, &mut again)
            .expect("packetized frames depacketize");
    }
    again
}

macro_rules! depacketize_impl {
    ($t:ty) => {
        impl common::Depacketize for $t {
            fn push(
                &mut self,
                packet: switchyard_rtp::PacketRef<'_>,
                lost: u16,
                out: &mut Vec<switchyard_rtp::CodedFrame>,
            ) -> Result<(), switchyard_rtp::RtpError> {
                <$t>::push(self, packet, lost, out)
            }
            fn waiting_for_keyframe(&self) -> bool {
                <$t>::waiting_for_keyframe(self)
            }
        }
    };
}
pub(crate) use depacketize_impl;
