//! Live HLS and Low-Latency HLS media playlists over fMP4, per the HLS 2nd edition draft
//! (draft-pantos-hls-rfc8216bis, "the spec" below).
//!
//! [`LivePlaylist`] is a pure state machine: the caller pushes finished CMAF chunks ([`Part`]s,
//! built by `switchyard-fmp4`) with the wall-clock time of their first frame, and asks for
//! playlists, segments and parts. Nothing here reads a clock, sleeps or touches a socket; the
//! HTTP layer in `src/` turns [`PlaylistAnswer::NotYet`] into "wait for the next push, ask
//! again" with its own timeout (spec 6.2.5.2 suggests answering 503 after about three target
//! durations).
//!
//! What a playlist carries, and where it comes from in the spec:
//! - `EXT-X-TARGETDURATION` (4.4.3.1): every `EXTINF` rounded to the nearest integer is at most
//!   the target; never lowered, because a live playlist must not change it (6.2.1).
//! - `EXT-X-PART-INF` / `EXT-X-PART` (4.4.3.7, 4.4.4.9): parts, `INDEPENDENT=YES` on those that
//!   start with a keyframe; parts are listed only for segments within three target durations
//!   of the live edge (6.2.2), the segments themselves stay.
//! - `EXT-X-SERVER-CONTROL` (4.4.3.8): `CAN-BLOCK-RELOAD=YES`, `PART-HOLD-BACK` = 3 part
//!   targets, `HOLD-BACK` = 3 target durations, and `CAN-SKIP-UNTIL` = 6 target durations when
//!   the window is long enough for delta updates to save anything.
//! - `EXT-X-PRELOAD-HINT` (4.4.5.3) for the next part, `EXT-X-MAP` (4.4.4.5) for `init.mp4`,
//!   `EXT-X-PROGRAM-DATE-TIME` (4.4.4.6) on every segment, `EXT-X-INDEPENDENT-SEGMENTS`
//!   (4.4.2.1): every segment starts with an independent part, which [`LivePlaylist::push_part`]
//!   enforces.
//! - Blocking playlist reload `_HLS_msn` / `_HLS_part` (6.2.5.2) and playlist delta updates
//!   `_HLS_skip=YES|v2` with `EXT-X-SKIP` (6.2.5.1, 4.4.5.2).
//!
//! The complete segments alone form a valid plain live playlist, so players without LL-HLS
//! (ffmpeg, older hls.js) play the same URL with ordinary latency.
//!
//! Hot path (ARCHITECTURE.md): segments, parts and each playlist variant are built once per
//! change as [`bytes::Bytes`] and every request is answered with a reference count.

mod live;
mod render;
mod request;

use std::time::Duration;

pub use live::{LivePlaylist, MAX_PARTS_PER_SEGMENT, MAX_SEGMENT_DURATION};
pub use request::{parse_request, parse_resource_name, PlaylistRequest, Resource, Skip};

/// The URI of the init segment (`EXT-X-MAP`), relative to the playlist.
pub const INIT_URI: &str = "init.mp4";

/// Settings of one live playlist.
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// Target duration of a segment; the caller cuts at the first keyframe after it
    /// (see [`LivePlaylist::current_segment_duration`]). Default 2 s.
    pub segment_target: Duration,
    /// Target duration of a part (`EXT-X-PART-INF:PART-TARGET`). Default 200 ms.
    pub part_target: Duration,
    /// Complete segments kept and listed. Default 6. At least 1 is kept, and more when fewer
    /// would make the playlist shorter than three target durations (spec 6.2.2).
    pub window_segments: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_millis(200),
            window_segments: 6,
        }
    }
}

/// A finished part (a CMAF chunk: moof+mdat).
#[derive(Debug, Clone)]
pub struct Part {
    pub data: bytes::Bytes,
    pub duration: Duration,
    /// The part starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

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

/// Errors of this crate: a part the caller should not have pushed, or a bad query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlsError {
    #[error("segment {msn}: a segment must start with an independent part (a keyframe)")]
    SegmentStartNotIndependent { msn: u64 },
    #[error("segment {msn} part {index}: a part must have a non-zero duration")]
    ZeroDurationPart { msn: u64, index: u32 },
    #[error(
        "segment {msn}: would reach {duration:?} in {parts} parts, past the limits \
         ({MAX_SEGMENT_DURATION:?}, {MAX_PARTS_PER_SEGMENT} parts); cut a segment at a keyframe"
    )]
    SegmentTooLong {
        msn: u64,
        duration: Duration,
        parts: usize,
    },
    #[error("query parameter {param}={value:?}: {reason}")]
    BadQuery {
        param: String,
        value: String,
        reason: String,
    },
}
