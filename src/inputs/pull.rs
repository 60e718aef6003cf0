//! The contract a pull runner (RTSP, RTMP, WHEP client) is written against, below the pull
//! manager (`crate::pulls`) that runs them: the sink it publishes through, how an attempt ends,
//! and how a source is shown without its credentials.

use crate::bus::{BusError, Publisher};
use crate::webrtc::ClientCounters;
use std::sync::Arc;

/// What a pull input needs from the manager (a test can hand it a double).
pub trait PullSink: Send {
    /// Claims the pull's local name on the bus.
    fn publish(&mut self) -> Result<Publisher, BusError>;
    /// Media flows: the tracks are on the bus.
    fn running(&mut self);
    /// An attempt's counters for the API: packets lost (RTSP, WebRTC), round-trip time
    /// (WebRTC).
    fn counters(&mut self, _counters: Arc<ClientCounters>) {}
    /// The attempt ended but its publisher (with tracks) can continue in the next one: kept
    /// for up to `pull.hold_secs` so readers stay attached. Dropped by default.
    fn hold(&mut self, _publisher: Publisher) {}
}

/// Why a pull attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullError {
    pub message: String,
    /// Retrying cannot help (e.g. 401 Unauthorized); the pull stops in state `failed`.
    pub permanent: bool,
}

impl PullError {
    pub fn retry(message: impl Into<String>) -> Self {
        PullError {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        PullError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Replaces the `user:pass@` of a URL with `***@`, so a source can be shown and logged.
/// Works on any string, parseable or not.
pub fn redact(source: &str) -> String {
    let Some(scheme_end) = source.find("://") else {
        return source.to_string();
    };
    let rest = &source[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &source[..scheme_end + 3],
            &rest[at..] // keeps the '@' and everything after it
        ),
        None => source.to_string(),
    }
}

/// The first line of an error, at most `max` characters: retina appends hex dumps of what it
/// could not parse, which belong in the log, not in the API.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches([' ', ';', ':']);
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_everywhere() {
        assert_eq!(
            redact("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101"),
            "rtsp://***@10.0.0.5:554/Streaming/101"
        );
        assert_eq!(redact("rtsp://cam/live?a=b@c"), "rtsp://cam/live?a=b@c");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(redact("rtsp://u:p@w@host/x"), "rtsp://***@host/x");
    }

    #[test]
    fn errors_shown_are_one_short_line() {
        assert_eq!(
            one_line("framing error; buffered:\n00 01 02", 300),
            "framing error; buffered"
        );
        assert_eq!(one_line("abcdef", 3), "abc...");
    }
}
