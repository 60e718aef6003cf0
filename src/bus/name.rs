//! Stream names (segments of `[A-Za-z0-9_.-]` joined by `/`, the same for every protocol) and
//! the bus's errors about them.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("invalid stream name {0:?}: use segments of [A-Za-z0-9_.-] joined by '/'")]
    InvalidName(String),
    #[error("stream {name:?} is already being published (by {by})")]
    AlreadyPublishing { name: String, by: String },
    #[error("stream {0:?} not found")]
    NotFound(String),
}

/// Checks a stream name: segments of `[A-Za-z0-9_.-]` joined by `/`, no empty segment, no
/// `.`/`..` segment (names become URL paths), at most 255 bytes.
pub fn validate_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_string()))
    }
}
