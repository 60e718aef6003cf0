//! Fuzzes the AV1 RTP depacketizer (AV1 RTP spec v1.0) behind the reorder buffer; see
//! `common/coded.rs` for the input format. Beyond the shared invariants: `keyframe` agrees with
//! `av1::is_keyframe` on the output, keyframes give an `av1C`, and every temporal unit
//! re-packetized by `Av1Packetizer` depacketizes to the same bytes.
#![no_main]

#[path = "common/coded.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_rtp::av1::{av1c_from_temporal_unit, is_keyframe, Av1Depacketizer, Av1Packetizer};

common::depacketize_impl!(Av1Depacketizer);

fuzz_target!(|data: &[u8]| {
    let packetizer = Av1Packetizer::new(if data.first().is_some_and(|b| b & 0x80 != 0) {
        1200
    } else {
        4
    });
    let mut mirror = Av1Depacketizer::default();
    common::run(data, &mut Av1Depacketizer::default(), |frame| {
        assert_eq!(frame.keyframe, is_keyframe(&frame.data));
        // A sequence header too short to read gives no av1C: only check it never panics.
        let _ = av1c_from_temporal_unit(&frame.data);
        let mut payloads = Vec::new();
        packetizer
            .packetize(&frame.data, frame.keyframe, &[], &mut payloads)
            .unwrap();
        let again = common::mirror(&mut mirror, frame, &payloads);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (&again[0].data, again[0].keyframe),
            (&frame.data, frame.keyframe)
        );
    });
});
