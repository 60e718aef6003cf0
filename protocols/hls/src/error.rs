//! [`HlsError`]: a part the caller should not have pushed, or a bad query string.

use std::time::Duration;

use crate::config::{MAX_PARTS_PER_SEGMENT, MAX_SEGMENT_DURATION};

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
