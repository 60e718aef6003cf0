//! Behaviour of `LivePlaylist` over simulated time, with every rendered playlist read back by an
//! independent parser (m3u8-rs) and checked against the rules of draft-pantos-hls-rfc8216bis
//! that m3u8-rs does not know (LL-HLS tags are checked by a small attribute reader here).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use switchyard_hls::{
    parse_request, HlsConfig, HlsError, LivePlaylist, Part, PlaylistAnswer, PlaylistRequest, Skip,
};

const PART: Duration = Duration::from_millis(200);
const START_MS: u64 = 1_700_000_000_000;

/// Feeds a playlist like the HLS output would: fixed-length parts, a keyframe (and a cut) every
/// `parts_per_segment` parts, wall clock advancing with the media.
struct Source {
    playlist: LivePlaylist,
    part_duration: Duration,
    parts_per_segment: u32,
    /// Pushed so far, to check what is served against what went in.
    pushed: Vec<(u64, u32, Bytes, u64)>,
    msn: u64,
    index: u32,
    clock_ms: u64,
}

impl Source {
    fn new(config: HlsConfig, part_duration: Duration, parts_per_segment: u32) -> Self {
        Source {
            playlist: LivePlaylist::new(config, Bytes::from_static(b"ftyp+moov")),
            part_duration,
            parts_per_segment,
            pushed: Vec::new(),
            msn: 0,
            index: 0,
            clock_ms: START_MS,
        }
    }

    fn default_ll() -> Self {
        Source::new(HlsConfig::default(), PART, 10)
    }

    fn push(&mut self) {
        let starts = self.index == self.parts_per_segment;
        if starts {
            self.msn += 1;
            self.index = 0;
        }
        let data = Bytes::from(format!("moof+mdat {}.{}", self.msn, self.index).into_bytes());
        let part = Part {
            data: data.clone(),
            duration: self.part_duration,
            independent: self.index == 0,
        };
        self.playlist
            .push_part(part, starts, self.clock_ms)
            .expect("push");
        self.pushed
            .push((self.msn, self.index, data, self.clock_ms));
        self.clock_ms += self.part_duration.as_millis() as u64;
        self.index += 1;
    }

    fn push_n(&mut self, n: usize) {
        for _ in 0..n {
            self.push();
        }
    }

    fn pdt_of(&self, msn: u64) -> u64 {
        self.pushed
            .iter()
            .find(|(m, i, _, _)| *m == msn && *i == 0)
            .unwrap()
            .3
    }
}

fn ready(answer: PlaylistAnswer) -> Bytes {
    match answer {
        PlaylistAnswer::Ready(b) => b,
        other => panic!("expected Ready, got {other:?}"),
    }
}

fn request(q: &str) -> PlaylistRequest {
    parse_request(q).unwrap()
}

fn full(p: &LivePlaylist) -> Bytes {
    ready(p.playlist(&PlaylistRequest::default()))
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

/// Attributes of an attribute-list (spec 4.2), quotes removed.
fn attributes(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').expect("attribute without =");
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').expect("unterminated quoted-string");
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.insert(name.to_string(), value.to_string());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    out
}

/// The value of the first `#TAG:` line.
fn tag<'a>(playlist: &'a str, name: &str) -> Option<&'a str> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

fn secs(s: &str) -> f64 {
    s.parse().unwrap()
}

/// What a playlist says, as read by m3u8-rs plus the LL-HLS tags, after checking the rules
/// of the spec that apply to every playlist we write.
#[derive(Debug)]
struct Checked {
    parsed: m3u8_rs::MediaPlaylist,
    skipped: u64,
    /// (msn, index, duration, independent) of every EXT-X-PART, in order.
    parts: Vec<(u64, u32, f64, bool)>,
    preload_hint: (u64, u32),
}

fn check(bytes: &Bytes) -> Checked {
    let text = text(bytes);
    let (rest, parsed) = m3u8_rs::parse_media_playlist(bytes).expect("m3u8-rs parses it");
    assert!(
        rest.is_empty(),
        "m3u8-rs left {:?}",
        std::str::from_utf8(rest)
    );
    assert!(text.ends_with('\n'));
    assert!(!parsed.end_list);
    let version = parsed.version.expect("EXT-X-VERSION");
    assert!(version >= 9, "{version}");

    // 4.4.3.1: each EXTINF, rounded to the nearest integer, <= the target duration.
    let td = parsed.target_duration as f64;
    for s in &parsed.segments {
        assert!((s.duration as f64).round() <= td, "{} > {td}", s.duration);
        assert!(s.program_date_time.is_some(), "PDT on every segment");
    }

    // 4.4.3.8 server control limits.
    let control = attributes(tag(text, "#EXT-X-SERVER-CONTROL").unwrap());
    let part_target = secs(&attributes(tag(text, "#EXT-X-PART-INF").unwrap())["PART-TARGET"]);
    assert_eq!(control["CAN-BLOCK-RELOAD"], "YES");
    assert!(secs(&control["PART-HOLD-BACK"]) >= 3.0 * part_target - 1e-9);
    assert!(secs(&control["HOLD-BACK"]) >= 3.0 * td - 1e-9);
    if let Some(until) = control.get("CAN-SKIP-UNTIL") {
        assert!(secs(until) >= 6.0 * td - 1e-9);
    }

    let skip = tag(text, "#EXT-X-SKIP").map(attributes);
    let skipped: u64 = skip
        .as_ref()
        .map_or(0, |a| a["SKIPPED-SEGMENTS"].parse().unwrap());
    if skip.is_some() {
        assert!(
            control.contains_key("CAN-SKIP-UNTIL"),
            "delta without advert"
        );
        assert!(skipped > 0);
    }

    // Segments: consecutive msns from EXT-X-MEDIA-SEQUENCE (+ skipped), our URI scheme.
    for (i, s) in parsed.segments.iter().enumerate() {
        let msn = parsed.media_sequence + skipped + i as u64;
        assert_eq!(s.uri, format!("seg{msn}.m4s"));
    }
    let map = parsed.segments.first().and_then(|s| s.map.as_ref());
    if let Some(first) = parsed.segments.first() {
        assert_eq!(
            map.expect("EXT-X-MAP before the first segment").uri,
            "init.mp4"
        );
        assert!(first.uri.starts_with("seg"));
    }

    // Parts: URIs in order, durations <= PART-TARGET, they add up to their segment's EXTINF,
    // and once a segment lists its parts every later segment does.
    let mut parts = Vec::new();
    for line in text.lines() {
        if let Some(list) = line.strip_prefix("#EXT-X-PART:") {
            let a = attributes(list);
            let uri = a["URI"]
                .strip_prefix("part")
                .unwrap()
                .strip_suffix(".m4s")
                .unwrap();
            let (msn, index) = uri.split_once('.').unwrap();
            let d = secs(&a["DURATION"]);
            assert!(
                d <= part_target + 1e-9,
                "part {d} > PART-TARGET {part_target}"
            );
            parts.push((
                msn.parse::<u64>().unwrap(),
                index.parse::<u32>().unwrap(),
                d,
                a.get("INDEPENDENT").map(String::as_str) == Some("YES"),
            ));
        }
    }
    for w in parts.windows(2) {
        let ((m0, i0, ..), (m1, i1, ..)) = (w[0], w[1]);
        assert!(
            (m1 == m0 && i1 == i0 + 1) || (m1 == m0 + 1 && i1 == 0),
            "{w:?}"
        );
    }
    if let Some(&(first_msn, first_index, ..)) = parts.first() {
        assert_eq!(first_index, 0, "a segment's parts are listed whole");
        for (i, s) in parsed.segments.iter().enumerate() {
            let msn = parsed.media_sequence + skipped + i as u64;
            let listed: Vec<_> = parts.iter().filter(|p| p.0 == msn).collect();
            assert_eq!(listed.is_empty(), msn < first_msn, "segment {msn}");
            if !listed.is_empty() {
                let sum: f64 = listed.iter().map(|p| p.2).sum();
                assert!(
                    (sum - s.duration as f64).abs() < 1e-3,
                    "{sum} vs {}",
                    s.duration
                );
                assert!(listed[0].3, "segment {msn} starts with an independent part");
            }
        }
    }

    // The preload hint is the last line and names the part after the last one.
    let last = text.lines().last().unwrap();
    let hint = attributes(
        last.strip_prefix("#EXT-X-PRELOAD-HINT:")
            .expect("hint last"),
    );
    assert_eq!(hint["TYPE"], "PART");
    let uri = hint["URI"]
        .strip_prefix("part")
        .unwrap()
        .strip_suffix(".m4s")
        .unwrap();
    let (msn, index) = uri.split_once('.').unwrap();
    let preload_hint = (msn.parse().unwrap(), index.parse().unwrap());
    if let Some(&(m, i, ..)) = parts.last() {
        assert_eq!(preload_hint, (m, i + 1));
    }
    Checked {
        parsed,
        skipped,
        parts,
        preload_hint,
    }
}

/// Checks a playlist against what the source pushed: segments, durations, wall clock.
fn check_against_source(source: &Source, bytes: &Bytes) -> Checked {
    let checked = check(bytes);
    let p = &source.playlist;
    assert_eq!(checked.parsed.media_sequence, p.media_sequence());
    assert_eq!(checked.parsed.target_duration, p.target_duration());
    let expected_segment = source.part_duration.as_secs_f64() * source.parts_per_segment as f64;
    for (i, s) in checked.parsed.segments.iter().enumerate() {
        let msn = checked.parsed.media_sequence + checked.skipped + i as u64;
        assert!((s.duration as f64 - expected_segment).abs() < 1e-4);
        let pdt = s.program_date_time.unwrap().timestamp_millis() as u64;
        assert_eq!(pdt, source.pdt_of(msn), "PDT of segment {msn}");
    }
    assert_eq!(checked.preload_hint, p.next_part());
    checked
}

/// The view of a player without LL-HLS: every line of an LL tag removed.
fn plain_view(bytes: &Bytes) -> String {
    text(bytes)
        .lines()
        .filter(|l| !l.starts_with("#EXT-X-PART") && !l.starts_with("#EXT-X-PRELOAD-HINT"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_playlist_parses_with_m3u8_rs_as_the_stream_goes_on() {
    let mut s = Source::default_ll();
    // Before anything: no segment, a hint for the very first part.
    let c = check(&full(&s.playlist));
    assert!(c.parsed.segments.is_empty());
    assert_eq!(c.preload_hint, (0, 0));

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
