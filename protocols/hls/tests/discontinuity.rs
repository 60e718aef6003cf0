//! A live playlist across changes of configuration (a new SPS at another resolution, another
//! codec, a publisher that leaves and comes back): EXT-X-DISCONTINUITY before the first segment
//! of the new configuration, a media sequence that keeps growing, EXT-X-DISCONTINUITY-SEQUENCE
//! counting the tags that left (draft-pantos-hls-rfc8216bis 4.4.3.3, 4.4.4.3, 6.2.1, 6.2.2),
//! a new init segment under a URI of its own, and LL-HLS parts, preload hints, blocking reload
//! and delta updates that stay consistent. Every playlist is read back by m3u8-rs (`support/`).

mod support;

use bytes::Bytes;
use support::*;
use switchyard_hls::{HlsConfig, HlsError, LivePlaylist, Part, PlaylistAnswer};

fn long_window() -> HlsConfig {
    HlsConfig {
        window_segments: 10,
        ..HlsConfig::default()
    }
}

#[test]
fn a_new_configuration_goes_on_with_a_discontinuity_and_its_own_init_segment() {
    let mut s = Source::default_ll();
    s.push_n(25); // 0, 1 complete; 2 has parts 0..=4
    let before = check_against_source(&s, &full(&s.playlist));
    assert_eq!(before.preload_hint, Some((2, 5)));
    assert!(!text(&full(&s.playlist)).contains("DISCONTINUITY"));

    s.set_init(b"moov 480p");
    // Segment 2 ends at once (1 s), so plain players get it now; 3 will start the new
    // configuration. The playlist still ends with a hint (hls.js needs one: see render.rs).
    let c = check_against_source(&s, &full(&s.playlist));
    assert_eq!(c.parsed.media_sequence, 0);
    assert_eq!(c.parsed.segments.len(), 3);
    assert!((c.parsed.segments[2].duration - 1.0).abs() < 1e-6);
    assert_eq!(c.preload_hint, Some((3, 0)));
    assert_eq!(s.playlist.discontinuity_sequence(), Some(0));
    assert!(text(&full(&s.playlist)).contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
    assert!(!text(&full(&s.playlist)).contains("#EXT-X-DISCONTINUITY\n"));
    // The hint given before the change (2.5) will never exist: not waited for.
    assert!(!s.playlist.is_upcoming(2, Some(5)));
    assert!(s.playlist.part(2, 5).is_none());
    // A blocking request for it is answered at once (segment 2 is complete); one for the
    // first part of the new configuration waits for it.
    assert!(matches!(
        s.playlist.playlist(&request("_HLS_msn=2&_HLS_part=5")),
        PlaylistAnswer::Ready(_)
    ));
    let first_new = request("_HLS_msn=3&_HLS_part=0");
    assert!(matches!(
        s.playlist.playlist(&first_new),
        PlaylistAnswer::NotYet
    ));
    assert!(s.playlist.is_upcoming(3, Some(0)));
    assert!(s.playlist.is_upcoming(3, None));

    s.push();
    let b = ready(s.playlist.playlist(&first_new));
    let c = check_against_source(&s, &b);
    assert_eq!(c.preload_hint, Some((3, 1)));
    assert_eq!(c.segments.last(), Some(&(3, 1, 1)));
    let t = text(&b);
    assert!(
        t.contains(
            "seg2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"
        ),
        "{t}"
    );
    assert_eq!(t.matches("#EXT-X-MAP:").count(), 2);
    assert_eq!(&s.playlist.init_segment(0).unwrap()[..], b"ftyp+moov");
    assert_eq!(&s.playlist.init_segment(1).unwrap()[..], b"moov 480p");
    assert_eq!(&s.playlist.init()[..], b"moov 480p");
    assert!(s.playlist.init_segment(2).is_none());

    // Once segment 3 completes, m3u8-rs sees the discontinuity on it, and the map.
    s.push_n(10);
    let c = check_against_source(&s, &full(&s.playlist));
    let seg3 = &c.parsed.segments[3];
    assert_eq!(seg3.uri, "seg3.m4s");
    assert!(seg3.discontinuity);
    assert_eq!(seg3.map.as_ref().unwrap().uri, "init1.mp4");
    assert!(!c.parsed.segments[2].discontinuity);
    assert_eq!(c.parsed.segments[0].map.as_ref().unwrap().uri, "init.mp4");
}

#[test]
fn the_discontinuity_sequence_counts_tags_as_their_segments_leave_the_window() {
    let mut s = Source::default_ll(); // 6 segments of 2 s
    let mut last_media_sequence = 0;
    let mut last_discontinuity_sequence = 0;
    // A change every 3.4 segments: segments of 2 s and of 0.8 s (cut by the change).
    for round in 0..12 {
        s.push_n(34);
        if round % 2 == 0 {
            s.set_init(if round % 4 == 0 { b"moov a" } else { b"moov b" });
        } else {
            s.discontinuity(); // the publisher left and came back, same configuration
        }
        for skip in ["", "_HLS_skip=YES"] {
            let c = check_against_source(&s, &ready(s.playlist.playlist(&request(skip))));
            assert!(c.parsed.media_sequence >= last_media_sequence);
            assert!(c.parsed.discontinuity_sequence >= last_discontinuity_sequence);
        }
        let c = check_against_source(&s, &full(&s.playlist));
        // The tag counts exactly the discontinuities before the first listed segment.
        let first = c.parsed.media_sequence;
        let removed = s.discontinuities.iter().filter(|m| **m < first).count() as u64;
        assert_eq!(c.parsed.discontinuity_sequence, removed, "round {round}");
        assert_eq!(s.playlist.discontinuity_sequence(), Some(removed));
        last_media_sequence = c.parsed.media_sequence;
        last_discontinuity_sequence = c.parsed.discontinuity_sequence;
    }
    assert!(
        last_discontinuity_sequence >= 8,
        "{last_discontinuity_sequence}"
    );
    // Init segments are kept while a listed segment needs them, and no longer.
    let c = check(&full(&s.playlist));
    let used: Vec<u32> = c.segments.iter().map(|x| x.1).collect();
    for (_, id, bytes) in &s.inits {
        let served = s.playlist.init_segment(*id);
        if used.contains(id) || *id == s.inits.last().unwrap().1 {
            assert_eq!(served.as_ref(), Some(bytes), "init{id}");
        } else {
            assert_eq!(served, None, "init{id} is no longer used");
        }
    }
}

#[test]
fn a_delta_update_counts_the_discontinuities_it_skips() {
    let mut s = Source::new(long_window(), PART, 10);
    s.push_n(23);
    s.set_init(b"moov 2");
    s.push_n(14);
    s.set_init(b"moov 3");
    s.push_n(80);
    // 10 segments listed, two of them with discontinuities near the front.
    let full_bytes = full(&s.playlist);
    let f = check_against_source(&s, &full_bytes);
    assert_eq!(f.parsed.segments.len(), 10);
    assert_eq!(f.parsed.discontinuity_sequence, 0);
    assert_eq!(
        text(&full_bytes).matches("#EXT-X-DISCONTINUITY\n").count(),
        2
    );

    let delta = ready(s.playlist.playlist(&request("_HLS_skip=YES")));
    let d = check_against_source(&s, &delta);
    assert!(d.skipped >= 4, "{}", d.skipped);
    // Both tags were in the skipped segments: EXT-X-DISCONTINUITY-SEQUENCE counts them, so
    // every segment of the delta has the Discontinuity Sequence Number it has in the full
    // playlist (checked against the source by check_against_source).
    assert!(!text(&delta).contains("#EXT-X-DISCONTINUITY\n"));
    assert_eq!(d.parsed.discontinuity_sequence, 2);
    let t = text(&delta);
    assert!(
        t.find("#EXT-X-DISCONTINUITY-SEQUENCE:2").unwrap() < t.find("#EXT-X-SKIP:").unwrap(),
        "{t}"
    );
    // The delta names the init segment its first segment needs.
    assert_eq!(d.segments[0].1, 2);
    assert_eq!(d.parsed.segments[0].map.as_ref().unwrap().uri, "init2.mp4");

    // A client merging the delta into the full playlist it had gets the full playlist back.
    let merged: Vec<_> = f.segments[..d.skipped as usize]
        .iter()
        .chain(&d.segments)
        .copied()
        .collect();
    assert_eq!(merged, f.segments);

    // _HLS_skip=v2 the same.
    let v2 = ready(s.playlist.playlist(&request("_HLS_skip=v2")));
    assert_eq!(
        check_against_source(&s, &v2).parsed.discontinuity_sequence,
        2
    );
}

#[test]
fn a_delta_that_skips_only_some_discontinuities_keeps_the_others() {
    let mut s = Source::new(long_window(), PART, 10);
    s.push_n(30);
    s.set_init(b"moov 2"); // segment 3
    s.push_n(50);
    s.discontinuity(); // segment 8
    s.push_n(40);
    let f = check_against_source(&s, &full(&s.playlist));
    let d = check_against_source(&s, &ready(s.playlist.playlist(&request("_HLS_skip=YES"))));
    let skipped_tags = s
        .discontinuities
        .iter()
        .filter(|m| **m >= f.parsed.media_sequence && **m < f.parsed.media_sequence + d.skipped)
        .count() as u64;
    assert_eq!(skipped_tags, 1, "segment 3 is skipped, segment 8 is not");
    assert_eq!(
        d.parsed.segments.iter().filter(|x| x.discontinuity).count(),
        1
    );
    assert_eq!(
        d.parsed.discontinuity_sequence,
        f.parsed.discontinuity_sequence + skipped_tags
    );
    assert_eq!(
        d.parsed.segments.iter().filter(|x| x.discontinuity).count() as u64 + skipped_tags,
        f.parsed.segments.iter().filter(|x| x.discontinuity).count() as u64
    );
}

#[test]
fn a_publisher_that_comes_back_with_the_same_configuration_keeps_its_init_segment() {
    let mut s = Source::default_ll();
    s.push_n(25);
    s.discontinuity();
    assert_eq!(
        check_against_source(&s, &full(&s.playlist)).preload_hint,
        Some((3, 0))
    );
    // Leaving twice before coming back is one discontinuity.
    s.discontinuity();
    s.push_n(12);
    let b = full(&s.playlist);
    let c = check_against_source(&s, &b);
    assert_eq!(text(&b).matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert_eq!(text(&b).matches("#EXT-X-MAP:").count(), 1, "same init.mp4");
    assert_eq!(c.parsed.segments[3].uri, "seg3.m4s");
    assert!(c.parsed.segments[3].discontinuity);
    assert!(c.parsed.segments[3].map.is_none());
}

#[test]
fn configurations_before_the_first_part_replace_each_other() {
    let mut s = Source::default_ll();
    s.set_init(b"moov b");
    s.set_init(b"moov c");
    assert!(s.playlist.init_segment(0).is_none());
    assert!(s.playlist.init_segment(1).is_none());
    assert_eq!(&s.playlist.init_segment(2).unwrap()[..], b"moov c");
    // Nothing was published: no discontinuity.
    s.discontinuity();
    s.push_n(25);
    let b = full(&s.playlist);
    let c = check_against_source(&s, &b);
    assert!(!text(&b).contains("DISCONTINUITY"), "{}", text(&b));
    assert_eq!(c.parsed.segments[0].map.as_ref().unwrap().uri, "init2.mp4");
    assert_eq!(s.playlist.discontinuity_sequence(), None);

    // Two changes in a row after media: one discontinuity, the middle init never listed.
    s.set_init(b"moov d");
    s.set_init(b"moov e");
    s.push_n(3);
    let b = full(&s.playlist);
    check_against_source(&s, &b);
    assert_eq!(text(&b).matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert!(text(&b).contains("#EXT-X-MAP:URI=\"init4.mp4\""));
    assert!(!text(&b).contains("init3.mp4"));
    assert!(s.playlist.init_segment(3).is_none());
}

#[test]
fn the_first_part_of_a_new_configuration_must_be_independent() {
    let mut p = LivePlaylist::new(HlsConfig::default(), Bytes::from_static(b"moov"));
    let part = |independent| Part {
        data: Bytes::from_static(b"x"),
        duration: PART,
        independent,
    };
    p.push_part(part(true), false, START_MS).unwrap();
    p.push_part(part(false), false, START_MS).unwrap();
    p.set_init(Bytes::from_static(b"moov 2"));
    let before = full(&p);
    assert_eq!(
        p.push_part(part(false), false, START_MS),
        Err(HlsError::SegmentStartNotIndependent { msn: 1 })
    );
    assert_eq!(full(&p).as_ptr(), before.as_ptr(), "nothing changed");
    p.push_part(part(true), false, START_MS).unwrap();
    assert_eq!(p.next_part(), (1, 1));
}

#[test]
fn plain_players_see_the_discontinuity_in_the_segment_list() {
    let mut s = Source::default_ll();
    s.push_n(25);
    s.set_init(b"moov 2");
    s.push_n(31);
    let plain = plain_view(&full(&s.playlist));
    let (rest, parsed) = m3u8_rs::parse_media_playlist(plain.as_bytes()).unwrap();
    assert!(rest.is_empty());
    let uris: Vec<(&str, bool, Option<&str>)> = parsed
        .segments
        .iter()
        .map(|x| {
            (
                x.uri.as_str(),
                x.discontinuity,
                x.map.as_ref().map(|m| m.uri.as_str()),
            )
        })
        .collect();
    assert_eq!(
        uris,
        vec![
            ("seg0.m4s", false, Some("init.mp4")),
            ("seg1.m4s", false, None),
            ("seg2.m4s", false, None),
            ("seg3.m4s", true, Some("init1.mp4")),
            ("seg4.m4s", false, None),
            ("seg5.m4s", false, None),
        ]
    );
}
