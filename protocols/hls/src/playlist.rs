//! [`LivePlaylist`], the layer above the model and the renderer: it owns the live window
//! (`live.rs`), renders each playlist variant (`render.rs`) once per change, caches it as
//! [`Bytes`] so that answering a request is a reference count, and answers playlist, segment
//! and part requests.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use crate::config::HlsConfig;
use crate::error::HlsError;
use crate::live::{LiveWindow, Part, Position};
use crate::render::{self, Variant};
use crate::request::{PlaylistRequest, Skip};

/// The answer to a playlist request.
#[derive(Debug, Clone)]
pub enum PlaylistAnswer {
    /// The playlist to send (HTTP 200, `application/vnd.apple.mpegurl`).
    Ready(bytes::Bytes),
    /// A blocking request for a segment or part that is not there yet but is within reach:
    /// wait for the next push and ask again, up to a timeout.
    NotYet,
    /// A request too far ahead or malformed (HTTP 400), with the reason.
    Invalid(String),
}

/// A live (LL-)HLS media playlist with the segments and parts it lists. See the crate docs.
#[derive(Debug)]
pub struct LivePlaylist {
    window: LiveWindow,
    /// Rendered playlists, one per [`Variant`], cleared on every push.
    cache: [OnceLock<Bytes>; 3],
}

impl LivePlaylist {
    /// `init` is served as `init.mp4` (EXT-X-MAP). URIs in the playlist are relative:
    /// `init.mp4` (then `init{n}.mp4` after [`LivePlaylist::set_init`]), `seg{msn}.m4s`,
    /// `part{msn}.{index}.m4s`.
    pub fn new(config: HlsConfig, init: Bytes) -> Self {
        LivePlaylist {
            window: LiveWindow::new(config, init),
            cache: Default::default(),
        }
    }

    /// Appends a finished part. `starts_segment` = the caller cut a new segment here (then
    /// `part.independent` must be true, else an error). The first part pushed always starts
    /// segment 0. `program_date_time_ms` = wall-clock time (ms since the Unix epoch) of the
    /// part's first frame, used for EXT-X-PROGRAM-DATE-TIME on the segment it starts.
    ///
    /// A rejected part changes nothing.
    pub fn push_part(
        &mut self,
        part: Part,
        starts_segment: bool,
        program_date_time_ms: u64,
    ) -> Result<(), HlsError> {
        self.window
            .push_part(part, starts_segment, program_date_time_ms)?;
        self.cache = Default::default();
        Ok(())
    }

    /// The stream's configuration changed (codecs, picture size, a new publisher): the parts
    /// pushed from now on need `init`, which gets a URI of its own (`init{n}.mp4`, n counting
    /// the configurations). Once anything was pushed this is also a discontinuity (see
    /// [`LivePlaylist::discontinuity`]); before that, `init` simply replaces the first one.
    pub fn set_init(&mut self, init: Bytes) {
        self.window.set_init(init);
        self.cache = Default::default();
    }

    /// What comes next does not continue what came before (new timestamps, new encoding
    /// parameters: spec 6.2.1): the segment being built ends here, and the next part, which
    /// must be independent, starts a segment with EXT-X-DISCONTINUITY. Media sequence numbers
    /// go on growing; EXT-X-DISCONTINUITY-SEQUENCE counts the tags as their segments leave the
    /// window (6.2.2). Nothing happens before the first part.
    pub fn discontinuity(&mut self) {
        self.window.discontinuity();
        self.cache = Default::default();
    }

    /// Duration of the segment being built (sum of its parts so far), so the caller can decide
    /// when to cut.
    pub fn current_segment_duration(&self) -> Duration {
        self.window.current_segment_duration()
    }

    /// Answers a playlist request. `Ready(bytes)` when it can be answered now (each variant is
    /// rendered once per change and cached, so answering is a reference count); `NotYet` for a
    /// blocking request for a segment or part that does not exist yet but is within reach
    /// (wait for the next push and ask again, up to a timeout); `Invalid(reason)` for a request
    /// too far ahead or malformed (spec 6.2.5.2: answer 400).
    pub fn playlist(&self, request: &PlaylistRequest) -> PlaylistAnswer {
        match (request.msn, request.part) {
            (None, Some(_)) => {
                return PlaylistAnswer::Invalid(
                    "_HLS_part without _HLS_msn (spec 6.2.5.2)".to_string(),
                )
            }
            (Some(msn), part) => match self.window.position(msn, part) {
                Position::Listed => {}
                Position::Upcoming => return PlaylistAnswer::NotYet,
                Position::TooFar(reason) => return PlaylistAnswer::Invalid(reason),
            },
            (None, None) => {}
        }
        PlaylistAnswer::Ready(self.rendered(request.skip))
    }

    /// The init segment of the configuration in use (the last one set).
    pub fn init(&self) -> Bytes {
        self.window.init()
    }

    /// Init segment `id` (`init.mp4` is 0, `init{n}.mp4` is n), while a segment in the window
    /// or the one being built uses it.
    pub fn init_segment(&self, id: u32) -> Option<Bytes> {
        self.window.init_segment(id)
    }

    /// The value of `EXT-X-DISCONTINUITY-SEQUENCE` in the full playlist: the discontinuities
    /// that left the window. `None` (the tag is left out) until the first discontinuity.
    pub fn discontinuity_sequence(&self) -> Option<u64> {
        self.window.discontinuity_sequence(0)
    }

    /// A complete segment (all its parts concatenated, built once when it completed), if still
    /// in the window.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.window.segment(msn)
    }

    /// A part, if it exists and is still in the window.
    pub fn part(&self, msn: u64, index: u32) -> Option<Bytes> {
        self.window.part(msn, index)
    }

    /// Whether a segment (`index` = None) or part request is for something not yet produced
    /// but within the blocking range, so the caller should wait (e.g. for the part named by
    /// EXT-X-PRELOAD-HINT), as opposed to gone, never coming, or absurd (404).
    pub fn is_upcoming(&self, msn: u64, index: Option<u32>) -> bool {
        self.window.is_upcoming(msn, index)
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the msn of the oldest segment listed.
    pub fn media_sequence(&self) -> u64 {
        self.window.media_sequence()
    }

    /// The part the playlist's EXT-X-PRELOAD-HINT names: (msn, index) of the next part.
    pub fn next_part(&self) -> (u64, u32) {
        self.window.next_part()
    }

    /// `EXT-X-TARGETDURATION` in seconds.
    pub fn target_duration(&self) -> u64 {
        self.window.target_duration()
    }

    /// The advertised `PART-TARGET`: the configured one, or the longest part pushed if longer.
    pub fn part_target(&self) -> Duration {
        self.window.part_target()
    }

    /// The playlist for `skip`, rendered on first use after a change.
    fn rendered(&self, skip: Skip) -> Bytes {
        let variant = match skip {
            Skip::No => Variant::Full,
            Skip::Yes => Variant::SkipYes,
            Skip::V2 => Variant::SkipV2,
        };
        self.cache[variant as usize]
            .get_or_init(|| match variant {
                Variant::Full => render::render(&self.window, variant),
                // Without a delta to give (skip not advertised, or nothing old enough yet) a
                // delta request gets the full playlist (6.2.5.1), the very same buffer.
                _ if render::skipped_segments(&self.window) == 0 => self.rendered(Skip::No),
                _ => render::render(&self.window, variant),
            })
            .clone()
    }
}
