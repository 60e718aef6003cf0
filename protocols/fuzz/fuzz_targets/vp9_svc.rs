//! Fuzzes the VP9 uncompressed header reader and the SVC superframe joiner
//! (`switchyard_media::vp9_svc`, fed by WHIP publishers' layer frames).
//!
//! Input: a byte whose low 3 bits are the number of layer frames less one, a 16-bit
//! big-endian length for each layer frame but the last, then the frames' bytes. Invariants beyond "no panic": a frame whose
//! header reads and is shown, hidden, reads back hidden with the same size, keyframe flag and
//! refreshed slots, and ends in the same bytes (compressed header and tiles); a joined picture
//! is a superframe whose frames are the layers (the lower ones possibly hidden), and one whose
//! layers were hidden and grow gives its layers back to `svc_layers`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_media::vp9::superframe_frames;
use switchyard_media::vp9_svc::{
    hide, svc_layers, Joined, RefSizes, SvcPictures, UncompressedHeader,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(selector & 7) + 1;
    let mut lengths = Vec::new();
    for _ in 1..count {
        let [hi, lo, tail @ ..] = rest else { return };
        lengths.push(usize::from(u16::from_be_bytes([*hi, *lo])));
        rest = tail;
    }
    let mut layers: Vec<&[u8]> = Vec::new();
    for len in lengths {
        let (layer, tail) = rest.split_at(len.min(rest.len()));
        layers.push(layer);
        rest = tail;
    }
    layers.push(rest);
    let refs = RefSizes::default();
    for layer in &layers {
        if let Some(h) = UncompressedHeader::parse(layer, &refs) {
            if h.shown {
                let hidden = hide(layer, &h);
                let again =
                    UncompressedHeader::parse(&hidden, &refs).expect("a hidden frame reads");
                assert!(!again.shown);
                assert_eq!(
                    (
                        again.size,
                        again.keyframe,
                        again.refresh_frame_flags,
                        again.error_resilient
                    ),
                    (h.size, h.keyframe, h.refresh_frame_flags, h.error_resilient)
                );
            }
        }
    }
    if layers.iter().any(|l| l.is_empty()) {
        return;
    }
    let mut joiner = SvcPictures::default();
    match joiner.join(&layers) {
        None => assert_eq!(layers.len(), 1),
        Some(Joined::AsSent(picture)) => {
            let frames = superframe_frames(&picture).expect("a superframe");
            let got: Vec<&[u8]> = frames.into_iter().map(|r| &picture[r]).collect();
            assert_eq!(got, layers);
        }
        Some(Joined::Hidden(picture)) => {
            let frames = superframe_frames(&picture).expect("a superframe");
            assert_eq!(frames.len(), layers.len());
            assert_eq!(
                &picture[frames[frames.len() - 1].clone()],
                layers[layers.len() - 1]
            );
            let _ = svc_layers(&picture, &mut RefSizes::default());
        }
    }
});
