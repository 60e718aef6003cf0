//! [`FlvError`]: why a tag body (or an FLV file) could not be read.

use switchyard_media::MediaError;

/// Why a tag body (or an FLV file) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    #[error("{what} tag: truncated (needed {needed} bytes, had {had})")]
    Truncated {
        what: &'static str,
        needed: usize,
        had: usize,
    },
    #[error("{what} tag: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("bad codec configuration: {0}")]
    Codec(#[from] MediaError),
}
