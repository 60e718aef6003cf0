//! The playlist model: the live window of parts and segments as they are pushed, eviction,
//! `EXT-X-TARGETDURATION` and `PART-TARGET`, discontinuities and the init segments they bring
//! (spec 4.4.4.3, 4.4.4.5, 6.2.1, 6.2.2), and the blocking-reload decisions of spec 6.2.5.2.
//! It knows nothing of playlist text: `render.rs` reads it, and [`crate::LivePlaylist`] renders
//! and caches the text on every change.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::config::{HlsConfig, MAX_PARTS_PER_SEGMENT, MAX_SEGMENT_DURATION};
use crate::error::HlsError;

/// A finished part (a CMAF chunk: moof+mdat).
#[derive(Debug, Clone)]
pub struct Part {
    pub data: bytes::Bytes,
    pub duration: Duration,
    /// The part starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

#[derive(Debug)]
pub(crate) struct StoredPart {
    pub data: Bytes,
    pub duration: Duration,
    pub independent: bool,
}

/// A segment: complete (in the window) or the one being built.
#[derive(Debug)]
pub(crate) struct Segment {
    pub msn: u64,
    pub parts: Vec<StoredPart>,
    /// Sum of the parts' durations (the `EXTINF` once complete).
    pub duration: Duration,
    /// Wall clock of the first frame, ms since the Unix epoch.
    pub program_date_time_ms: u64,
    /// The parts concatenated; empty until the segment is complete.
    pub data: Bytes,
    /// The segment follows a change of encoding parameters or timestamps: EXT-X-DISCONTINUITY
    /// (4.4.4.3).
    pub discontinuity: bool,
    /// The id of the init segment its parts need (EXT-X-MAP, 4.4.4.5).
    pub init: u32,
}

impl Segment {
    fn new(msn: u64, init: u32, discontinuity: bool) -> Self {
        Segment {
            msn,
            parts: Vec::new(),
            duration: Duration::ZERO,
            program_date_time_ms: 0,
            data: Bytes::new(),
            discontinuity,
            init,
        }
    }
}

/// Where a requested (segment, part) stands relative to the live edge (spec 6.2.5.2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Position {
    /// The playlist already contains it (or something later).
    Listed,
    /// Not produced yet but within the blocking limits.
    Upcoming,
    /// Beyond the limits: answer 400 with this reason.
    TooFar(String),
}

/// The segments and parts a live (LL-)HLS media playlist lists, and the values its tags
/// take. See the crate docs.
#[derive(Debug)]
pub(crate) struct LiveWindow {
    pub(crate) config: HlsConfig,
    /// Init segments by id, oldest first: the one the segment being built uses (the last) and
    /// those that segments still in the window use.
    inits: VecDeque<(u32, Bytes)>,
    /// EXT-X-DISCONTINUITY tags that left the window with their segments (6.2.2: counted by
    /// EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuities_removed: u64,
    /// A discontinuity happened: the playlist carries EXT-X-DISCONTINUITY-SEQUENCE from then on.
    had_discontinuity: bool,
    /// Complete segments, oldest first, consecutive msns.
    pub(crate) complete: VecDeque<Segment>,
    /// Sum of the durations in `complete`.
    complete_duration: Duration,
    /// The segment being built; no parts only before the first push.
    pub(crate) current: Segment,
    /// `EXT-X-TARGETDURATION` in seconds; only ever raised.
    pub(crate) target_duration: u64,
    /// `PART-TARGET`; only ever raised.
    pub(crate) part_target: Duration,
}

impl LiveWindow {
    /// `init` is init segment 0, served as `init.mp4` (EXT-X-MAP).
    pub fn new(mut config: HlsConfig, init: Bytes) -> Self {
        config.window_segments = config.window_segments.max(1);
        if config.part_target.is_zero() {
            config.part_target = HlsConfig::default().part_target;
        }
        if config.segment_target.is_zero() {
            config.segment_target = HlsConfig::default().segment_target;
        }
        let target_duration = round_secs(config.segment_target).max(1);
        let part_target = config.part_target;
        LiveWindow {
            config,
            inits: VecDeque::from([(0, init)]),
            discontinuities_removed: 0,
            had_discontinuity: false,
            complete: VecDeque::new(),
            complete_duration: Duration::ZERO,
            current: Segment::new(0, 0, false),
            target_duration,
            part_target,
        }
    }

    /// Appends a finished part to the window (what [`crate::LivePlaylist::push_part`] says);
    /// a rejected part changes nothing.
    pub fn push_part(
        &mut self,
        part: Part,
        starts_segment: bool,
        program_date_time_ms: u64,
    ) -> Result<(), HlsError> {
        let first = self.current.parts.is_empty();
        let starts = first || starts_segment;
        let (msn, index) = if first {
            (self.current.msn, 0)
        } else if starts {
            (self.current.msn + 1, 0)
        } else {
            (self.current.msn, self.current.parts.len() as u32)
        };
        if part.duration.is_zero() {
            return Err(HlsError::ZeroDurationPart { msn, index });
        }
        if starts && !part.independent {
            return Err(HlsError::SegmentStartNotIndependent { msn });
        }
        if !starts {
            let duration = self.current.duration + part.duration;
            if duration > MAX_SEGMENT_DURATION || self.current.parts.len() >= MAX_PARTS_PER_SEGMENT
            {
                return Err(HlsError::SegmentTooLong {
                    msn,
                    duration,
                    parts: self.current.parts.len() + 1,
                });
            }
        }
        if starts && !first {
            self.complete_current();
        }
        if index == 0 {
            self.current.program_date_time_ms = program_date_time_ms;
        }
        self.current.duration += part.duration;
        // A part longer than PART-TARGET would break 4.4.4.9; frame boundaries make that
        // common (7 frames at 30 fps = 233 ms for a 200 ms target), so the advertised target
        // follows the longest part rather than rejecting it.
        self.part_target = self.part_target.max(part.duration);
        self.current.parts.push(StoredPart {
            data: part.data,
            duration: part.duration,
            independent: part.independent,
        });
        Ok(())
    }

    /// What [`crate::LivePlaylist::discontinuity`] says.
    pub fn discontinuity(&mut self) {
        if !self.current.parts.is_empty() {
            self.complete_current();
        }
        if !self.complete.is_empty() {
            self.current.discontinuity = true;
            self.had_discontinuity = true;
        }
    }

    /// What [`crate::LivePlaylist::set_init`] says.
    pub fn set_init(&mut self, init: Bytes) {
        let id = self.current_init_id().wrapping_add(1);
        self.inits.push_back((id, init));
        self.discontinuity();
        self.current.init = id;
        self.prune_inits();
    }

    fn current_init_id(&self) -> u32 {
        self.inits.back().map_or(0, |(id, _)| *id)
    }

    /// Forgets init segments that neither the segment being built nor a segment in the window
    /// uses.
    fn prune_inits(&mut self) {
        let (current, complete) = (self.current.init, &self.complete);
        self.inits
            .retain(|(id, _)| *id == current || complete.iter().any(|s| s.init == *id));
    }

    /// Closes the in-progress segment: one buffer with all its parts, which the parts then
    /// share (a part is a slice of it), so a segment costs its bytes once.
    fn complete_current(&mut self) {
        let next = Segment::new(self.current.msn + 1, self.current_init_id(), false);
        let mut segment = std::mem::replace(&mut self.current, next);
        let len = segment.parts.iter().map(|p| p.data.len()).sum();
        let mut data = BytesMut::with_capacity(len);
        for part in &segment.parts {
            data.extend_from_slice(&part.data);
        }
        let data = data.freeze();
        let mut offset = 0;
        for part in &mut segment.parts {
            let end = offset + part.data.len();
            part.data = data.slice(offset..end);
            offset = end;
        }
        segment.data = data;
        // Spec 4.4.3.1: every EXTINF rounded to the nearest integer must be <= the target.
        // Raising it is the only way to stay valid when the source's GOP is longer than the
        // configured target; it is never lowered, since a live playlist may only change in
        // the ways 6.2.1 lists.
        self.target_duration = self.target_duration.max(round_secs(segment.duration));
        self.complete_duration += segment.duration;
        self.complete.push_back(segment);
        self.evict();
    }

    /// Keeps `window_segments` complete segments, or more while fewer would leave less than
    /// three target durations listed (spec 6.2.2), but never more than twice the window.
    fn evict(&mut self) {
        let window = self.config.window_segments;
        let cap = 2 * window;
        let min_listed = Duration::from_secs(3 * self.target_duration);
        while self.complete.len() > window {
            let front = self.complete[0].duration;
            if self.complete.len() <= cap && self.complete_duration - front < min_listed {
                break;
            }
            if let Some(gone) = self.complete.pop_front() {
                self.discontinuities_removed += u64::from(gone.discontinuity);
            }
            self.complete_duration -= front;
        }
        self.prune_inits();
    }

    /// Duration of the segment being built (sum of its parts so far), so the caller can decide
    /// when to cut.
    pub fn current_segment_duration(&self) -> Duration {
        self.current.duration
    }

    /// The init segment the next part needs.
    pub fn init(&self) -> Bytes {
        self.inits
            .back()
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }

    /// Init segment `id`, while a segment in the window (or the one being built) uses it.
    pub fn init_segment(&self, id: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// The value of EXT-X-DISCONTINUITY-SEQUENCE for a playlist that lists the window from its
    /// `skipped`-th complete segment on, or `None` before any discontinuity (the tag is then
    /// left out). The tags of segments not listed, evicted or skipped by a delta update, are
    /// counted, so every listed segment keeps its Discontinuity Sequence Number (6.2.1, 6.2.2).
    pub fn discontinuity_sequence(&self, skipped: usize) -> Option<u64> {
        let skipped_tags = self
            .complete
            .iter()
            .take(skipped)
            .filter(|s| s.discontinuity)
            .count() as u64;
        self.had_discontinuity
            .then_some(self.discontinuities_removed + skipped_tags)
    }

    /// A complete segment (all its parts concatenated, built once when it completed), if still
    /// in the window.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.complete_segment(msn).map(|s| s.data.clone())
    }

    /// A part, if it exists and is still in the window.
    pub fn part(&self, msn: u64, index: u32) -> Option<Bytes> {
        let segment = if msn == self.current.msn {
            &self.current
        } else {
            self.complete_segment(msn)?
        };
        segment.parts.get(index as usize).map(|p| p.data.clone())
    }

    /// Whether a segment (`index` = None) or part request is for something not yet produced
    /// but within the blocking range, so the caller should wait (e.g. for the part named by
    /// EXT-X-PRELOAD-HINT), as opposed to gone, never coming, or absurd (404).
    pub fn is_upcoming(&self, msn: u64, index: Option<u32>) -> bool {
        self.position(msn, index) == Position::Upcoming
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the msn of the oldest segment listed.
    pub fn media_sequence(&self) -> u64 {
        self.complete.front().map_or(self.current.msn, |s| s.msn)
    }

    /// The part the playlist's EXT-X-PRELOAD-HINT names: (msn, index) of the next part.
    pub fn next_part(&self) -> (u64, u32) {
        (self.current.msn, self.current.parts.len() as u32)
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// The advertised `PART-TARGET`: the configured one, or the longest part pushed if longer.
    pub fn part_target(&self) -> Duration {
        self.part_target
    }

    fn complete_segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.complete.front()?.msn;
        let i = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.complete.get(i)
    }

    /// The Advance Part Limit of spec 6.2.5.2: 3 / PART-TARGET parts when the part target is
    /// under a second, else 3.
    fn advance_part_limit(&self) -> f64 {
        let target = self.part_target.as_secs_f64();
        if target < 1.0 {
            3.0 / target
        } else {
            3.0
        }
    }

    /// Spec 6.2.5.2 for `_HLS_msn=msn` (and `_HLS_part=part`).
    pub(crate) fn position(&self, msn: u64, part: Option<u32>) -> Position {
        // The in-progress segment: every part of it is listed, its EXTINF is not.
        let building = self.current.msn;
        // "_HLS_msn greater than the last Media Sequence Number in the Playlist plus two";
        // the last complete segment is `building - 1`.
        if msn > building.saturating_add(1) {
            return Position::TooFar(format!(
                "_HLS_msn={msn} is more than two segments past the last one ({})",
                building as i64 - 1
            ));
        }
        let Some(part) = part else {
            return if msn < building {
                Position::Listed
            } else {
                Position::Upcoming
            };
        };
        if msn < building {
            // Segment `msn` is complete (or already evicted). A part index past its last part
            // means part 0 of the next segment (6.2.5.2), which exists as soon as `msn` is
            // complete; the playlist lists a later part either way.
            return Position::Listed;
        }
        let last = self.current.parts.len() as i64 - 1;
        let ahead = if msn == building {
            if i64::from(part) <= last {
                return Position::Listed;
            }
            i64::from(part) - last
        } else {
            // Part of the segment after the one being built: at least all of it ahead.
            i64::from(part) + 1
        };
        let limit = self.advance_part_limit();
        if ahead as f64 > limit {
            Position::TooFar(format!(
                "_HLS_msn={msn}&_HLS_part={part} is {ahead} parts past the last part \
                 ({building}.{last}); the limit is {}",
                limit.floor()
            ))
        } else {
            Position::Upcoming
        }
    }
}

/// Seconds rounded to the nearest integer, halves up (the rounding of spec 4.4.3.1).
pub(crate) fn round_secs(d: Duration) -> u64 {
    ((d.as_nanos() + 500_000_000) / 1_000_000_000) as u64
}
