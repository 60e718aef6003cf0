//! Settings of a live playlist ([`HlsConfig`]) and the fixed limits on one segment.

use std::time::Duration;

/// Settings of one live playlist.
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// Target duration of a segment; the caller cuts at the first keyframe after it
    /// (see [`LivePlaylist::current_segment_duration`]). Default 2 s.
    ///
    /// [`LivePlaylist::current_segment_duration`]: crate::LivePlaylist::current_segment_duration
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

/// Longest segment accepted. A segment only ends when the caller cuts at a keyframe, so a
/// source that stops sending keyframes would otherwise grow the in-progress segment without
/// bound; past this the caller gets [`HlsError::SegmentTooLong`] and must cut.
///
/// [`HlsError::SegmentTooLong`]: crate::HlsError::SegmentTooLong
pub const MAX_SEGMENT_DURATION: Duration = Duration::from_secs(60);
/// Most parts accepted in one segment, for the same reason (tiny parts, no keyframe).
pub const MAX_PARTS_PER_SEGMENT: usize = 2000;
