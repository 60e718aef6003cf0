//! The error of every parser in this crate: codec data from the network that is cut short,
//! malformed or of a kind not supported.

/// Errors from parsing codec data received from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("{what}: truncated (needed {needed} bytes, had {had})")]
    Truncated {
        what: &'static str,
        needed: usize,
        had: usize,
    },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl MediaError {
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        MediaError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
