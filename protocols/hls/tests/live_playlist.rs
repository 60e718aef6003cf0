//! Behaviour of `LivePlaylist` over simulated time, with every rendered playlist read back by an
//! independent parser (m3u8-rs) and checked against the rules of draft-pantos-hls-rfc8216bis
//! that m3u8-rs does not know (`support/`). Changes of configuration: `discontinuity.rs`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::*;
use switchyard_hls::{
    parse_request, HlsConfig, HlsError, LivePlaylist, Part, PlaylistAnswer, PlaylistRequest, Skip,
};

#[test]
fn every_playlist_parses_with_m3u8_rs_as_the_stream_goes_on() {
    let mut s = Source::default_ll();
    // Before anything: no segment, a hint for the very first part.
    let c = check(&full(&s.playlist));
    assert!(c.parsed.segments.is_empty());
    assert_eq!(c.preload_hint, Some((0, 0)));

    for step in 0..120 {
        s.push();
        let c = check_against_source(&s, &full(&s.playlist));
        // Segment n completes with the push that starts n + 1.
        let complete = step / 10;
        assert_eq!(
            c.parsed.segments.len(),
            complete.min(6),
            "after {} parts",
            step + 1
        );
        // The in-progress segment's parts are always listed.
        let (msn, next) = s.playlist.next_part();
        let current: Vec<_> = c.parts.iter().filter(|p| p.0 == msn).collect();
        assert_eq!(current.len() as u32, next);
    }
}

#[test]
fn old_segments_keep_their_line_but_lose_their_parts() {
    let mut s = Source::default_ll();
    s.push_n(85); // segments 0..=7 complete, 8 has 5 parts
    let c = check_against_source(&s, &full(&s.playlist));
    assert_eq!(c.parsed.media_sequence, 2);
    assert_eq!(c.parsed.segments.len(), 6);
    // 3 target durations = 6 s from the end (17.0 s): segments starting at or after 11.0 s,
    // i.e. 6 (12 s) and 7 (14 s) and the in-progress 8, list parts; 2..=5 do not.
    let with_parts: Vec<u64> = {
        let mut v: Vec<u64> = c.parts.iter().map(|p| p.0).collect();
        v.dedup();
        v
    };
    assert_eq!(with_parts, vec![6, 7, 8]);
    assert!(c.parts.iter().all(|p| p.3 == (p.1 == 0)));
}

#[test]
fn delta_update_replaces_segments_past_the_skip_boundary() {
    let config = HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 10);
    s.push_n(125); // 12 complete (2..=11 listed), 12 has 5 parts; playlist spans 21 s
    let full_bytes = full(&s.playlist);
    let full_c = check_against_source(&s, &full_bytes);
    assert_eq!(full_c.parsed.segments.len(), 10);
    assert!(text(&full_bytes).contains("CAN-SKIP-UNTIL=12.000"));
    assert!(!text(&full_bytes).contains("#EXT-X-SKIP"));

    let delta = ready(s.playlist.playlist(&request("_HLS_skip=YES")));
    let c = check_against_source(&s, &delta);
    // The listed media spans 21 s (2..=11 and 1 s of 12); the skip boundary is 6 target
    // durations = 12 s before the end, at 9 s: 2..=5 end by 8 s and are skipped, 6 ends at 10 s.
    assert_eq!(c.parsed.version, Some(9));
    assert_eq!(c.parsed.media_sequence, full_c.parsed.media_sequence);
    assert_eq!(c.skipped, 4);
    assert_eq!(
        c.skipped as usize + c.parsed.segments.len(),
        full_c.parsed.segments.len()
    );
    assert_eq!(c.parsed.segments[0].uri, "seg6.m4s");
    // The kept tail is the full playlist's tail, byte for byte, from the first kept segment.
    let from = |t: &str| t[t.find("#EXT-X-PROGRAM-DATE-TIME").unwrap()..].to_string();
    let full_tail = text(&full_bytes);
    let full_tail = &full_tail[full_tail.find("seg5.m4s\n").unwrap() + 9..];
    assert_eq!(from(text(&delta)), full_tail);

    let v2 = ready(s.playlist.playlist(&request("_HLS_skip=v2")));
    let c2 = check_against_source(&s, &v2);
    assert_eq!(
        c2.parsed.version,
        Some(10),
        "skipping DATERANGEs needs version 10"
    );
    assert_eq!(c2.skipped, 4);
    assert!(text(&v2).contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4,RECENTLY-REMOVED-DATERANGES=\"\""));
}

#[test]
fn skip_is_not_advertised_when_the_window_is_too_short_to_matter() {
    let mut s = Source::default_ll(); // 6 x 2 s = 12 s = 6 target durations
    s.push_n(200);
    let full_bytes = full(&s.playlist);
    assert!(!text(&full_bytes).contains("CAN-SKIP-UNTIL"));
    for q in ["_HLS_skip=YES", "_HLS_skip=v2"] {
        let b = ready(s.playlist.playlist(&request(q)));
        assert_eq!(
            b.as_ptr(),
            full_bytes.as_ptr(),
            "{q}: the full playlist, shared"
        );
    }
}

#[test]
fn delta_request_before_anything_is_old_enough_gets_the_full_playlist() {
    let config = HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 10);
    s.push_n(30);
    let f = full(&s.playlist);
    let d = ready(s.playlist.playlist(&request("_HLS_skip=YES")));
    assert_eq!(d.as_ptr(), f.as_ptr());
}

#[test]
fn plain_players_see_a_valid_live_playlist() {
    let config = HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 10);
    for n in [1usize, 9, 10, 11, 57, 200] {
        s.push_n(n);
        for q in ["", "_HLS_skip=YES"] {
            let ll = ready(s.playlist.playlist(&request(q)));
            let plain = plain_view(&ll);
            assert!(!plain.contains("part"), "{plain}");
            let (rest, parsed) = m3u8_rs::parse_media_playlist(plain.as_bytes()).unwrap();
            assert!(rest.is_empty());
            let ll_parsed = check(&ll).parsed;
            assert_eq!(parsed.segments.len(), ll_parsed.segments.len());
            assert_eq!(parsed.media_sequence, ll_parsed.media_sequence);
            for (a, b) in parsed.segments.iter().zip(&ll_parsed.segments) {
                assert_eq!(a.uri, b.uri);
                assert_eq!(a.duration, b.duration);
                assert_eq!(a.program_date_time, b.program_date_time);
                assert!(
                    s.playlist.segment(msn_of(&a.uri)).is_some(),
                    "{} served",
                    a.uri
                );
            }
            // Every URI line of the plain view is a complete segment.
            for line in plain.lines().filter(|l| !l.starts_with('#')) {
                assert!(line.starts_with("seg") && line.ends_with(".m4s"), "{line}");
            }
        }
    }
}

fn msn_of(uri: &str) -> u64 {
    uri.strip_prefix("seg")
        .unwrap()
        .strip_suffix(".m4s")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn blocking_on_a_segment_waits_for_it_to_complete() {
    let mut s = Source::default_ll();
    s.push_n(25); // 0, 1 complete; 2 has 5 parts
    let p = &s.playlist;
    assert!(matches!(
        p.playlist(&request("_HLS_msn=0")),
        PlaylistAnswer::Ready(_)
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=1")),
        PlaylistAnswer::Ready(_)
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=2")),
        PlaylistAnswer::NotYet
    ));
    // Last msn (1) + 2 is still within reach, + 3 is not.
    assert!(matches!(
        p.playlist(&request("_HLS_msn=3")),
        PlaylistAnswer::NotYet
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=4")),
        PlaylistAnswer::Invalid(_)
    ));

    s.push_n(5); // 2 still has parts to come: the cut happens on the next push
    assert!(matches!(
        s.playlist.playlist(&request("_HLS_msn=2")),
        PlaylistAnswer::NotYet
    ));
    s.push(); // cut: 2 complete
    let b = ready(s.playlist.playlist(&request("_HLS_msn=2")));
    assert!(text(&b).contains("seg2.m4s"));
}

#[test]
fn blocking_on_a_part_follows_the_advance_part_limit() {
    let mut s = Source::default_ll();
    s.push_n(23); // 0, 1 complete; 2 has parts 0..=2
    let p = &s.playlist;
    let answer = |q: &str| p.playlist(&request(q));
    assert!(matches!(
        answer("_HLS_msn=2&_HLS_part=2"),
        PlaylistAnswer::Ready(_)
    ));
    assert!(matches!(
        answer("_HLS_msn=2&_HLS_part=3"),
        PlaylistAnswer::NotYet
    ));
    // 3 / 0.2 s = 15 parts ahead of the last one (2.2) at most.
    assert!(matches!(
        answer("_HLS_msn=2&_HLS_part=17"),
        PlaylistAnswer::NotYet
    ));
    match answer("_HLS_msn=2&_HLS_part=18") {
        PlaylistAnswer::Invalid(reason) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The next segment: its part 0 is at least one part ahead.
    assert!(matches!(
        answer("_HLS_msn=3&_HLS_part=0"),
        PlaylistAnswer::NotYet
    ));
    assert!(matches!(
        answer("_HLS_msn=3&_HLS_part=14"),
        PlaylistAnswer::NotYet
    ));
    assert!(matches!(
        answer("_HLS_msn=3&_HLS_part=15"),
        PlaylistAnswer::Invalid(_)
    ));
    assert!(matches!(
        answer("_HLS_msn=4&_HLS_part=0"),
        PlaylistAnswer::Invalid(_)
    ));
    // Parts of complete segments are listed; past the last part of a complete segment means
    // part 0 of the next one, which exists.
    assert!(matches!(
        answer("_HLS_msn=1&_HLS_part=9"),
        PlaylistAnswer::Ready(_)
    ));
    assert!(matches!(
        answer("_HLS_msn=1&_HLS_part=10"),
        PlaylistAnswer::Ready(_)
    ));
    assert!(matches!(
        answer("_HLS_msn=1&_HLS_part=4000"),
        PlaylistAnswer::Ready(_)
    ));
}

#[test]
fn blocked_part_request_becomes_ready_with_the_push_that_brings_it() {
    let mut s = Source::default_ll();
    s.push_n(9); // segment 0, parts 0..=8
    let wanted = request("_HLS_msn=0&_HLS_part=9");
    assert!(matches!(
        s.playlist.playlist(&wanted),
        PlaylistAnswer::NotYet
    ));
    s.push();
    let b = ready(s.playlist.playlist(&wanted));
    assert!(text(&b).contains("URI=\"part0.9.m4s\""));
    // Part 10 of segment 0 will never exist: once 0 completes, it means part 1.0... which is
    // the part that completes it.
    let beyond = request("_HLS_msn=0&_HLS_part=10");
    assert!(matches!(
        s.playlist.playlist(&beyond),
        PlaylistAnswer::NotYet
    ));
    s.push(); // cut: segment 1 part 0
    let b = ready(s.playlist.playlist(&beyond));
    assert!(text(&b).contains("URI=\"part1.0.m4s\""));
}

#[test]
fn blocking_before_the_first_part() {
    let s = Source::default_ll();
    let p = &s.playlist;
    assert!(matches!(
        p.playlist(&request("_HLS_msn=0")),
        PlaylistAnswer::NotYet
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=1")),
        PlaylistAnswer::NotYet
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=2")),
        PlaylistAnswer::Invalid(_)
    ));
    assert!(matches!(
        p.playlist(&request("_HLS_msn=0&_HLS_part=0")),
        PlaylistAnswer::NotYet
    ));
    assert!(p.is_upcoming(0, Some(0)));
    assert!(p.part(0, 0).is_none());
}

#[test]
fn part_without_msn_is_invalid() {
    let mut s = Source::default_ll();
    s.push_n(3);
    match s.playlist.playlist(&request("_HLS_part=1")) {
        PlaylistAnswer::Invalid(reason) => assert!(reason.contains("_HLS_msn"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn blocking_request_for_an_evicted_segment_is_answered_at_once() {
    let mut s = Source::default_ll();
    s.push_n(150);
    assert!(s.playlist.media_sequence() > 3);
    assert!(matches!(
        s.playlist.playlist(&request("_HLS_msn=3&_HLS_part=2")),
        PlaylistAnswer::Ready(_)
    ));
}

#[test]
fn blocking_and_delta_combine() {
    let config = HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 10);
    s.push_n(125);
    let (msn, next) = s.playlist.next_part();
    let q = request(&format!("_HLS_msn={msn}&_HLS_part={next}&_HLS_skip=YES"));
    assert!(matches!(s.playlist.playlist(&q), PlaylistAnswer::NotYet));
    s.push();
    let b = ready(s.playlist.playlist(&q));
    assert!(text(&b).contains("#EXT-X-SKIP:"));
    assert!(text(&b).contains(&format!("URI=\"part{msn}.{next}.m4s\"")));
}

#[test]
fn upcoming_resources_are_told_from_gone_ones() {
    let mut s = Source::default_ll();
    s.push_n(95); // 0..=8 complete (3..=8 kept), 9 has 5 parts
    let p = &s.playlist;
    assert_eq!(p.next_part(), (9, 5));
    // The preload-hinted part and the rest of the segment being built: wait.
    assert!(p.is_upcoming(9, Some(5)));
    assert!(p.is_upcoming(9, Some(9)));
    assert!(p.is_upcoming(10, Some(0)));
    // The segment being built and the next one.
    assert!(p.is_upcoming(9, None));
    assert!(p.is_upcoming(10, None));
    // Existing, evicted, never-to-be, or absurd: not upcoming.
    assert!(!p.is_upcoming(9, Some(4)));
    assert!(!p.is_upcoming(8, None));
    assert!(!p.is_upcoming(1, None));
    assert!(!p.is_upcoming(1, Some(0)));
    assert!(
        !p.is_upcoming(8, Some(10)),
        "segment 8 is complete with 10 parts"
    );
    assert!(!p.is_upcoming(11, None));
    assert!(!p.is_upcoming(9, Some(5 + 16)));
    assert!(!p.is_upcoming(u64::MAX, Some(u32::MAX)));
}

#[test]
fn served_parts_and_segments_are_the_pushed_bytes() {
    let mut s = Source::default_ll();
    s.push_n(47);
    let p = &s.playlist;
    assert_eq!(&p.init()[..], b"ftyp+moov");
    for (msn, index, data, _) in &s.pushed {
        if *msn >= p.media_sequence() {
            assert_eq!(
                p.part(*msn, *index).as_ref(),
                Some(data),
                "part {msn}.{index}"
            );
        }
    }
    for msn in p.media_sequence()..4 {
        let concatenated: Vec<u8> = s
            .pushed
            .iter()
            .filter(|(m, ..)| *m == msn)
            .flat_map(|(_, _, d, _)| d.to_vec())
            .collect();
        let segment = p.segment(msn).unwrap();
        assert_eq!(&segment[..], &concatenated[..], "segment {msn}");
        // Built once: the same buffer each time, and its parts are slices of it.
        assert_eq!(p.segment(msn).unwrap().as_ptr(), segment.as_ptr());
        let range = segment.as_ptr_range();
        for index in 0..10 {
            let part = p.part(msn, index).unwrap();
            assert!(
                range.contains(&part.as_ptr()),
                "part {msn}.{index} shares the segment"
            );
        }
    }
    assert!(p.segment(4).is_none(), "in progress");
    assert!(p.part(4, 7).is_none(), "not yet");
    assert!(p.part(3, 10).is_none(), "segment 3 has 10 parts");
}

#[test]
fn window_evicts_old_segments_and_their_parts() {
    let mut s = Source::default_ll();
    let mut retained_max = 0;
    for _ in 0..50 {
        s.push_n(10);
        let p = &s.playlist;
        let first = p.media_sequence();
        let (building, _) = p.next_part();
        assert!(building - first <= 6, "at most 6 complete segments kept");
        if first > 0 {
            assert!(p.segment(first - 1).is_none());
            assert!(p.part(first - 1, 0).is_none());
        }
        // Memory: what is still reachable is the window plus the segment being built.
        let retained: usize = (first..building)
            .map(|m| p.segment(m).unwrap().len())
            .sum::<usize>()
            + (0..10)
                .filter_map(|i| p.part(building, i))
                .map(|b| b.len())
                .sum::<usize>();
        retained_max = retained_max.max(retained);
    }
    assert_eq!(s.playlist.media_sequence(), 49 - 6);
    let segment_len = s.playlist.segment(45).unwrap().len();
    assert!(retained_max <= 7 * segment_len + 10, "{retained_max}");
}

#[test]
fn short_segments_keep_three_target_durations_listed_within_twice_the_window() {
    // 0.4 s segments under a 2 s target: 3 target durations need 15 segments; the window of
    // 4 may grow to 8 but no further.
    let config = HlsConfig {
        window_segments: 4,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 2);
    s.push_n(101);
    let c = check(&full(&s.playlist));
    assert_eq!(c.parsed.segments.len(), 8);

    // 1.2 s segments: 5 of them make 6 s; 4 would not.
    let config = HlsConfig {
        window_segments: 4,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 6);
    s.push_n(121);
    let c = check(&full(&s.playlist));
    assert_eq!(c.parsed.segments.len(), 5);
}

#[test]
fn target_duration_rounds_to_nearest_and_never_drops() {
    // 2.4 s segments round to 2: the configured target holds.
    let mut s = Source::new(HlsConfig::default(), PART, 12);
    s.push_n(30);
    assert_eq!(s.playlist.target_duration(), 2);
    assert!(text(&full(&s.playlist)).contains("#EXT-X-TARGETDURATION:2\n"));

    // A 2.6 s segment rounds to 3, and a later 2 s segment does not bring it back down.
    let mut s = Source::new(HlsConfig::default(), PART, 13);
    s.push_n(14);
    assert_eq!(s.playlist.target_duration(), 3);
    s.parts_per_segment = 10;
    s.push_n(40);
    assert_eq!(s.playlist.target_duration(), 3);
    let c = check(&full(&s.playlist));
    assert_eq!(c.parsed.target_duration, 3);

    // A 2.5 s segment rounds half up.
    let mut s = Source::new(HlsConfig::default(), Duration::from_millis(250), 10);
    s.push_n(11);
    assert_eq!(s.playlist.target_duration(), 3);

    // The configured target rounds the same way before any segment.
    for (target, expect) in [(1500, 2), (1499, 1), (200, 1), (6000, 6)] {
        let config = HlsConfig {
            segment_target: Duration::from_millis(target),
            ..HlsConfig::default()
        };
        let p = LivePlaylist::new(config, Bytes::new());
        assert_eq!(p.target_duration(), expect, "{target} ms");
    }
}

#[test]
fn part_target_covers_parts_longer_than_configured() {
    // 7 frames at 30 fps for a 200 ms target.
    let long = Duration::from_nanos(233_333_333);
    let mut s = Source::new(HlsConfig::default(), long, 9);
    s.push_n(25);
    let b = full(&s.playlist);
    assert!(text(&b).contains("#EXT-X-PART-INF:PART-TARGET=0.234\n"));
    assert!(text(&b).contains("PART-HOLD-BACK=0.702"));
    check(&b); // every DURATION <= PART-TARGET
}

#[test]
fn playlists_are_rendered_once_per_change() {
    let config = HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    };
    let mut s = Source::new(config, PART, 10);
    s.push_n(125);
    let p = &s.playlist;
    let a = full(p);
    let b = full(p);
    assert_eq!(a.as_ptr(), b.as_ptr());
    // Blocking requests that are already satisfied share the same buffer.
    let c = ready(p.playlist(&request("_HLS_msn=5&_HLS_part=1")));
    assert_eq!(a.as_ptr(), c.as_ptr());
    let d1 = ready(p.playlist(&request("_HLS_skip=YES")));
    let d2 = ready(p.playlist(&request("_HLS_msn=3&_HLS_skip=YES")));
    assert_eq!(d1.as_ptr(), d2.as_ptr());
    assert_ne!(d1.as_ptr(), a.as_ptr());

    let a_copy = a.to_vec();
    s.push();
    let after = full(&s.playlist);
    assert_ne!(after, a, "a push changes the playlist");
    assert_eq!(after.as_ptr(), full(&s.playlist).as_ptr());
    // Bytes already handed out stay valid and unchanged.
    assert_eq!(&a[..], &a_copy[..]);
}

#[test]
fn playlist_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<LivePlaylist>();
}

#[test]
fn cutting_without_a_keyframe_is_refused_and_changes_nothing() {
    let mut p = LivePlaylist::new(HlsConfig::default(), Bytes::new());
    let part = |independent| Part {
        data: Bytes::from_static(b"x"),
        duration: PART,
        independent,
    };
    assert_eq!(
        p.push_part(part(false), false, START_MS),
        Err(HlsError::SegmentStartNotIndependent { msn: 0 }),
        "the first part starts segment 0"
    );
    p.push_part(part(true), false, START_MS).unwrap();
    p.push_part(part(false), false, START_MS).unwrap();
    let before = full(&p);
    assert_eq!(
        p.push_part(part(false), true, START_MS),
        Err(HlsError::SegmentStartNotIndependent { msn: 1 })
    );
    assert_eq!(full(&p).as_ptr(), before.as_ptr(), "nothing changed");
    assert_eq!(p.next_part(), (0, 2));
    assert_eq!(p.current_segment_duration(), 2 * PART);
}

#[test]
fn degenerate_parts_are_refused() {
    let mut p = LivePlaylist::new(HlsConfig::default(), Bytes::new());
    let zero = Part {
        data: Bytes::new(),
        duration: Duration::ZERO,
        independent: true,
    };
    assert_eq!(
        p.push_part(zero, true, 0),
        Err(HlsError::ZeroDurationPart { msn: 0, index: 0 })
    );
    // A source without keyframes cannot grow a segment forever.
    let second = Part {
        data: Bytes::new(),
        duration: Duration::from_secs(1),
        independent: false,
    };
    p.push_part(
        Part {
            independent: true,
            ..second.clone()
        },
        true,
        0,
    )
    .unwrap();
    for _ in 1..60 {
        p.push_part(second.clone(), false, 0).unwrap();
    }
    let err = p.push_part(second, false, 0).unwrap_err();
    assert!(
        matches!(err, HlsError::SegmentTooLong { msn: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cut a segment at a keyframe"));
}

#[test]
fn current_segment_duration_restarts_at_each_cut() {
    let mut s = Source::default_ll();
    assert_eq!(s.playlist.current_segment_duration(), Duration::ZERO);
    s.push_n(7);
    assert_eq!(s.playlist.current_segment_duration(), 7 * PART);
    s.push_n(4);
    assert_eq!(s.playlist.current_segment_duration(), PART);
}

#[test]
fn query_requests_for_every_skip_kind() {
    assert_eq!(
        parse_request("_HLS_msn=10&_HLS_part=3&_HLS_skip=v2").unwrap(),
        PlaylistRequest {
            msn: Some(10),
            part: Some(3),
            skip: Skip::V2
        }
    );
    let err = parse_request("_HLS_msn=ten").unwrap_err();
    assert!(err.to_string().contains("_HLS_msn"), "{err}");
}
