//! Fuzzes the VP9 RTP depacketizer (RFC 9628) behind the reorder buffer; see `common/coded.rs`
//! for the input format. Beyond the shared invariants: every frame re-packetized by
//! `Vp9Packetizer` (spatial layers of a joined picture as layer frames) depacketizes to the
//! same bytes and keyframe flag, and reading a keyframe's header never panics.
#![no_main]

#[path = "common/coded.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use switchyard_rtp::vp9::{Vp9Depacketizer, Vp9KeyframeInfo, Vp9Packetizer};

common::depacketize_impl!(Vp9Depacketizer);

fuzz_target!(|data: &[u8]| {
    let mut packetizer = Vp9Packetizer::new(if data.first().is_some_and(|b| b & 0x80 != 0) {
        1200
    } else {
        40 // the smallest a picture of 8 spatial layers with its SS needs
    });
    let mut mirror = Vp9Depacketizer::default();
    common::run(data, &mut Vp9Depacketizer::default(), |frame| {
        if frame.keyframe {
            if let Some(info) = Vp9KeyframeInfo::parse(&frame.data) {
                assert_eq!(info.vpcc().len(), 12);
            }
        }
        let mut payloads = Vec::new();
        packetizer
            .packetize(&frame.data, frame.keyframe, &mut payloads)
            .unwrap();
        let again = common::mirror(&mut mirror, frame, &payloads);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (&again[0].data, again[0].keyframe),
            (&frame.data, frame.keyframe)
        );
    });
});
