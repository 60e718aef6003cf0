//! Fuzzes what an HLS request asks for (`GET /hls/{path}?{query}`, src/http/media.rs): the path
//! split into stream name and file (`switchyard_hls::parse_path`, the stream name checked by
//! `switchyard::bus::validate_name`), the delivery directives `_HLS_msn`, `_HLS_part` and
//! `_HLS_skip` (spec 6.2.5, `parse_request`), and the answer of a small live playlist
//! (`LivePlaylist::playlist`, `segment`, `part`, `init_segment`, `is_upcoming`) to them.
//!
//! Input: four bytes that shape the playlist (parts pushed, parts per segment, the part after
//! which the configuration changes, segments kept), then the request as text: the path after
//! `/hls/`, optionally `?` and the query (lossily decoded from UTF-8, as the server only ever
//! sees text). Invariants: a file name parsed is the one spelling of its resource
//! (`Resource::uri`); a playlist answered is `#EXTM3U` text that lists what it says is there;
//! a segment or part served is not also "upcoming"; a blocking request is answered only once
//! what it waits for is listed, and waits only for what is upcoming.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use switchyard_hls::{
    parse_path, parse_request, HlsConfig, HlsFile, LivePlaylist, Part, PlaylistAnswer, Resource,
};

fuzz_target!(|data: &[u8]| {
    let Some((&[parts, per_segment, new_init_at, window], request)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let request = String::from_utf8_lossy(request);
    let (path, query) = match request.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*request, None),
    };
    let Some((name, file)) = parse_path(path) else {
        return;
    };
    let _ = switchyard::bus::validate_name(name);
    let playlist = live_playlist(
        parts % 64,
        per_segment % 8 + 1,
        new_init_at % 64,
        window % 8,
    );
    match file {
        HlsFile::Playlist => {
            let Ok(request) = parse_request(query.unwrap_or("")) else {
                return;
            };
            match playlist.playlist(&request) {
                PlaylistAnswer::Ready(body) => {
                    let text = std::str::from_utf8(&body).expect("a playlist is UTF-8");
                    assert!(text.starts_with("#EXTM3U\n"), "{text}");
                    if let Some(msn) = request.msn {
                        // What a blocking request waits for is there: never answered early.
                        assert!(!playlist.is_upcoming(msn, request.part));
                        if request.part.is_none() {
                            assert!(msn < playlist.next_part().0);
                        }
                    }
                }
                PlaylistAnswer::NotYet => {
                    let msn = request.msn.expect("only blocking requests wait");
                    assert!(playlist.is_upcoming(msn, request.part));
                }
                PlaylistAnswer::Invalid(reason) => assert!(!reason.is_empty()),
            }
        }
        HlsFile::Resource(resource) => {
            let file_name = path.rsplit('/').next().unwrap_or_default();
            assert_eq!(resource.uri(), file_name, "one spelling per resource");
            match resource {
                Resource::Init(id) => {
                    let _ = playlist.init_segment(id);
                }
                Resource::Segment(msn) => {
                    if playlist.segment(msn).is_some() {
                        assert!(!playlist.is_upcoming(msn, None));
                    }
                }
                Resource::Part(msn, index) => {
                    if playlist.part(msn, index).is_some() {
                        assert!(!playlist.is_upcoming(msn, Some(index)));
                    }
                }
            }
        }
    }
});

/// `parts` parts of 200 ms, a segment every `per_segment` parts, a new init segment after part
/// `new_init_at`, `window` segments kept (0: the default).
fn live_playlist(parts: u8, per_segment: u8, new_init_at: u8, window: u8) -> LivePlaylist {
    let config = HlsConfig {
        segment_target: Duration::from_millis(200 * u64::from(per_segment)),
        window_segments: if window == 0 { 6 } else { usize::from(window) },
        ..HlsConfig::default()
    };
    let mut playlist = LivePlaylist::new(config, Bytes::from_static(b"init"));
    for i in 0..parts {
        if i == new_init_at && i > 0 {
            playlist.set_init(Bytes::from(vec![b'i', i]));
        }
        let starts_segment = i % per_segment == 0;
        let part = Part {
            data: Bytes::from(vec![i; 3]),
            duration: Duration::from_millis(200),
            independent: starts_segment || i == new_init_at,
        };
        let started =
            playlist.push_part(part, starts_segment, 1_700_000_000_000 + 200 * u64::from(i));
        assert!(started.is_ok() || !starts_segment);
    }
    playlist
}
