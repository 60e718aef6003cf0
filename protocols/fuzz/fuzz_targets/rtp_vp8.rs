//! Fuzzes the VP8 RTP depacketizer (RFC 7741) behind the reorder buffer; see `common/coded.rs`
//! for the input format. Beyond the shared invariants: `keyframe` agrees with the frame tag,
//! and every frame re-packetized by `Vp8Packetizer` depacketizes to the same bytes.
#![no_main]

#[path = "common/coded.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_rtp::vp8::{is_keyframe, Vp8Depacketizer, Vp8Packetizer};

common::depacketize_impl!(Vp8Depacketizer);

fuzz_target!(|data: &[u8]| {
    let mut packetizer = Vp8Packetizer::new(if data.first().is_some_and(|b| b & 0x80 != 0) {
        1200
    } else {
        5
    });
    let mut mirror = Vp8Depacketizer::default();
    common::run(data, &mut Vp8Depacketizer::default(), |frame| {
        assert_eq!(frame.keyframe, is_keyframe(&frame.data));
        let mut payloads = Vec::new();
        packetizer.packetize(&frame.data, &mut payloads).unwrap();
        let again = common::mirror(&mut mirror, frame, &payloads);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (&again[0].data, again[0].keyframe),
            (&frame.data, frame.keyframe)
        );
    });
});
