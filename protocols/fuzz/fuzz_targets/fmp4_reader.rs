//! Fuzzes the fMP4 reader (`switchyard_fmp4::reader`, ISO/IEC 14496-12 8.8 movie fragments),
//! which the load generator's HLS and MSE players run on what any server sends them. Input:
//! `[u16 init length][init segment][fragments]`. Invariants: no panic; every sample's bytes lie
//! inside the fragments' buffer; the count returned is the number of samples reported; a
//! sample's decode time never goes back within one call unless a new `tfdt` says so (not
//! checked: a `tfdt` may), and the collected and the streamed forms agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_fmp4::reader::{for_each_sample, read_fragments, InitInfo};

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (init, fragments) = rest.split_at(len);
    let Ok(info) = InitInfo::parse(init) else {
        return;
    };
    let range = fragments.as_ptr_range();
    for track in &info.tracks {
        let mut seen = 0usize;
        let streamed = for_each_sample(fragments, &info, track.track_id, |sample| {
            let inside = sample.data.is_empty()
                || (range.start <= sample.data.as_ptr()
                    && sample.data.as_ptr_range().end <= range.end);
            assert!(inside, "a sample's bytes outside the buffer");
            seen += 1;
        });
        if let Ok(count) = streamed {
            assert_eq!(count, seen);
            let collected = read_fragments(fragments, &info, track.track_id).unwrap();
            assert_eq!(collected.len(), count);
        }
    }
});
