//! What the playlist tests share: a [`Source`] that feeds a [`LivePlaylist`] like the HLS output
//! would, and [`check`], which reads a rendered playlist back with an independent parser
//! (m3u8-rs) and checks the rules of draft-pantos-hls-rfc8216bis that m3u8-rs does not know
//! (LL-HLS tags are read by a small attribute reader here).

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use switchyard_hls::{
    parse_request, parse_resource_name, HlsConfig, LivePlaylist, Part, PlaylistAnswer,
    PlaylistRequest, Resource,
};

pub const PART: Duration = Duration::from_millis(200);
pub const START_MS: u64 = 1_700_000_000_000;

/// Feeds a playlist like the HLS output would: fixed-length parts, a keyframe (and a cut) every
/// `parts_per_segment` parts, wall clock advancing with the media; [`Source::set_init`] and
/// [`Source::discontinuity`] change the configuration as a new publisher would.
pub struct Source {
    pub playlist: LivePlaylist,
    pub part_duration: Duration,
    pub parts_per_segment: u32,
    /// Pushed so far, to check what is served against what went in: (msn, index, data, wall
    /// clock ms).
    pub pushed: Vec<(u64, u32, Bytes, u64)>,
    /// (first msn, init id, init bytes) of every configuration, in order.
    pub inits: Vec<(u64, u32, Bytes)>,
    /// Msns of the segments that start after a discontinuity.
    pub discontinuities: Vec<u64>,
    pub msn: u64,
    pub index: u32,
    pub clock_ms: u64,
}

impl Source {
    pub fn new(config: HlsConfig, part_duration: Duration, parts_per_segment: u32) -> Self {
        let init = Bytes::from_static(b"ftyp+moov");
        Source {
            playlist: LivePlaylist::new(config, init.clone()),
            part_duration,
            parts_per_segment,
            pushed: Vec::new(),
            inits: vec![(0, 0, init)],
            discontinuities: Vec::new(),
            msn: 0,
            index: 0,
            clock_ms: START_MS,
        }
    }

    pub fn default_ll() -> Self {
        Source::new(HlsConfig::default(), PART, 10)
    }

    pub fn push(&mut self) {
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

    pub fn push_n(&mut self, n: usize) {
        for _ in 0..n {
            self.push();
        }
    }

    /// Ends the segment being built, as a publisher leaving would.
    pub fn discontinuity(&mut self) {
        self.playlist.discontinuity();
        self.next_segment_is_discontinuous();
    }

    /// A new configuration with init segment `init`.
    pub fn set_init(&mut self, init: &'static [u8]) {
        self.playlist.set_init(Bytes::from_static(init));
        self.next_segment_is_discontinuous();
        let id = self.inits.last().unwrap().1 + 1;
        if self.pushed.is_empty() {
            self.inits.clear();
        }
        self.inits.push((self.msn, id, Bytes::from_static(init)));
    }

    fn next_segment_is_discontinuous(&mut self) {
        if self.index > 0 {
            self.msn += 1;
            self.index = 0;
        }
        if !self.pushed.is_empty() && self.discontinuities.last() != Some(&self.msn) {
            self.discontinuities.push(self.msn);
        }
    }

    pub fn pdt_of(&self, msn: u64) -> u64 {
        self.pushed
            .iter()
            .find(|(m, i, _, _)| *m == msn && *i == 0)
            .unwrap()
            .3
    }

    /// Duration of segment `msn` as pushed.
    pub fn duration_of(&self, msn: u64) -> Duration {
        self.part_duration * self.pushed.iter().filter(|p| p.0 == msn).count() as u32
    }

    /// The id of the init segment segment `msn` needs.
    pub fn init_of(&self, msn: u64) -> u32 {
        self.inits
            .iter()
            .rev()
            .find(|(from, ..)| *from <= msn)
            .unwrap()
            .1
    }

    /// The Discontinuity Sequence Number of segment `msn` (6.2.1: discontinuities before it,
    /// its own included).
    pub fn dsn_of(&self, msn: u64) -> u64 {
        self.discontinuities.iter().filter(|m| **m <= msn).count() as u64
    }
}

pub fn ready(answer: PlaylistAnswer) -> Bytes {
    match answer {
        PlaylistAnswer::Ready(b) => b,
        other => panic!("expected Ready, got {other:?}"),
    }
}

pub fn request(q: &str) -> PlaylistRequest {
    parse_request(q).unwrap()
}

pub fn full(p: &LivePlaylist) -> Bytes {
    ready(p.playlist(&PlaylistRequest::default()))
}

pub fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

/// Attributes of an attribute-list (spec 4.2), quotes removed.
pub fn attributes(list: &str) -> HashMap<String, String> {
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
pub fn tag<'a>(playlist: &'a str, name: &str) -> Option<&'a str> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

pub fn secs(s: &str) -> f64 {
    s.parse().unwrap()
}

/// What a playlist says, as read by m3u8-rs plus the LL-HLS tags, after checking the rules
/// of the spec that apply to every playlist we write.
#[derive(Debug)]
pub struct Checked {
    pub parsed: m3u8_rs::MediaPlaylist,
    pub skipped: u64,
    /// (msn, index, duration, independent) of every EXT-X-PART, in order.
    pub parts: Vec<(u64, u32, f64, bool)>,
    /// EXT-X-PRELOAD-HINT, if any: (msn, index).
    pub preload_hint: Option<(u64, u32)>,
    /// (msn, init id, discontinuity sequence number) of every listed segment, the one being
    /// built (parts only) included, in order.
    pub segments: Vec<(u64, u32, u64)>,
}

/// The init id of an EXT-X-MAP URI.
fn init_id(uri: &str) -> u32 {
    match parse_resource_name(uri) {
        Some(Resource::Init(id)) => id,
        other => panic!("EXT-X-MAP URI {uri}: {other:?}"),
    }
}

pub fn check(bytes: &Bytes) -> Checked {
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

    // 4.4.3.3: EXT-X-DISCONTINUITY-SEQUENCE before the first segment and before EXT-X-SKIP
    // (hls.js refuses it after); required once a discontinuity can leave the playlist (6.2.2).
    let lines: Vec<&str> = text.lines().collect();
    let position = |prefix: &str| lines.iter().position(|l| l.starts_with(prefix));
    if let Some(at) = position("#EXT-X-DISCONTINUITY-SEQUENCE:") {
        for later in ["#EXT-X-SKIP:", "#EXT-X-MAP:", "#EXT-X-PART:", "#EXTINF:"] {
            assert!(
                position(later).is_none_or(|l| l > at),
                "{later} before EXT-X-DISCONTINUITY-SEQUENCE"
            );
        }
    } else {
        assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
        assert_eq!(parsed.discontinuity_sequence, 0);
    }

    // Segments: consecutive msns from EXT-X-MEDIA-SEQUENCE (+ skipped), our URI scheme.
    for (i, s) in parsed.segments.iter().enumerate() {
        let msn = parsed.media_sequence + skipped + i as u64;
        assert_eq!(s.uri, format!("seg{msn}.m4s"));
    }

    // Every segment (and the one being built) by its tags, in order: EXT-X-DISCONTINUITY and
    // EXT-X-MAP apply from the tag on; the Discontinuity Sequence Number of a segment is
    // EXT-X-DISCONTINUITY-SEQUENCE plus the EXT-X-DISCONTINUITY tags up to it (6.2.1).
    let mut segments = Vec::new();
    let mut init = None;
    let mut dsn = parsed.discontinuity_sequence;
    let mut msn = parsed.media_sequence + skipped;
    let mut open = false; // tags or parts seen for segment `msn`
    let mut maps_at = Vec::new();
    for line in &lines {
        if *line == "#EXT-X-DISCONTINUITY" {
            assert!(!open, "EXT-X-DISCONTINUITY inside segment {msn}");
            dsn += 1;
            open = true;
        } else if let Some(list) = line.strip_prefix("#EXT-X-MAP:") {
            let id = init_id(&attributes(list)["URI"]);
            assert_ne!(init, Some(id), "EXT-X-MAP repeated for segment {msn}");
            init = Some(id);
            maps_at.push(msn);
        } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") || line.starts_with("#EXT-X-PART:")
        {
            open = true;
        } else if line.starts_with("seg") {
            segments.push((msn, init.expect("EXT-X-MAP before segment"), dsn));
            msn += 1;
            open = false;
        }
    }
    if open {
        segments.push((msn, init.expect("EXT-X-MAP before parts"), dsn));
    }
    assert!(
        maps_at.first() == Some(&(parsed.media_sequence + skipped)),
        "an EXT-X-MAP before the first listed segment: {maps_at:?}\n{text}"
    );
    if let Some(first) = parsed.segments.first() {
        assert!(first.map.is_some(), "m3u8-rs sees the EXT-X-MAP");
    }
    // m3u8-rs reads the same discontinuities.
    for (i, s) in parsed.segments.iter().enumerate() {
        let with_tag = i == 0 && segments[0].2 > parsed.discontinuity_sequence
            || i > 0 && segments[i].2 > segments[i - 1].2;
        assert_eq!(s.discontinuity, with_tag, "{}", s.uri);
    }

    // Parts: URIs in order, durations <= PART-TARGET, they add up to their segment's EXTINF,
    // and once a segment lists its parts every later segment does.
    let mut parts = Vec::new();
    for line in &lines {
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
    let preload_hint = last.strip_prefix("#EXT-X-PRELOAD-HINT:").map(|list| {
        let hint = attributes(list);
        assert_eq!(hint["TYPE"], "PART");
        let uri = hint["URI"]
            .strip_prefix("part")
            .unwrap()
            .strip_suffix(".m4s")
            .unwrap();
        let (msn, index) = uri.split_once('.').unwrap();
        (msn.parse().unwrap(), index.parse().unwrap())
    });
    assert_eq!(
        text.matches("#EXT-X-PRELOAD-HINT").count(),
        usize::from(preload_hint.is_some())
    );
    if let (Some(&(m, i, ..)), Some(hint)) = (parts.last(), preload_hint) {
        // The next part of the segment in progress, or the first of the next segment once the
        // last parts listed make a complete segment (a change of configuration ended it).
        let complete = parsed
            .segments
            .iter()
            .any(|s| s.uri == format!("seg{m}.m4s"));
        let next = if complete { (m + 1, 0) } else { (m, i + 1) };
        assert_eq!(hint, next);
    }
    Checked {
        parsed,
        skipped,
        parts,
        preload_hint,
        segments,
    }
}

/// Checks a playlist against what the source pushed: segments, durations, wall clock, init
/// segments and discontinuities.
pub fn check_against_source(source: &Source, bytes: &Bytes) -> Checked {
    let checked = check(bytes);
    let p = &source.playlist;
    assert_eq!(checked.parsed.media_sequence, p.media_sequence());
    assert_eq!(checked.parsed.target_duration, p.target_duration());
    for (i, s) in checked.parsed.segments.iter().enumerate() {
        let msn = checked.parsed.media_sequence + checked.skipped + i as u64;
        let expected = source.duration_of(msn).as_secs_f64();
        assert!((s.duration as f64 - expected).abs() < 1e-4, "segment {msn}");
        let pdt = s.program_date_time.unwrap().timestamp_millis() as u64;
        assert_eq!(pdt, source.pdt_of(msn), "PDT of segment {msn}");
    }
    for &(msn, init, dsn) in &checked.segments {
        assert_eq!(init, source.init_of(msn), "init of segment {msn}");
        assert_eq!(dsn, source.dsn_of(msn), "discontinuity sequence of {msn}");
        assert_eq!(
            p.init_segment(init).as_ref(),
            source.inits.iter().find(|i| i.1 == init).map(|i| &i.2),
            "init{init} served"
        );
    }
    assert_eq!(checked.preload_hint, Some(p.next_part()));
    checked
}

/// The view of a player without LL-HLS: every line of an LL tag removed.
pub fn plain_view(bytes: &Bytes) -> String {
    text(bytes)
        .lines()
        .filter(|l| !l.starts_with("#EXT-X-PART") && !l.starts_with("#EXT-X-PRELOAD-HINT"))
        .map(|l| format!("{l}\n"))
        .collect()
}
