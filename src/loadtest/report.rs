//! What a load run reports: the JSON objects that `switchyard loadtest` prints, and the
//! per-session counters and tally they are summed from.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What every load run reports about its sessions; an RTMP run reports just this (one JSON
/// object), HLS and MSE runs add request counts ([`HttpLoadReport`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RtmpLoadReport {
    /// Sessions requested.
    pub sessions: usize,
    /// Sessions whose `play` was accepted and that were still receiving at the deadline.
    pub playing: usize,
    /// Sessions that failed at any stage (`playing + failed == sessions`).
    pub failed: usize,
    /// Bytes received after play start, summed over all sessions (failed ones included).
    pub bytes_total: u64,
    /// Fewest bytes received by one playing session (0 if none played).
    pub bytes_min: u64,
    /// Most bytes received by one playing session (0 if none played).
    pub bytes_max: u64,
    /// Wall-clock length of the run, from the first connect to the last close.
    pub seconds: f64,
    /// The earliest error seen across sessions, if any.
    pub first_error: Option<String>,
}

/// Outcome of a [`hls_load`](super::hls_load) or [`mse_load`](super::mse_load) run: the fields
/// of [`RtmpLoadReport`] plus request counts. Serialises to one JSON object.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HttpLoadReport {
    /// `"hls"` or `"mse"`.
    pub protocol: &'static str,
    /// What the clients did: `"ll-hls"` (blocking playlist reloads and parts), `"hls"` (playlist
    /// polling and segments), `"mse"`; `"mixed"` if HLS sessions saw different playlists,
    /// `"unknown"` if no session got a playlist.
    pub mode: &'static str,
    /// Sessions, media bytes and the first failure, as for RTMP; its fields are written inline.
    #[serde(flatten)]
    pub totals: RtmpLoadReport,
    /// Playlist requests sent (HLS; blocking and plain).
    pub playlist_requests: u64,
    /// Media requests sent (HLS: init section, segments, parts; hinted parts included).
    pub media_requests: u64,
    /// Requests that failed without ending their session: non-2xx answers, unparsable
    /// playlists. The session retried.
    pub request_errors: u64,
    /// The earliest request error, if any.
    pub first_request_error: Option<String>,
    /// TCP connections opened (HLS: keep-alive connections are reused, so this counts the
    /// initial two per session plus reconnects; MSE: one per session).
    pub connects: u64,
    /// LL-HLS: requests for a preload-hinted part that the next playlist did not list (the
    /// server cut a segment there, so the part comes under another name); the client closes
    /// that connection and fetches the part that did come.
    pub abandoned_hints: u64,
    /// Sessions that used LL-HLS / plain HLS.
    pub ll_hls_sessions: usize,
    pub plain_hls_sessions: usize,
}

/// Outcome of a [`whep_load`](super::whep_load) run: the fields of [`RtmpLoadReport`]
/// (bytes are SRTP bytes) plus packet counts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WebRtcLoadReport {
    pub protocol: &'static str,
    #[serde(flatten)]
    pub totals: RtmpLoadReport,
    /// RTP packets received, all sessions.
    pub packets_total: u64,
    /// Fewest packets received by one playing session.
    pub packets_min: u64,
}

/// Counters of one session, shared by its connections; they survive the session's
/// cancellation at the deadline.
#[derive(Default)]
pub(super) struct SessionStats {
    pub(super) media_bytes: AtomicU64,
    pub(super) playlist_requests: AtomicU64,
    pub(super) media_requests: AtomicU64,
    pub(super) request_errors: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) abandoned_hints: AtomicU64,
    /// 0: no playlist yet, 1: LL-HLS, 2: plain HLS.
    pub(super) mode: AtomicU8,
    pub(super) playing: AtomicBool,
    pub(super) first_request_error: Mutex<Option<(Instant, String)>>,
}

impl SessionStats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(super) fn note_request_error(&self, message: String) {
        Self::add(&self.request_errors, 1);
        let mut first = self.first_request_error.lock().unwrap();
        if first.is_none() {
            *first = Some((Instant::now(), message));
        }
    }
}

/// [`SessionStats::mode`] of a session that saw an LL-HLS playlist.
pub(super) const MODE_LL_HLS: u8 = 1;
/// [`SessionStats::mode`] of a session that saw a plain HLS playlist (or was told to poll).
pub(super) const MODE_PLAIN_HLS: u8 = 2;

/// Keeps in `slot` whichever error happened first.
pub(super) fn keep_earliest(slot: &mut Option<(Instant, String)>, error: (Instant, String)) {
    if slot.as_ref().is_none_or(|(first, _)| error.0 < *first) {
        *slot = Some(error);
    }
}

/// Sums session outcomes into the fields that every report has.
pub(super) struct Tally {
    playing: usize,
    failed: usize,
    bytes_total: u64,
    bytes_max: u64,
    /// Fewest bytes of a playing session (`u64::MAX` while none).
    min: u64,
    first_error: Option<(Instant, String)>,
}

impl Tally {
    pub(super) fn new() -> Self {
        Self {
            playing: 0,
            failed: 0,
            bytes_total: 0,
            bytes_max: 0,
            min: u64::MAX,
            first_error: None,
        }
    }

    pub(super) fn add(&mut self, bytes: u64, error: Option<(Instant, String)>) {
        self.bytes_total += bytes;
        match error {
            None => {
                self.playing += 1;
                self.min = self.min.min(bytes);
                self.bytes_max = self.bytes_max.max(bytes);
            }
            Some(error) => {
                self.failed += 1;
                keep_earliest(&mut self.first_error, error);
            }
        }
    }

    /// The report of a run of `sessions` that began at `started` and ends now.
    pub(super) fn into_report(self, sessions: usize, started: Instant) -> RtmpLoadReport {
        RtmpLoadReport {
            sessions,
            playing: self.playing,
            failed: self.failed,
            bytes_total: self.bytes_total,
            bytes_min: if self.playing > 0 { self.min } else { 0 },
            bytes_max: self.bytes_max,
            seconds: started.elapsed().as_secs_f64(),
            first_error: self.first_error.map(|(_, message)| message),
        }
    }
}
