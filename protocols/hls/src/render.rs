//! Writing the media playlist text (spec 4.4), full or as a delta update (6.2.5.1), from the
//! model in `live.rs`, which it only reads.
//!
//! Across a change of configuration the playlist goes on (6.2.1: encoding parameters and
//! timestamps may change, signalled by EXT-X-DISCONTINUITY): the media sequence keeps growing,
//! the first segment of the new configuration carries EXT-X-DISCONTINUITY and an EXT-X-MAP
//! with the new init segment's own URI (`init{n}.mp4`), so that neither players nor caches
//! mix the two, and EXT-X-DISCONTINUITY-SEQUENCE counts the tags of segments no longer
//! listed.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;

use crate::live::{LiveWindow, Segment};
use crate::request::Resource;

/// Parts are listed for segments that start within this many target durations of the end of
/// the playlist; older ones keep only their segment line (spec 6.2.2: remove EXT-X-PART tags
/// once they are more than three target durations from the end).
const PART_LISTING_TARGETS: u64 = 3;
/// `CAN-SKIP-UNTIL` in target durations (4.4.3.8: at least six).
const SKIP_UNTIL_TARGETS: u64 = 6;
/// `HOLD-BACK` in target durations (4.4.3.8: at least three).
const HOLD_BACK_TARGETS: u32 = 3;
/// `PART-HOLD-BACK` in part targets (4.4.3.8: at least two, three recommended).
const PART_HOLD_BACK_PARTS: u32 = 3;

/// Which playlist [`render`] writes: the full one, or a delta update for `_HLS_skip=YES` or
/// `_HLS_skip=v2`. The value is the variant's index in the cache of rendered playlists.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Variant {
    Full = 0,
    SkipYes = 1,
    SkipV2 = 2,
}

fn target(p: &LiveWindow) -> Duration {
    Duration::from_secs(p.target_duration)
}

/// The skip boundary (`CAN-SKIP-UNTIL`), when delta updates are offered: only if the window
/// can hold more than the boundary, or a delta would never skip anything.
fn skip_until(p: &LiveWindow) -> Option<Duration> {
    let until = target(p) * SKIP_UNTIL_TARGETS as u32;
    let window = p.config.segment_target * p.config.window_segments as u32;
    (window > until).then_some(until)
}

/// Duration from the start of the oldest listed segment to the end of the last part.
fn listed_duration(p: &LiveWindow) -> Duration {
    p.complete.iter().map(|s| s.duration).sum::<Duration>() + p.current.duration
}

/// How many of the oldest segments a delta update replaces with EXT-X-SKIP: those that end
/// at least the skip boundary before the end of the playlist (6.2.5.1; a segment straddling
/// the boundary stays). 0 when delta updates are not offered.
pub(crate) fn skipped_segments(p: &LiveWindow) -> usize {
    let Some(until) = skip_until(p) else {
        return 0;
    };
    let total = listed_duration(p);
    let mut end = Duration::ZERO;
    p.complete
        .iter()
        .take_while(|s| {
            end += s.duration;
            total - end >= until
        })
        .count()
}

/// Renders one variant of the playlist.
pub(crate) fn render(p: &LiveWindow, variant: Variant) -> Bytes {
    let skipped = match variant {
        Variant::Full => 0,
        Variant::SkipYes | Variant::SkipV2 => skipped_segments(p),
    };
    let daterange_delta = matches!(variant, Variant::SkipV2) && skipped > 0;
    let mut out = String::with_capacity(256 + 160 * (p.complete.len() + 1) * 4);
    // Version 9 covers EXT-X-SKIP; a delta that also skips EXT-X-DATERANGE needs 10 (spec 7).
    let version = if daterange_delta { 10 } else { 9 };
    let td = target(p);
    // Rounded up to what is written, so that every part's DURATION is <= PART-TARGET
    // (4.4.4.9) and PART-HOLD-BACK is a multiple of the PART-TARGET a client reads.
    let part_target = Duration::from_millis(p.part_target.as_nanos().div_ceil(1_000_000) as u64);
    out.push_str("#EXTM3U\n");
    let _ = writeln!(out, "#EXT-X-VERSION:{version}");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", p.target_duration);
    let _ = write!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},HOLD-BACK={}",
        seconds_up(part_target * PART_HOLD_BACK_PARTS),
        seconds_up(td * HOLD_BACK_TARGETS),
    );
    if let Some(until) = skip_until(p) {
        let _ = write!(out, ",CAN-SKIP-UNTIL={}", seconds_up(until));
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "#EXT-X-PART-INF:PART-TARGET={}",
        seconds_up(part_target)
    );
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", p.media_sequence());
    // Before EXT-X-SKIP and any segment (4.4.3.3; hls.js 1.6.13 rejects it after EXT-X-SKIP,
    // video-dev/hls.js#7554).
    if let Some(sequence) = p.discontinuity_sequence(skipped) {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{sequence}");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if skipped > 0 {
        let _ = write!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        if daterange_delta {
            // We write no EXT-X-DATERANGE, so none was removed (4.4.5.2).
            out.push_str(",RECENTLY-REMOVED-DATERANGES=\"\"");
        }
        out.push('\n');
    }

    let total = listed_duration(p);
    let parts_from = td * PART_LISTING_TARGETS as u32;
    let mut start = Duration::ZERO;
    // The init segment of the last segment written: EXT-X-MAP goes before the first one (after
    // any EXT-X-SKIP, so a delta update is playable on its own) and wherever it changes.
    let mut mapped = None;
    for (i, segment) in p.complete.iter().enumerate() {
        let seg_start = start;
        start += segment.duration;
        if i < skipped {
            continue;
        }
        write_segment_start(&mut out, segment, &mut mapped);
        if total - seg_start <= parts_from {
            write_parts(&mut out, segment);
        }
        let _ = writeln!(out, "#EXTINF:{},", seconds(segment.duration));
        out.push_str(&Resource::Segment(segment.msn).uri());
        out.push('\n');
    }
    if !p.current.parts.is_empty() {
        write_segment_start(&mut out, &p.current, &mut mapped);
        write_parts(&mut out, &p.current);
    } else if mapped.is_none() {
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{}\"",
            Resource::Init(p.current.init).uri()
        );
    }
    // Also when the next part starts a new configuration: hls.js 1.7 takes the last segment
    // of a playlist that ends with a segment line for the segment in progress, and then finds
    // its discontinuity sequence changed (a "discontinuity sequence mismatch" that stalls it).
    let (msn, index) = p.next_part();
    let _ = writeln!(
        out,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
        Resource::Part(msn, index).uri()
    );
    Bytes::from(out)
}

/// The tags that open a segment: EXT-X-DISCONTINUITY (4.4.4.3) where it follows a change,
/// EXT-X-MAP (4.4.4.5) where its init segment differs from the previous segment's, and
/// EXT-X-PROGRAM-DATE-TIME (4.4.4.6, on every segment; 6.2.1 asks for it on every segment
/// with a discontinuity).
fn write_segment_start(out: &mut String, segment: &Segment, mapped: &mut Option<u32>) {
    if segment.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if *mapped != Some(segment.init) {
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{}\"",
            Resource::Init(segment.init).uri()
        );
        *mapped = Some(segment.init);
    }
    write_date_time(out, segment);
}

fn write_date_time(out: &mut String, segment: &Segment) {
    let _ = writeln!(
        out,
        "#EXT-X-PROGRAM-DATE-TIME:{}",
        date_time(segment.program_date_time_ms)
    );
}

fn write_parts(out: &mut String, segment: &Segment) {
    for (index, part) in segment.parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            seconds(part.duration),
            Resource::Part(segment.msn, index as u32).uri()
        );
        if part.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

/// Seconds with five decimals (10 us), rounded to nearest: the precision of Apple's own
/// tools, fine enough that summed EXTINFs do not drift from the media timeline.
fn seconds(d: Duration) -> String {
    let units = (d.as_nanos() + 5_000) / 10_000;
    format!("{}.{:05}", units / 100_000, units % 100_000)
}

/// Seconds with three decimals, rounded up: for limits that the real durations must not
/// exceed (PART-TARGET) or hold-backs that must be at least a multiple of something.
fn seconds_up(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` (ISO 8601 / RFC 3339, as 4.4.4.6 requires) from ms since the
/// Unix epoch.
pub(crate) fn date_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_five_decimals() {
        assert_eq!(seconds(Duration::from_millis(2000)), "2.00000");
        assert_eq!(seconds(Duration::from_nanos(233_333_333)), "0.23333");
        assert_eq!(seconds(Duration::from_nanos(1_999_996_000)), "2.00000");
        assert_eq!(seconds(Duration::from_micros(40)), "0.00004");
    }

    #[test]
    fn limits_round_up_to_the_millisecond() {
        assert_eq!(seconds_up(Duration::from_millis(200)), "0.200");
        assert_eq!(seconds_up(Duration::from_nanos(233_333_333)), "0.234");
        assert_eq!(seconds_up(Duration::from_secs(12)), "12.000");
    }

    #[test]
    fn date_times_are_utc_iso8601_with_milliseconds() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(date_time(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(date_time(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(date_time(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }
}
