//! Pulls: streams this server fetches from elsewhere and publishes on its bus.
//!
//! Each pull runs in its own task: connect, publish under its local name, and on any failure
//! or end of stream retry with exponential backoff and jitter between `pull.retry_min_ms` and
//! `pull.retry_max_ms`, until it is deleted. The bus stream exists only while the source
//! delivers; readers see it end and come back. Errors retrying cannot fix (bad credentials, no
//! usable track) stop the pull in state `failed`.
//!
//! Sources by scheme: `rtsp://` ([`crate::inputs::rtsp_pull`]), `rtmp://` and `rtmps://`
//! ([`crate::inputs::rtmp::pull`]). WHEP (`http(s)://`) pulls are refused as not supported yet.
//!
//! An `on_demand` pull stays `idle` until a reader (RTMP play, HLS, MSE) asks for its name
//! (through the bus's demand hook), and goes back to `idle` once its stream has had no reader
//! for `pull.on_demand_idle_secs`.
//!
//! Sources are shown with their credentials redacted, in the API and in logs.

use crate::bus::{BusError, Peer, Publisher, Registry};
use crate::config::{Config, PullSection};
use crate::inputs::rtsp_pull::{self, RtspSettings, RtspSource, RtspTransport};
use crate::rtmp::client::{RtmpUrl, TlsTrust};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// What a pull input needs from the manager (a test can hand it a double).
pub trait PullSink: Send {
    /// Claims the pull's local name on the bus.
    fn publish(&mut self) -> Result<Publisher, BusError>;
    /// Media flows: the tracks are on the bus.
    fn running(&mut self);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    /// An on-demand pull with no reader: not connected.
    Idle,
    /// First connection attempt under way.
    Connecting,
    /// Publishing on the bus.
    Running,
    /// The last attempt failed; waiting or reconnecting.
    Retrying,
    /// Stopped by an error retrying cannot fix; see `last_error`.
    Failed,
}

/// Refusals of the pull API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

/// A pull as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PullInfo {
    pub id: String,
    /// The source URL with any `user:pass@` replaced by `***@`.
    pub source: String,
    pub name: String,
    pub protocol: &'static str,
    pub on_demand: bool,
    pub state: PullState,
    /// When the pull entered its current state, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Failed attempts since the pull was created.
    pub retries: u64,
    pub last_error: Option<String>,
    /// Bitrate of the media published, while running.
    pub bitrate_in_bps: u64,
    pub created_at_unix_ms: u64,
}

enum Source {
    Rtsp(RtspSource),
    Rtmp(RtmpUrl),
}

impl Source {
    fn protocol(&self) -> &'static str {
        match self {
            Source::Rtsp(_) => "rtsp",
            Source::Rtmp(_) => "rtmp-pull",
        }
    }
}

struct Status {
    state: PullState,
    since: SystemTime,
    retries: u64,
    last_error: Option<String>,
}

struct Pull {
    id: String,
    source: Source,
    shown_source: String,
    name: String,
    on_demand: bool,
    created: SystemTime,
    status: Mutex<Status>,
    cancel: CancellationToken,
}

impl Pull {
    fn set_state(&self, state: PullState, error: Option<String>) {
        let mut s = self.status.lock().unwrap();
        if s.state != state {
            s.since = SystemTime::now();
        }
        s.state = state;
        if let Some(e) = error {
            s.retries += 1;
            s.last_error = Some(one_line(&e, 300));
        }
    }
}

/// The first line of an error, at most `max` characters: retina appends hex dumps of what it
/// could not parse, which belong in the log, not in the API.
fn one_line(text: &str, max: usize) -> String {
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

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every pull of this server.
pub struct PullManager {
    registry: Registry,
    settings: PullSection,
    default_transport: RtspTransport,
    shutdown: CancellationToken,
    pulls: Mutex<BTreeMap<String, Arc<Pull>>>,
}

impl PullManager {
    /// Creates the manager and starts the pulls of the config's `[[pulls]]` (call from within
    /// the tokio runtime).
    pub fn new(registry: Registry, config: &Config, shutdown: CancellationToken) -> Self {
        let manager = PullManager {
            registry,
            default_transport: config
                .pull
                .rtsp_transport
                .parse()
                .unwrap_or(RtspTransport::Tcp),
            settings: config.pull.clone(),
            shutdown,
            pulls: Mutex::new(BTreeMap::new()),
        };
        if !config.pulls.is_empty() && tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("no tokio runtime; configured pulls not started");
            return manager;
        }
        for entry in &config.pulls {
            match manager.start(&entry.source, &entry.name, entry.on_demand) {
                Ok(id) => {
                    tracing::info!(id, source = %rtsp_pull::redact(&entry.source), name = %entry.name, "configured pull started")
                }
                Err(e) => {
                    tracing::error!(source = %rtsp_pull::redact(&entry.source), name = %entry.name, error = %e, "configured pull not started")
                }
            }
        }
        manager
    }

    /// Starts pulling `source` as `name`. Fails at once for a bad source or a name in use;
    /// an unreachable source shows in the pull's state instead.
    pub fn start(&self, source: &str, name: &str, on_demand: bool) -> Result<String, PullApiError> {
        let shown = rtsp_pull::redact(source);
        crate::bus::validate_name(name).map_err(|e| PullApiError::BadRequest(e.to_string()))?;
        let scheme = source
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| PullApiError::BadRequest(format!("malformed source URL {shown:?}")))?;
        let source = match scheme.as_str() {
            "rtsp" => Source::Rtsp(
                RtspSource::parse(source, self.default_transport)
                    .map_err(PullApiError::BadRequest)?,
            ),
            "rtmp" | "rtmps" => Source::Rtmp(
                RtmpUrl::parse(source).map_err(|e| PullApiError::BadRequest(e.to_string()))?,
            ),
            "http" | "https" | "rtsps" => {
                return Err(PullApiError::BadRequest(format!(
                "{scheme}:// pulls are not supported yet (supported: rtsp://, rtmp://, rtmps://)"
            )))
            }
            other => {
                return Err(PullApiError::BadRequest(format!(
                    "unknown source scheme {other:?} (supported: rtsp://, rtmp://, rtmps://)"
                )))
            }
        };
        let shown_source = match &source {
            Source::Rtsp(s) => s.redacted().to_string(),
            Source::Rtmp(u) => u.redacted(),
        };
        let mut pulls = self.pulls.lock().unwrap();
        if let Some(other) = pulls.values().find(|p| p.name == name) {
            return Err(PullApiError::Conflict(format!(
                "pull {} already publishes {name:?}",
                other.id
            )));
        }
        if let Some(stream) = self.registry.get(name) {
            let by = stream.publisher();
            return Err(PullApiError::Conflict(format!(
                "stream {name:?} is already being published (by {})",
                by.protocol
            )));
        }
        let id = loop {
            let id = format!("{:08x}", rand::random::<u32>());
            if !pulls.contains_key(&id) {
                break id;
            }
        };
        let pull = Arc::new(Pull {
            id: id.clone(),
            source,
            shown_source,
            name: name.to_string(),
            on_demand,
            created: SystemTime::now(),
            status: Mutex::new(Status {
                state: PullState::Connecting,
                since: SystemTime::now(),
                retries: 0,
                last_error: None,
            }),
            cancel: self.shutdown.child_token(),
        });
        pulls.insert(id.clone(), pull.clone());
        drop(pulls);
        if on_demand {
            pull.set_state(PullState::Idle, None);
            tracing::info!(id, source = %pull.shown_source, name, "on-demand pull waits for a reader");
        } else {
            tracing::info!(id, source = %pull.shown_source, name, "pull started");
            tokio::spawn(run_pull(pull, self.registry.clone(), self.settings.clone()));
        }
        Ok(id)
    }

    /// A reader wants `name`: starts its on-demand pull if it is idle. True if a pull will
    /// (or already does) publish `name`.
    pub fn demand(&self, name: &str) -> bool {
        let Some(pull) = self
            .pulls
            .lock()
            .unwrap()
            .values()
            .find(|p| p.name == name)
            .cloned()
        else {
            return false;
        };
        let mut status = pull.status.lock().unwrap();
        match status.state {
            PullState::Idle => {
                status.state = PullState::Connecting;
                status.since = SystemTime::now();
                drop(status);
                tracing::info!(id = %pull.id, name, source = %pull.shown_source, "on-demand pull started by a reader");
                tokio::spawn(run_pull(pull, self.registry.clone(), self.settings.clone()));
                true
            }
            PullState::Failed => false,
            _ => true,
        }
    }

    pub fn list(&self) -> Vec<PullInfo> {
        let pulls: Vec<_> = self.pulls.lock().unwrap().values().cloned().collect();
        let mut infos: Vec<_> = pulls.iter().map(|p| self.info(p)).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    pub fn get(&self, id: &str) -> Option<PullInfo> {
        let pull = self.pulls.lock().unwrap().get(id).cloned()?;
        Some(self.info(&pull))
    }

    /// Stops a pull; its stream ends.
    pub fn stop(&self, id: &str) -> Result<(), PullApiError> {
        let pull = self
            .pulls
            .lock()
            .unwrap()
            .remove(id)
            .ok_or_else(|| PullApiError::NotFound(format!("pull {id:?} not found")))?;
        pull.cancel.cancel();
        tracing::info!(id, name = %pull.name, "pull stopped");
        Ok(())
    }

    fn info(&self, pull: &Pull) -> PullInfo {
        let status = pull.status.lock().unwrap();
        let bitrate_in_bps = match status.state {
            PullState::Running => self
                .registry
                .get(&pull.name)
                .filter(|s| s.publisher().protocol == pull.source.protocol())
                .map(|s| s.snapshot().bitrate_in_bps)
                .unwrap_or(0),
            _ => 0,
        };
        PullInfo {
            id: pull.id.clone(),
            source: pull.shown_source.clone(),
            name: pull.name.clone(),
            protocol: pull.source.protocol(),
            on_demand: pull.on_demand,
            state: status.state,
            since_unix_ms: unix_ms(status.since),
            retries: status.retries,
            last_error: status.last_error.clone(),
            bitrate_in_bps,
            created_at_unix_ms: unix_ms(pull.created),
        }
    }
}

impl Drop for PullManager {
    fn drop(&mut self) {
        for pull in self.pulls.lock().unwrap().values() {
            pull.cancel.cancel();
        }
    }
}

/// The manager's side of one attempt.
struct Sink {
    registry: Registry,
    pull: Arc<Pull>,
    was_running: bool,
}

impl PullSink for Sink {
    fn publish(&mut self) -> Result<Publisher, BusError> {
        self.registry.publish(
            &self.pull.name,
            Peer::new(self.pull.source.protocol(), None),
        )
    }

    fn running(&mut self) {
        self.was_running = true;
        self.pull.set_state(PullState::Running, None);
        tracing::info!(id = %self.pull.id, name = %self.pull.name, source = %self.pull.shown_source, "pull running");
    }
}

/// Delay before retry number `attempt` (1-based): doubling from `min`, capped at `max`, with
/// jitter (a uniformly random 50-100 % of it, never under `min`) so that many pulls of one
/// failed source do not reconnect in lockstep. Pushes use it too.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let jittered = capped.mul_f64(rand::random_range(0.5..=1.0));
    jittered.max(min)
}

/// Resolves once the pull's stream has had no reader for `idle`.
async fn no_readers_for(registry: &Registry, pull: &Pull, idle: Duration) {
    let mut unread_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let readers = registry
            .get(&pull.name)
            .map_or(0, |s| s.readers_by_protocol().iter().map(|(_, n)| n).sum());
        if readers > 0 {
            unread_since = tokio::time::Instant::now();
        } else if unread_since.elapsed() >= idle {
            return;
        }
    }
}

async fn run_pull(pull: Arc<Pull>, registry: Registry, settings: PullSection) {
    let min = Duration::from_millis(settings.retry_min_ms);
    let max = Duration::from_millis(settings.retry_max_ms);
    let rtsp = RtspSettings {
        connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
        idle_timeout: Duration::from_secs(settings.connect_timeout_secs),
    };
    let tls = TlsTrust::new(&settings.tls_ca_file).map_err(|e| e.to_string());
    let mut attempt = 0u32;
    loop {
        let mut sink = Sink {
            registry: registry.clone(),
            pull: pull.clone(),
            was_running: false,
        };
        let error = tokio::select! {
            _ = pull.cancel.cancelled() => return,
            _ = no_readers_for(&registry, &pull, Duration::from_secs(settings.on_demand_idle_secs)), if pull.on_demand => {
                tracing::info!(id = %pull.id, name = %pull.name, "on-demand pull without readers; stopping until the next one");
                pull.set_state(PullState::Idle, None);
                return;
            }
            e = async {
                match &pull.source {
                    Source::Rtsp(source) => rtsp_pull::run(source, &rtsp, &mut sink).await,
                    Source::Rtmp(url) => match &tls {
                        Ok(trust) => crate::inputs::rtmp::pull(url, trust, rtsp.connect_timeout, &mut sink).await,
                        Err(e) => PullError::permanent(e.clone()),
                    },
                }
            } => e,
        };
        if pull.cancel.is_cancelled() {
            return;
        }
        attempt = if sink.was_running { 1 } else { attempt + 1 };
        if error.permanent {
            tracing::warn!(id = %pull.id, name = %pull.name, source = %pull.shown_source, error = %error.message, "pull failed; not retrying");
            pull.set_state(PullState::Failed, Some(error.message));
            return;
        }
        let delay = backoff(attempt, min, max);
        tracing::warn!(id = %pull.id, name = %pull.name, source = %pull.shown_source, error = %error.message, retry_in_ms = delay.as_millis() as u64, "pull interrupted; retrying");
        pull.set_state(PullState::Retrying, Some(error.message));
        tokio::select! {
            _ = pull.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_shown_are_one_short_line() {
        assert_eq!(
            one_line("framing error; buffered:\n00 01 02", 300),
            "framing error; buffered"
        );
        assert_eq!(one_line("abcdef", 3), "abc...");
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let (min, max) = (Duration::from_millis(500), Duration::from_millis(30_000));
        for _ in 0..100 {
            let d1 = backoff(1, min, max);
            assert_eq!(d1, min);
            let d3 = backoff(3, min, max);
            assert!(d3 >= Duration::from_millis(1000) && d3 <= Duration::from_millis(2000));
            let d30 = backoff(30, min, max);
            assert!(d30 >= Duration::from_millis(15_000) && d30 <= max);
        }
    }

    fn manager() -> PullManager {
        PullManager::new(
            Registry::new(Default::default()),
            &Config::default(),
            CancellationToken::new(),
        )
    }

    #[tokio::test]
    async fn bad_sources_and_names_are_refused_before_starting() {
        let m = manager();
        let bad = |source: &str, name: &str| m.start(source, name, false).unwrap_err();
        assert!(matches!(
            bad("rtsp://cam/x", "bad name"),
            PullApiError::BadRequest(_)
        ));
        assert!(matches!(bad("cam/x", "a"), PullApiError::BadRequest(_)));
        assert!(matches!(
            bad("ftp://cam/x", "a"),
            PullApiError::BadRequest(_)
        ));
        let e = bad("https://other/whep/x", "a");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        let e = bad("rtsp://admin:hunter2@[::1/x", "a");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(m.list().is_empty());
    }

    #[tokio::test]
    async fn on_demand_pulls_wait_idle_until_a_reader_asks() {
        let m = manager();
        let id = m.start("rtsp://127.0.0.1:1/x", "cam/od", true).unwrap();
        assert_eq!(m.get(&id).unwrap().state, PullState::Idle);
        assert!(!m.demand("cam/other"), "no pull for that name");
        assert!(m.demand("cam/od"));
        assert_eq!(m.get(&id).unwrap().state, PullState::Connecting);
        assert!(m.demand("cam/od"), "already on its way");
    }

    #[tokio::test]
    async fn duplicate_names_conflict_and_delete_frees_them() {
        let m = manager();
        let id = m.start("rtsp://u:p@127.0.0.1:1/x", "cam", false).unwrap();
        assert!(matches!(
            m.start("rtsp://127.0.0.1:1/y", "cam", false).unwrap_err(),
            PullApiError::Conflict(_)
        ));
        let info = m.get(&id).unwrap();
        assert_eq!(info.source, "rtsp://***@127.0.0.1:1/x");
        m.stop(&id).unwrap();
        assert!(matches!(m.stop(&id), Err(PullApiError::NotFound(_))));
        m.start("rtsp://127.0.0.1:1/y", "cam", false).unwrap();
        let _publisher = m
            .registry
            .publish("taken", Peer::new("rtmp", None))
            .unwrap();
        assert!(matches!(
            m.start("rtsp://127.0.0.1:1/y", "taken", false).unwrap_err(),
            PullApiError::Conflict(_)
        ));
    }
}
