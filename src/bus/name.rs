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
    #[error(
        "cannot publish {name:?}: this server carries at most {max} streams (limits.max_streams)"
    )]
    TooManyStreams { name: String, max: usize },
    #[error(
        "stream {name:?} has the most readers it may have ({max}, limits.max_readers_per_stream)"
    )]
    TooManyReaders { name: String, max: usize },
    /// The claim hook refused the name (in cluster mode: another node publishes it).
    #[error("cannot publish {name:?}: {reason}")]
    ClaimedElsewhere { name: String, reason: String },
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

/// Whether stream `name` matches `pattern`, segment by segment: `*` matches any run of
/// characters within one path segment (`live/cam*`), and a segment that is exactly `**`
/// matches one or more whole segments (`**` alone matches every name). Used by push rules and
/// authorization rules.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    segments_match(&p, &n)
}

fn segments_match(p: &[&str], n: &[&str]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((&"**", rest)) => (1..=n.len()).any(|i| segments_match(rest, &n[i..])),
        Some((first, rest)) => n.split_first().is_some_and(|(seg, n_rest)| {
            glob_segment(first.as_bytes(), seg.as_bytes()) && segments_match(rest, n_rest)
        }),
    }
}

fn glob_segment(p: &[u8], n: &[u8]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', rest)) => (0..=n.len()).any(|i| glob_segment(rest, &n[i..])),
        Some((c, rest)) => n.first() == Some(c) && glob_segment(rest, &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_segments() {
        assert!(matches_pattern("live/*", "live/a"));
        assert!(matches_pattern("live/cam*", "live/cam12"));
        assert!(!matches_pattern("live/*", "live/a/b"));
        assert!(!matches_pattern("live/*", "other/a"));
        assert!(matches_pattern("*/*", "x/y"));
        assert!(matches_pattern("exact", "exact"));
        assert!(!matches_pattern("exact", "exact/more"));
    }

    #[test]
    fn double_star_segment_matches_whole_segments() {
        assert!(matches_pattern("**", "a"));
        assert!(matches_pattern("**", "a/b/c"));
        assert!(matches_pattern("live/**", "live/a/b"));
        assert!(!matches_pattern("live/**", "live"));
        assert!(matches_pattern("**/cam", "x/y/cam"));
        assert!(!matches_pattern("**/cam", "x/y/cam2"));
    }
}
