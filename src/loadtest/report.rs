//! What a load run reports: [`LoadTestReport`], built from its sessions' readings (this node's
//! and other load nodes'), and the HTTP clients' per-session request counters
//! ([`SessionStats`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::probe::{Percentiles, SessionReport, SessionState};
use super::spec::{LoadSpec, RunState};

/// A load run's figures, live or final: the JSON of `GET /api/v1/loadtests/{id}` and of
/// `switchyard loadtest --json FILE`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LoadTestReport {
    pub id: String,
    pub target: String,
    /// `rtmp`, `hls`, `mse` or `whep`.
    pub protocol: String,
    pub state: RunState,
    pub started_unix_ms: u64,
    /// Seconds since the run started (its length, once it ended).
    pub seconds: f64,
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions begun so far (the ramp may still be running).
    pub started: usize,
    /// Sessions that connected (at any time).
    pub connected: usize,
    /// Sessions that got video and have not failed.
    pub playing: usize,
    /// Sessions that ended with an error.
    pub failed: usize,
    /// Mean bitrate received per connected session, bits per second.
    pub bitrate_bps: u64,
    /// Bytes received, all sessions.
    pub bytes_total: u64,
    /// Fewest and most bytes received by one playing session.
    pub bytes_min: u64,
    pub bytes_max: u64,
    /// Video frames received, all sessions.
    pub frames_total: u64,
    /// Mean frames per second per playing session, since its first keyframe.
    pub fps: f64,
    /// RTP packets (WebRTC): all sessions, and the fewest of one playing session.
    pub packets_total: u64,
    pub packets_min: u64,
    pub packets_lost: u64,
    /// Mean jitter over the connected sessions, ms.
    pub jitter_ms: f64,
    pub freezes: u64,
    pub freeze_ms: f64,
    pub nacks_sent: u64,
    pub plis_sent: u64,
    /// Connect times (ms from a session's start; for WHEP ICE + DTLS).
    pub connect_ms: Option<Percentiles>,
    /// Times to the first video keyframe (ms from a session's start).
    pub first_frame_ms: Option<Percentiles>,
    /// End-to-end latency from probe stamps, per path (`"rtmp -> whep"`).
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Probe stamps sent later than they arrived (not in `latency_ms`): the source's clock is
    /// ahead of this node's.
    #[serde(default)]
    pub stamps_ahead: u64,
    /// Failed sessions by reason.
    pub failures: BTreeMap<String, usize>,
    /// The reason of the first failed session, if any.
    pub first_error: Option<String>,
    /// HLS and MSE clients' request counters.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCounters>,
    /// The load nodes of a run split among several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeShare>,
    /// One entry per session (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session: Option<Vec<SessionReport>>,
}

/// The latest figures of one other node's share.
pub(super) struct RemoteReading {
    pub(super) node: String,
    pub(super) sessions: usize,
    pub(super) id: Option<String>,
    pub(super) report: Option<LoadTestReport>,
    pub(super) error: Option<String>,
}

/// One load node's part of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeShare {
    /// Base URL (`"local"` for this node).
    pub node: String,
    pub sessions: usize,
    /// The run's id on that node.
    pub id: Option<String>,
    pub connected: usize,
    pub failed: usize,
    /// Why the node's figures are missing or stale, if they are.
    pub error: Option<String>,
}

/// HLS and MSE request counters, summed over sessions.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct HttpCounters {
    /// What the clients did: `"ll-hls"`, `"hls"`, `"mse"`, `"mixed"`, `"unknown"`.
    pub mode: String,
    /// Playlist requests sent (HLS; blocking and plain).
    pub playlist_requests: u64,
    /// Media requests sent (HLS: init section, segments, parts; hinted parts included).
    pub media_requests: u64,
    /// Requests that failed without ending their session (the session retried).
    pub request_errors: u64,
    pub first_request_error: Option<String>,
    /// TCP connections opened.
    pub connects: u64,
    /// LL-HLS: preload-hinted parts the next playlist did not list.
    pub abandoned_hints: u64,
    pub ll_hls_sessions: usize,
    pub plain_hls_sessions: usize,
}

/// Request counters of one HLS or MSE session.
#[derive(Default)]
pub(super) struct SessionStats {
    pub(super) playlist_requests: AtomicU64,
    pub(super) media_requests: AtomicU64,
    pub(super) request_errors: AtomicU64,
    pub(super) connects: AtomicU64,
    pub(super) abandoned_hints: AtomicU64,
    /// 0: no playlist yet, [`MODE_LL_HLS`], [`MODE_PLAIN_HLS`].
    pub(super) mode: AtomicU8,
    pub(super) first_request_error: Mutex<Option<String>>,
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
            *first = Some(message);
        }
    }

    fn add_to(&self, counters: &mut HttpCounters) {
        counters.playlist_requests += Self::get(&self.playlist_requests);
        counters.media_requests += Self::get(&self.media_requests);
        counters.request_errors += Self::get(&self.request_errors);
        counters.connects += Self::get(&self.connects);
        counters.abandoned_hints += Self::get(&self.abandoned_hints);
        match self.mode.load(Ordering::Relaxed) {
            MODE_LL_HLS => counters.ll_hls_sessions += 1,
            MODE_PLAIN_HLS => counters.plain_hls_sessions += 1,
            _ => {}
        }
        if counters.first_request_error.is_none() {
            counters.first_request_error = self.first_request_error.lock().unwrap().clone();
        }
    }
}

/// [`SessionStats::mode`] of a session that saw an LL-HLS playlist.
pub(super) const MODE_LL_HLS: u8 = 1;
/// [`SessionStats::mode`] of a session that saw a plain HLS playlist (or was told to poll).
pub(super) const MODE_PLAIN_HLS: u8 = 2;

/// Longest failure reason kept as a key of [`LoadTestReport::failures`].
const REASON_KEPT: usize = 200;

impl LoadTestReport {
    /// Sums this node's sessions (`local`: readings and request counters) and the other load
    /// nodes' latest readings.
    pub(super) fn build(
        spec: &LoadSpec,
        protocol: &str,
        local: Vec<(SessionReport, Arc<SessionStats>)>,
        remotes: Vec<RemoteReading>,
        per_session: bool,
    ) -> LoadTestReport {
        let mut http = matches!(protocol, "hls" | "mse").then(HttpCounters::default);
        let mut sessions = Vec::with_capacity(local.len());
        for (session, stats) in local {
            if let Some(http) = http.as_mut() {
                stats.add_to(http);
            }
            sessions.push(session);
        }
        let mut nodes = Vec::new();
        if !remotes.is_empty() {
            nodes.push(NodeShare {
                node: "local".to_string(),
                sessions: spec.sessions - remotes.iter().map(|r| r.sessions).sum::<usize>(),
                id: None,
                connected: sessions.iter().filter(|s| s.connect_ms.is_some()).count(),
                failed: sessions
                    .iter()
                    .filter(|s| s.state == SessionState::Failed)
                    .count(),
                error: None,
            });
        }
        for remote in remotes {
            let mut share = NodeShare {
                node: remote.node.clone(),
                sessions: remote.sessions,
                id: remote.id.clone(),
                connected: 0,
                failed: 0,
                error: remote.error.clone(),
            };
            if let Some(report) = remote.report {
                share.connected = report.connected;
                share.failed = report.failed;
                if let (Some(http), Some(theirs)) = (http.as_mut(), report.http) {
                    http.add(&theirs);
                }
                for mut session in report.per_session.unwrap_or_default() {
                    session.node = Some(remote.node.clone());
                    sessions.push(session);
                }
            }
            nodes.push(share);
        }
        if let Some(http) = http.as_mut() {
            http.mode = match (protocol, http.ll_hls_sessions, http.plain_hls_sessions) {
                ("mse", ..) => "mse",
                (_, 0, 0) => "unknown",
                (_, _, 0) => "ll-hls",
                (_, 0, _) => "hls",
                _ => "mixed",
            }
            .to_string();
        }
        let mut report = Self::sum(&sessions);
        report.target = spec.target.clone();
        report.protocol = protocol.to_string();
        report.sessions = spec.sessions;
        report.http = http;
        report.nodes = nodes;
        report.per_session = per_session.then_some(sessions);
        report
    }

    /// The figures of a set of sessions.
    fn sum(sessions: &[SessionReport]) -> LoadTestReport {
        let connected: Vec<&SessionReport> =
            sessions.iter().filter(|s| s.connect_ms.is_some()).collect();
        let playing: Vec<&SessionReport> = sessions
            .iter()
            .filter(|s| s.first_frame_ms.is_some() && s.state != SessionState::Failed)
            .collect();
        let mut failures = BTreeMap::new();
        let mut first_error: Option<(f64, String)> = None;
        for session in sessions {
            if let (SessionState::Failed, Some(error)) = (session.state, &session.error) {
                let reason: String = error.chars().take(REASON_KEPT).collect();
                *failures.entry(reason.clone()).or_insert(0) += 1;
                if first_error
                    .as_ref()
                    .is_none_or(|(at, _)| session.seconds < *at)
                {
                    first_error = Some((session.seconds, reason));
                }
            }
        }
        let mut latency: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
        for session in sessions {
            if let Some(path) = &session.latency_path {
                let buckets = latency.entry(path.clone()).or_default();
                for (bucket, count) in &session.latency_histogram {
                    *buckets.entry(*bucket).or_default() += u64::from(*count);
                }
            }
        }
        let mean = |values: &[f64]| {
            if values.is_empty() {
                0.0
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            }
        };
        let fps: Vec<f64> = playing
            .iter()
            .filter_map(|s| {
                let since_first = s.seconds - s.first_frame_ms? / 1000.0;
                (since_first > 0.5).then(|| s.frames as f64 / since_first)
            })
            .collect();
        LoadTestReport {
            id: String::new(),
            target: String::new(),
            protocol: String::new(),
            state: RunState::Running,
            started_unix_ms: 0,
            seconds: 0.0,
            sessions: sessions.len(),
            started: sessions.len(),
            connected: connected.len(),
            playing: playing.len(),
            failed: failures.values().sum(),
            bitrate_bps: mean(
                &connected
                    .iter()
                    .map(|s| s.bitrate_bps as f64)
                    .collect::<Vec<_>>(),
            )
            .round() as u64,
            bytes_total: sessions.iter().map(|s| s.bytes).sum(),
            bytes_min: playing.iter().map(|s| s.bytes).min().unwrap_or(0),
            bytes_max: playing.iter().map(|s| s.bytes).max().unwrap_or(0),
            frames_total: sessions.iter().map(|s| s.frames).sum(),
            fps: (mean(&fps) * 10.0).round() / 10.0,
            packets_total: sessions.iter().map(|s| s.packets).sum(),
            packets_min: playing.iter().map(|s| s.packets).min().unwrap_or(0),
            packets_lost: sessions.iter().map(|s| s.packets_lost).sum(),
            jitter_ms: (mean(&connected.iter().map(|s| s.jitter_ms).collect::<Vec<_>>()) * 100.0)
                .round()
                / 100.0,
            freezes: sessions.iter().map(|s| s.freezes).sum(),
            freeze_ms: sessions.iter().map(|s| s.freeze_ms).sum::<f64>().round(),
            nacks_sent: sessions.iter().map(|s| s.nacks_sent).sum(),
            plis_sent: sessions.iter().map(|s| s.plis_sent).sum(),
            stamps_ahead: sessions.iter().map(|s| s.stamps_ahead).sum(),
            connect_ms: Percentiles::of(connected.iter().filter_map(|s| s.connect_ms).collect()),
            first_frame_ms: Percentiles::of(
                sessions.iter().filter_map(|s| s.first_frame_ms).collect(),
            ),
            latency_ms: latency
                .iter()
                .filter_map(|(path, buckets)| {
                    Some((path.clone(), Percentiles::of_histogram(buckets)?))
                })
                .collect(),
            failures,
            first_error: first_error.map(|(_, reason)| reason),
            http: None,
            nodes: Vec::new(),
            per_session: None,
        }
    }

    /// Share of the asked sessions that failed (sessions never begun count as failed once the
    /// run is over).
    pub fn failure_rate(&self) -> f64 {
        let failed = if self.state == RunState::Running {
            self.failed
        } else {
            self.failed + self.sessions.saturating_sub(self.started)
        };
        failed as f64 / self.sessions.max(1) as f64
    }
}

impl HttpCounters {
    fn add(&mut self, other: &HttpCounters) {
        self.playlist_requests += other.playlist_requests;
        self.media_requests += other.media_requests;
        self.request_errors += other.request_errors;
        self.connects += other.connects;
        self.abandoned_hints += other.abandoned_hints;
        self.ll_hls_sessions += other.ll_hls_sessions;
        self.plain_hls_sessions += other.plain_hls_sessions;
        if self.first_request_error.is_none() {
            self.first_request_error = other.first_request_error.clone();
        }
    }
}
