//! Pulls: streams this server fetches from elsewhere and publishes on its bus.
//!
//! Each pull runs in its own task: connect, publish under its local name, and on any failure
//! or end of stream retry with exponential backoff and jitter between `pull.retry_min_ms` and
//! `pull.retry_max_ms`, until it is deleted. The bus stream exists only while the source
//! delivers; readers see it end and come back. A WHEP pull that had media keeps its stream
//! (and readers) through a reconnection of up to `pull.hold_secs` ([`PullSink::hold`]). Errors retrying cannot fix (bad credentials, no
//! usable track) stop the pull in state `failed`.
//!
//! Sources by scheme: `rtsp://` ([`crate::inputs::rtsp_pull`]), `rtmp://` and `rtmps://`
//! ([`crate::inputs::rtmp::pull`]), `http://` and `https://` WHEP endpoints
//! ([`crate::inputs::whep_pull`], RFC 9725 client), with an optional bearer token.
//!
//! An `on_demand` pull stays `idle` until a reader (RTMP play, HLS, MSE, WHEP) asks for its
//! name (through the bus's demand hook), and goes back to `idle` once its stream has had no
//! reader for `pull.on_demand_idle_secs`.
//!
//! Origins (config `origins`): a reader asking for a stream that nobody publishes and no pull
//! names starts an *origin pull*: WHEP `POST {origin}/whep/{name}` to each origin in order,
//! the first `201` wins (an origin that is itself an edge pulls from its own origins on that
//! request, so chains origin -> edge -> edge work). The origin pull is listed like any other
//! and removed once its stream has had no reader for the idle timeout, or when no origin has
//! the stream.
//!
//! Loops: every WHEP pull's POST lists the ids of the nodes it came through, this node's last
//! ([`whep_pull::VIA_HEADER`]); an origin pull started for such a POST carries its chain on.
//! A node that finds its own id in an incoming chain answers `508 Loop Detected` at once
//! (`http/webrtc.rs`), so origins configured in a loop give their reader a quick 404 instead
//! of a wait of `pull.connect_timeout_secs`.
//!
//! Sources are shown with their credentials redacted, in the API and in logs.

use crate::bus::{BusError, Peer, Publisher, Registry};
use crate::config::{Config, PullSection};
use crate::inputs::pull::{one_line, redact, PullError, PullSink};
use crate::inputs::rtsp_pull::{self, RtspSettings, RtspSource, RtspTransport};
use crate::inputs::whep_pull::{self, WhepClient, WhepSettings, WhepSource};
use crate::rtmp::client::{RtmpUrl, TlsTrust};
use crate::webrtc::ClientCounters;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    /// RTSP and WHEP pulls: RTP packets lost in the current session (never arrived: reordered
    /// packets are not lost; for WHEP, after retransmissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_lost: Option<u64>,
    /// WHEP pulls: ICE round-trip time to the source, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    pub has_video: bool,
    pub has_audio: bool,
    /// Started by a reader through the config's `origins`, not through the API.
    pub origin_pull: bool,
    pub created_at_unix_ms: u64,
}

enum Source {
    Rtsp(RtspSource),
    Rtmp(RtmpUrl),
    Whep(WhepSource),
    /// The owner of the stream in the cluster directory (asked anew on every attempt), then
    /// `{origin}/whep/{name}` of each configured origin in turn.
    Origins(OriginSources),
}

/// Where an origin pull looks for its stream.
struct OriginSources {
    name: String,
    /// The chain of node ids the pull carries on (this node's last).
    chain: Vec<String>,
    token: Option<String>,
    /// The configured `origins`, in order, after the directory's answer.
    fixed: Vec<WhepSource>,
    directory: Option<Arc<dyn OriginDirectory>>,
}

/// The cluster's stream directory, as origin pulls ask it (`cluster`): the base URL of the
/// node that publishes a stream. `Ok(None)`: no other node has it; `Err`: the directory
/// cannot be asked (the reason).
pub trait OriginDirectory: Send + Sync {
    fn owner_url<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send + 'a>,
    >;
}

impl Source {
    fn protocol(&self) -> &'static str {
        match self {
            Source::Rtsp(_) => "rtsp",
            Source::Rtmp(_) => "rtmp-pull",
            Source::Whep(_) | Source::Origins(_) => "whep-pull",
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
    /// The current WebRTC attempt's counters.
    counters: Mutex<Option<Arc<ClientCounters>>>,
    /// An origin pull: removed from the manager when it stops.
    origin_pull: bool,
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
    pulls: Pulls,
    /// What WHEP pulls need.
    whep: Arc<OnceLock<WhepClient>>,
    /// Base URLs of the origins asked for streams nobody here has.
    origins: Vec<String>,
    /// This node's id in `Switchyard-Via` chains.
    node_id: String,
    /// The cluster's directory, asked for streams nobody here has (before `origins`).
    directory: OnceLock<Arc<dyn OriginDirectory>>,
}

type Pulls = Arc<Mutex<BTreeMap<String, Arc<Pull>>>>;

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
            pulls: Arc::default(),
            whep: Arc::new(OnceLock::from(WhepClient::new(
                config.webrtc.to_settings(),
                Duration::from_secs(config.pull.connect_timeout_secs),
            ))),
            origins: config
                .origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            node_id: if config.node_id.is_empty() {
                format!("{:08x}", rand::random::<u32>())
            } else {
                config.node_id.clone()
            },
            directory: OnceLock::new(),
        };
        if !config.pulls.is_empty() && tokio::runtime::Handle::try_current().is_err() {
            tracing::error!("no tokio runtime; configured pulls not started");
            return manager;
        }
        for entry in &config.pulls {
            match manager.start(
                &entry.source,
                &entry.name,
                entry.on_demand,
                entry.token.clone(),
            ) {
                Ok(id) => {
                    tracing::info!(id, source = %redact(&entry.source), name = %entry.name, "configured pull started")
                }
                Err(e) => {
                    tracing::error!(source = %redact(&entry.source), name = %entry.name, error = %e, "configured pull not started")
                }
            }
        }
        manager
    }

    /// Starts pulling `source` as `name`. Fails at once for a bad source or a name in use;
    /// an unreachable source shows in the pull's state instead. `token` is the bearer token
    /// of a WHEP source.
    pub fn start(
        &self,
        source: &str,
        name: &str,
        on_demand: bool,
        token: Option<String>,
    ) -> Result<String, PullApiError> {
        let shown = redact(source);
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
            "http" | "https" => Source::Whep(
                WhepSource::parse(source, token.clone())
                    .map_err(PullApiError::BadRequest)?
                    .with_via(std::slice::from_ref(&self.node_id)),
            ),
            "rtsps" => {
                return Err(PullApiError::BadRequest(format!(
                "{scheme}:// pulls are not supported yet (supported: rtsp://, rtmp://, rtmps://, http(s):// WHEP)"
            )))
            }
            other => {
                return Err(PullApiError::BadRequest(format!(
                    "unknown source scheme {other:?} (supported: rtsp://, rtmp://, rtmps://, http(s):// WHEP)"
                )))
            }
        };
        if token.is_some() && !matches!(source, Source::Whep(_)) {
            return Err(PullApiError::BadRequest(
                "a token is for WHEP (http/https) sources; give RTSP/RTMP credentials in the URL"
                    .to_string(),
            ));
        }
        let shown_source = match &source {
            Source::Rtsp(s) => s.redacted().to_string(),
            Source::Rtmp(u) => u.redacted(),
            Source::Whep(w) => w.url().to_string(),
            Source::Origins(_) => unreachable!("origin pulls are made by demand()"),
        };
        self.insert(source, shown_source, name, on_demand, false)
    }

    /// Registers a pull and starts it unless it waits for a reader.
    fn insert(
        &self,
        source: Source,
        shown_source: String,
        name: &str,
        on_demand: bool,
        origin_pull: bool,
    ) -> Result<String, PullApiError> {
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
            counters: Mutex::new(None),
            origin_pull,
        });
        pulls.insert(id.clone(), pull.clone());
        drop(pulls);
        if on_demand && !origin_pull {
            pull.set_state(PullState::Idle, None);
            tracing::info!(id, source = %pull.shown_source, name, "on-demand pull waits for a reader");
        } else {
            tracing::info!(id, source = %pull.shown_source, name, "pull started");
            self.spawn(pull);
        }
        Ok(id)
    }

    fn spawn(&self, pull: Arc<Pull>) {
        tokio::spawn(run_pull(
            pull,
            self.registry.clone(),
            self.settings.clone(),
            self.whep.clone(),
            self.pulls.clone(),
        ));
    }

    /// This node's id, the last in the `Switchyard-Via` chain of its WHEP pulls.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The base URLs of the configured origins.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Installs the cluster's directory (once): readers of streams nobody here has then
    /// start origin pulls from the stream's owner.
    pub fn set_directory(&self, directory: Arc<dyn OriginDirectory>) {
        let _ = self.directory.set(directory);
    }

    /// The names published here by origin pulls (copies of other nodes' streams).
    pub fn origin_pull_names(&self) -> std::collections::HashSet<String> {
        self.pulls
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.origin_pull)
            .map(|p| p.name.clone())
            .collect()
    }

    /// Starts an origin pull of `name` if the cluster directory or origins are configured:
    /// true if one will try. `via`: the nodes the request for it came through (empty for a
    /// reader of this node).
    fn demand_from_origins(&self, name: &str, via: &[String]) -> bool {
        let directory = self.directory.get().cloned();
        if (self.origins.is_empty() && directory.is_none())
            || crate::bus::validate_name(name).is_err()
        {
            return false;
        }
        let mut chain = via.to_vec();
        chain.push(self.node_id.clone());
        let token = Some(self.settings.origin_token.clone()).filter(|t| !t.is_empty());
        let fixed: Vec<WhepSource> = self
            .origins
            .iter()
            .filter_map(|o| WhepSource::parse(&format!("{o}/whep/{name}"), token.clone()).ok())
            .map(|s| s.with_via(&chain))
            .collect();
        if fixed.is_empty() && directory.is_none() {
            return false;
        }
        let mut shown: Vec<String> = self.origins.clone();
        if directory.is_some() {
            shown.insert(0, "cluster directory".to_string());
        }
        let sources = OriginSources {
            name: name.to_string(),
            chain: chain.clone(),
            token,
            fixed,
            directory,
        };
        match self.insert(Source::Origins(sources), shown.join(" "), name, true, true) {
            Ok(id) => {
                tracing::info!(id, name, origins = ?self.origins, via = %chain.join(", "), "origin pull started by a reader");
                true
            }
            // Someone else publishes or pulls it meanwhile: the reader finds it.
            Err(PullApiError::Conflict(_)) => true,
            Err(_) => false,
        }
    }

    /// A reader wants `name`: starts its on-demand pull if it is idle. True if a pull will
    /// (or already does) publish `name`.
    pub fn demand(&self, name: &str) -> bool {
        self.demand_via(name, &[])
    }

    /// Like [`PullManager::demand`] for a WHEP pull of another node whose POST came through
    /// the nodes `via`: an origin pull it starts carries the chain on.
    pub fn demand_via(&self, name: &str, via: &[String]) -> bool {
        let Some(pull) = self
            .pulls
            .lock()
            .unwrap()
            .values()
            .find(|p| p.name == name)
            .cloned()
        else {
            return self.demand_from_origins(name, via);
        };
        let mut status = pull.status.lock().unwrap();
        match status.state {
            PullState::Idle => {
                status.state = PullState::Connecting;
                status.since = SystemTime::now();
                drop(status);
                tracing::info!(id = %pull.id, name, source = %pull.shown_source, "on-demand pull started by a reader");
                self.spawn(pull);
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
        let stream = match status.state {
            PullState::Running => self
                .registry
                .get(&pull.name)
                .filter(|s| s.publisher().protocol == pull.source.protocol()),
            _ => None,
        };
        let snapshot = stream.map(|s| s.snapshot());
        let bitrate_in_bps = snapshot.as_ref().map_or(0, |s| s.bitrate_in_bps);
        let (has_video, has_audio) = snapshot.as_ref().map_or((false, false), |s| {
            (s.tracks.video().is_some(), s.tracks.audio().is_some())
        });
        let counters = match (&pull.source, status.state) {
            (Source::Rtsp(_) | Source::Whep(_) | Source::Origins(_), PullState::Running) => {
                pull.counters.lock().unwrap().clone()
            }
            _ => None,
        };
        let packets_lost = counters.as_ref().map(|c| c.lost.load(Ordering::Relaxed));
        let rtt_ms = counters
            .as_ref()
            .map(|c| c.rtt_us.load(Ordering::Relaxed))
            .filter(|us| *us > 0)
            .map(|us| us as f64 / 1000.0);
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
            packets_lost,
            rtt_ms,
            has_video,
            has_audio,
            origin_pull: pull.origin_pull,
            created_at_unix_ms: unix_ms(pull.created),
        }
    }
}

impl Drop for PullManager {
    fn drop(&mut self) {
        for pull in self.pulls.lock().unwrap().values() {
            pull.cancel.cancel();
        }
        self.pulls.lock().unwrap().clear();
    }
}

/// The manager's side of one attempt.
struct Sink {
    registry: Registry,
    pull: Arc<Pull>,
    was_running: bool,
    /// The previous attempt's publisher, still on the bus with its readers.
    held: Option<Publisher>,
}

impl PullSink for Sink {
    fn publish(&mut self) -> Result<Publisher, BusError> {
        if let Some(publisher) = self.held.take() {
            return Ok(publisher);
        }
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

    fn counters(&mut self, counters: Arc<ClientCounters>) {
        *self.pull.counters.lock().unwrap() = Some(counters);
    }

    fn hold(&mut self, publisher: Publisher) {
        self.held = Some(publisher);
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

/// One WHEP attempt, against the first origin that has the stream for an origin pull.
async fn whep_attempt(
    pull: &Pull,
    whep: &OnceLock<WhepClient>,
    settings: &WhepSettings,
    sink: &mut Sink,
) -> PullError {
    let Some(client) = whep.get() else {
        return PullError::permanent("no WebRTC settings");
    };
    match &pull.source {
        Source::Whep(source) => whep_pull::run(client, source, settings, sink).await,
        Source::Origins(origins) => {
            let mut errors = Vec::new();
            let mut sources = Vec::new();
            if let Some(directory) = &origins.directory {
                match directory.owner_url(&origins.name).await {
                    Ok(Some(owner)) => {
                        match WhepSource::parse(
                            &format!("{owner}/whep/{}", origins.name),
                            origins.token.clone(),
                        ) {
                            Ok(source) => sources.push(source.with_via(&origins.chain)),
                            Err(e) => errors.push(format!("the owner's URL {owner:?}: {e}")),
                        }
                    }
                    Ok(None) => errors.push("no node of the cluster publishes it".to_string()),
                    Err(e) => errors.push(e),
                }
            }
            for source in sources.iter().chain(&origins.fixed) {
                let error = whep_pull::run(client, source, settings, sink).await;
                if sink.was_running {
                    return error;
                }
                tracing::debug!(id = %pull.id, origin = %source.url(), error = %error.message, "origin does not serve the stream");
                errors.push(error.message);
            }
            PullError::retry(format!("no origin has it: {}", errors.join("; ")))
        }
        _ => unreachable!("not a WHEP source"),
    }
}

/// How long a failed origin pull stays listed (and answers readers of its name).
const ORIGIN_MISS_KEPT: Duration = Duration::from_secs(5);

async fn run_pull(
    pull: Arc<Pull>,
    registry: Registry,
    settings: PullSection,
    whep: Arc<OnceLock<WhepClient>>,
    pulls: Pulls,
) {
    run_pull_attempts(&pull, registry, settings, &whep).await;
    if pull.origin_pull && pull.status.lock().unwrap().state == PullState::Failed {
        // Kept a while as the answer to readers of a name no origin has (they get their 404
        // at once instead of starting the probe again). Also when the miss came from a loop
        // refusal: the request of the other node that started it is still waiting, and a
        // probe it restarted without the chain would go round the loop until the timeout.
        tokio::select! {
            _ = pull.cancel.cancelled() => {}
            _ = tokio::time::sleep(ORIGIN_MISS_KEPT) => {}
        }
    }
    if pull.origin_pull {
        let mut pulls = pulls.lock().unwrap();
        if pulls.get(&pull.id).is_some_and(|p| Arc::ptr_eq(p, &pull)) {
            pulls.remove(&pull.id);
            tracing::info!(id = %pull.id, name = %pull.name, "origin pull removed");
        }
    }
}

async fn run_pull_attempts(
    pull: &Arc<Pull>,
    registry: Registry,
    settings: PullSection,
    whep: &OnceLock<WhepClient>,
) {
    let min = Duration::from_millis(settings.retry_min_ms);
    let max = Duration::from_millis(settings.retry_max_ms);
    let rtsp = RtspSettings {
        connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
        idle_timeout: Duration::from_secs(settings.connect_timeout_secs),
    };
    let whep_settings = WhepSettings {
        connect_timeout: Duration::from_secs(settings.connect_timeout_secs),
        media_timeout: Duration::from_secs(settings.connect_timeout_secs),
    };
    let tls = TlsTrust::new(&settings.tls_ca_file).map_err(|e| e.to_string());
    let mut attempt = 0u32;
    let mut ever_running = false;
    let hold = Duration::from_secs(settings.hold_secs);
    // A publisher kept through a gap, and since when.
    let mut held: Option<(Publisher, tokio::time::Instant)> = None;
    loop {
        if held
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= hold)
        {
            tracing::info!(id = %pull.id, name = %pull.name, "the source did not come back in time; the stream ends");
            held = None;
        }
        let held_since = held.as_ref().map(|(_, since)| *since);
        let mut sink = Sink {
            registry: registry.clone(),
            pull: pull.clone(),
            was_running: false,
            held: held.take().map(|(p, _)| p),
        };
        let error = tokio::select! {
            _ = pull.cancel.cancelled() => return,
            _ = no_readers_for(&registry, pull, Duration::from_secs(settings.on_demand_idle_secs)), if pull.on_demand => {
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
                    Source::Whep(_) | Source::Origins(_) => whep_attempt(pull, whep, &whep_settings, &mut sink).await,
                }
            } => e,
        };
        if pull.cancel.is_cancelled() {
            return;
        }
        attempt = if sink.was_running { 1 } else { attempt + 1 };
        *pull.counters.lock().unwrap() = None;
        if hold > Duration::ZERO {
            held = sink.held.take().map(|p| {
                let since = if sink.was_running { None } else { held_since };
                (p, since.unwrap_or_else(tokio::time::Instant::now))
            });
        }
        let was_running = sink.was_running;
        drop(sink);
        ever_running |= was_running;
        // An origin pull that had the stream keeps trying while it holds the stream for its
        // readers (`pull.hold_secs`): the directory may name a new owner meanwhile.
        if pull.origin_pull && !was_running && (!ever_running || (attempt >= 3 && held.is_none())) {
            // No origin has it (any more): readers get their 404 rather than a wait.
            tracing::info!(id = %pull.id, name = %pull.name, error = %error.message, "no origin has the stream");
            pull.set_state(PullState::Failed, Some(error.message));
            return;
        }
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
        let bad = |source: &str, name: &str| m.start(source, name, false, None).unwrap_err();
        assert!(matches!(
            bad("rtsp://cam/x", "bad name"),
            PullApiError::BadRequest(_)
        ));
        assert!(matches!(bad("cam/x", "a"), PullApiError::BadRequest(_)));
        assert!(matches!(
            bad("ftp://cam/x", "a"),
            PullApiError::BadRequest(_)
        ));
        let e = bad("rtsps://other/x", "a");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        let e = bad("http://", "a");
        assert!(e.to_string().contains("malformed"), "{e}");
        let e = m
            .start("rtsp://cam/x", "a", false, Some("t".into()))
            .unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let e = bad("rtsp://admin:hunter2@[::1/x", "a");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(m.list().is_empty());
    }

    #[tokio::test]
    async fn on_demand_pulls_wait_idle_until_a_reader_asks() {
        let m = manager();
        let id = m
            .start("rtsp://127.0.0.1:1/x", "cam/od", true, None)
            .unwrap();
        assert_eq!(m.get(&id).unwrap().state, PullState::Idle);
        assert!(!m.demand("cam/other"), "no pull for that name");
        assert!(m.demand("cam/od"));
        assert_eq!(m.get(&id).unwrap().state, PullState::Connecting);
        assert!(m.demand("cam/od"), "already on its way");
    }

    #[tokio::test]
    async fn duplicate_names_conflict_and_delete_frees_them() {
        let m = manager();
        let id = m
            .start("rtsp://u:p@127.0.0.1:1/x", "cam", false, None)
            .unwrap();
        assert!(matches!(
            m.start("rtsp://127.0.0.1:1/y", "cam", false, None)
                .unwrap_err(),
            PullApiError::Conflict(_)
        ));
        let info = m.get(&id).unwrap();
        assert_eq!(info.source, "rtsp://***@127.0.0.1:1/x");
        m.stop(&id).unwrap();
        assert!(matches!(m.stop(&id), Err(PullApiError::NotFound(_))));
        m.start("rtsp://127.0.0.1:1/y", "cam", false, None).unwrap();
        let _publisher = m
            .registry
            .publish("taken", Peer::new("rtmp", None))
            .unwrap();
        assert!(matches!(
            m.start("rtsp://127.0.0.1:1/y", "taken", false, None)
                .unwrap_err(),
            PullApiError::Conflict(_)
        ));
    }
}
